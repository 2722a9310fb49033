//! Token validation against a static JWKS file, with keys generated here.

use jsonwebtoken::{Algorithm, Header};
use serde_json::{json, Value};

use super::*;
use crate::clock::now_unix;
use crate::config::{Config, ConfigBuilder, IssuerBuilder};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

const ISS: &str = "https://idp.test/realms/corp";

struct Fixture {
    _dir: tempfile::TempDir,
    issuers: Issuers,
    rsa: LocalKey,
}

fn fixture(extra_keys: &[&LocalKey], issuer_extra: &str) -> Fixture {
    let rsa = LocalKey::generate(Algorithm::RS256).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut keys = vec![&rsa];
    keys.extend_from_slice(extra_keys);
    std::fs::write(dir.path().join("jwks.json"), jwks(&keys).to_string()).unwrap();
    let mut issuer = IssuerBuilder::new("corp", ISS, &["nats", "other"])
        .jwks_file("jwks.json")
        .set("leeway", "\"5s\"")
        .lines(issuer_extra);
    if !issuer_extra.contains("algorithms") {
        issuer = issuer.algorithms(&["RS256", "ES256"]);
    }
    let cfg = ConfigBuilder::new("nats://127.0.0.1:4222", "issuer.nk", "policy.toml")
        .issuer(issuer)
        .build();
    let config = Config::parse(&dir.path().join("c.toml"), &cfg).unwrap();
    let issuers = Issuers::new(&config).unwrap();
    Fixture {
        _dir: dir,
        issuers,
        rsa,
    }
}

fn claims() -> Value {
    let now = now_unix();
    json!({"iss": ISS, "aud": "nats", "sub": "svc-1", "exp": now + 300, "iat": now, "scope": "a b"})
}

fn with(mut base: Value, key: &str, v: Value) -> Value {
    base[key] = v;
    base
}

async fn check(f: &Fixture, token: &str) -> Result<std::sync::Arc<VerifiedToken>, TokenError> {
    f.issuers.load_all().await;
    f.issuers.validate(token, None).await
}

#[tokio::test]
async fn valid_token_yields_claims_and_scopes() {
    let f = fixture(&[], "");
    let v = check(&f, &f.rsa.sign(&claims())).await.unwrap();
    assert_eq!(v.issuer, "corp");
    assert_eq!(v.subject, "svc-1");
    assert_eq!(v.scopes, vec!["a", "b"]);
}

#[tokio::test]
async fn registered_claims_are_enforced() {
    let f = fixture(&[], "");
    let now = now_unix();
    let cases = [
        (with(claims(), "exp", json!(now - 60)), TokenError::Expired),
        (
            with(claims(), "nbf", json!(now + 60)),
            TokenError::NotYetValid,
        ),
        (
            with(claims(), "aud", json!("someone-else")),
            TokenError::Audience,
        ),
        (
            with(claims(), "aud", json!(["x", "y"])),
            TokenError::Audience,
        ),
        (
            with(claims(), "iss", json!(format!("{ISS}/"))),
            TokenError::UnknownIssuer(format!("{ISS}/")),
        ),
        (
            with(claims(), "exp", json!("tomorrow")),
            TokenError::ClaimFormat("exp".into()),
        ),
    ];
    for (c, expected) in cases {
        assert_eq!(
            check(&f, &f.rsa.sign(&c)).await.unwrap_err(),
            expected,
            "{c}"
        );
    }
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        check(&f, &f.rsa.sign(&no_exp)).await.unwrap_err(),
        TokenError::MissingClaim("exp".into())
    );
    // Within leeway, and aud as an array containing ours: accepted.
    let ok = with(
        with(claims(), "exp", json!(now - 2)),
        "aud",
        json!(["x", "other"]),
    );
    assert!(check(&f, &f.rsa.sign(&ok)).await.is_ok());
}

