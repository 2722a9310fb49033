//! The identity-provider side: which issuers are trusted, their keys, and
//! validation of the bearer tokens they sign.

mod jwks;
mod local;

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use jwks::{
    check_url, jwks_uri_from_discovery, JwksError, KeySet, KeySource, KeyStore, NoKey,
    MAX_DOCUMENT_BYTES,
};
pub use local::{jwks, LocalKey, LocalKeyError};

use crate::authorize::now_unix;
use crate::config::{Config, IssuerConfig};
use crate::policy::scopes;

/// Retry interval for an issuer whose keys were never loaded.
const NO_KEYS_RETRY: Duration = Duration::from_secs(2);

/// Why a token was refused. The text is what operators read in logs and
/// what `check` prints; it never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token presented")]
    Missing,
    #[error("token is larger than {0} bytes")]
    TooLarge(usize),
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("algorithm \"none\" is never accepted")]
    AlgNone,
    #[error("algorithm {0:?} is not supported")]
    UnsupportedAlg(String),
    #[error("algorithm {alg:?} is not allowed for issuer {issuer:?}")]
    AlgNotAllowed { alg: String, issuer: String },
    #[error("token header carries {0:?}, which is never trusted")]
    ForbiddenHeader(&'static str),
    #[error("token has no iss claim")]
    NoIssuer,
    #[error("unknown issuer {0:?}")]
    UnknownIssuer(String),
    #[error("keys unavailable for issuer {0:?}")]
    KeysUnavailable(String),
    #[error("no key with kid {kid:?} for issuer {issuer:?}")]
    UnknownKid { kid: String, issuer: String },
    #[error("no key of issuer {0:?} fits the token's algorithm")]
    KeyMismatch(String),
    #[error("token has no kid and issuer {0:?} has several keys")]
    AmbiguousKey(String),
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("audience mismatch")]
    Audience,
    #[error("issuer mismatch")]
    Issuer,
    #[error("token has no {0} claim")]
    MissingClaim(String),
    #[error("claim {0} has an invalid format")]
    ClaimFormat(String),
    #[error("keys for issuer {issuer:?} are stale (last refreshed {age_secs} s ago)")]
    StaleKeys { issuer: String, age_secs: u64 },
    #[error("token typ is {found:?}, expected {expected:?}")]
    Typ { found: String, expected: String },
    #[error("token is too old (issued {age_secs} s ago)")]
    TooOld { age_secs: i64 },
}

impl TokenError {
    /// A stable label for metrics.
    pub fn class(&self) -> &'static str {
        use TokenError::*;
        match self {
            Missing => "no_token",
            TooLarge(_) | Malformed(_) | ClaimFormat(_) | MissingClaim(_) | Typ { .. } => {
                "token_malformed"
            }
            AlgNone | UnsupportedAlg(_) | AlgNotAllowed { .. } | ForbiddenHeader(_) => {
                "token_algorithm"
            }
            NoIssuer | UnknownIssuer(_) => "unknown_issuer",
            KeysUnavailable(_) | StaleKeys { .. } => "keys_unavailable",
            UnknownKid { .. } | KeyMismatch(_) | AmbiguousKey(_) => "unknown_key",
            BadSignature => "bad_signature",
            Expired | TooOld { .. } => "token_expired",
            NotYetValid => "token_not_yet_valid",
            Audience => "audience",
            Issuer => "issuer_mismatch",
        }
    }
}

/// A token whose signature and registered claims were verified.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The configured issuer name, which policy rules refer to.
    pub issuer: String,
    pub claims: Map<String, Value>,
    pub scopes: Vec<String>,
    pub subject: String,
    pub expires_at: Option<i64>,
}

impl VerifiedToken {
    pub fn new(issuer: String, scope_claim: &str, claims: Map<String, Value>) -> Self {
        Self {
            issuer,
            scopes: scopes(&claims, scope_claim),
            subject: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            expires_at: expiry(&claims),
            claims,
        }
    }
}

/// The `exp` claim. NumericDate may be fractional; round down so a user JWT
/// never outlives the token.
fn expiry(claims: &Map<String, Value>) -> Option<i64> {
    claims
        .get("exp")
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f.floor() as i64)))
}

