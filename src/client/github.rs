//! A GitHub Actions job's OIDC ID token: requested from the runner's
//! endpoint (`ACTIONS_ID_TOKEN_REQUEST_URL`, authorized by
//! `ACTIONS_ID_TOKEN_REQUEST_TOKEN`; the job needs `permissions: id-token:
//! write`) for an audience of our choosing, cached and renewed ahead of its
//! `exp`.

use serde::Deserialize;

use super::http::{self, check_url, unreachable, without_query};
use super::refresh::{Fetched, Refreshing};
use super::{TokenError, TokenSource};

pub(crate) const REQUEST_URL_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
pub(crate) const REQUEST_TOKEN_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

/// The job's OIDC ID token for one audience, renewed ahead of its `exp`.
pub struct GitHubActions {
    url: url::Url,
    request_token: String,
    http: reqwest::Client,
    cache: Refreshing,
}

#[derive(Deserialize)]
struct IdToken {
    value: String,
}

impl GitHubActions {
    /// From the runner's environment variables.
    pub fn from_env(audience: &str) -> Result<GitHubActions, TokenError> {
        let var = |name: &str| {
            std::env::var(name).map_err(|_| {
                TokenError::Config(format!(
                    "{name} is not set: run inside GitHub Actions with `permissions: id-token: write`"
                ))
            })
        };
        GitHubActions::new(&var(REQUEST_URL_VAR)?, &var(REQUEST_TOKEN_VAR)?, audience)
    }

    /// `request_url` as the runner gives it (it already has a query); the
    /// `audience` parameter is added to it.
    pub fn new(
        request_url: &str,
        request_token: &str,
        audience: &str,
    ) -> Result<GitHubActions, TokenError> {
        let mut url = check_url(request_url, false)?;
        if audience.is_empty() {
            return Err(TokenError::Config("the audience is empty".into()));
        }
        url.query_pairs_mut().append_pair("audience", audience);
        Ok(GitHubActions {
            url,
            request_token: request_token.to_owned(),
            http: http::client()?,
            cache: Refreshing::default(),
        })
    }

    async fn fetch(&self) -> Result<Fetched, TokenError> {
        let url = self.url.as_str();
        let resp = self
            .http
            .get(url)
            .bearer_auth(&self.request_token)
            .send()
            .await
            .map_err(|e| unreachable(url, e))?;
        if !resp.status().is_success() {
            return Err(TokenError::Unavailable(format!(
                "the ID token endpoint {} answered HTTP {}",
                without_query(url),
                resp.status().as_u16()
            )));
        }
        let body: IdToken = resp.json().await.map_err(|_| {
            TokenError::Unavailable(format!(
                "the ID token endpoint {} answered without a value",
                without_query(url)
            ))
        })?;
        Ok(Fetched::new(body.value, None))
    }
}

impl TokenSource for GitHubActions {
    async fn token(&self) -> Result<String, TokenError> {
        self.cache.get(|| self.fetch()).await
    }
}

impl std::fmt::Debug for GitHubActions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubActions")
            .field("url", &without_query(self.url.as_str()))
            .field("request_token", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audience_joins_the_runner_query() {
        let g = GitHubActions::new(
            "https://pipelines.example/idtoken?api-version=2.0",
            "req-secret",
            "nats://nats.acme.example",
        )
        .unwrap();
        assert_eq!(
            g.url.as_str(),
            "https://pipelines.example/idtoken?api-version=2.0&audience=nats%3A%2F%2Fnats.acme.example"
        );
        assert!(!format!("{g:?}").contains("req-secret"));
        assert!(GitHubActions::new("http://pipelines.example/x", "t", "a").is_err());
        assert!(GitHubActions::new("https://pipelines.example/x", "t", "").is_err());
    }
}
