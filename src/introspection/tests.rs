//! The introspector's rules against a scripted IdP: what is cached, for
//! how long, what is shared, and what is refused without a call.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;

use super::*;
use crate::config::Config;

pub(super) const ISS: &str = "https://idp.test";

/// An IdP that answers what it is told, counts calls, and can hold every
/// call until released.
#[derive(Default)]
pub(super) struct Scripted {
    answer: Mutex<Option<Result<Value, Failure>>>,
    userinfo: Mutex<Option<Result<Value, Failure>>>,
    calls: AtomicUsize,
    userinfo_calls: AtomicUsize,
    /// When set, each call waits for a permit.
    hold: Mutex<Option<Arc<Semaphore>>>,
}

impl Scripted {
    pub(super) fn answering(v: Value) -> Arc<Self> {
        let s = Arc::new(Self::default());
        s.set(Ok(v));
        s
    }

    pub(super) fn set(&self, a: Result<Value, Failure>) {
        *self.answer.lock().unwrap() = Some(a);
    }

    pub(super) fn set_userinfo(&self, a: Result<Value, Failure>) {
        *self.userinfo.lock().unwrap() = Some(a);
    }

    pub(super) fn hold(&self) -> Arc<Semaphore> {
        let s = Arc::new(Semaphore::new(0));
        *self.hold.lock().unwrap() = Some(s.clone());
        s
    }

    pub(super) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn object(r: Result<Value, Failure>) -> Result<Map<String, Value>, Failure> {
    r.map(|v| v.as_object().expect("scripted answers are objects").clone())
}

impl Upstream for Scripted {
    fn introspect<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Map<String, Value>, Failure>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let hold = self.hold.lock().unwrap().clone();
            if let Some(h) = hold {
                h.acquire().await.unwrap().forget();
            }
            object(
                self.answer
                    .lock()
                    .unwrap()
                    .clone()
                    .expect("an answer is scripted"),
            )
        })
    }

    fn userinfo<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Map<String, Value>, Failure>> {
        Box::pin(async move {
            self.userinfo_calls.fetch_add(1, Ordering::SeqCst);
            object(
                self.userinfo
                    .lock()
                    .unwrap()
                    .clone()
                    .expect("userinfo is scripted"),
            )
        })
    }
}

/// An issuer accepting opaque tokens, with `extra` config lines.
pub(super) fn issuer(extra: &str) -> IssuerConfig {
    let src = format!(
        "[nats]\nurl = \"nats://127.0.0.1:4222\"\n[signing]\nissuer_seed_file = \"x.nk\"\n\
         [[issuer]]\nname = \"corp\"\nissuer = \"{ISS}\"\naudience = [\"nats\", \"mqtt\"]\n\
         token_types = [\"opaque\"]\nintrospection_client_id = \"callout\"\n\
         introspection_client_secret_file = \"secret\"\nleeway = \"0s\"\n{extra}\n\
         [policy]\nfile = \"p.toml\"\n"
    );
    Config::parse(Path::new("c.toml"), &src)
        .unwrap()
        .issuers
        .remove(0)
}

pub(super) fn introspector(idp: &Arc<Scripted>, extra: &str) -> Introspector {
    let iss = issuer(extra);
    let settings = iss.introspection.as_ref().expect("introspects");
    Introspector::with_upstream(&iss, settings, 1000, idp.clone())
}

pub(super) fn active(sub: &str) -> Value {
    json!({"active": true, "iss": ISS, "aud": "nats", "sub": sub, "scope": "nats pub",
        "client_id": "app", "exp": now_unix() + 3600, "token_type": "Bearer"})
}

pub(super) fn keep(paths: &[&str]) -> Arc<[String]> {
    paths.iter().map(|p| p.to_string()).collect()
}

#[tokio::test]
async fn an_active_answer_becomes_a_verified_token() {
    let idp = Scripted::answering(active("alice"));
    let i = introspector(&idp, "");
    let t = i.introspect("tok-1", None).await.unwrap();
    assert_eq!(t.issuer, "corp");
    assert_eq!(t.subject, "alice");
    assert_eq!(t.scopes, vec!["nats", "pub"]);
    assert_eq!(t.claims["client_id"], "app");
    assert!(t.expires_at.unwrap() > now_unix());
    assert_eq!(i.counters().calls_with(CallResult::Active), 1);
}

#[tokio::test]
async fn not_a_bearer_token_is_refused_without_a_call() {
    let idp = Scripted::answering(active("alice"));
    let i = introspector(&idp, "");
    for bad in ["", "a b", "tok\n", "ä", "===", "a=b"] {
        assert_eq!(
            i.introspect(bad, None).await.unwrap_err(),
            IntrospectionError::Malformed,
            "{bad:?}"
        );
    }
    assert!(i.introspect("aZ09-._~+/==", None).await.is_ok());
    assert_eq!(idp.calls(), 1);
}

/// Lets every spawned task run until it blocks (current-thread runtime).
pub(super) async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn identical_tokens_arriving_together_share_one_call() {
    let idp = Scripted::answering(active("alice"));
    let release = idp.hold();
    let i = Arc::new(introspector(&idp, ""));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let i = i.clone();
            tokio::spawn(async move { i.introspect("storm", None).await })
        })
        .collect();
    settle().await;
    assert_eq!(idp.calls(), 1);
    release.add_permits(1);
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().subject, "alice");
    }
    assert_eq!(idp.calls(), 1);
    assert_eq!(i.counters().cache_hits(), 199);
}

