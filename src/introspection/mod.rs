//! Opaque tokens: asking the IdP (RFC 7662 token introspection, optionally
//! OpenID userinfo) whether a token is active and what it carries, with a
//! cache in front so a reconnect storm costs one call and a revocation at
//! the IdP is seen within `introspection_cache`.
//!
//! One [`Introspector`] per issuer that introspects. A decision calls
//! [`Introspector::introspect`]; its answer is a [`VerifiedToken`] exactly
//! like a JWT's, so the policy cannot tell them apart.

mod answer;
mod assertion;
mod cache;
mod client_auth;
mod error;
mod limits;
mod metrics;
mod token_kind;
mod upstream;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use assertion::AssertionKey;
pub(crate) use client_auth::ClientAuth;
pub use error::IntrospectionError;
pub use limits::Refused;
pub(crate) use metrics::render_into;
pub use metrics::{CallResult, Counters};
pub(crate) use token_kind::{is_bearer_token, is_jwt};
pub use upstream::Endpoints;
pub(crate) use upstream::{Failure, HttpUpstream, Upstream};

use crate::cache::ClockCache;
use crate::clock::now_unix;
use crate::config::{Config, Introspection, IssuerConfig};
use crate::issuer::{KeptClaims, VerifiedToken};
use answer::{Active, Rules};
use cache::Entry;
use limits::Gate;

/// Introspection for one issuer: its IdP, its rules, its cache.
pub struct Introspector {
    name: String,
    issuer: String,
    audiences: Vec<String>,
    leeway: i64,
    scope_claim: String,
    required_claims: Vec<String>,
    max_age_secs: Option<i64>,
    positive_ttl: Duration,
    negative_ttl: Duration,
    userinfo: bool,
    max_in_flight: usize,
    upstream: Arc<dyn Upstream>,
    /// The same upstream when it is the real one (endpoint lookup).
    http: Option<Arc<HttpUpstream>>,
    gate: Gate,
    /// Answers by key, on a monotonic clock in milliseconds from `epoch`.
    cache: ClockCache<Entry, IntrospectionError>,
    epoch: Instant,
    counters: Counters,
}

impl Introspector {
    /// The introspector of `iss`, calling its IdP over HTTP. Reads the
    /// client secret or private key now, so a missing file fails startup.
    /// `config.token.cache_size` bounds the cache.
    pub fn from_config(config: &Config, iss: &IssuerConfig) -> Result<Self, String> {
        let settings = iss.introspection.as_ref().ok_or_else(|| {
            format!(
                "issuer {:?} introspects nothing (no \"opaque\" in token_types, no introspect_jwt)",
                iss.name
            )
        })?;
        let auth =
            ClientAuth::from_config(settings).map_err(|e| format!("issuer {:?}: {e}", iss.name))?;
        let http = Arc::new(HttpUpstream::new(iss, settings, auth));
        let mut me = Self::with_upstream(iss, settings, config.token.cache_size, http.clone());
        me.http = Some(http);
        Ok(me)
    }

    /// The introspector of `iss` in front of any [`Upstream`].
    pub(crate) fn with_upstream(
        iss: &IssuerConfig,
        settings: &Introspection,
        cache_size: u64,
        upstream: Arc<dyn Upstream>,
    ) -> Self {
        Self {
            name: iss.name.clone(),
            issuer: iss.issuer.clone(),
            audiences: iss.audience.to_vec(),
            leeway: iss.leeway.as_secs() as i64,
            scope_claim: iss.scope_claim.clone(),
            required_claims: iss.required_claims.clone(),
            max_age_secs: iss
                .max_token_age
                .map(|d| d.as_secs().min(i64::MAX as u64) as i64),
            positive_ttl: settings.cache,
            negative_ttl: settings.negative_cache,
            userinfo: settings.userinfo,
            max_in_flight: settings.max_in_flight,
            upstream,
            http: None,
            gate: Gate::new(settings.max_in_flight, settings.rate_limit),
            cache: ClockCache::new(cache_size),
            epoch: Instant::now(),
            counters: Counters::default(),
        }
    }

    /// The configured issuer name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its calls, cache hits and refusals, for `/metrics` and tests.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Looks up the endpoints now (discovery, when they are not configured),
    /// for startup and readiness; otherwise the first token does it.
    pub async fn resolve_endpoints(&self) -> Result<Option<Endpoints>, IntrospectionError> {
        match &self.http {
            None => Ok(None),
            Some(h) => h
                .endpoints()
                .await
                .cloned()
                .map(Some)
                .map_err(|f| self.failure(f)),
        }
    }

    /// Whether a call could be made now without discovery: the endpoints are
    /// known (always true in front of another upstream).
    pub fn endpoints_known(&self) -> bool {
        self.http.as_ref().is_none_or(|h| h.endpoints_known())
    }