pub struct Issuer {
    pub config: IssuerConfig,
    pub keys: KeyStore,
}

impl Issuer {
    /// A refetch for an unknown `kid` that runs to its own fetch timeout
    /// even when the request waiting on it gives up at its deadline, so a
    /// slow IdP still delivers the new keys to the requests after it.
    async fn refetch_detached(self: &Arc<Self>) -> Option<Arc<KeySet>> {
        let issuer = self.clone();
        tokio::spawn(async move { issuer.keys.refetch_for_unknown_kid().await })
            .await
            .ok()
            .flatten()
    }
}

/// All configured issuers, looked up by the token's exact `iss`.
pub struct Issuers {
    list: Vec<Arc<Issuer>>,
    max_token_bytes: usize,
    /// Verified tokens by SHA-256 of the token and the kept claim paths, so
    /// a reconnect storm with one token costs one signature check, and a
    /// policy never gets an entry cut down for another policy's paths.
    cache: moka::future::Cache<[u8; 32], Cached>,
    signature_checks: AtomicU64,
    cache_hits: AtomicU64,
}

/// Which claims a verified token keeps: `None` keeps them all; a policy
/// passes the claim paths it reads ([`crate::policy::Policy::claims_read`]).
/// `sub`, `exp` and the issuer's scope claim are always kept.
pub type KeptClaims<'a> = Option<&'a Arc<[String]>>;

/// A cache entry. Memory is what bounds the cache (100k entries by
/// default), so it holds only the claims the policy reads, as JSON text:
/// a parsed `serde_json::Map` of a typical access token takes ~8 KB on
/// the heap, this ~100 bytes. A hit parses it back (about a microsecond).
#[derive(Clone)]
struct Cached {
    issuer: Arc<Issuer>,
    /// The kept claims, a JSON object.
    claims: Box<str>,
    /// Served until then (Unix seconds): see [`serve_until`].
    expires_at: i64,
}

impl Cached {
    fn token(&self) -> VerifiedToken {
        let claims = serde_json::from_str(&self.claims).expect("the cache holds JSON it wrote");
        VerifiedToken::new(
            self.issuer.config.name.clone(),
            &self.issuer.config.scope_claim,
            claims,
        )
    }
}

/// An entry lives until [`serve_until`], and never past one key refresh
/// interval, so a key the IdP withdrew stops being honoured within it.
struct CacheExpiry;

impl moka::Expiry<[u8; 32], Cached> for CacheExpiry {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        v: &Cached,
        _: std::time::Instant,
    ) -> Option<Duration> {
        let left = Duration::from_secs((v.expires_at - now_unix()).max(0) as u64);
        Some(left.min(v.issuer.config.jwks_refresh.into()))
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    jku: Option<Value>,
    x5u: Option<Value>,
    jwk: Option<Value>,
    crit: Option<Value>,
}

/// The claims read before the signature is checked: which issuer, and
/// whether the time claims have a shape a verifier can compare.
#[derive(Deserialize)]
struct Peek {
    iss: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iat: Option<Value>,
}

