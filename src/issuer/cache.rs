//! The verified-token cache: a reconnect storm with one token costs one
//! signature check. Entries hold only the claims the policy reads, are
//! keyed by SHA-256 of the token (never the token itself), and are honoured
//! only while the key that verified them is still published and fresh.
//! They live until the token's `exp` (or `max_token_age`) in a
//! [`ClockCache`], whose clock here is Unix time in milliseconds.

use std::future::Future;
use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::jwks::KeyFingerprint;
use super::token::{expiry, VerifiedToken};
use super::{Issuer, KeptClaims, TokenError};
use crate::cache::ClockCache;
pub(super) use crate::cache::Key;

/// Verified tokens by key, at most `capacity` of them.
pub(super) struct Cache(ClockCache<Cached, TokenError>);

impl Cache {
    pub(super) fn new(capacity: u64) -> Self {
        Self(ClockCache::new(capacity))
    }

    /// The cached token for `key`, if one may be served at `now` (Unix
    /// seconds). An entry that ended is dropped; stale keys are an error,
    /// as for a fresh check.
    pub(super) fn get(&self, key: &Key, now: i64) -> Result<Option<VerifiedToken>, TokenError> {
        let Some(cached) = self.0.get(key, millis(now)) else {
            return Ok(None);
        };
        if cached.servable()? {
            return Ok(Some(cached.token()));
        }
        self.0.remove(key);
        Ok(None)
    }

    /// The entry for `key` from `verify`, run once for all who ask at the
    /// same time; a success is cached, a failure only shared with them.
    pub(super) async fn get_or_verify<F>(
        &self,
        key: Key,
        now: i64,
        verify: F,
    ) -> Result<Cached, TokenError>
    where
        F: Future<Output = Result<Cached, TokenError>>,
    {
        self.0
            .get_or_fill(key, millis(now), async {
                let cached = verify.await?;
                let until = millis(cached.until);
                Ok((cached, until))
            })
            .await
    }

    /// Entries held, expired ones not yet evicted included.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Unix seconds as the cache's clock; before 1970 is 0.
fn millis(unix_secs: i64) -> u64 {
    u64::try_from(unix_secs).unwrap_or(0).saturating_mul(1000)
}

/// A cache entry. Memory is what bounds the cache (100k entries by
/// default), so it holds only the claims the policy reads, as JSON text:
/// a parsed `serde_json::Map` of a typical access token takes ~8 KB on
/// the heap, this ~100 bytes. A hit parses it back (about a microsecond).
#[derive(Clone)]
pub(super) struct Cached {
    issuer: Arc<Issuer>,
    /// The kept claims, a JSON object.
    claims: Box<str>,
    /// Served until then (Unix seconds): see [`serve_until`].
    until: i64,
    key: KeyFingerprint,
}

impl Cached {
    pub(super) fn new(
        issuer: Arc<Issuer>,
        claims: Map<String, Value>,
        keep: KeptClaims,
        key: KeyFingerprint,
    ) -> Self {
        let until = serve_until(&issuer, &claims);
        let claims = kept(&issuer, claims, keep);
        Self {
            claims: serde_json::to_string(&claims)
                .expect("claims serialize")
                .into_boxed_str(),
            until,
            issuer,
            key,
        }
    }

    pub(super) fn token(&self) -> VerifiedToken {
        let claims = serde_json::from_str(&self.claims).expect("the cache holds JSON it wrote");
        let mut token = VerifiedToken::new(
            self.issuer.config.name.clone(),
            &self.issuer.config.scope_claim,
            claims,
        );
        token.key = Some(self.key);
        token
    }

    /// Whether a hit whose time is not up may be served: `Ok(false)` when
    /// the IdP withdrew the key that verified it (the token must be checked
    /// again), an error when the issuer's keys went stale, which bounds
    /// hits exactly as it bounds fresh checks.
    fn servable(&self) -> Result<bool, TokenError> {
        let Some(keys) = self.issuer.keys.current() else {
            return Ok(false);
        };
        let age = keys.fetched_at.elapsed();
        if age > self.issuer.config.jwks_max_stale {
            return Err(TokenError::StaleKeys {
                issuer: self.issuer.config.name.clone(),
                age_secs: age.as_secs(),
            });
        }
        Ok(keys.holds(&self.key))
    }
}

/// Until when a verified token may be served from the cache: its `exp`, or
/// earlier when `max_token_age` ends it first (a hit does not re-check
/// `iat`, which the entry no longer holds). 0 (never) without `exp`.
fn serve_until(issuer: &Issuer, claims: &Map<String, Value>) -> i64 {
    let exp = expiry(claims).unwrap_or(0);
    let aged = issuer.config.max_token_age.and_then(|max| {
        let iat = claims.get("iat").and_then(Value::as_i64)?;
        Some(iat.saturating_add(max.as_secs() as i64))
    });
    aged.map_or(exp, |a| a.min(exp))
}

/// SHA-256 over the token and the kept paths, each length-prefixed (`None`
/// differs from every list).
pub(super) fn cache_key(token: &str, keep: KeptClaims) -> Key {
    let mut h = Sha256::new();
    h.update((token.len() as u64).to_le_bytes());
    h.update(token.as_bytes());
    match keep {
        None => h.update([0]),
        Some(paths) => {
            h.update([1]);
            for p in paths.iter() {
                h.update((p.len() as u64).to_le_bytes());
                h.update(p.as_bytes());
            }
        }
    }
    h.finalize().into()
}

/// The claims a cached token keeps: those at `keep`'s paths, plus `sub`,
/// `exp`, the scope claim, what revocations select on and the certificate
/// binding ([`crate::claims::CACHED_ALWAYS`]).
fn kept(issuer: &Issuer, claims: Map<String, Value>, keep: KeptClaims) -> Map<String, Value> {
    match keep {
        None => claims,
        Some(paths) => crate::claims::kept(&claims, &issuer.config.scope_claim, paths),
    }
}
