//! The OAuth 2.0 client-credentials grant (RFC 6749 §4.4) for services: the
//! token endpoint found by OIDC discovery, the token cached and renewed
//! ahead of its expiry.

use serde::Deserialize;

use super::http::{self, check_url, unreachable};
use super::refresh::{Fetched, Refreshing};
use super::{TokenError, TokenSource};

/// Access tokens for one client of one issuer.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use nats_oidc_callout::client::{connect_options, ClientCredentials};
/// let source = ClientCredentials::builder("https://idp.example.com", "svc", "secret")
///     .scope("nats")
///     .build()?;
/// let nats = connect_options(source).await?.connect("nats://127.0.0.1:4222").await?;
/// # Ok(()) }
/// ```
pub struct ClientCredentials {
    issuer: String,
    client_id: String,
    client_secret: String,
    scope: Option<String>,
    audience: Option<String>,
    allow_insecure_http: bool,
    http: reqwest::Client,
    token_endpoint: tokio::sync::OnceCell<String>,
    cache: Refreshing,
}

/// Settings for [`ClientCredentials`]; `build` checks them.
pub struct ClientCredentialsBuilder {
    issuer: String,
    client_id: String,
    client_secret: String,
    scope: Option<String>,
    audience: Option<String>,
    allow_insecure_http: bool,
}

impl ClientCredentialsBuilder {
    /// Space-separated scopes to request.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The API the token is for, sent as `resource` (RFC 8707) and as
    /// `audience` (Auth0).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Allows plain http to an issuer that is not on loopback.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Fails on an invalid or insecure issuer URL, or an empty client id.
    pub fn build(self) -> Result<ClientCredentials, TokenError> {
        check_url(&self.issuer, self.allow_insecure_http)?;
        if self.client_id.is_empty() {
            return Err(TokenError::Config("the client id is empty".into()));
        }
        Ok(ClientCredentials {
            http: http::client()?,
            issuer: self.issuer,
            client_id: self.client_id,
            client_secret: self.client_secret,
            scope: self.scope,
            audience: self.audience,
            allow_insecure_http: self.allow_insecure_http,
            token_endpoint: tokio::sync::OnceCell::new(),
            cache: Refreshing::default(),
        })
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    token_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

/// RFC 6749 §5.2.
#[derive(Deserialize)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

impl ClientCredentials {
    /// `issuer_url` is where discovery finds the token endpoint.
    pub fn builder(
        issuer_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder {
            issuer: issuer_url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scope: None,
            audience: None,
            allow_insecure_http: false,
        }
    }

    /// The token endpoint from the issuer's discovery document, fetched once.
    async fn token_endpoint(&self) -> Result<&str, TokenError> {
        self.token_endpoint
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let resp = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| unreachable(&url, e))?;
                if !resp.status().is_success() {
                    return Err(TokenError::Unavailable(format!(
                        "discovery at {url} answered HTTP {}",
                        resp.status().as_u16()
                    )));
                }
                let doc: Discovery = resp.json().await.map_err(|e| {
                    TokenError::Unavailable(format!("discovery at {url}: {}", e.without_url()))
                })?;
                // The document must be the issuer's own (OIDC Discovery §4.3).
                if doc.issuer != self.issuer {
                    return Err(TokenError::Config(format!(
                        "discovery at {url} names the issuer {:?}, not {:?}",
                        doc.issuer, self.issuer
                    )));
                }
                let endpoint = doc.token_endpoint.ok_or_else(|| {
                    TokenError::Config(format!("discovery at {url} names no token_endpoint"))
                })?;
                check_url(&endpoint, self.allow_insecure_http)?;
                Ok(endpoint)
            })
            .await
            .map(String::as_str)
    }

    /// One grant, uncached.
    pub(crate) async fn fetch(&self) -> Result<Fetched, TokenError> {
        let endpoint = self.token_endpoint().await?;
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        if let Some(aud) = &self.audience {
            form.push(("resource", aud));
            form.push(("audience", aud));
        }
        // client_secret_basic: both parts form-encoded first (RFC 6749 §2.3.1).
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let resp = self
            .http
            .post(endpoint)
            .basic_auth(enc(&self.client_id), Some(enc(&self.client_secret)))
            .form(&form)
            .send()
            .await
            .map_err(|e| unreachable(endpoint, e))?;
        let status = resp.status();
        if status.is_success() {
            let body: TokenResponse = resp.json().await.map_err(|_| {
                TokenError::Unavailable(format!(
                    "the token endpoint {endpoint} answered without an access_token"
                ))
            })?;
            return Ok(Fetched::new(body.access_token, body.expires_in));
        }
        match resp.json::<OAuthError>().await {
            Ok(e) if status.is_client_error() => {
                Err(TokenError::Refused(match e.error_description {
                    Some(d) => format!("the issuer refused: {} ({d})", e.error),
                    None => format!("the issuer refused: {}", e.error),
                }))
            }
            _ => Err(TokenError::Unavailable(format!(
                "the token endpoint {endpoint} answered HTTP {}",
                status.as_u16()
            ))),
        }
    }
}

impl TokenSource for ClientCredentials {
    async fn token(&self) -> Result<String, TokenError> {
        self.cache.get(|| self.fetch()).await
    }
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_checks_the_issuer_url() {
        let b = |url: &str| ClientCredentials::builder(url, "svc", "s3cret");
        assert!(b("https://idp.example.com").build().is_ok());
        assert!(matches!(
            b("http://idp.example.com").build(),
            Err(TokenError::Config(_))
        ));
        assert!(b("http://idp.example.com")
            .allow_insecure_http(true)
            .build()
            .is_ok());
        assert!(
            ClientCredentials::builder("https://idp.example.com", "", "s")
                .build()
                .is_err()
        );
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let c = ClientCredentials::builder("https://idp.example.com", "svc", "s3cret")
            .build()
            .unwrap();
        let text = format!("{c:?}");
        assert!(text.contains("svc") && !text.contains("s3cret"), "{text}");
    }
}
