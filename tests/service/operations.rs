//! What operators see: /metrics, /healthz, /readyz and audit events.

use std::time::Duration;

use crate::support::*;
use futures::StreamExt;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_readiness_and_audit_events() {
    let extra = "[http]\nlisten = \"127.0.0.1:0\"\n\n[audit]\nsubject = \"audit.callout\"\n";
    let env = Env::start(EnvOptions {
        config_extra: extra,
        ..Default::default()
    })
    .await;
    let base = format!("http://{}", env.service().http.expect("http bound"));
    assert_eq!(http_get(&format!("{base}/healthz")).await.0, 200);
    let (status, body) = http_get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("issuer corp: 1 keys"), "{body}");

    // The auth user is exempt from the callout and lives in the service's account.
    let auditor = connect_user_pass(&env.nats.url(), "auth", "authpw")
        .await
        .unwrap();
    let mut events = auditor.nats.subscribe("audit.callout").await.unwrap();
    auditor.nats.flush().await.unwrap();

    let token = env.token("mona", "nats");
    let unscoped = env.token("mona", "none");
    connect_token(&env.nats.url(), &token)
        .await
        .expect("mona connects");
    env.assert_refused(
        connect_token(&env.nats.url(), &unscoped).await,
        "no rule grants access",
    )
    .await;

    let mut seen = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&m.payload);
        assert_no_token_in(&text, &token);
        assert_no_token_in(&text, &unscoped);
        seen.push(serde_json::from_slice::<Value>(&m.payload).unwrap());
    }
    let allow = seen
        .iter()
        .find(|e| e["decision"] == "allow")
        .expect("allow event");
    assert_eq!(allow["subject"], "mona");
    assert_eq!(allow["account"], "APP");
    assert_eq!(allow["rules"], serde_json::json!(["nats-users"]));
    assert_eq!(allow["client_host"], "127.0.0.1");
    let deny = seen
        .iter()
        .find(|e| e["decision"] == "deny")
        .expect("deny event");
    assert_eq!(deny["reason"], "no rule grants access");
    assert_eq!(deny["reason_class"], "no_rule");

    let (status, text) = http_get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    for line in [
        "nats_oidc_callout_decisions_total{result=\"allow\",reason_class=\"ok\",issuer=\"corp\"} 1",
        "nats_oidc_callout_decisions_total{result=\"deny\",reason_class=\"no_rule\",issuer=\"corp\"} 1",
        "nats_oidc_callout_decision_duration_seconds_count 2",
        "nats_oidc_callout_jwks_keys{issuer=\"corp\"} 1",
        "nats_oidc_callout_signature_checks_total 2",
        "nats_oidc_callout_nats_connected 1",
        "nats_oidc_callout_in_flight_requests 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert_eq!(http_get(&format!("{base}/nope")).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_without_keys() {
    let env = Env::start(EnvOptions {
        config_extra: "[http]\nlisten = \"127.0.0.1:0\"\n",
        idp_down_at_start: true,
        ..Default::default()
    })
    .await;
    let base = format!("http://{}", env.service().http.expect("http bound"));
    let (status, body) = http_get(&format!("{base}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("issuer corp: 0 keys"), "{body}");
    let (_, metrics) = http_get(&format!("{base}/metrics")).await;
    let failures: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("nats_oidc_callout_jwks_fetch_failures_total{issuer=\"corp\"} ")
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no failure counter in:\n{metrics}"));
    assert!(failures >= 1.0, "{metrics}");
    drop(env);
}
