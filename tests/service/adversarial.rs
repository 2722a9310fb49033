//! Hostile tokens from RFC 8725, RFC 9068, the OpenID RP tests and known JWT
//! library CVEs. Every one is denied with a reason; legitimate oddities are
//! accepted. Runs the same validation path as `serve` (Decider).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use nats_oidc_callout::clock::now_unix;
use nats_oidc_callout::config::{Config, ConfigBuilder, IssuerBuilder};
use nats_oidc_callout::decision::{Decider, Outcome, Request};
use nats_oidc_callout::issuer::{jwks, LocalKey};
use nats_oidc_callout::reason::ReasonClass;
use serde_json::{json, Value};

const A: &str = "https://a.example";
const B: &str = "https://b.example";

struct World {
    _dir: tempfile::TempDir,
    decider: Decider,
    rsa: LocalKey,
    ec: LocalKey,
    b_key: LocalKey,
}

const POLICY: &str = "[defaults]\naccount = \"APP\"\n[permissions.p]\nsub = { allow = [\"x.>\"] }\n[[rules]]\nname = \"all-a\"\nissuer = \"a\"\ngrant = [\"p\"]\n";

async fn world() -> World {
    world_with(POLICY).await
}

async fn world_with(policy: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let rsa = LocalKey::generate(Algorithm::RS256).unwrap();
    let ec = LocalKey::generate(Algorithm::ES256).unwrap();
    let b_key = LocalKey::generate(Algorithm::RS256).unwrap();
    std::fs::write(dir.path().join("a.json"), jwks(&[&rsa, &ec]).to_string()).unwrap();
    std::fs::write(dir.path().join("b.json"), jwks(&[&b_key]).to_string()).unwrap();
    std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
    let config = ConfigBuilder::new("nats://127.0.0.1:4222", "none", "policy.toml")
        .issuer(
            IssuerBuilder::new("a", A, &["nats"])
                .jwks_file("a.json")
                .algorithms(&["RS256", "ES256"]),
        )
        .issuer(
            IssuerBuilder::new("b", B, &["nats"])
                .jwks_file("b.json")
                .algorithms(&["RS256"]),
        )
        .build();
    let config = Config::parse(&dir.path().join("c.toml"), &config).unwrap();
    let decider = Decider::from_config(&config).unwrap();
    decider.issuers().load_all().await;
    World {
        _dir: dir,
        decider,
        rsa,
        ec,
        b_key,
    }
}

fn good() -> Value {
    let now = now_unix();
    json!({"iss": A, "aud": "nats", "sub": "s", "iat": now, "exp": now + 300})
}

fn with(k: &str, v: Value) -> Value {
    let mut c = good();
    c[k] = v;
    c
}

fn b64(v: &str) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

async fn decide(w: &World, token: &str) -> Outcome {
    w.decider
        .decide(token, &Request::default(), now_unix(), false)
        .await
}

/// The denial's class and text; the token never appears in the text.
async fn denied(w: &World, token: &str, label: &str) -> (ReasonClass, String) {
    let o = decide(w, token).await;
    match o.result {
        Ok(_) => panic!("{label}: a hostile token was accepted"),
        Err(reason) => {
            let class = reason.class();
            let reason = reason.to_string();
            assert!(!reason.is_empty(), "{label}: denial without a reason");
            assert!(
                !reason.contains(token),
                "{label}: the token leaked into the reason"
            );
            (class, reason)
        }
    }
}