#[tokio::test]
async fn hostile_headers_and_algorithms_are_refused() {
    let f = fixture(&[], "");
    let body = claims();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&body)
    );
    assert_eq!(check(&f, &none).await.unwrap_err(), TokenError::AlgNone);
    let none_upper = format!("{}.{}.x", b64(&json!({"alg": "NONE"})), b64(&body));
    assert_eq!(
        check(&f, &none_upper).await.unwrap_err(),
        TokenError::AlgNone
    );

    for field in ["jku", "x5u", "jwk", "crit"] {
        let mut h = serde_json::to_value(Header::new(Algorithm::RS256)).unwrap();
        h["kid"] = f.rsa.kid.clone().into();
        h[field] = json!(["https://evil.example/keys"]);
        let forged = format!("{}.{}.sig", b64(&h), b64(&body));
        assert!(
            matches!(
                check(&f, &forged).await.unwrap_err(),
                TokenError::ForbiddenHeader(_)
            ),
            "{field}"
        );
    }

    // HS256 keyed with the issuer's public key: never accepted.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &body,
        &jsonwebtoken::EncodingKey::from_secret(f.rsa.jwk().to_string().as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        check(&f, &hs).await.unwrap_err(),
        TokenError::AlgNotAllowed { .. }
    ));

    let ps = LocalKey::from_pem(Algorithm::PS256, f.rsa.pem()).unwrap();
    assert!(matches!(
        check(&f, &ps.sign(&body)).await.unwrap_err(),
        TokenError::AlgNotAllowed { .. }
    ));
}

#[tokio::test]
async fn signatures_and_keys_are_checked() {
    let ec = LocalKey::generate(Algorithm::ES256).unwrap();
    let f = fixture(&[&ec], "");
    assert!(check(&f, &ec.sign(&claims())).await.is_ok());

    let stranger = LocalKey::generate(Algorithm::RS256).unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(f.rsa.kid.clone());
    let forged = stranger.sign_with_header(&h, &claims());
    assert_eq!(
        check(&f, &forged).await.unwrap_err(),
        TokenError::BadSignature
    );

    let unknown = stranger.sign(&claims());
    assert!(matches!(
        check(&f, &unknown).await.unwrap_err(),
        TokenError::UnknownKid { .. }
    ));

    // The RSA key's kid with ES256: the key does not fit the algorithm.
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(f.rsa.kid.clone());
    let mismatched = ec.sign_with_header(&h, &claims());
    assert_eq!(
        check(&f, &mismatched).await.unwrap_err(),
        TokenError::KeyMismatch("corp".into())
    );

    // No kid: fine only when exactly one key fits the algorithm.
    let no_kid = f
        .rsa
        .sign_with_header(&Header::new(Algorithm::RS256), &claims());
    assert!(check(&f, &no_kid).await.is_ok());
}

#[tokio::test]
async fn size_and_shape_limits() {
    let f = fixture(&[], "");
    assert_eq!(check(&f, "").await.unwrap_err(), TokenError::Missing);
    assert!(matches!(
        check(&f, "a.b").await.unwrap_err(),
        TokenError::Malformed(_)
    ));
    assert!(matches!(
        check(&f, "garbage").await.unwrap_err(),
        TokenError::Malformed(_)
    ));
    assert!(matches!(
        check(&f, "!!.??.**").await.unwrap_err(),
        TokenError::Malformed(_)
    ));
    let huge = with(claims(), "pad", json!("x".repeat(70 * 1024)));
    assert!(matches!(
        check(&f, &f.rsa.sign(&huge)).await.unwrap_err(),
        TokenError::TooLarge(_)
    ));
}

#[tokio::test]
async fn scp_array_scopes() {
    let f = fixture(&[], "scope_claim = \"scp\"");
    let c = with(claims(), "scp", json!(["nats:pub", "nats:sub"]));
    let v = check(&f, &f.rsa.sign(&c)).await.unwrap();
    assert_eq!(v.scopes, vec!["nats:pub", "nats:sub"]);
}

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
    std::fs::write(f._dir.path().join("jwks.json"), jwks(&[&other]).to_string()).unwrap();
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

