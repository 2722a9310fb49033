//! One `[[issuer]]` table compiled: audience, key source, algorithms, times
//! and fetch intervals checked with their positions; introspection in
//! `introspection.rs`.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_spanned::Spanned;

use super::compile::Compiler;
use super::file::{IssuerFile, OneOrMany};
use super::IssuerConfig;

/// Clock skew tolerated on `exp`/`nbf`/`iat`. Beyond minutes it no longer
/// absorbs skew but extends every token's life.
const MAX_LEEWAY: Duration = Duration::from_secs(600);
/// Below this, a JWKS refresh or an unknown-kid refetch is a fetch loop
/// against the IdP.
const MIN_FETCH_INTERVAL: Duration = Duration::from_secs(1);

impl Compiler<'_> {
    pub(super) fn issuer(&mut self, spanned: &Spanned<IssuerFile>) -> IssuerConfig {
        let i = spanned.get_ref();
        let name = i.name.get_ref();
        if name == crate::certificate::CERTIFICATE_ISSUER {
            self.error(
                &i.name,
                format!("issuer name {name:?} is reserved for certificate-only connections"),
            );
        }
        let audience = match i.audience.get_ref() {
            OneOrMany::One(a) => vec![a.clone()],
            OneOrMany::Many(list) => list.clone(),
        };
        if audience.is_empty() {
            self.error(&i.audience, format!("issuer {name:?}: audience is empty"));
        }
        if audience.iter().any(|a| a.trim().is_empty()) {
            self.error(
                &i.audience,
                format!(
                    "issuer {name:?}: an empty audience would match tokens with an empty `aud`"
                ),
            );
        }
        if i.jwks_uri.is_some() && i.jwks_file.is_some() {
            self.error(
                spanned,
                format!("issuer {name:?}: set at most one of jwks_uri and jwks_file"),
            );
        }
        let algorithms = match &i.algorithms {
            None => vec![Algorithm::RS256],
            Some(a) => {
                if a.get_ref().is_empty() {
                    self.error(a, format!("issuer {name:?}: algorithms is empty"));
                }
                if let Some(alg) = a.get_ref().iter().find(|a| is_hmac(a)) {
                    self.error(a, format!("issuer {name:?}: {alg:?} is a shared-secret algorithm and is never accepted"));
                }
                a.get_ref().clone()
            }
        };
        let leeway = self.duration(&i.leeway, Duration::from_secs(30), |d| {
            (d > MAX_LEEWAY).then(|| {
                format!(
                    "issuer {name:?}: leeway above {} would accept tokens long expired",
                    humantime::format_duration(MAX_LEEWAY)
                )
            })
        });
        let jwks_refresh = self.duration(&i.jwks_refresh, Duration::from_secs(600), |d| {
            (d < MIN_FETCH_INTERVAL).then(|| {
                format!("issuer {name:?}: jwks_refresh below 1s would fetch the JWKS in a loop")
            })
        });
        let jwks_min_refetch = self.duration(&i.jwks_min_refetch, Duration::from_secs(30), |d| {
            (d < MIN_FETCH_INTERVAL).then(|| {
                format!(
                    "issuer {name:?}: jwks_min_refetch below 1s lets every unknown kid hit the IdP"
                )
            })
        });
        let jwks_max_stale =
            self.duration(&i.jwks_max_stale, Duration::from_secs(24 * 3600), |d| {
                d.is_zero().then(|| {
                    format!("issuer {name:?}: jwks_max_stale of zero makes every key stale")
                })
            });
        let (token_types, introspection) = self.introspection(spanned, i.allow_insecure_http);
        IssuerConfig {
            name: name.clone(),
            issuer: i.issuer.get_ref().clone(),
            audience,
            jwks_uri: i.jwks_uri.clone(),
            jwks_file: i.jwks_file.as_deref().map(|p| self.resolve(p)),
            algorithms,
            leeway,
            scope_claim: i.scope_claim.clone().unwrap_or_else(|| "scope".to_owned()),
            jwks_refresh,
            jwks_min_refetch,
            allow_insecure_http: i.allow_insecure_http,
            jwks_max_stale,
            require_typ: i.require_typ.clone(),
            required_claims: i.required_claims.clone(),
            max_token_age: i.max_token_age.map(Duration::from),
            certificate_bound: i.certificate_bound.unwrap_or_default(),
            token_types,
            introspection,
        }
    }
}

pub(super) fn is_hmac(a: &Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}
