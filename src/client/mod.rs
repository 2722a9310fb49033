//! The client side: a fresh bearer token at every (re)connect.
//!
//! The service issues NATS user JWTs that live minutes (the policy's `ttl`,
//! never past the token's `exp`), while a client runs for weeks. When its
//! user JWT expires the server closes the connection, and the client must
//! come back with a token that is valid *now*, not the one it started with.
//! A [`TokenSource`] hands out that token; [`connect_options`] turns one into
//! async-nats [`ConnectOptions`] that ask it at every connect and use the
//! per-identity inbox `_INBOX.<sub>` that the shipped policies grant.
//!
//! Sources: [`ClientCredentials`] (OAuth client-credentials grant, cached and
//! refreshed ahead of expiry), [`TokenFile`] (re-read at every connect:
//! Kubernetes projected tokens, Vault agent, the `token --refresh` sidecar),
//! [`GitHubActions`] (the job's OIDC ID token) and [`TokenCommand`] (a
//! command whose stdout is the token). No source logs a token or a secret.

mod command;
mod credentials;
mod file;
mod github;
mod http;
mod jwt;
mod refresh;

use std::future::Future;
use std::sync::Arc;

use async_nats::{Auth, AuthError, ConnectOptions};

pub use command::TokenCommand;
pub use credentials::{ClientCredentials, ClientCredentialsBuilder};
pub use file::TokenFile;
pub use github::GitHubActions;
pub use http::check_url;
#[cfg(feature = "service")]
pub(crate) use refresh::{backoff, refresh_after};

/// Where a client gets the bearer token to present at a connect.
pub trait TokenSource: Send + Sync + 'static {
    /// The token to present now: a cached one while it is fresh, else a new
    /// one. Errors never contain the token or a secret.
    fn token(&self) -> impl Future<Output = Result<String, TokenError>> + Send;
}

/// Why a source has no token to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The source is set up wrong (a URL, a path, an environment variable):
    /// retrying will not help.
    #[error("{0}")]
    Config(String),
    /// The IdP answered with an OAuth error (`invalid_client`, …).
    #[error("{0}")]
    Refused(String),
    /// Nothing usable came back (network, HTTP status, malformed answer, a
    /// file or command that failed); a later try may succeed.
    #[error("{0}")]
    Unavailable(String),
}

/// `_INBOX.<subject>`: the per-identity inbox prefix that policies grant as
/// `sub _INBOX.{claim.sub}.>`, so replies never cross between identities.
pub fn inbox_prefix(subject: &str) -> Result<String, TokenError> {
    let valid = !subject.is_empty()
        && subject.len() <= 256
        && !subject
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control());
    if valid {
        Ok(format!("_INBOX.{subject}"))
    } else {
        Err(TokenError::Config(format!(
            "the token subject {subject:?} is not one subject token; it cannot name an inbox"
        )))
    }
}

/// Connect options that present a fresh token from `source` at every
/// connect and reconnect, with the inbox prefix `_INBOX.<sub>` taken from
/// the first token's `sub` claim (read, not verified: the server's callout
/// verifies it). Fails if the first token cannot be had or names no subject.
pub async fn connect_options<S: TokenSource>(source: S) -> Result<ConnectOptions, TokenError> {
    let source = Arc::new(source);
    let first = source.token().await?;
    let subject = jwt::subject(&first).ok_or_else(|| {
        TokenError::Config(
            "the token is not a JWT with a `sub` claim: name the inbox with connect_options_with_inbox"
                .into(),
        )
    })?;
    Ok(with_source(source, &inbox_prefix(&subject)?))
}

/// [`connect_options`] with an inbox prefix of the caller's choosing (for
/// opaque tokens, or a `sub` that differs from the claim the policy uses).
pub fn connect_options_with_inbox<S: TokenSource>(source: S, inbox_prefix: &str) -> ConnectOptions {
    with_source(Arc::new(source), inbox_prefix)
}

fn with_source<S: TokenSource>(source: Arc<S>, inbox_prefix: &str) -> ConnectOptions {
    ConnectOptions::with_auth_callback(move |_nonce| {
        let source = source.clone();
        // async-nats wants a `Sync` future; a spawned task's handle is one.
        async move {
            let token = tokio::spawn(async move { source.token().await })
                .await
                .map_err(|e| AuthError::new(format!("token source failed: {e}")))?
                .map_err(AuthError::new)?;
            let mut auth = Auth::new();
            auth.token = Some(token);
            Ok(auth)
        }
    })
    .custom_inbox_prefix(inbox_prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_prefix_takes_one_plain_subject_token() {
        assert_eq!(inbox_prefix("worker").unwrap(), "_INBOX.worker");
        assert_eq!(
            inbox_prefix("repo:acme/api:ref:refs/heads/main").unwrap(),
            "_INBOX.repo:acme/api:ref:refs/heads/main"
        );
        for bad in ["", "a.b", "*", ">", "a b", "a\tb", &"x".repeat(257)] {
            assert!(
                matches!(inbox_prefix(bad), Err(TokenError::Config(_))),
                "{bad:?}"
            );
        }
    }
}