impl Issuers {
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
                keys: KeyStore::new(source, c.jwks_min_refetch.into(), c.allow_insecure_http),
            }));
        }
        Ok(Self {
            list,
            max_token_bytes: config.token.max_token_bytes,
            cache: moka::future::Cache::builder()
                .max_capacity(config.token.cache_size)
                .expire_after(CacheExpiry)
                .build(),
            signature_checks: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Issuer>> {
        self.list.iter()
    }

    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|i| i.config.name.clone()).collect()
    }

    pub fn by_iss(&self, iss: &str) -> Option<&Arc<Issuer>> {
        self.list.iter().find(|i| i.config.issuer == iss)
    }

    /// Loads every issuer's keys once. Failures are returned per issuer and
    /// do not stop the others: a dead IdP only affects its own tokens.
    pub async fn load_all(&self) -> Vec<(String, Result<usize, JwksError>)> {
        let loads = self.list.iter().map(|i| async move {
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
    pub fn spawn_refresh(&self) {
        for issuer in &self.list {
            let issuer = issuer.clone();
            let every: Duration = issuer.config.jwks_refresh.into();
            tokio::spawn(async move {
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
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge(self.max_token_bytes));
        }
        let key = cache_key(token, keep);
        if let Some(hit) = self.cache.get(&key).await {
            if hit.expires_at > now_unix() {
                self.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Arc::new(hit.token()));
            }
        }
        let entry = self
            .cache
            .try_get_with(key, async {
                let (issuer, claims) = self.verify(token).await?;
                let serve_until = serve_until(&issuer, &claims);
                let claims = kept(&issuer, claims, keep);
                Ok::<_, TokenError>(Cached {
                    expires_at: serve_until,
                    claims: serde_json::to_string(&claims)
                        .expect("claims serialize")
                        .into_boxed_str(),
                    issuer,
                })
            })
            .await
            .map_err(|e| (*e).clone())?;
        Ok(Arc::new(entry.token()))
    }

    /// Verified tokens held in the cache, after moka's pending maintenance
    /// ran, so the count is exact rather than moka's lagging estimate.
    pub async fn cache_entries(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }

    /// Tokens served from the cache without a signature check.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits.load(Ordering::Relaxed)
    }

    /// Tokens whose signature was actually checked (cache misses).
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks.load(Ordering::Relaxed)
    }

    /// The uncached check; returns the token's issuer and all its claims.
    async fn verify(&self, token: &str) -> Result<(Arc<Issuer>, Map<String, Value>), TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed(
                "expected a JWT with 3 dot-separated parts".into(),
            ));
        };
        let header: Header = decode_part(h, "header")?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(TokenError::AlgNone);
        }
        for (name, present) in [
            ("jku", header.jku.is_some()),
            ("x5u", header.x5u.is_some()),
            ("jwk", header.jwk.is_some()),
            ("crit", header.crit.is_some()),
        ] {
            if present {
                return Err(TokenError::ForbiddenHeader(name));
            }
        }
        let alg = Algorithm::from_str(&header.alg)
            .map_err(|_| TokenError::UnsupportedAlg(truncate(&header.alg)))?;

        let peek: Peek = decode_part(p, "payload")?;
        for (name, v) in [("exp", &peek.exp), ("nbf", &peek.nbf), ("iat", &peek.iat)] {
            if v.as_ref().is_some_and(|v| !v.is_number()) {
                return Err(TokenError::ClaimFormat(name.into()));
            }
        }
        let iss = match peek.iss {
            Some(Value::String(s)) => s,
            Some(_) => return Err(TokenError::ClaimFormat("iss".into())),
            None => return Err(TokenError::NoIssuer),
        };
        let issuer = self
            .by_iss(&iss)
            .ok_or_else(|| TokenError::UnknownIssuer(truncate(&iss)))?;
        let name = &issuer.config.name;
        if !issuer.config.algorithms.contains(&alg) {
            return Err(TokenError::AlgNotAllowed {
                alg: header.alg,
                issuer: name.clone(),
            });
        }

        let keys = match issuer.keys.current() {
            Some(k) => k,
            None => issuer
                .refetch_detached()
                .await
                .ok_or_else(|| TokenError::KeysUnavailable(name.clone()))?,
        };
        let age = keys.fetched_at.elapsed();
        if age > Duration::from(issuer.config.jwks_max_stale) {
            return Err(TokenError::StaleKeys {
                issuer: name.clone(),
                age_secs: age.as_secs(),
            });
        }
        if let Some(expected) = &issuer.config.require_typ {
            let found = header.typ.as_deref().unwrap_or_default();
            // RFC 9068: "at+jwt", also written "application/at+jwt".
            let found_bare = found.strip_prefix("application/").unwrap_or(found);
            if !found_bare.eq_ignore_ascii_case(expected) {
                return Err(TokenError::Typ {
                    found: truncate(found),
                    expected: expected.clone(),
                });
            }
        }
        let kid = header.kid.as_deref();
        let no_key = |e: NoKey| match e {
            NoKey::UnknownKid => TokenError::UnknownKid {
                kid: truncate(kid.unwrap_or_default()),
                issuer: name.clone(),
            },
            NoKey::WrongAlgorithm => TokenError::KeyMismatch(name.clone()),
            NoKey::Ambiguous => TokenError::AmbiguousKey(name.clone()),
        };
        let refreshed;
        let entry = match keys.select(kid, alg) {
            Ok(e) => e,
            Err(NoKey::UnknownKid) => {
                refreshed = issuer
                    .refetch_detached()
                    .await
                    .ok_or_else(|| no_key(NoKey::UnknownKid))?;
                refreshed.select(kid, alg).map_err(no_key)?
            }
            Err(e) => return Err(no_key(e)),
        };

        let mut validation = Validation::new(alg);
        validation.leeway = Duration::from(issuer.config.leeway).as_secs();
        validation.set_audience(&issuer.config.audience.to_vec());
        validation.set_issuer(&[&issuer.config.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        if issuer.config.max_token_age.is_some() {
            validation.required_spec_claims.insert("iat".to_owned());
        }
        validation.validate_nbf = true;
        self.signature_checks.fetch_add(1, Ordering::Relaxed);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &entry.key, &validation)
            .map_err(|e| map_jwt_error(e.into_kind()))?;
        let claims = data.claims;
        if let Some(missing) = issuer
            .config
            .required_claims
            .iter()
            .find(|c| crate::policy::lookup(&claims, c).is_none())
        {
            return Err(TokenError::MissingClaim(missing.clone()));
        }
        if let Some(max_age) = issuer.config.max_token_age {
            let iat = claims
                .get("iat")
                .and_then(Value::as_i64)
                .ok_or_else(|| TokenError::MissingClaim("iat".into()))?;
            let age = now_unix() - iat;
            if age > Duration::from(max_age).as_secs() as i64 {
                return Err(TokenError::TooOld { age_secs: age });
            }
        }
        Ok((issuer.clone(), claims))
    }
}

