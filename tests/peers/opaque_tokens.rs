//! Opaque tokens end to end: clients connect to a real nats-server with
//! tokens panva/oidc-provider issued as opaque strings, and the service
//! asks that IdP's introspection endpoint, next to JWTs from the same
//! issuer.

use std::time::Duration;

use crate::support::*;
use futures::StreamExt;
use rand::distributions::Alphanumeric;
use rand::Rng;

const SHORT: Duration = Duration::from_secs(5);

/// oidc-provider's client-credentials tokens carry the client as `sub`.
const POLICY: &str = r#"
[defaults]
account = "APP"
ttl = "15m"

[permissions.own]
pub = { allow = ["app.{claim.sub}.>"] }
sub = { allow = ["app.{claim.sub}.>", "_INBOX.{claim.sub}.>"] }

[permissions.deployer]
pub = { allow = ["deploy.{claim.sub}"] }

[[rules]]
name = "nats-users"
issuer = "node"
scopes = ["nats"]
grant = ["own"]

[[rules]]
name = "deploy-group"
issuer = "node"
claims = { groups = "deploy" }
scopes = ["nats"]
grant = ["deployer"]
"#;

/// One issuer taking JWTs (audience `resource`) and opaque tokens
/// (audience `opaque_resource`), introspected with client_secret_basic.
async fn env_for(idp: &NodeIdp, extra: &str) -> Env {
    let client = idp.introspection_client(IntrospectionAuth::ClientSecretBasic);
    let issuer_extra = format!(
        "token_types = [\"jwt\", \"opaque\"]\n{}introspection_timeout = \"5s\"\n{extra}",
        client.config_lines()
    );
    let issuer = idp.issuer();
    Env::start(EnvOptions {
        policy: POLICY,
        issuer_name: "node",
        external_issuer: Some((&issuer, &idp.resource)),
        more_audiences: &[&idp.opaque_resource],
        issuer_extra: &issuer_extra,
        config_extra: "[http]\nlisten = \"127.0.0.1:0\"\n",
        ..Default::default()
    })
    .await
}

async fn publishes_own_subject(client: &mut Client, subject: &str) {
    let mut sub = client.nats.subscribe(subject.to_owned()).await.unwrap();
    client
        .nats
        .publish(subject.to_owned(), "ok".into())
        .await
        .unwrap();
    client.nats.flush().await.unwrap();
    let msg = tokio::time::timeout(SHORT, sub.next())
        .await
        .expect("message within 5 s")
        .expect("subscription open");
    assert_eq!(msg.payload.as_ref(), b"ok");
}

/// The newest decision (already claimed by `assert_refused`).
fn last_decision(env: &Env) -> serde_json::Map<String, serde_json::Value> {
    env.service().decisions().pop().expect("a decision")
}

