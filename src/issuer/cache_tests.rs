//! The verified-token cache: one verification per token, entries that end
//! with their token (exp, max age, a withdrawn or stale key), failures never
//! kept, only the claims a policy reads, and the cache's own bounds.

use jsonwebtoken::Algorithm;
use serde_json::json;

use super::tests::{claims, fixture, with, Fixture, ISS};
use super::*;
use crate::clock::now_unix;

#[tokio::test]
async fn identical_tokens_are_verified_once() {
    let f = fixture(&[], "");
    f.issuers.load_all().await;
    let token = f.rsa.sign(&claims());
    let issuers = &f.issuers;
    let all = futures::future::join_all((0..50).map(|_| issuers.validate(&token, None))).await;
    assert!(all.iter().all(Result::is_ok));
    assert_eq!(issuers.signature_checks(), 1, "single flight + cache");
    assert!(issuers.validate(&token, None).await.is_ok());
    assert_eq!(issuers.signature_checks(), 1);
}

/// An entry is served until its token's `exp`, not a second longer (judged
/// on the clock handed in, so no test waits for time to pass).
#[tokio::test]
async fn a_cached_entry_ends_at_its_tokens_exp() {
    let f = fixture(&[], "");
    f.issuers.load_all().await;
    let issuer = f.issuers.by_iss(ISS).unwrap().clone();
    let exp = now_unix() + 100;
    let c = with(claims(), "exp", json!(exp));
    let keys = issuer.keys.current().unwrap();
    let fp = keys
        .select(Some(&f.rsa.kid), Algorithm::RS256)
        .unwrap()
        .fingerprint;
    let entry = cache::Cached::new(issuer, c.as_object().unwrap().clone(), None, fp);
    let cache = cache::Cache::new(10);
    put(&cache, key(0), entry, exp - 100).await;
    assert!(subject(&cache, &key(0), exp - 1).is_some());
    assert_eq!(subject(&cache, &key(0), exp), None);
}

/// A key the IdP removes from its JWKS ends, at that refresh, every cached
/// token it verified: they are checked again, and refused.
#[tokio::test]
async fn a_withdrawn_key_ends_its_cached_tokens_at_the_refresh() {
    let other = LocalKey::generate(Algorithm::ES256).unwrap();
    let f = fixture(&[&other], "");
    f.issuers.load_all().await;
    let token = f.rsa.sign(&claims());
    f.issuers.validate(&token, None).await.unwrap();
    f.issuers.validate(&token, None).await.unwrap();
    assert_eq!(f.issuers.signature_checks(), 1, "the second was a hit");
    // The IdP withdraws the RSA key; the next refresh sees it gone.
    std::fs::write(f.dir.path().join("jwks.json"), jwks(&[&other]).to_string()).unwrap();
    let issuer = f.issuers.by_iss(ISS).unwrap();
    issuer.keys.refresh().await.unwrap();
    let err = f.issuers.validate(&token, None).await.unwrap_err();
    assert!(matches!(err, TokenError::UnknownKid { .. }), "{err:?}");
    // Tokens of the key still published keep their entries.
    let kept = other.sign(&claims());
    f.issuers.validate(&kept, None).await.unwrap();
    issuer.keys.refresh().await.unwrap();
    let checks = f.issuers.signature_checks();
    f.issuers.validate(&kept, None).await.unwrap();
    assert_eq!(
        f.issuers.signature_checks(),
        checks,
        "served from the cache"
    );
}

#[tokio::test]
async fn failures_are_not_cached() {
    let f = fixture(&[], "");
    f.issuers.load_all().await;
    let bad = f.rsa.sign(&with(claims(), "aud", json!("nope")));
    for _ in 0..3 {
        assert_eq!(
            f.issuers.validate(&bad, None).await.unwrap_err(),
            TokenError::Audience
        );
    }
    assert_eq!(f.issuers.signature_checks(), 3);
}

