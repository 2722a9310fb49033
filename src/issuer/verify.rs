//! The uncached check of one token against its issuer: key selection (with
//! a rate-limited refetch for an unknown `kid`), signature, registered
//! claims, and the issuer's own requirements.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::error::from_jwt_error;
use super::header::{truncate, Unverified};
use super::jwks::{KeyFingerprint, KeySet, NoKey};
use super::{Issuer, TokenError};
use crate::claims::lookup;
use crate::clock::now_unix;
use crate::config::IssuerConfig;

impl Issuer {
    /// Verifies `token`, whose header and `iss` were read as `header` and
    /// name this issuer; returns all its claims and the key that verified it.
    pub(super) async fn verify(
        self: &Arc<Self>,
        token: &str,
        header: &Unverified,
    ) -> Result<(Map<String, Value>, KeyFingerprint), TokenError> {
        let name = &self.config.name;
        if !self.config.algorithms.contains(&header.alg) {
            return Err(TokenError::AlgNotAllowed {
                alg: truncate(&header.alg_name),
                issuer: name.clone(),
            });
        }
        let keys = match self.keys.current() {
            Some(k) => k,
            None => self
                .refetch_detached()
                .await
                .ok_or_else(|| TokenError::KeysUnavailable(name.clone()))?,
        };
        let age = keys.fetched_at.elapsed();
        if age > self.config.jwks_max_stale {
            return Err(TokenError::StaleKeys {
                issuer: name.clone(),
                age_secs: age.as_secs(),
            });
        }
        if let Some(expected) = &self.config.require_typ {
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
        let refreshed: Arc<KeySet>;
        let entry = match keys.select(kid, header.alg) {
            Ok(e) => e,
            Err(NoKey::UnknownKid) => {
                refreshed = self
                    .refetch_detached()
                    .await
                    .ok_or_else(|| no_key(NoKey::UnknownKid))?;
                refreshed.select(kid, header.alg).map_err(no_key)?
            }
            Err(e) => return Err(no_key(e)),
        };

        let validation = self
            .validations
            .iter()
            .find_map(|(alg, v)| (*alg == header.alg).then_some(v))
            .ok_or_else(|| TokenError::AlgNotAllowed {
                alg: truncate(&header.alg_name),
                issuer: name.clone(),
            })?;
        self.signature_checks.fetch_add(1, Ordering::Relaxed);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &entry.key, validation)
            .map_err(|e| from_jwt_error(e.into_kind()))?
            .claims;
        if let Some(missing) = self
            .config
            .required_claims
            .iter()
            .find(|c| matches!(lookup(&claims, c), Ok(None)))
        {
            return Err(TokenError::MissingClaim(missing.clone()));
        }
        if let Some(max_age) = self.config.max_token_age {
            let iat = claims
                .get("iat")
                .and_then(Value::as_i64)
                .ok_or_else(|| TokenError::MissingClaim("iat".into()))?;
            let age = now_unix() - iat;
            if age > max_age.as_secs() as i64 {
                return Err(TokenError::TooOld { age_secs: age });
            }
        }
        Ok((claims, entry.fingerprint))
    }

    /// What jsonwebtoken checks of a token signed with `alg`, built once:
    /// one per allowed algorithm, since it refuses a set that mixes key
    /// types.
    pub(super) fn validations(config: &IssuerConfig) -> Vec<(Algorithm, Validation)> {
        config
            .algorithms
            .iter()
            .map(|alg| {
                let mut v = Validation::new(*alg);
                v.leeway = config.leeway.as_secs();
                v.set_audience(&config.audience);
                v.set_issuer(&[&config.issuer]);
                v.set_required_spec_claims(&["exp", "iss", "aud"]);
                if config.max_token_age.is_some() {
                    v.required_spec_claims.insert("iat".to_owned());
                }
                v.validate_nbf = true;
                (*alg, v)
            })
            .collect()
    }

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
