//! The identity-provider side: which issuers are trusted, their keys, and
//! validation of the bearer tokens they sign.

mod cache;
mod error;
mod header;
mod jwks;
mod local;
mod token;
mod verify;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use error::TokenError;
pub(crate) use jwks::{check_url, KeySource, KeyStore};
pub use jwks::{jwks_uri_from_discovery, JwksError, KeyFingerprint, KeySet, NoKey};
pub use local::{jwks, LocalKey, LocalKeyError};
pub use token::VerifiedToken;

use crate::clock::now_unix;
use crate::config::{Config, IssuerConfig, TokenType};

/// Retry interval for an issuer whose keys were never loaded.
const NO_KEYS_RETRY: Duration = Duration::from_secs(2);

/// One trusted issuer: its settings and its keys.
pub struct Issuer {
    pub(crate) config: IssuerConfig,
    pub(crate) keys: KeyStore,
    /// Signatures actually checked (cache misses that got that far).
    signature_checks: AtomicU64,
    validations: Vec<(jsonwebtoken::Algorithm, jsonwebtoken::Validation)>,
}

/// All configured issuers, looked up by the token's exact `iss`.
pub struct Issuers {
    list: Vec<Arc<Issuer>>,
    max_token_bytes: usize,
    /// Verified tokens by SHA-256 of the token and the kept claim paths, so
    /// a policy never gets an entry cut down for another policy's paths.
    cache: cache::Cache,
    cache_hits: AtomicU64,
}

/// Which claims a verified token keeps: `None` keeps them all; a policy
/// passes the claim paths it reads ([`crate::policy::Policy::claims_read`]).
/// `sub`, `exp`, the issuer's scope claim and the claims revocations select
/// on are always kept.
pub type KeptClaims<'a> = Option<&'a Arc<[String]>>;

/// A bearer token as presented, without the ASCII whitespace around it that
/// files, headers and shells add. `serve` and `check` both read tokens
/// through this, so they accept exactly the same strings.
pub fn trim_token(token: &str) -> &str {
    token.trim_matches([' ', '\t', '\r', '\n'])
}

impl Issuers {
    /// The issuers of `config`, keys not yet loaded; a bad key URL fails here.
    pub fn new(config: &Config) -> Result<Self, JwksError> {
        let mut list = Vec::new();
        for c in &config.issuers {
            let source = match (&c.jwks_file, &c.jwks_uri) {
                (Some(f), _) => KeySource::File(config.resolve(f)),
                (None, Some(u)) => {
                    check_url(u, c.allow_insecure_http)?;
                    KeySource::Uri(u.clone())
                }
                (None, None) => {
                    check_url(&c.issuer, c.allow_insecure_http)?;
                    KeySource::Discovery {
                        issuer: c.issuer.clone(),
                    }
                }
            };
            list.push(Arc::new(Issuer {
                config: c.clone(),
                keys: KeyStore::new(source, c.jwks_min_refetch, c.allow_insecure_http),
                signature_checks: AtomicU64::new(0),
                validations: Issuer::validations(c),
            }));
        }
        Ok(Self {
            list,
            max_token_bytes: config.token.max_token_bytes,
            cache: cache::Cache::new(config.token.cache_size),
            cache_hits: AtomicU64::new(0),
        })
    }

    /// Every configured issuer, in config order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Issuer>> {
        self.list.iter()
    }

    /// The issuers that accept JWTs: those with keys to fetch and watch.
    pub fn with_keys(&self) -> impl Iterator<Item = &Arc<Issuer>> {
        self.list
            .iter()
            .filter(|i| i.config.accepts(TokenType::Jwt))
    }

    /// The configured issuer names, in config order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.list.iter().map(|i| i.config.name.clone()).collect()
    }

    /// The issuer a verified token's `issuer` (config name) refers to.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Issuer>> {
        self.list.iter().find(|i| i.config.name == name)
    }

    /// The issuer whose identifier is exactly `iss`.
    pub(crate) fn by_iss(&self, iss: &str) -> Option<&Arc<Issuer>> {
        self.list.iter().find(|i| i.config.issuer == iss)
    }

    /// Loads every issuer's keys once. Failures are returned per issuer and
    /// do not stop the others: a dead IdP only affects its own tokens.
    pub async fn load_all(&self) -> Vec<(String, Result<usize, JwksError>)> {
        let loads = self.with_keys().map(|i| async move {
            (
                i.config.name.clone(),
                i.keys.refresh().await.map(|s| s.len()),
            )
        });
        futures::future::join_all(loads).await
    }

    /// Refreshes each issuer's keys on its own interval, for ever. An
    /// issuer with no keys at all is retried sooner, so recovery from an
    /// outage at startup does not wait a whole refresh interval.
    pub fn spawn_refresh(&self, tasks: &mut tokio::task::JoinSet<()>) {
        for issuer in self.with_keys() {
            let issuer = issuer.clone();
            let every: Duration = issuer.config.jwks_refresh;
            tasks.spawn(async move {
                loop {
                    let pause = if issuer.keys.current().is_some() {
                        every
                    } else {
                        every.min(NO_KEYS_RETRY)
                    };
                    tokio::time::sleep(pause).await;
                    if let Err(e) = issuer.keys.refresh().await {
                        tracing::warn!(issuer = %issuer.config.name, error = %e,
                            "JWKS refresh failed; keeping the keys already loaded");
                    }
                }
            });
        }
    }

    /// Verifies a bearer token exactly as `serve` does. Identical tokens
    /// arriving together are verified once (single flight) and then served
    /// from the cache; failures are never cached. The token's claims are
    /// cut down to `keep`, on a cache hit and a miss alike, so a decision
    /// never depends on whether the token was cached.
    pub async fn validate(
        &self,
        token: &str,
        keep: KeptClaims<'_>,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        let token = trim_token(token);
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge(self.max_token_bytes));
        }
        let key = cache::cache_key(token, keep);
        let now = now_unix();
        if let Some(hit) = self.cache.get(&key, now)? {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Arc::new(hit));
        }
        let entry = self
            .cache
            .get_or_verify(key, now, async {
                let header = header::read(token)?;
                let issuer = self
                    .by_iss(&header.iss)
                    .ok_or_else(|| TokenError::UnknownIssuer(header::truncate(&header.iss)))?;
                if !issuer.config.accepts(TokenType::Jwt) {
                    return Err(TokenError::JwtNotAccepted(issuer.config.name.clone()));
                }
                let (claims, fingerprint) = issuer.verify(token, &header).await?;
                Ok::<_, TokenError>(cache::Cached::new(
                    issuer.clone(),
                    claims,
                    keep,
                    fingerprint,
                ))
            })
            .await?;
        Ok(Arc::new(entry.token()))
    }

    /// Verified tokens held in the cache.
    pub async fn cache_entries(&self) -> u64 {
        self.cache.len() as u64
    }

    /// Tokens served from the cache without a signature check.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits.load(Ordering::Relaxed)
    }

    /// Tokens whose signature was actually checked (cache misses).
    pub fn signature_checks(&self) -> u64 {
        self.list
            .iter()
            .map(|i| i.signature_checks.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod cache_tests;
#[cfg(test)]
mod tests;