/// A token cached while young is not served once `max_token_age` has passed
/// since its `iat`. (Before: `iat = now - 1` with a 2 s maximum left the hit
/// valid only until the current second ended, so a slow second check was a
/// miss and the test failed under load. Now the token is issued at `now`,
/// leaving the two checks at least 2 s, and the wait is for the clock to pass
/// the limit rather than a fixed sleep.)
#[tokio::test]
async fn a_cached_token_is_not_served_past_its_max_age() {
    let f = fixture(&[], "max_token_age = \"3s\"");
    let iat = now_unix();
    let token = f.rsa.sign(&with(claims(), "iat", json!(iat)));
    assert!(f.issuers.validate(&token, None).await.is_ok());
    assert!(f.issuers.validate(&token, None).await.is_ok());
    assert_eq!(
        f.issuers.signature_checks(),
        1,
        "the second was a cache hit"
    );
    // Bounded: the clock passes iat + 3 s about 3 s from now.
    for _ in 0..200 {
        if now_unix() > iat + 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(now_unix() > iat + 3, "the clock did not pass iat + 3 s");
    let err = f
        .issuers
        .validate(&token, None)
        .await
        .expect_err("served past its max age");
    assert!(
        matches!(err, TokenError::TooOld { age_secs } if age_secs > 3),
        "{err:?}"
    );
    assert_eq!(f.issuers.signature_checks(), 2, "checked again, not served");
}

/// The cache entry's end under `max_token_age`, on the clock handed in:
/// served up to the last second before `iat + max_token_age`, not at it,
/// even though its `exp` is far later.
#[tokio::test]
async fn a_cached_entry_ends_at_its_tokens_max_age() {
    let f = fixture(&[], "max_token_age = \"2s\"");
    f.issuers.load_all().await;
    let issuer = f.issuers.by_iss(ISS).unwrap().clone();
    let iat = now_unix();
    let c = with(claims(), "iat", json!(iat));
    let fp = issuer
        .keys
        .current()
        .unwrap()
        .select(Some(&f.rsa.kid), Algorithm::RS256)
        .unwrap()
        .fingerprint;
    let entry = cache::Cached::new(issuer, c.as_object().unwrap().clone(), None, fp);
    let cache = cache::Cache::new(10);
    put(&cache, key(0), entry, iat).await;
    assert!(subject(&cache, &key(0), iat + 1).is_some());
    assert_eq!(subject(&cache, &key(0), iat + 2), None);
}

#[tokio::test]
async fn stale_keys_stop_being_used_for_fresh_checks_and_cache_hits() {
    let f = fixture(&[], "jwks_max_stale = \"1s\"\njwks_refresh = \"1h\"");
    let cached = f.rsa.sign(&claims());
    f.issuers.load_all().await;
    f.issuers.validate(&cached, None).await.unwrap();
    let fresh = f.rsa.sign(&with(claims(), "sub", json!("other")));
    let stale = |r: Result<_, TokenError>| matches!(r, Err(TokenError::StaleKeys { .. }));
    // Wait (bounded) until the keys are older than jwks_max_stale.
    let issuer = f.issuers.by_iss(ISS).unwrap();
    for _ in 0..100 {
        if issuer.keys.current().unwrap().fetched_at.elapsed() > std::time::Duration::from_secs(1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(stale(f.issuers.validate(&fresh, None).await));
    assert!(
        stale(f.issuers.validate(&cached, None).await),
        "a cache hit is bounded too"
    );
}

/// A claim the token answers two ways is still ambiguous after the cache
/// cut the claims down, on the miss and on the hit.
#[tokio::test]
async fn an_ambiguous_claim_survives_the_cache() {
    let f = fixture(&[], "");
    f.issuers.load_all().await;
    let c = with(claims(), "realm_access.roles", json!(["admin"]));
    let c = with(c, "realm_access", json!({"roles": ["user"], "other": 1}));
    let token = f.rsa.sign(&c);
    let keep: Arc<[String]> = vec!["realm_access.roles".to_owned()].into();
    for _ in 0..2 {
        let v = f.issuers.validate(&token, Some(&keep)).await.unwrap();
        assert!(crate::claims::lookup(&v.claims, "realm_access.roles").is_err());
    }
    assert_eq!(f.issuers.cache_hits(), 1);
}

#[tokio::test]
async fn cached_tokens_keep_only_the_claims_a_policy_reads() {
    let f = fixture(&[], "");
    f.issuers.load_all().await;
    let c = with(claims(), "realm_access", json!({"roles": ["admin"]}));
    let c = with(c, "email", json!("svc-1@corp.test"));
    let token = f.rsa.sign(&c);
    let keep: Arc<[String]> = vec!["realm_access.roles".to_owned()].into();
    // The miss (verified now) and the hit answer with the same claims.
    for _ in 0..2 {
        let v = f.issuers.validate(&token, Some(&keep)).await.unwrap();
        assert_eq!(
            crate::claims::lookup(&v.claims, "realm_access.roles").unwrap(),
            Some(&json!(["admin"]))
        );
        assert_eq!(v.claims.get("email"), None, "not read by the policy");
        assert_eq!(v.subject, "svc-1");
        assert_eq!(v.scopes, vec!["a", "b"]);
        assert_eq!(v.expires_at, c["exp"].as_i64());
    }
    assert_eq!(f.issuers.signature_checks(), 1);
    assert_eq!(f.issuers.cache_hits(), 1);

    // A policy reading other claims never gets an entry cut for another.
    let other: Arc<[String]> = vec!["email".to_owned()].into();
    let v = f.issuers.validate(&token, Some(&other)).await.unwrap();
    assert_eq!(v.claims.get("email"), Some(&json!("svc-1@corp.test")));
    assert_eq!(f.issuers.signature_checks(), 2);
    let v = f.issuers.validate(&token, None).await.unwrap();
    assert_eq!(v.claims, *c.as_object().unwrap());
    assert_eq!(f.issuers.signature_checks(), 3);
    assert_eq!(f.issuers.cache_entries().await, 3, "one entry per kept set");
}

/// An entry for `sub`, verified by the fixture's RSA key, ending at `exp`.
async fn entry(f: &Fixture, sub: &str, exp: i64) -> cache::Cached {
    f.issuers.load_all().await;
    let issuer = f.issuers.by_iss(ISS).unwrap().clone();
    let fp = issuer
        .keys
        .current()
        .unwrap()
        .select(Some(&f.rsa.kid), Algorithm::RS256)
        .unwrap()
        .fingerprint;
    let c = with(with(claims(), "sub", json!(sub)), "exp", json!(exp));
    cache::Cached::new(issuer, c.as_object().unwrap().clone(), None, fp)
}

fn key(i: u8) -> cache::Key {
    let mut k = [0; 32];
    k[1] = i;
    k
}

async fn put(c: &cache::Cache, k: cache::Key, e: cache::Cached, now: i64) {
    let got = c.get_or_verify(k, now, async { Ok(e) }).await;
    assert!(got.is_ok());
}

fn subject(c: &cache::Cache, k: &cache::Key, now: i64) -> Option<String> {
    c.get(k, now).unwrap().map(|t| t.subject)
}

#[tokio::test]
async fn the_cache_holds_at_most_its_capacity_and_keeps_what_is_read() {
    let f = fixture(&[], "");
    let now = now_unix();
    let c = cache::Cache::new(3);
    for i in 0..3 {
        put(
            &c,
            key(i),
            entry(&f, &format!("u{i}"), now + 300).await,
            now,
        )
        .await;
    }
    assert_eq!(c.len(), 3);
    // u1 is read, so a newcomer takes the place of one not read since.
    assert_eq!(subject(&c, &key(1), now).as_deref(), Some("u1"));
    put(&c, key(3), entry(&f, "u3", now + 300).await, now).await;
    assert_eq!(c.len(), 3);
    assert_eq!(subject(&c, &key(1), now).as_deref(), Some("u1"));
    assert_eq!(subject(&c, &key(3), now).as_deref(), Some("u3"));
    let left = (0..3u8)
        .filter(|i| subject(&c, &key(*i), now).is_some())
        .count();
    assert_eq!(left, 2, "exactly one entry made room");
    // Inserting a held key again replaces it, it does not grow the cache.
    put(&c, key(3), entry(&f, "u3b", now + 300).await, now).await;
    assert_eq!(c.len(), 3);
    assert_eq!(subject(&c, &key(3), now).as_deref(), Some("u3b"));
}

#[tokio::test]
async fn an_expired_entry_makes_room_first_and_is_never_served() {
    let f = fixture(&[], "");
    let now = now_unix();
    let c = cache::Cache::new(2);
    put(&c, key(0), entry(&f, "short", now + 10).await, now).await;
    put(&c, key(1), entry(&f, "long", now + 300).await, now).await;
    // Both read: only the expiry tells them apart.
    assert!(subject(&c, &key(0), now).is_some());
    assert!(subject(&c, &key(1), now).is_some());
    let later = now + 20;
    put(&c, key(2), entry(&f, "new", now + 300).await, later).await;
    assert_eq!(subject(&c, &key(0), later), None);
    assert_eq!(subject(&c, &key(1), later).as_deref(), Some("long"));
    // An ended entry read is dropped, not served.
    let c = cache::Cache::new(2);
    put(&c, key(0), entry(&f, "short", now + 10).await, now).await;
    assert_eq!(subject(&c, &key(0), later), None);
    assert_eq!(c.len(), 0);
}

#[tokio::test]
async fn a_cache_of_size_zero_holds_nothing() {
    let f = fixture(&[], "");
    let now = now_unix();
    let c = cache::Cache::new(0);
    put(&c, key(0), entry(&f, "u0", now + 300).await, now).await;
    assert_eq!(c.len(), 0);
    assert_eq!(subject(&c, &key(0), now), None);
}

#[tokio::test]
async fn a_large_cache_is_bounded_in_all_its_shards() {
    let f = fixture(&[], "");
    let now = now_unix();
    let c = cache::Cache::new(1024);
    let e = entry(&f, "u", now + 300).await;
    for i in 0..3000u32 {
        let mut k = [0; 32];
        k[..4].copy_from_slice(&i.to_le_bytes());
        k[4..8].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
        put(&c, k, e.clone(), now).await;
        assert!(c.len() <= 1024);
    }
    assert_eq!(c.len(), 1024);
}

#[tokio::test]
async fn concurrent_misses_verify_once_and_a_failure_is_not_kept() {
    let f = fixture(&[], "");
    let now = now_unix();
    let c = cache::Cache::new(10);
    let e = entry(&f, "u", now + 300).await;
    let runs = std::sync::atomic::AtomicUsize::new(0);
    let (open, gate) = tokio::sync::watch::channel(false);
    let verify = || {
        let (e, mut gate, runs) = (e.clone(), gate.clone(), &runs);
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            // All callers are waiting before the first one finishes.
            let _ = gate.wait_for(|open| *open).await;
            Ok(e)
        }
    };
    let callers = futures::future::join_all((0..5).map(|_| c.get_or_verify(key(0), now, verify())));
    let release = async {
        tokio::task::yield_now().await;
        open.send_replace(true);
    };
    let (results, ()) = tokio::join!(callers, release);
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(c.len(), 1);

    let failed = c
        .get_or_verify(key(1), now, async { Err(TokenError::BadSignature) })
        .await;
    assert_eq!(failed.err(), Some(TokenError::BadSignature));
    assert_eq!(c.len(), 1, "a failure is never cached");
}

#[tokio::test]
async fn a_caller_that_gives_up_leaves_nothing_running() {
    let f = fixture(&[], "");
    let now = now_unix();
    let c = cache::Cache::new(10);
    // A verification that never ends, abandoned at a deadline.
    let hung = c.get_or_verify(key(0), now, std::future::pending());
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(10), hung)
            .await
            .is_err()
    );
    // The next caller verifies afresh rather than waiting on the dead one.
    let e = entry(&f, "u", now + 300).await;
    assert!(c.get_or_verify(key(0), now, async { Ok(e) }).await.is_ok());
    assert_eq!(subject(&c, &key(0), now).as_deref(), Some("u"));
}
