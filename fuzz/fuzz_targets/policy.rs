//! Policy files, and the claims they are evaluated against. Input: policy
//! TOML, NUL, issuer name, NUL, claims JSON. A grant never leaves a direction open by default
//! and every granted subject is a valid subject.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nats_oidc_callout::claims::scopes;
use nats_oidc_callout::policy::{Connection, Identity, Known, Policy};
use nats_oidc_callout::protocol::Permission;
use nats_oidc_callout::subject::validate_subject;
use nats_oidc_callout_fuzz::split;
use serde_json::Value;

fn check(direction: &Permission) {
    assert!(
        !direction.allow.is_empty() || direction.deny.iter().any(|d| d == ">"),
        "a direction with nothing allowed must deny everything: {direction:?}"
    );
    for s in direction.allow.iter().chain(&direction.deny) {
        validate_subject(s).expect("granted subjects are valid");
    }
}

fuzz_target!(|data: &[u8]| {
    let (policy, rest) = split(data);
    let (issuer, claims) = split(rest);
    let (Ok(policy), Ok(issuer)) = (std::str::from_utf8(policy), std::str::from_utf8(issuer))
    else {
        return;
    };
    let Ok(policy) = Policy::parse(Path::new("fuzz.toml"), policy, &Known::default()) else {
        return;
    };
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(claims) else {
        return;
    };
    let scopes = scopes(&claims, "scope");
    let who = Identity {
        issuer,
        claims: &claims,
        scopes: &scopes,
    };
    let conn = Connection {
        conn_type: Some("STANDARD"),
        host: Some("127.0.0.1"),
        certificate: None,
    };
    let _ = policy.explain(&who, &conn);
    if let Ok(grant) = policy.evaluate(&who, &conn) {
        check(&grant.permissions.publish);
        check(&grant.permissions.subscribe);
        assert!(!grant.rules.is_empty(), "a grant names its rules");
    }
});