#[tokio::test]
async fn a_failed_call_fails_everyone_waiting_on_it_and_is_not_kept() {
    let idp = Arc::new(Scripted::default());
    idp.set(Err(Failure::Unavailable("HTTP 502".into())));
    let release = idp.hold();
    let i = Arc::new(introspector(&idp, ""));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let i = i.clone();
            tokio::spawn(async move { i.introspect("storm", None).await })
        })
        .collect();
    settle().await;
    release.add_permits(1);
    for t in tasks {
        assert_eq!(
            t.await.unwrap().unwrap_err().class().as_str(),
            "idp_unavailable"
        );
    }
    assert_eq!(idp.calls(), 1);
    release.add_permits(1);
    assert!(i.introspect("storm", None).await.is_err());
    assert_eq!(idp.calls(), 2);
}

#[tokio::test]
async fn beyond_max_in_flight_new_tokens_are_refused_at_once() {
    let idp = Scripted::answering(active("alice"));
    let release = idp.hold();
    let i = Arc::new(introspector(&idp, "introspection_max_in_flight = 2"));
    let held: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|t| {
            let i = i.clone();
            tokio::spawn(async move { i.introspect(t, None).await })
        })
        .collect();
    settle().await;
    assert_eq!(i.in_flight(), 2);
    let e = i.introspect("c", None).await.unwrap_err();
    assert_eq!(
        e,
        IntrospectionError::Saturated {
            issuer: "corp".into()
        }
    );
    assert_eq!(e.class().as_str(), "idp_saturated");
    assert_eq!(i.counters().skipped_for(Refused::Saturated), 1);
    release.add_permits(2);
    for t in held {
        assert!(t.await.unwrap().is_ok());
    }
    release.add_permits(1);
    assert!(i.introspect("c", None).await.is_ok());
    assert_eq!(idp.calls(), 3);
}

#[tokio::test]
async fn calls_beyond_the_rate_limit_are_refused_and_cached_tokens_still_serve() {
    let idp = Scripted::answering(active("alice"));
    let i = introspector(&idp, "introspection_rate_limit = 1");
    i.introspect("first", None).await.unwrap();
    let e = i.introspect("second", None).await.unwrap_err();
    assert_eq!(
        e,
        IntrospectionError::RateLimited {
            issuer: "corp".into()
        }
    );
    assert_eq!(e.class().as_str(), "idp_rate_limited");
    assert!(i.introspect("first", None).await.is_ok());
    assert_eq!(idp.calls(), 1);
}

#[tokio::test]
async fn time_claims_are_checked_on_every_use() {
    let mut answer = active("alice");
    answer["nbf"] = json!(now_unix() + 600);
    let idp = Scripted::answering(answer);
    let i = introspector(&idp, "");
    for _ in 0..2 {
        assert_eq!(
            i.introspect("early", None).await.unwrap_err(),
            IntrospectionError::NotYetValid
        );
    }
    assert_eq!(idp.calls(), 1);
}

#[tokio::test]
async fn userinfo_claims_are_merged_under_userinfo_and_cached_with_the_answer() {
    let idp = Scripted::answering(active("alice"));
    idp.set_userinfo(Ok(
        json!({"sub": "alice", "email": "alice@example.test", "groups": ["ops"]}),
    ));
    let i = introspector(&idp, "userinfo = true");
    let k = keep(&["userinfo.groups"]);
    for _ in 0..3 {
        let t = i.introspect("tok-1", Some(&k)).await.unwrap();
        assert_eq!(
            crate::claims::lookup(&t.claims, "userinfo.groups").unwrap(),
            Some(&json!(["ops"]))
        );
        assert_eq!(crate::claims::lookup(&t.claims, "userinfo.email"), Ok(None));
    }
    assert_eq!(idp.userinfo_calls.load(Ordering::SeqCst), 1);
    assert_eq!(i.counters().userinfo_calls(), 1);
}

#[tokio::test]
async fn a_userinfo_failure_denies_and_is_not_cached() {
    let idp = Scripted::answering(active("alice"));
    idp.set_userinfo(Err(Failure::Unavailable("HTTP 401 invalid_token".into())));
    let i = introspector(&idp, "userinfo = true");
    let e = i.introspect("tok-1", None).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "userinfo at issuer \"corp\" failed: HTTP 401 invalid_token"
    );
    assert_eq!(e.class().as_str(), "userinfo_failed");
    idp.set_userinfo(Ok(json!({"sub": "mallory"})));
    let e = i.introspect("tok-1", None).await.unwrap_err();
    assert!(e.to_string().contains("sub differs"), "{e}");
    idp.set_userinfo(Ok(json!({"sub": "alice"})));
    assert!(i.introspect("tok-1", None).await.is_ok());
    assert_eq!(idp.calls(), 3);
}

#[tokio::test]
async fn counters_render_as_prometheus_series_per_issuer() {
    let idp = Scripted::answering(json!({"active": false}));
    let i = introspector(&idp, "");
    for _ in 0..3 {
        let _ = i.introspect("junk", None).await;
    }
    let mut out = crate::metrics::Exposition::default();
    render_into(&mut out, &[&i]);
    let text = out.0;
    for line in [
        "# TYPE nats_oidc_callout_introspection_calls_total counter",
        "nats_oidc_callout_introspection_calls_total{issuer=\"corp\",result=\"inactive\"} 1",
        "nats_oidc_callout_introspection_calls_total{issuer=\"corp\",result=\"active\"} 0",
        "nats_oidc_callout_introspection_cache_hits_total{issuer=\"corp\",answer=\"refused\"} 2",
        "nats_oidc_callout_introspection_skipped_total{issuer=\"corp\",reason=\"saturated\"} 0",
        "nats_oidc_callout_userinfo_calls_total{issuer=\"corp\",result=\"ok\"} 0",
        "nats_oidc_callout_introspection_in_flight{issuer=\"corp\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}