#[tokio::test]
async fn hostile_tokens_are_denied_with_reasons() {
    let w = world().await;
    let body = good().to_string();
    let kid = &w.rsa.kid;
    let hdr =
        |extra: &str| format!("{{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"{kid}\"{extra}}}");
    let mut cases: Vec<(&str, String, &str)> = Vec::new();
    // Each case's expected class, by label.
    let class_of = |label: &str| -> ReasonClass {
        match label {
            "EC signature under an RSA header" => ReasonClass::BadSignature,
            "ECDSA r=s=0" => ReasonClass::BadSignature,
            "HMAC keyed with the public key" => ReasonClass::TokenAlgorithm,
            "alg none" => ReasonClass::TokenAlgorithm,
            "another issuer's key" => ReasonClass::UnknownKey,
            "another key, our kid" => ReasonClass::BadSignature,
            "aud empty" => ReasonClass::Audience,
            "aud empty array" => ReasonClass::Audience,
            "aud nested array" => ReasonClass::TokenMalformed,
            "aud number" => ReasonClass::TokenMalformed,
            "aud object" => ReasonClass::TokenMalformed,
            "aud prefix" => ReasonClass::Audience,
            "aud with a space" => ReasonClass::Audience,
            "deep JSON" => ReasonClass::TokenMalformed,
            "duplicate claims" => ReasonClass::TokenMalformed,
            "embedded jwk" => ReasonClass::TokenAlgorithm,
            "exp bool" => ReasonClass::TokenMalformed,
            "exp huge negative" => ReasonClass::TokenMalformed,
            "exp negative" => ReasonClass::TokenMalformed,
            "exp string" => ReasonClass::TokenMalformed,
            "four parts" => ReasonClass::TokenMalformed,
            "huge header" => ReasonClass::TokenMalformed,
            "huge payload" => ReasonClass::TokenMalformed,
            "issuer case" => ReasonClass::UnknownIssuer,
            "issuer trailing slash" => ReasonClass::UnknownIssuer,
            "jku" => ReasonClass::TokenAlgorithm,
            "kid traversal" => ReasonClass::UnknownKey,
            "nbf far future float" => ReasonClass::TokenNotYetValid,
            "nested JWT" => ReasonClass::TokenMalformed,
            "truncated signature" => ReasonClass::BadSignature,
            "unknown crit" => ReasonClass::TokenAlgorithm,
            "wrong curve/type" => ReasonClass::UnknownKey,
            "x5u" => ReasonClass::TokenAlgorithm,
            other => panic!("no expected class for {other:?}"),
        }
    };

    for alg in ["none", "None", "NONE", "nOnE"] {
        cases.push((
            "alg none",
            format!("{}.{}.", b64(&format!("{{\"alg\":\"{alg}\"}}")), b64(&body)),
            "\"none\" is never accepted",
        ));
    }
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good(),
        &EncodingKey::from_secret(w.rsa.jwk().to_string().as_bytes()),
    )
    .unwrap();
    cases.push(("HMAC keyed with the public key", hs, "not allowed"));
    let embedded = format!(",\"jwk\":{}", w.rsa.jwk());
    cases.push((
        "embedded jwk",
        w.rsa.sign_raw(&hdr(&embedded), &body),
        "\"jwk\"",
    ));
    cases.push((
        "jku",
        w.rsa
            .sign_raw(&hdr(",\"jku\":\"https://evil.example/jwks\""), &body),
        "\"jku\"",
    ));
    cases.push((
        "x5u",
        w.rsa
            .sign_raw(&hdr(",\"x5u\":\"https://evil.example/cert\""), &body),
        "\"x5u\"",
    ));
    cases.push((
        "unknown crit",
        w.rsa.sign_raw(&hdr(",\"crit\":[\"exp\"]"), &body),
        "\"crit\"",
    ));
    let traversal = "{\"alg\":\"RS256\",\"kid\":\"../../../../../dev/null\"}";
    cases.push((
        "kid traversal",
        w.rsa.sign_raw(traversal, &body),
        "no key with kid",
    ));

    // CVE-2022-21449 ("psychic signatures"): r = s = 0 must not verify.
    let ec_hdr = format!("{{\"alg\":\"ES256\",\"kid\":\"{}\"}}", w.ec.kid);
    let zero_sig = URL_SAFE_NO_PAD.encode([0u8; 64]);
    cases.push((
        "ECDSA r=s=0",
        format!("{}.{}.{zero_sig}", b64(&ec_hdr), b64(&body)),
        "bad signature",
    ));
    // An EC key named in an RSA header; the RSA key named in an EC header.
    cases.push((
        "EC signature under an RSA header",
        w.ec.sign_raw(&hdr(""), &body),
        "bad signature",
    ));
    let rsa_as_ec = format!("{{\"alg\":\"ES256\",\"kid\":\"{kid}\"}}");
    cases.push(("wrong curve/type", w.ec.sign_raw(&rsa_as_ec, &body), "fits"));

    let now = now_unix();
    let dup = format!(
        "{{\"iss\":\"{A}\",\"aud\":\"other\",\"aud\":\"nats\",\"sub\":\"s\",\"exp\":{}}}",
        now + 300
    );
    cases.push(("duplicate claims", w.rsa.sign_raw(&hdr(""), &dup), ""));
    let inner = w.rsa.sign(&good());
    cases.push((
        "nested JWT",
        w.rsa
            .sign_raw(&hdr(",\"cty\":\"JWT\""), &format!("\"{inner}\"")),
        "malformed",
    ));
    let deep = format!(
        "{{\"iss\":\"{A}\",\"aud\":\"nats\",\"exp\":{},\"x\":{}{}}}",
        now + 300,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    cases.push(("deep JSON", w.rsa.sign_raw(&hdr(""), &deep), ""));
    let huge_header = hdr(&format!(",\"pad\":\"{}\"", "A".repeat(80_000)));
    cases.push((
        "huge header",
        w.rsa.sign_raw(&huge_header, &body),
        "larger than",
    ));
    cases.push((
        "huge payload",
        w.rsa.sign(&with("pad", json!("B".repeat(80_000)))),
        "larger than",
    ));

    for (label, exp) in [
        ("exp string", json!("9999999999")),
        ("exp negative", json!(-1)),
        ("exp huge negative", json!(-1e300)),
        ("exp bool", json!(true)),
    ] {
        cases.push((label, w.rsa.sign(&with("exp", exp)), ""));
    }
    cases.push((
        "nbf far future float",
        w.rsa.sign(&with("nbf", json!(1e12))),
        "",
    ));
    for (label, aud) in [
        ("aud object", json!({"nats": true})),
        ("aud number", json!(1)),
        ("aud empty", json!("")),
        ("aud empty array", json!([])),
        ("aud with a space", json!("nats other")),
        ("aud prefix", json!("nats2")),
        ("aud nested array", json!([["nats"]])),
    ] {
        cases.push((label, w.rsa.sign(&with("aud", aud)), ""));
    }
    cases.push((
        "issuer trailing slash",
        w.rsa.sign(&with("iss", json!(format!("{A}/")))),
        "unknown issuer",
    ));
    cases.push((
        "issuer case",
        w.rsa.sign(&with("iss", json!(A.to_uppercase()))),
        "unknown issuer",
    ));
    // Signed by issuer B's key (with B's kid) but claiming to be A.
    cases.push((
        "another issuer's key",
        w.b_key.sign(&good()),
        "no key with kid",
    ));
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(w.rsa.kid.clone());
    cases.push((
        "another key, our kid",
        w.b_key.sign_with_header(&h, &good()),
        "bad signature",
    ));
    cases.push((
        "truncated signature",
        {
            let t = w.rsa.sign(&good());
            t[..t.len() - 10].to_owned()
        },
        "",
    ));
    cases.push((
        "four parts",
        format!("{}.x", w.rsa.sign(&good())),
        "malformed",
    ));

    for (label, token, needle) in cases {
        let (class, reason) = denied(&w, &token, label).await;
        assert_eq!(class, class_of(label), "{label}: {reason}");
        assert!(
            reason.to_lowercase().contains(&needle.to_lowercase()),
            "{label}: reason {reason:?} lacks {needle:?}"
        );
    }
}

