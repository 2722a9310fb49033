//! The bearer token a client presents: raw text, fuzzed claims under a real
//! signature (each of the issuer's algorithms), and a fuzzed header with
//! fuzzed claims under a real signature. First byte picks the form and key.
//! An accepted token gets the same policy decision from the claims the
//! cache keeps (those the policy reads) as from all of them.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nats_oidc_callout::issuer::VerifiedToken;
use nats_oidc_callout::policy::{Connection, Identity, Known, Policy};
use nats_oidc_callout_fuzz::{now, split, world, AUDIENCE, ISSUER, POLICY};
use serde_json::Value;

fn policy() -> &'static Policy {
    static POLICY_: OnceLock<Policy> = OnceLock::new();
    POLICY_.get_or_init(|| {
        Policy::parse(Path::new("policy.toml"), POLICY, &Known::default()).expect("policy")
    })
}

fn decide(t: &VerifiedToken) -> String {
    let who = Identity {
        issuer: &t.issuer,
        claims: &t.claims,
        scopes: &t.scopes,
    };
    format!("{:?}", policy().evaluate(&who, &Connection::default()))
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let key = &w.keys[usize::from(form / 3) % w.keys.len()];
    let token = match form % 3 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => match serde_json::from_str::<Value>(&w.fill(&String::from_utf8_lossy(rest))) {
            Ok(claims) => key.sign(&claims),
            Err(_) => return,
        },
        _ => {
            let (header, payload) = split(rest);
            key.sign_raw(
                &w.fill(&String::from_utf8_lossy(header)),
                &w.fill(&String::from_utf8_lossy(payload)),
            )
        }
    };
    if let Ok(verified) = w.rt.block_on(w.issuers.validate(&token, None)) {
        let c = &verified.claims;
        assert_eq!(c.get("iss").and_then(Value::as_str), Some(ISSUER));
        let aud_ok = match c.get("aud") {
            Some(Value::String(a)) => a == AUDIENCE,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(AUDIENCE)),
            _ => false,
        };
        assert!(aud_ok, "accepted aud {:?}", c.get("aud"));
        let exp = c
            .get("exp")
            .and_then(Value::as_f64)
            .expect("accepted without exp");
        assert!(exp > (now() - 120) as f64, "accepted expired token");
        assert!(
            form % 3 != 0,
            "a raw fuzzed token cannot carry our signature"
        );
        let kept =
            w.rt.block_on(w.issuers.validate(&token, Some(policy().claims_read())))
                .expect("valid with all claims, valid with the kept ones");
        assert_eq!(
            decide(&verified),
            decide(&kept),
            "kept claims changed the decision"
        );
        assert_eq!(verified.expires_at, kept.expires_at);
        assert_eq!(verified.subject, kept.subject);
    }
});