fn random_string() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(43)
        .map(char::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_and_jwt_tokens_of_one_issuer_get_the_same_permissions() {
    let idp = NodeIdp::start();
    let env = env_for(&idp, "").await;
    let base = format!("http://{}", env.service().http.expect("http bound"));
    let (status, ready) = http_get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{ready}");
    assert!(
        ready.contains("issuer node: introspection endpoint known"),
        "{ready}"
    );

    let jwt = idp.token("nats").await;
    let mut by_jwt = connect_token(&env.nats.url(), &jwt)
        .await
        .expect("JWT accepted");
    publishes_own_subject(&mut by_jwt, "app.ci-job.jwt").await;
    let jwt_allow = env.claim_decision("allow", "").await;
    assert_eq!(
        idp.stats().await.introspection,
        0,
        "JWTs are not introspected"
    );

    let opaque = idp.opaque_token("nats").await;
    for _ in 0..2 {
        let mut by_opaque = connect_token(&env.nats.url(), &opaque)
            .await
            .expect("opaque token accepted");
        publishes_own_subject(&mut by_opaque, "app.ci-job.opaque").await;
        // Introspected claims feed the policy: `groups` from the answer.
        by_opaque
            .nats
            .publish("deploy.ci-job", "go".into())
            .await
            .unwrap();
        by_opaque.nats.flush().await.unwrap();
        let opaque_allow = env.claim_decision("allow", "").await;
        assert_eq!(opaque_allow["subject"], jwt_allow["subject"]);
        assert_eq!(opaque_allow["issuer"], "node");
        assert!(
            opaque_allow["rules"].to_string().contains("deploy-group"),
            "{opaque_allow:?}"
        );
        assert!(by_opaque.errors_so_far().is_empty());
        assert_no_token_in(&env.service().log(), &opaque);
    }
    assert_eq!(
        idp.stats().await.introspection,
        1,
        "the second connect is answered from the cache"
    );
    let (_, metrics) = http_get(&format!("{base}/metrics")).await;
    assert!(
        metrics.contains(
            "nats_oidc_callout_introspection_calls_total{issuer=\"node\",result=\"active\"} 1"
        ),
        "{metrics}"
    );

    env.assert_refused(
        connect_token(&env.nats.url(), &random_string()).await,
        "token inactive",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_at_the_idp_is_refused_once_the_cache_window_ends() {
    let idp = NodeIdp::start();
    let env = env_for(&idp, "introspection_cache = \"1s\"\n").await;
    let opaque = idp.opaque_token("nats").await;
    assert!(connect_token(&env.nats.url(), &opaque).await.is_ok());
    env.claim_decision("allow", "").await;
    idp.revoke(&opaque).await;
    // The window is the configured 1 s: past it the IdP is asked again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    env.assert_refused(
        connect_token(&env.nats.url(), &opaque).await,
        "token inactive",
    )
    .await;
    let deny = last_decision(&env);
    assert_eq!(deny["reason_class"], "token_inactive", "{deny:?}");
    assert_eq!(idp.stats().await.introspection, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_idp_down_a_seen_token_reconnects_and_a_new_one_gets_the_reason() {
    let mut idp = NodeIdp::start();
    let env = env_for(&idp, "").await;
    let seen = idp.opaque_token("nats").await;
    let unseen = idp.opaque_token("nats").await;
    assert!(connect_token(&env.nats.url(), &seen).await.is_ok());
    env.claim_decision("allow", "").await;
    idp.stop();
    assert!(
        connect_token(&env.nats.url(), &seen).await.is_ok(),
        "answered from the cache while the IdP is down"
    );
    env.claim_decision("allow", "").await;
    env.assert_refused(
        connect_token(&env.nats.url(), &unseen).await,
        "introspection at issuer \"node\" failed",
    )
    .await;
    let deny = last_decision(&env);
    assert_eq!(deny["reason_class"], "idp_unavailable", "{deny:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_tokens_is_bounded_by_the_issuers_limits() {
    let idp = NodeIdp::start();
    let env = env_for(
        &idp,
        "introspection_max_in_flight = 2\nintrospection_rate_limit = 5\n",
    )
    .await;
    let started = std::time::Instant::now();
    let tokens: Vec<String> = (0..100).map(|_| random_string()).collect();
    let accepted = storm(&env.nats.url(), tokens).await;
    let elapsed = started.elapsed();
    assert_eq!(accepted, 0, "made-up tokens are never accepted");
    // Bucket of 5 plus 5 per second since: the bound, not a speed.
    let bound = 5 + 5 * (elapsed.as_secs() + 1);
    let calls = idp.stats().await.introspection;
    assert!(
        calls >= 1 && calls <= bound,
        "{calls} introspection calls in {elapsed:?} (bound {bound})"
    );
    let decisions = env.service().decisions();
    let mut classes: Vec<String> = decisions
        .iter()
        .filter_map(|d| d["reason_class"].as_str().map(str::to_owned))
        .collect();
    classes.sort();
    classes.dedup();
    for c in &classes {
        assert!(
            ["token_inactive", "idp_saturated", "idp_rate_limited"].contains(&c.as_str()),
            "unexpected class {c}: {classes:?}"
        );
    }
    assert!(
        classes.iter().any(|c| c != "token_inactive"),
        "the limits refused some: {classes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_explains_an_opaque_token_as_serve_decides_it() {
    let idp = NodeIdp::start();
    let env = env_for(&idp, "").await;
    let opaque = idp.opaque_token("nats").await;
    let out = run_cli(&[
        "check",
        "--config",
        env.config_path().to_str().unwrap(),
        "--token",
        &opaque,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["issuer"], "node", "{v}");
    assert_no_token_in(&stdout, &opaque);
    let out = run_cli(&[
        "check",
        "--config",
        env.config_path().to_str().unwrap(),
        "--token",
        &random_string(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(out.status.code(), Some(1), "{v}");
    assert_eq!(v["reason_class"], "token_inactive", "{v}");
}
