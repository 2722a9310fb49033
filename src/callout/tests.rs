//! The callout end to end in process: requests signed by a server key made
//! here, answers decoded and checked.

use super::request::MAX_REQUEST_BYTES;
use super::*;
use crate::issuer::{jwks, LocalKey};
use crate::protocol::{
    encode, AuthorizationRequest, AuthorizationResponse, ClaimsData, NatsClaims, User,
    AUTHORIZATION_REQUEST_AUDIENCE,
};
use jsonwebtoken::Algorithm;
use nkeys::{KeyPair, KeyPairType};

struct Fixture {
    _dir: tempfile::TempDir,
    callout: Callout,
    key: LocalKey,
    server: KeyPair,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = LocalKey::generate(Algorithm::ES256).unwrap();
    std::fs::write(d.join("jwks.json"), jwks(&[&key]).to_string()).unwrap();
    std::fs::write(d.join("issuer.nk"), KeyPair::new_account().seed().unwrap()).unwrap();
    std::fs::write(
        d.join("policy.toml"),
        "[defaults]\naccount = \"APP\"\n[permissions.p]\nsub = { allow = [\"a.{claim.sub}\"] }\n\
         [[rules]]\nname = \"r\"\nscopes = [\"nats\"]\ngrant = [\"p\"]\n",
    )
    .unwrap();
    let config = "[nats]\nurl = \"nats://127.0.0.1:4222\"\n[signing]\nissuer_seed_file = \"issuer.nk\"\n\
        [[issuer]]\nname = \"i\"\nissuer = \"https://i.test\"\naudience = \"nats\"\njwks_file = \"jwks.json\"\n\
        algorithms = [\"ES256\"]\n[policy]\nfile = \"policy.toml\"\n";
    let config = Config::parse(&d.join("c.toml"), config).unwrap();
    Fixture {
        _dir: dir,
        callout: Callout::from_config(&config).unwrap(),
        key,
        server: KeyPair::new_server(),
    }
}

fn request(f: &Fixture, signer: &KeyPair, token: &str) -> (Vec<u8>, String) {
    request_with(f, signer, token, |_| {})
}

fn request_with(
    f: &Fixture,
    signer: &KeyPair,
    token: &str,
    edit: impl FnOnce(&mut NatsClaims<AuthorizationRequest>),
) -> (Vec<u8>, String) {
    let user = KeyPair::new_user().public_key();
    let mut req = NatsClaims {
        data: ClaimsData {
            aud: AUTHORIZATION_REQUEST_AUDIENCE.into(),
            exp: crate::clock::now_unix() + 2,
            ..ClaimsData::default()
        },
        nats: AuthorizationRequest {
            user_nkey: user.clone(),
            kind: "authorization_request".into(),
            version: 2,
            ..AuthorizationRequest::default()
        },
    };
    req.nats.server_id.id = f.server.public_key();
    req.nats.connect_opts.auth_token = token.into();
    edit(&mut req);
    (encode(&mut req, signer).unwrap().into_bytes(), user)
}

fn response(reply: &Reply) -> NatsClaims<AuthorizationResponse> {
    let text = std::str::from_utf8(&reply.payload).unwrap();
    crate::protocol::decode::<AuthorizationResponse>(text, KeyPairType::Account).unwrap()
}

#[tokio::test]
async fn allowed_request_gets_a_signed_user_for_the_right_server_and_user() {
    let f = fixture();
    f.callout.decider().issuers().load_all().await;
    let now = crate::clock::now_unix();
    let token = f.key.sign(
        &serde_json::json!({"iss": "https://i.test", "aud": "nats", "sub": "bo",
        "scope": "nats", "exp": now + 60}),
    );
    let (payload, user) = request(&f, &f.server, &token);
    let reply = f.callout.respond(&payload, None).await;
    let resp = response(&reply);
    assert_eq!(resp.data.aud, f.server.public_key());
    assert_eq!(resp.data.sub, user);
    assert_eq!(resp.data.iss, f.callout.signer_public_key());
    let jwt = resp.nats.jwt.expect("allowed");
    let u = crate::protocol::decode::<User>(&jwt, KeyPairType::Account).unwrap();
    assert_eq!(u.data.sub, user);
    assert_eq!(u.data.aud, "APP");
    assert!(u.data.exp <= now + 60, "user outlives its token");
    assert_eq!(u.nats.subscribe.allow, vec!["a.bo"]);
    assert_eq!(u.nats.publish.deny, vec![">"]);
}

#[tokio::test]
async fn refusals_are_signed_denials_with_the_reason() {
    let f = fixture();
    let (payload, _) = request(&f, &f.server, "irrelevant");
    let reply = f.callout.refuse(&payload, None, Reason::Saturated);
    assert_eq!(
        response(&reply).nats.error.as_deref(),
        Some("service saturated: too many authorization requests in flight")
    );
    assert_eq!(
        reply.outcome.class(),
        Some(crate::reason::ReasonClass::Saturated)
    );
}