/// Until when a verified token may be served from the cache: its `exp`, or
/// earlier when `max_token_age` ends it first (a hit does not re-check
/// `iat`, which the entry no longer holds). 0 (never) without `exp`.
fn serve_until(issuer: &Issuer, claims: &Map<String, Value>) -> i64 {
    let exp = expiry(claims).unwrap_or(0);
    let aged = issuer.config.max_token_age.and_then(|max| {
        let iat = claims.get("iat").and_then(Value::as_i64)?;
        Some(iat.saturating_add(Duration::from(max).as_secs() as i64))
    });
    aged.map_or(exp, |a| a.min(exp))
}

/// SHA-256 over the token and the kept paths, each length-prefixed (`None`
/// differs from every list).
fn cache_key(token: &str, keep: KeptClaims) -> [u8; 32] {
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

/// The claims at `keep`'s paths, each stored under its whole path, plus
/// `sub`, `exp` and the scope claim. [`crate::policy::lookup`] tries the
/// whole path first, so it finds the same value at each kept path as in the
/// full claims; and it finds nothing where the full claims have nothing,
/// since any way down through a kept value is also a way down in the full
/// claims.
fn kept(issuer: &Issuer, claims: Map<String, Value>, keep: KeptClaims) -> Map<String, Value> {
    let Some(paths) = keep else {
        return claims;
    };
    let always = ["sub", "exp", issuer.config.scope_claim.as_str()];
    always
        .into_iter()
        .chain(paths.iter().map(String::as_str))
        .filter_map(|p| Some((p.to_owned(), crate::policy::lookup(&claims, p)?.clone())))
        .collect()
}

fn decode_part<T: serde::de::DeserializeOwned>(b64: &str, part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| TokenError::Malformed(format!("{part} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::Malformed(format!("{part} is not a JSON object")))
}

/// Attacker-chosen strings are cut short before they reach a log line.
fn truncate(s: &str) -> String {
    const MAX: usize = 128;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn map_jwt_error(kind: ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(c),
        ErrorKind::InvalidClaimFormat(c) => TokenError::ClaimFormat(c),
        ErrorKind::InvalidAlgorithm => TokenError::BadSignature,
        ErrorKind::Json(_) => TokenError::Malformed("claims are not a valid JSON object".into()),
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
            TokenError::Malformed("not a valid JWT".into())
        }
        other => TokenError::Malformed(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests;
