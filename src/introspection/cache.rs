//! The answer cache: what one entry holds, how long it lives, and its key.
//! Entries hold the claims the policy reads (as JSON text) and never the
//! token: the key is a SHA-256 of it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::IntrospectionError;
use crate::issuer::KeptClaims;

/// A cached answer and how long it may be served. Kept flat (no inner
/// allocation besides the claims text): at 100k entries every word counts.
#[derive(Clone)]
pub(crate) enum Entry {
    /// An active token: its kept claims as a JSON object, and the times
    /// that are checked again on every use (`i64::MAX` / `i64::MIN` when
    /// the answer has no `exp` / `nbf`).
    Active {
        claims: Box<str>,
        exp: i64,
        nbf: i64,
        ttl_ms: u32,
    },
    /// A definitive refusal from the IdP's answer (inactive, wrong
    /// audience, …): served for the negative time.
    Refused {
        error: Arc<IntrospectionError>,
        ttl_ms: u32,
    },
}

impl Entry {
    pub(crate) fn active(
        claims: Box<str>,
        exp: Option<i64>,
        nbf: Option<i64>,
        ttl: Duration,
    ) -> Self {
        Entry::Active {
            claims,
            exp: exp.unwrap_or(i64::MAX),
            nbf: nbf.unwrap_or(i64::MIN),
            ttl_ms: millis(ttl),
        }
    }

    pub(crate) fn refused(error: IntrospectionError, ttl: Duration) -> Self {
        Entry::Refused {
            error: Arc::new(error),
            ttl_ms: millis(ttl),
        }
    }

    /// How long the entry is served from when it is made.
    pub(crate) fn ttl_ms(&self) -> u64 {
        let (Entry::Active { ttl_ms, .. } | Entry::Refused { ttl_ms, .. }) = self;
        u64::from(*ttl_ms)
    }
}

/// Whole milliseconds, at most `u32::MAX` (49 days).
fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// How long a positive answer is served: `introspection_cache`, cut to
/// when the token stops being usable (its `exp`, or `iat` +
/// `max_token_age`; whole seconds, nothing once passed).
pub(crate) fn positive_ttl(cache: Duration, until: Option<i64>, now: i64) -> Duration {
    match until {
        None => cache,
        Some(t) => cache.min(Duration::from_secs(t.saturating_sub(now).max(0) as u64)),
    }
}

/// SHA-256 over a domain tag, the token and the kept paths, each
/// length-prefixed (`None` differs from every list), so an entry cut down
/// for one policy never answers for another.
pub(crate) fn key(token: &str, keep: KeptClaims) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"introspection\0");
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

/// What the cache keeps of an answer: as the JWT cache keeps a token's
/// claims ([`crate::claims::kept`]), so a policy reads the same either way.
pub(crate) fn kept(
    claims: Map<String, Value>,
    scope_claim: &str,
    keep: KeptClaims,
) -> Map<String, Value> {
    match keep {
        None => claims,
        Some(paths) => crate::claims::kept(&claims, scope_claim, paths),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn positive_answers_end_at_the_cache_time_or_exp_whichever_is_first() {
        let minute = Duration::from_secs(60);
        assert_eq!(positive_ttl(minute, None, 1000), minute);
        assert_eq!(positive_ttl(minute, Some(5000), 1000), minute);
        assert_eq!(
            positive_ttl(minute, Some(1010), 1000),
            Duration::from_secs(10)
        );
        assert_eq!(positive_ttl(minute, Some(1000), 1000), Duration::ZERO);
        assert_eq!(positive_ttl(minute, Some(10), 1000), Duration::ZERO);
        assert_eq!(
            positive_ttl(minute, Some(i64::MIN), i64::MAX),
            Duration::ZERO
        );
    }

    #[test]
    fn entries_stay_small_and_keep_their_times() {
        assert!(
            std::mem::size_of::<Entry>() <= 40,
            "{}",
            std::mem::size_of::<Entry>()
        );
        let e = Entry::active("{}".into(), None, Some(5), Duration::from_secs(90));
        assert_eq!(e.ttl_ms(), 90_000);
        let Entry::Active { exp, nbf, .. } = e else {
            panic!("active")
        };
        assert_eq!((exp, nbf), (i64::MAX, 5));
        let e = Entry::refused(IntrospectionError::Inactive, Duration::from_secs(u64::MAX));
        assert_eq!(e.ttl_ms(), u64::from(u32::MAX));
    }

    #[test]
    fn keys_differ_by_token_and_by_kept_paths() {
        let a: Arc<[String]> = vec!["sub".to_owned()].into();
        let b: Arc<[String]> = vec!["groups".to_owned()].into();
        assert_ne!(key("t1", None), key("t2", None));
        assert_ne!(key("t1", Some(&a)), key("t1", Some(&b)));
        assert_ne!(key("t1", None), key("t1", Some(&a)));
        assert_eq!(key("t1", Some(&a)), key("t1", Some(&a)));
        // Length prefixes: moving a boundary changes the key.
        let ab: Arc<[String]> = vec!["ab".to_owned()].into();
        let a_b: Arc<[String]> = vec!["a".to_owned(), "b".to_owned()].into();
        assert_ne!(key("t", Some(&ab)), key("t", Some(&a_b)));
    }

    #[test]
    fn only_the_paths_the_policy_reads_are_kept() {
        let claims = json!({"sub": "a", "exp": 9, "scope": "nats", "client_id": "c",
            "userinfo": {"groups": ["ops"], "picture": "x".repeat(1000)}, "big": "y".repeat(5000)});
        let claims = claims.as_object().unwrap().clone();
        let keep: Arc<[String]> = vec!["userinfo.groups".to_owned(), "missing".to_owned()].into();
        let k = kept(claims.clone(), "scope", Some(&keep));
        assert_eq!(
            Value::Object(k),
            json!({"sub": "a", "exp": 9, "scope": "nats", "client_id": "c", "userinfo.groups": ["ops"]})
        );
        assert_eq!(kept(claims.clone(), "scope", None), claims);
    }
}