/// `serve` and `check` accept the same strings: ASCII whitespace around a
/// token is dropped, anything else is part of it.
#[tokio::test]
async fn whitespace_around_a_token_is_trimmed_and_nothing_else() {
    let f = fixture(&[], "");
    let token = f.rsa.sign(&claims());
    for padded in [
        format!(" {token}\n"),
        format!("\t{token}\r\n"),
        token.clone(),
    ] {
        assert!(check(&f, &padded).await.is_ok(), "{padded:?}");
    }
    for odd in [format!("\u{a0}{token}"), format!("{token}\u{2003}")] {
        assert!(
            matches!(check(&f, &odd).await, Err(TokenError::Malformed(_))),
            "{odd:?}"
        );
    }
    let (head, tail) = token.split_at(20);
    let inner = format!("{head} {tail}");
    assert!(
        matches!(check(&f, &inner).await, Err(TokenError::Malformed(_))),
        "a space inside the token"
    );
    assert_eq!(check(&f, " \n\t").await.unwrap_err(), TokenError::Missing);
    assert_eq!(trim_token("\n x \n"), "x");
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

#[tokio::test]
async fn rfc9068_typ_required_claims_and_max_age() {
    let f = fixture(
        &[],
        "require_typ = \"at+jwt\"\nrequired_claims = [\"client_id\"]\nmax_token_age = \"1m\"",
    );
    let c = with(claims(), "client_id", json!("app-1"));
    let mut at = Header::new(Algorithm::RS256);
    at.kid = Some(f.rsa.kid.clone());
    at.typ = Some("at+jwt".into());
    assert!(check(&f, &f.rsa.sign_with_header(&at, &c)).await.is_ok());
    at.typ = Some("application/at+jwt".into());
    assert!(check(&f, &f.rsa.sign_with_header(&at, &c)).await.is_ok());

    let plain = f.rsa.sign(&c);
    assert!(matches!(
        check(&f, &plain).await.unwrap_err(),
        TokenError::Typ { .. }
    ));

    at.typ = Some("at+jwt".into());
    let no_client = f.rsa.sign_with_header(&at, &claims());
    assert_eq!(
        check(&f, &no_client).await.unwrap_err(),
        TokenError::MissingClaim("client_id".into())
    );
    let old = with(c.clone(), "iat", json!(now_unix() - 3600));
    assert!(matches!(
        check(&f, &f.rsa.sign_with_header(&at, &old))
            .await
            .unwrap_err(),
        TokenError::TooOld { .. }
    ));
    let mut no_iat = c;
    no_iat.as_object_mut().unwrap().remove("iat");
    assert_eq!(
        check(&f, &f.rsa.sign_with_header(&at, &no_iat))
            .await
            .unwrap_err(),
        TokenError::MissingClaim("iat".into())
    );
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

/// Every supported algorithm verifies with a key of its own kind, and each
/// key is refused for any other algorithm it does not fit.
#[tokio::test]
async fn every_supported_algorithm_with_its_own_key_type() {
    use Algorithm::*;
    let algs = [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ];
    let keys: Vec<LocalKey> = algs
        .iter()
        .map(|a| LocalKey::generate(*a).unwrap())
        .collect();
    let refs: Vec<&LocalKey> = keys.iter().collect();
    let all = algs
        .iter()
        .map(|a| format!("\"{a:?}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let f = fixture(&refs, &format!("algorithms = [{all}]"));
    for key in &keys {
        let v = check(&f, &key.sign(&claims())).await;
        assert!(v.is_ok(), "{:?}: {:?}", key.alg, v.err());
    }
    // An EC P-256 key's kid with ES384, an Ed25519 kid with ES256: refused.
    let mut h = Header::new(ES384);
    h.kid = Some(keys[6].kid.clone());
    let forged = keys[7].sign_with_header(&h, &claims());
    assert_eq!(
        check(&f, &forged).await.unwrap_err(),
        TokenError::KeyMismatch("corp".into())
    );
    let mut h = Header::new(ES256);
    h.kid = Some(keys[8].kid.clone());
    let forged = keys[6].sign_with_header(&h, &claims());
    assert_eq!(
        check(&f, &forged).await.unwrap_err(),
        TokenError::KeyMismatch("corp".into())
    );
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