#[tokio::test]
async fn broken_requests_get_an_empty_denial() {
    let f = fixture();
    // Signed by an account key instead of the server's.
    let (forged, _) = request(&f, &KeyPair::new_account(), "t");
    let reply = f.callout.respond(&forged, None).await;
    assert!(reply.payload.is_empty());
    assert_eq!(
        reply.outcome.class(),
        Some(crate::reason::ReasonClass::BadRequest)
    );
    let huge = vec![b'e'; MAX_REQUEST_BYTES + 1];
    let reply = f.callout.respond(&huge, None).await;
    assert!(reply
        .outcome
        .result
        .unwrap_err()
        .to_string()
        .contains("larger than"));
    let reply = f.callout.respond(b"\x00\x01garbage", None).await;
    assert!(reply.payload.is_empty());
}

#[test]
fn only_user_public_keys_pass_as_user_nkey() {
    let user = KeyPair::new_user().public_key();
    assert!(request::is_user_key(&user));
    let mut flipped = user.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    for bad in [
        KeyPair::new_account().public_key(),
        KeyPair::new_server().public_key(),
        String::from_utf8(flipped).unwrap(),
        String::new(),
        "U".repeat(56),
        format!("{user}="),
        format!("{}é", &user[..55]),
    ] {
        assert!(!request::is_user_key(&bad), "{bad:?}");
    }
}

#[tokio::test]
async fn stale_requests_are_denied_and_misaddressed_ones_not_answered() {
    let f = fixture();
    f.callout.decider().issuers().load_all().await;
    let token = f
        .key
        .sign(&serde_json::json!({"iss": "https://i.test", "aud": "nats",
        "sub": "bo", "scope": "nats", "exp": crate::clock::now_unix() + 60}));
    let fresh = request_with(&f, &f.server, &token, |r| {
        r.data.exp = crate::clock::now_unix() + 2
    })
    .0;
    let reply = f.callout.respond(&fresh, None).await;
    assert!(reply.outcome.result.is_ok(), "{:?}", reply.outcome.result);
    // Inside the slack the request is still answered.
    let late = request_with(&f, &f.server, &token, |r| {
        r.data.exp = crate::clock::now_unix() - 5
    })
    .0;
    assert!(f.callout.respond(&late, None).await.outcome.result.is_ok());
    let far = request_with(&f, &f.server, &token, |r| r.data.exp = i64::MAX).0;
    assert!(f.callout.respond(&far, None).await.outcome.result.is_ok());
    // Stale: a signed denial that says why, never a grant. `respond` reads
    // the clock itself, so the lateness it reports is pinned between the
    // clock read before the request was made and the one after the answer:
    // exact when no second boundary passes, and one of the seconds that did
    // pass when one does.
    for (label, late) in [
        ("expired 60 s ago", Some(60)),
        ("expired 12 s ago", Some(12)),
        ("no exp", None),
    ] {
        let before = crate::clock::now_unix();
        let (replayed, _) = request_with(&f, &f.server, &token, |r| {
            r.data.exp = late.map_or(0, |l| before - l)
        });
        let reply = f.callout.respond(&replayed, None).await;
        let after = crate::clock::now_unix();
        assert_eq!(
            reply.outcome.class(),
            Some(crate::reason::ReasonClass::StaleRequest),
            "{label}"
        );
        let reason = reply.outcome.result.as_ref().unwrap_err().to_string();
        let expected: Vec<String> = match late {
            Some(l) => (l..=l + (after - before))
                .map(|k| format!("request expired {k} s ago"))
                .collect(),
            None => vec!["request has no exp".to_owned()],
        };
        assert!(
            expected.iter().any(|e| reason.starts_with(e.as_str())),
            "{label}: {reason:?} is none of {expected:?}"
        );
        let resp = response(&reply);
        assert!(resp.nats.jwt.is_none(), "{label}");
        assert_eq!(resp.nats.error.as_deref(), Some(reason.as_str()), "{label}");
    }
    // Addressed to something else: not answered at all.
    let (other, _) = request_with(&f, &f.server, &token, |r| {
        r.data.aud = "nats-authorization-response".into()
    });
    let reply = f.callout.respond(&other, None).await;
    assert!(reply.payload.is_empty());
    assert_eq!(
        reply.outcome.class(),
        Some(crate::reason::ReasonClass::BadRequest)
    );
    assert!(reply
        .outcome
        .result
        .unwrap_err()
        .to_string()
        .contains("aud"));
}

/// Lateness is measured against the clock handed in, with the slack's edge
/// exact: `REQUEST_EXPIRY_SLACK_SECS` late is still answered, one more is not.
#[test]
fn staleness_is_measured_from_the_clock_handed_in() {
    use super::request::{stale, REQUEST_EXPIRY_SLACK_SECS};
    let exp = 1_000_000;
    let at = |now: i64| {
        let claims = ClaimsData {
            exp,
            ..ClaimsData::default()
        };
        stale(&claims, now).map(|r| r.to_string())
    };
    assert_eq!(at(exp - 1), None);
    assert_eq!(at(exp + REQUEST_EXPIRY_SLACK_SECS), None);
    let edge = at(exp + REQUEST_EXPIRY_SLACK_SECS + 1).expect("stale past the slack");
    let want = format!("request expired {} s ago", REQUEST_EXPIRY_SLACK_SECS + 1);
    assert!(edge.starts_with(&want), "{edge}");
    let twelve = at(exp + 12).expect("stale");
    assert!(twelve.starts_with("request expired 12 s ago"), "{twelve}");
    let none = stale(&ClaimsData::default(), exp).map(|r| r.to_string());
    assert_eq!(none.as_deref(), Some("request has no exp"));
}
