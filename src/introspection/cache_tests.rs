//! The introspection answer cache: what it keeps, for how long (cache time,
//! exp, max token age), inactive answers briefly, failures never, and
//! cached tokens serving through an IdP outage.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::tests::{active, introspector, keep, Scripted};
use super::*;

#[tokio::test]
async fn a_cached_answer_keeps_only_what_the_policy_reads() {
    let mut answer = active("alice");
    answer["groups"] = json!(["ops"]);
    answer["big"] = json!("x".repeat(10_000));
    let idp = Scripted::answering(answer);
    let i = introspector(&idp, "");
    let k = keep(&["groups"]);
    for _ in 0..2 {
        let t = i.introspect("tok-1", Some(&k)).await.unwrap();
        let mut names: Vec<&str> = t.claims.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["client_id", "exp", "groups", "scope", "sub"]);
    }
    assert_eq!(idp.calls(), 1);
    assert_eq!(i.counters().cache_hits(), 1);
}

#[tokio::test]
async fn positive_answers_expire_after_introspection_cache() {
    let idp = Scripted::answering(active("alice"));
    let i = introspector(&idp, "introspection_cache = \"1s\"");
    i.introspect("tok-1", None).await.unwrap();
    i.introspect("tok-1", None).await.unwrap();
    assert_eq!(idp.calls(), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Revoked at the IdP meanwhile: the next use asks again and sees it.
    idp.set(Ok(json!({"active": false})));
    assert_eq!(
        i.introspect("tok-1", None).await.unwrap_err(),
        IntrospectionError::Inactive
    );
    assert_eq!(idp.calls(), 2);
}

#[tokio::test]
async fn positive_answers_are_never_served_past_exp() {
    let mut answer = active("alice");
    answer["exp"] = json!(now_unix() + 1);
    let idp = Scripted::answering(answer);
    let i = introspector(&idp, "introspection_cache = \"1h\"");
    i.introspect("tok-1", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // The entry ended at exp: a new call, whose (stale) answer is then
    // refused by the time check.
    assert_eq!(
        i.introspect("tok-1", None).await.unwrap_err(),
        IntrospectionError::Expired
    );
    assert_eq!(idp.calls(), 2);
}

#[tokio::test]
async fn inactive_answers_are_kept_briefly() {
    let idp = Scripted::answering(json!({"active": false}));
    let i = introspector(&idp, "introspection_negative_cache = \"1s\"");
    for _ in 0..5 {
        assert_eq!(
            i.introspect("junk", None).await.unwrap_err(),
            IntrospectionError::Inactive
        );
    }
    assert_eq!(idp.calls(), 1);
    assert_eq!(i.counters().calls_with(CallResult::Inactive), 1);
    assert_eq!(i.counters().cache_hits(), 4);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        i.introspect("junk", None).await.unwrap_err(),
        IntrospectionError::Inactive
    );
    assert_eq!(idp.calls(), 2);
}

#[tokio::test]
async fn answers_refused_by_the_issuer_rules_are_cached_like_inactive_ones() {
    let mut answer = active("alice");
    answer["aud"] = json!("someone-else");
    let idp = Scripted::answering(answer);
    let i = introspector(&idp, "");
    for _ in 0..3 {
        assert_eq!(
            i.introspect("tok-1", None).await.unwrap_err(),
            IntrospectionError::Audience
        );
    }
    assert_eq!(idp.calls(), 1);
    assert_eq!(i.counters().calls_with(CallResult::Refused), 1);
}

#[tokio::test]
async fn failures_are_never_cached() {
    let idp = Arc::new(Scripted::default());
    let i = introspector(&idp, "");
    idp.set(Err(Failure::Unavailable("HTTP 503".into())));
    for _ in 0..2 {
        let e = i.introspect("tok-1", None).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "introspection at issuer \"corp\" failed: HTTP 503"
        );
        assert_eq!(e.class().as_str(), "idp_unavailable");
    }
    idp.set(Err(Failure::Timeout));
    let e = i.introspect("tok-1", None).await.unwrap_err();
    assert_eq!(
        e,
        IntrospectionError::Timeout {
            issuer: "corp".into()
        }
    );
    idp.set(Ok(json!({"active": "yes"})));
    let e = i.introspect("tok-1", None).await.unwrap_err();
    assert_eq!(e.class().as_str(), "idp_bad_response");
    assert!(e.to_string().contains("\"active\" is not a boolean"), "{e}");
    assert_eq!(idp.calls(), 4);
    // Once the IdP answers, the token is fine.
    idp.set(Ok(active("alice")));
    assert!(i.introspect("tok-1", None).await.is_ok());
    assert_eq!(i.counters().calls_with(CallResult::Unavailable), 2);
    assert_eq!(i.counters().calls_with(CallResult::Timeout), 1);
    assert_eq!(i.counters().calls_with(CallResult::BadResponse), 1);
}

#[tokio::test]
async fn with_the_idp_down_cached_tokens_serve_and_new_ones_get_the_reason() {
    let idp = Scripted::answering(active("alice"));
    let i = introspector(&idp, "");
    i.introspect("seen", None).await.unwrap();
    idp.set(Err(Failure::Unavailable(
        "cannot connect: Connection refused".into(),
    )));
    assert_eq!(i.introspect("seen", None).await.unwrap().subject, "alice");
    let e = i.introspect("new", None).await.unwrap_err();
    assert!(e.to_string().contains("Connection refused"), "{e}");
    assert_eq!(idp.calls(), 2);
}

#[tokio::test]
async fn max_token_age_ends_a_cached_answer_too() {
    let mut answer = active("alice");
    answer["iat"] = json!(now_unix() - 9);
    let idp = Scripted::answering(answer);
    let i = introspector(
        &idp,
        "max_token_age = \"10s\"\nrequired_claims = [\"client_id\"]",
    );
    i.introspect("tok-1", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let e = i.introspect("tok-1", None).await.unwrap_err();
    assert!(matches!(e, IntrospectionError::TooOld { .. }), "{e:?}");
    assert_eq!(idp.calls(), 2, "the entry ended at iat + max_token_age");
}