#[tokio::test]
async fn legitimate_oddities_are_accepted() {
    let w = world().await;
    for (label, token) in [
        (
            "aud array containing ours",
            w.rsa.sign(&with("aud", json!(["https://other", "nats"]))),
        ),
        (
            "no kid, one usable RS256 key",
            w.rsa
                .sign_with_header(&Header::new(Algorithm::RS256), &good()),
        ),
        (
            "no kid, one usable ES256 key",
            w.ec.sign_with_header(&Header::new(Algorithm::ES256), &good()),
        ),
        (
            "float exp in the future",
            w.rsa
                .sign(&with("exp", json!((now_unix() + 300) as f64 + 0.5))),
        ),
        (
            "unknown extra claims",
            w.rsa
                .sign(&with("x-custom", json!({"deep": [1, 2, {"a": null}]}))),
        ),
    ] {
        let o = decide(&w, &token).await;
        assert!(o.result.is_ok(), "{label}: {:?}", o.result);
    }
    // A fractional exp still bounds the user's lifetime (rounded down).
    let exp = now_unix() + 100;
    let o = decide(&w, &w.rsa.sign(&with("exp", json!(exp as f64 + 0.9)))).await;
    assert_eq!(o.result.unwrap().expires_at, exp);
}

/// Valid tokens that try to get more than the policy author meant: every one
/// is denied with its class (issue "Policy safety").
#[tokio::test]
async fn valid_tokens_that_stretch_the_policy_are_denied() {
    let policy = "[defaults]\naccount = \"APP\"\n\
        [permissions.tenant]\npub = { allow = [\"{claim.tenant}.>\"] }\n\
        [permissions.admin]\nsub = { allow = [\"admin.>\"] }\n\
        [[rules]]\nname = \"tenants\"\nissuer = \"a\"\nscopes = [\"nats\"]\ngrant = [\"tenant\"]\n\
        [[rules]]\nname = \"admins\"\nissuer = \"a\"\nclaims = { \"realm_access.roles\" = \"admin\" }\ngrant = [\"admin\"]\n";
    let w = world_with(policy).await;
    let tenant = |t: &str, scope: &str| {
        let mut c = good();
        c["tenant"] = json!(t);
        c["scope"] = json!(scope);
        c
    };
    let mut shadow = good();
    shadow["realm_access.roles"] = json!(["admin"]);
    shadow["realm_access"] = json!({"roles": ["user"]});
    let padded = |pad: &str| format!("{pad}{}{pad}", w.rsa.sign(&tenant("acme", "nats")));
    let cases: Vec<(&str, String, ReasonClass, &str)> = vec![
        (
            "tenant $SYS",
            w.rsa.sign(&tenant("$SYS", "nats")),
            ReasonClass::ClaimReservedSubject,
            "\"tenant\"",
        ),
        (
            "tenant $JS",
            w.rsa.sign(&tenant("$JS", "nats")),
            ReasonClass::ClaimReservedSubject,
            "\"tenant\"",
        ),
        (
            "tenant _INBOX",
            w.rsa.sign(&tenant("_INBOX", "nats")),
            ReasonClass::ClaimReservedSubject,
            "\"tenant\"",
        ),
        (
            "scope joined by a tab",
            w.rsa.sign(&tenant("acme", "x\tnats")),
            ReasonClass::NoRule,
            "no rule",
        ),
        (
            "scope joined by NBSP",
            w.rsa.sign(&tenant("acme", "x\u{a0}nats")),
            ReasonClass::NoRule,
            "no rule",
        ),
        (
            "scope joined by a newline",
            w.rsa.sign(&tenant("acme", "x\nnats")),
            ReasonClass::NoRule,
            "no rule",
        ),
        (
            "dotted key shadowing a nested claim",
            w.rsa.sign(&shadow),
            ReasonClass::ClaimAmbiguous,
            "\"realm_access.roles\"",
        ),
        (
            "token wrapped in NBSP",
            padded("\u{a0}"),
            ReasonClass::TokenMalformed,
            "malformed",
        ),
    ];
    for (label, token, expected, needle) in cases {
        let (class, reason) = denied(&w, &token, label).await;
        assert_eq!(class, expected, "{label}: {reason}");
        assert!(
            reason.contains(needle),
            "{label}: {reason:?} lacks {needle:?}"
        );
    }
    // The honest versions of the same tokens are granted.
    let ok = decide(&w, &padded(" \n")).await;
    assert_eq!(
        ok.result.unwrap().grant.permissions.publish.allow,
        vec!["acme.>"]
    );
    let mut admin = good();
    admin["realm_access"] = json!({"roles": ["admin"]});
    assert!(decide(&w, &w.rsa.sign(&admin)).await.result.is_ok());
}
