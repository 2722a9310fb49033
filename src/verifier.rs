//! Which path a bearer token takes: a JWT to its issuer's keys (and, with
//! `introspect_jwt`, on to the IdP), anything else to the issuers that
//! accept opaque tokens, in config order. Either way the result is a
//! [`VerifiedToken`], so the policy cannot tell them apart.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, TokenType};
use crate::introspection::{is_jwt, IntrospectionError, Introspector};
use crate::issuer::{trim_token, Issuers, JwksError, KeptClaims, TokenError, VerifiedToken};

/// Pause between lookups of an introspection endpoint not found yet.
const DISCOVERY_RETRY: Duration = Duration::from_secs(5);

/// Why a bearer token was refused, by the path it took.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A JWT checked against its issuer's keys.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A token the IdP was asked about.
    #[error(transparent)]
    Introspection(#[from] IntrospectionError),
}

/// Why the issuers cannot be set up at startup.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A JWKS source (file, URL) is unusable.
    #[error(transparent)]
    Jwks(#[from] JwksError),
    /// An introspection secret or key cannot be read.
    #[error("{0}")]
    Introspection(String),
}

/// Every issuer's way of checking a token.
pub(crate) struct Verifier {
    issuers: Arc<Issuers>,
    /// One per issuer that introspects, in config order.
    introspectors: Vec<Arc<Introspector>>,
    max_token_bytes: usize,
}

impl Verifier {
    /// Reads every introspection secret or key now, so a missing file fails
    /// startup rather than the first connection.
    pub(crate) fn from_config(config: &Config) -> Result<Self, SetupError> {
        let issuers = Arc::new(Issuers::new(config)?);
        let introspectors = config
            .issuers
            .iter()
            .filter(|i| i.introspection.is_some())
            .map(|i| Introspector::from_config(config, i).map(Arc::new))
            .collect::<Result<_, _>>()
            .map_err(SetupError::Introspection)?;
        Ok(Self {
            issuers,
            introspectors,
            max_token_bytes: config.token.max_token_bytes,
        })
    }

    pub(crate) fn issuers(&self) -> &Arc<Issuers> {
        &self.issuers
    }

    pub(crate) fn introspectors(&self) -> &[Arc<Introspector>] {
        &self.introspectors
    }

    fn introspector(&self, issuer: &str) -> Option<&Arc<Introspector>> {
        self.introspectors.iter().find(|i| i.name() == issuer)
    }

    /// Verifies a bearer token as `serve` does; the claims are cut down to
    /// `keep` whichever path it took.
    pub(crate) async fn verify(
        &self,
        token: &str,
        keep: KeptClaims<'_>,
    ) -> Result<Arc<VerifiedToken>, VerifyError> {
        let token = trim_token(token);
        if token.is_empty() {
            return Err(TokenError::Missing.into());
        }
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge(self.max_token_bytes).into());
        }
        let opaque: Vec<&Arc<Introspector>> = self
            .introspectors
            .iter()
            .filter(|i| self.accepts_opaque(i.name()))
            .collect();
        if is_jwt(token) || opaque.is_empty() {
            let verified = self.issuers.validate(token, keep).await?;
            if let Some(i) = self.introspector(&verified.issuer).filter(|_| {
                self.issuers
                    .by_name(&verified.issuer)
                    .is_some_and(|iss| iss.config.introspects_jwt())
            }) {
                // Still active at the IdP: the signature alone cannot say.
                i.introspect(token, keep).await?;
            }
            return Ok(verified);
        }
        introspect_in_order(&opaque, token, keep).await
    }

    /// Looks up every introspection endpoint now (discovery, unless
    /// configured), for the startup log and readiness.
    pub(crate) async fn resolve_endpoints(&self) -> Vec<(String, Result<(), IntrospectionError>)> {
        let lookups = self
            .introspectors
            .iter()
            .map(|i| async move { (i.name().to_owned(), i.resolve_endpoints().await.map(drop)) });
        futures::future::join_all(lookups).await
    }

    /// Retries the endpoint lookup of every introspector that has none yet,
    /// until it succeeds, so readiness recovers without waiting for a token.
    pub(crate) fn spawn_discovery(&self, tasks: &mut tokio::task::JoinSet<()>) {
        for i in &self.introspectors {
            let i = i.clone();
            tasks.spawn(async move {
                while !i.endpoints_known() {
                    tokio::time::sleep(DISCOVERY_RETRY).await;
                    if let Err(e) = i.resolve_endpoints().await {
                        tracing::warn!(issuer = %i.name(), error = %e,
                            "introspection endpoint lookup failed; retrying");
                    }
                }
            });
        }
    }

    fn accepts_opaque(&self, issuer: &str) -> bool {
        self.issuers
            .by_name(issuer)
            .is_some_and(|i| i.config.accepts(TokenType::Opaque))
    }
}

/// The first issuer that knows the token as active wins. When none does,
/// the denial is the most telling refusal: an IdP that could not answer
/// (the token may be good there) before "inactive" everywhere.
async fn introspect_in_order(
    introspectors: &[&Arc<Introspector>],
    token: &str,
    keep: KeptClaims<'_>,
) -> Result<Arc<VerifiedToken>, VerifyError> {
    let mut refusal = IntrospectionError::Inactive;
    for i in introspectors {
        match i.introspect(token, keep).await {
            Ok(t) => return Ok(Arc::new(t)),
            Err(IntrospectionError::Inactive) => {}
            Err(e) if refusal == IntrospectionError::Inactive => refusal = e,
            Err(_) => {}
        }
    }
    Err(refusal.into())
}
