//! End to end: a real nats-server delegating to the service (in process),
//! tokens from an in-process IdP, real async-nats clients.

use std::time::Duration;

use crate::support::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use nats_oidc_callout::issuer::LocalKey;
use serde_json::json;

const SHORT: Duration = Duration::from_secs(5);

async fn allowed_and_denied(xkey: bool) {
    let env = Env::start(EnvOptions {
        xkey,
        ..Default::default()
    })
    .await;
    let token = env.token("alice", "nats read");
    let mut alice = connect_token(&env.nats.url(), &token)
        .await
        .expect("alice connects");
    round_trip(&alice.nats, "app.alice.orders").await;

    alice
        .nats
        .publish("admin.secrets", "x".into())
        .await
        .unwrap();
    alice.nats.flush().await.unwrap();
    alice
        .expect_error(
            "Permissions Violation for Publish to \"admin.secrets\"",
            SHORT,
        )
        .await;
    let _denied_sub = alice.nats.subscribe("app.bob.>").await.unwrap();
    alice.nats.flush().await.unwrap();
    alice
        .expect_error(
            "Permissions Violation for Subscription to \"app.bob.>\"",
            SHORT,
        )
        .await;

    let decision = env.claim_decision("allow", "").await;
    assert_eq!(decision["subject"], "alice");
    assert_no_token_in(&env.service().log(), &token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_round_trip_and_permission_violations_with_xkey() {
    allowed_and_denied(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_round_trip_and_permission_violations_without_xkey() {
    allowed_and_denied(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_in_password_field() {
    let env = Env::start(EnvOptions::default()).await;
    let client = connect_user_pass(&env.nats.url(), "anything", &env.token("carol", "nats"))
        .await
        .expect("token as password connects");
    round_trip(&client.nats, "app.carol.x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_and_unlisted_token_source_are_refused() {
    let env = Env::start(EnvOptions {
        token_extra: "sources = [\"auth_token\"]",
        ..Default::default()
    })
    .await;
    env.assert_refused(
        connect_anonymous(&env.nats.url()).await,
        "no token presented",
    )
    .await;
    // The password field is not a configured source: the token there is not read.
    let r = connect_user_pass(&env.nats.url(), "x", &env.token("carol", "nats")).await;
    env.assert_refused(r, "no token presented").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_reasons() {
    let env = Env::start(EnvOptions::default()).await;
    let url = env.nats.url();
    let now = now();

    env.assert_refused(connect_token(&url, "garbage").await, "malformed token")
        .await;

    let stranger = LocalKey::generate(Algorithm::RS256).unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(env.key.kid.clone());
    let forged = stranger.sign_with_header(&h, &env.claims("eve", "nats"));
    env.assert_refused(connect_token(&url, &forged).await, "bad signature")
        .await;

    let mut c = env.claims("alice", "nats");
    c["exp"] = json!(now - 60);
    env.assert_refused(
        connect_token(&url, &env.key.sign(&c)).await,
        "token expired",
    )
    .await;

    let mut c = env.claims("alice", "nats");
    c["nbf"] = json!(now + 120);
    env.assert_refused(
        connect_token(&url, &env.key.sign(&c)).await,
        "token not yet valid",
    )
    .await;

    let mut c = env.claims("alice", "nats");
    c["aud"] = json!("another-service");
    env.assert_refused(
        connect_token(&url, &env.key.sign(&c)).await,
        "audience mismatch",
    )
    .await;

    let mut c = env.claims("alice", "nats");
    c["iss"] = json!("https://evil.example");
    env.assert_refused(
        connect_token(&url, &env.key.sign(&c)).await,
        "unknown issuer",
    )
    .await;

    let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(env.claims("alice", "nats"))
    );
    env.assert_refused(
        connect_token(&url, &none).await,
        "algorithm \"none\" is never accepted",
    )
    .await;

    // HS256 keyed with the issuer's public key (the classic confusion attack).
    let public = env.key.jwk().to_string();
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &env.claims("alice", "nats"),
        &EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    env.assert_refused(
        connect_token(&url, &hs).await,
        "algorithm \"HS256\" is not allowed",
    )
    .await;

    env.assert_refused(
        connect_token(&url, &env.token("bob", "other")).await,
        "no rule grants access",
    )
    .await;

    for sub in ["x.>", "*"] {
        env.assert_refused(
            connect_token(&url, &env.token(sub, "nats")).await,
            "claim \"sub\" is not a valid subject token",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_expires_with_its_token() {
    let env = Env::start(EnvOptions::default()).await;
    let mut c = env.claims("dave", "nats");
    c["exp"] = json!(now() + 3);
    let mut client = connect_token(&env.nats.url(), &env.key.sign(&c))
        .await
        .expect("connects");
    round_trip(&client.nats, "app.dave.x").await;
    client
        .expect_error("Authentication Expired", Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_server_restart_and_stops_with_the_server_gone() {
    let mut env = Env::start(EnvOptions::default()).await;
    env.nats.restart();
    let url = env.nats.url();
    let token = env.token("gina", "nats");
    let client = connect_token_eventually(&url, &token)
        .await
        .unwrap_or_else(|| {
            panic!(
                "service did not serve after the restart:\n{}",
                env.service().log()
            )
        });
    round_trip(&client.nats, "app.gina.x").await;

    // Shutdown with the server gone: the drain is bounded and the end clean.
    env.nats.stop();
    env.service_mut().stop().expect("service stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_the_policy_and_keeps_it_when_the_new_one_is_broken() {
    let env = Env::start(EnvOptions {
        policy_extra: "watch = false",
        ..Default::default()
    })
    .await;
    let url = env.nats.url();
    let token = env.token("ivan", "nats");
    assert!(connect_token(&url, &token).await.is_ok());

    let policy = env.dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        DEFAULT_POLICY.replace("scopes = [\"nats\"]", "scopes = [\"nats:admin\"]"),
    )
    .unwrap();
    env.service().reload();
    assert!(
        wait_until(SHORT, || env.service().log().contains("policy reloaded")),
        "{}",
        env.service().log()
    );
    env.assert_refused(connect_token(&url, &token).await, "no rule grants access")
        .await;

    std::fs::write(
        &policy,
        "[[rules]]\nname = \"broken\"\ngrant = [\"missing\"]\n",
    )
    .unwrap();
    env.service().reload();
    assert!(
        wait_until(SHORT, || env
            .service()
            .log()
            .contains("policy reload failed")),
        "{}",
        env.service().log()
    );
    let admin = env.token("ivan", "nats:admin");
    let client = connect_token(&url, &admin)
        .await
        .expect("previous policy still in force");
    round_trip(&client.nats, "app.ivan.x").await;
}

/// NATS reads an empty allow list as "no restriction"; a policy that grants
/// only subscriptions must not leave publishing open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direction_without_grants_is_closed_not_open() {
    let env = Env::start(EnvOptions {
        policy: "[defaults]\naccount = \"APP\"\n[permissions.reader]\nsub = { allow = [\"metrics.>\"] }\n\
                 [[rules]]\nname = \"readers\"\nscopes = [\"nats\"]\ngrant = [\"reader\"]\n",
        ..Default::default()
    })
    .await;
    let mut client = connect_token(&env.nats.url(), &env.token("kim", "nats"))
        .await
        .expect("connects");
    client
        .nats
        .publish("anything.at.all", "x".into())
        .await
        .unwrap();
    client.nats.flush().await.unwrap();
    client
        .expect_error(
            "Permissions Violation for Publish to \"anything.at.all\"",
            SHORT,
        )
        .await;
    let _sub = client.nats.subscribe("metrics.cpu").await.unwrap();
    client.nats.flush().await.unwrap();
    let _other = client.nats.subscribe("secrets.>").await.unwrap();
    client.nats.flush().await.unwrap();
    client
        .expect_error(
            "Permissions Violation for Subscription to \"secrets.>\"",
            SHORT,
        )
        .await;
    assert!(
        client
            .errors_so_far()
            .iter()
            .all(|e| !e.contains("metrics.cpu")),
        "allowed subscription refused"
    );
}

/// `resp` lets a service answer requests without any publish grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responders_reply_through_resp_permissions() {
    let env = Env::start(EnvOptions {
        policy: r#"
[defaults]
account = "APP"
[permissions.responder]
sub = { allow = ["svc.echo"] }
resp = { max = 1, ttl = "5s" }
[permissions.requester]
pub = { allow = ["svc.echo"] }
sub = { allow = ["_INBOX.>"] }
[[rules]]
name = "responders"
scopes = ["responder"]
grant = ["responder"]
[[rules]]
name = "requesters"
scopes = ["requester"]
grant = ["requester"]
"#,
        ..Default::default()
    })
    .await;
    let url = env.nats.url();
    let responder = connect_token(&url, &env.token("svc", "responder"))
        .await
        .unwrap();
    let mut requests = responder.nats.subscribe("svc.echo").await.unwrap();
    responder.nats.flush().await.unwrap();
    let nc = responder.nats.clone();
    tokio::spawn(async move {
        if let Some(m) = requests.next().await {
            let _ = nc.publish(m.reply.unwrap(), m.payload).await;
            let _ = nc.flush().await;
        }
    });
    let requester = connect_token(&url, &env.token("app", "requester"))
        .await
        .unwrap();
    let reply = tokio::time::timeout(SHORT, requester.nats.request("svc.echo", "hi".into()))
        .await
        .expect("reply within 5 s")
        .expect("request answered");
    assert_eq!(reply.payload.as_ref(), b"hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_file_changes_are_picked_up_without_a_signal() {
    let env = Env::start(EnvOptions {
        policy_extra: "watch_interval = \"200ms\"",
        ..Default::default()
    })
    .await;
    let url = env.nats.url();
    let admin = env.token("lee", "nats:admin");
    env.assert_refused(connect_token(&url, &admin).await, "no rule grants access")
        .await;
    std::fs::write(
        env.dir.path().join("policy.toml"),
        DEFAULT_POLICY.replace("scopes = [\"nats\"]", "scopes = [\"nats:admin\"]"),
    )
    .unwrap();
    assert!(
        wait_until(SHORT, || env.service().log().contains("policy reloaded")),
        "{}",
        env.service().log()
    );
    let client = connect_token(&url, &admin)
        .await
        .expect("new policy in force");
    round_trip(&client.nats, "app.lee.x").await;
}
