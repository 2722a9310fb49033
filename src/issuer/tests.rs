//! Token validation against a static JWKS file, with keys generated here.

use jsonwebtoken::{Algorithm, Header};
use serde_json::{json, Value};

use super::*;
use crate::clock::now_unix;
use crate::config::{Config, ConfigBuilder, IssuerBuilder};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub(super) const ISS: &str = "https://idp.test/realms/corp";

pub(super) struct Fixture {
    pub(super) dir: tempfile::TempDir,
    pub(super) issuers: Issuers,
    pub(super) rsa: LocalKey,
}

pub(super) fn fixture(extra_keys: &[&LocalKey], issuer_extra: &str) -> Fixture {
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
    Fixture { dir, issuers, rsa }
}

pub(super) fn claims() -> Value {
    let now = now_unix();
    json!({"iss": ISS, "aud": "nats", "sub": "svc-1", "exp": now + 300, "iat": now, "scope": "a b"})
}

pub(super) fn with(mut base: Value, key: &str, v: Value) -> Value {
    base[key] = v;
    base
}

pub(super) async fn check(
    f: &Fixture,
    token: &str,
) -> Result<std::sync::Arc<VerifiedToken>, TokenError> {
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