    /// Whether `token` is active at the IdP, and its claims. Served from the
    /// cache when it can be; identical tokens arriving together share one
    /// call; failures (timeouts, 5xx, limits) are never cached. The claims
    /// are cut down to `keep` on a hit and a miss alike.
    pub async fn introspect(
        &self,
        token: &str,
        keep: KeptClaims<'_>,
    ) -> Result<VerifiedToken, IntrospectionError> {
        if !is_bearer_token(token) {
            return Err(IntrospectionError::Malformed);
        }
        let key = cache::key(token, keep);
        let now = self.now_ms();
        let mut called = false;
        let entry = match self.cache.get(&key, now) {
            Some(hit) => hit,
            None => {
                self.cache
                    .get_or_fill(key, now, async {
                        called = true;
                        let entry = self.fetch(token, keep).await?;
                        let until = self.now_ms().saturating_add(entry.ttl_ms());
                        Ok((entry, until))
                    })
                    .await?
            }
        };
        if !called {
            self.counters.hit(matches!(entry, Entry::Active { .. }));
        }
        match entry {
            Entry::Refused { error, .. } => Err((*error).clone()),
            Entry::Active {
                claims, exp, nbf, ..
            } => {
                answer::check_time(Some(exp), Some(nbf), now_unix(), self.leeway)?;
                let claims = serde_json::from_str(&claims).expect("the cache holds JSON it wrote");
                Ok(VerifiedToken::new(
                    self.name.clone(),
                    &self.scope_claim,
                    claims,
                ))
            }
        }
    }

    /// Answers held in the cache, expired ones not yet evicted included.
    pub fn cache_entries(&self) -> u64 {
        self.cache.len() as u64
    }

    /// The cache's clock: milliseconds since this introspector was made.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn in_flight(&self) -> usize {
        self.gate.in_flight(self.max_in_flight)
    }

    /// One call (two with userinfo), inside the limits. A definitive
    /// answer becomes an entry; a failure is an error and is not cached.
    async fn fetch(&self, token: &str, keep: KeptClaims<'_>) -> Result<Entry, IntrospectionError> {
        let _permit = self.gate.enter().map_err(|why| {
            self.counters.skipped(why);
            let issuer = self.name.clone();
            match why {
                Refused::Saturated => IntrospectionError::Saturated { issuer },
                Refused::RateLimited => IntrospectionError::RateLimited { issuer },
            }
        })?;
        let body = self.upstream.introspect(token).await.inspect_err(|f| {
            self.counters.call(match f {
                Failure::Timeout => CallResult::Timeout,
                Failure::Unavailable(_) => CallResult::Unavailable,
                Failure::BadResponse(_) => CallResult::BadResponse,
            })
        });
        let rules = Rules {
            issuer: &self.issuer,
            audiences: &self.audiences,
            required_claims: &self.required_claims,
            max_age_secs: self.max_age_secs,
            now: now_unix(),
        };
        let Active {
            mut claims,
            exp,
            nbf,
            usable_until,
        } = match answer::check(body.map_err(|f| self.failure(f))?, &rules) {
            Ok(active) => active,
            Err(Ok(refusal)) => {
                self.counters
                    .call(if refusal == IntrospectionError::Inactive {
                        CallResult::Inactive
                    } else {
                        CallResult::Refused
                    });
                return Ok(Entry::refused(refusal, self.negative_ttl));
            }
            Err(Err(reason)) => {
                self.counters.call(CallResult::BadResponse);
                return Err(self.failure(Failure::BadResponse(reason)));
            }
        };
        self.counters.call(CallResult::Active);
        if self.userinfo {
            let merged = self
                .upstream
                .userinfo(token)
                .await
                .map_err(|f| match f {
                    Failure::Timeout => "timed out".to_owned(),
                    Failure::Unavailable(r) | Failure::BadResponse(r) => r,
                })
                .and_then(|info| answer::merge_userinfo(&mut claims, info));
            self.counters.userinfo(merged.is_ok());
            merged.map_err(|reason| IntrospectionError::Userinfo {
                issuer: self.name.clone(),
                reason,
            })?;
        }
        let claims = cache::kept(claims, &self.scope_claim, keep);
        let claims = serde_json::to_string(&claims).expect("claims serialize");
        Ok(Entry::active(
            claims.into_boxed_str(),
            exp,
            nbf,
            cache::positive_ttl(self.positive_ttl, usable_until, now_unix()),
        ))
    }

    fn failure(&self, f: Failure) -> IntrospectionError {
        let issuer = self.name.clone();
        match f {
            Failure::Timeout => IntrospectionError::Timeout { issuer },
            Failure::Unavailable(reason) => IntrospectionError::Unavailable { issuer, reason },
            Failure::BadResponse(reason) => IntrospectionError::BadResponse { issuer, reason },
        }
    }
}

#[cfg(test)]
mod cache_tests;
#[cfg(test)]
mod tests;
