//! The e2e tier with a real third-party IdP: tokens from panva/oidc-provider's
//! token endpoint (client credentials, JWT access tokens) held to the policy.

use std::time::Duration;

use crate::support::*;
use futures::StreamExt;

const SHORT: Duration = Duration::from_secs(5);

async fn env_for(idp: &NodeIdp) -> Env {
    let issuer = idp.issuer();
    Env::start(EnvOptions {
        external_issuer: Some((&issuer, &idp.resource)),
        issuer_extra: "require_typ = \"at+jwt\"",
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_tokens_are_held_to_the_policy() {
    let idp = NodeIdp::start();
    let env = env_for(&idp).await;
    // oidc-provider puts the client id in `sub`: the policy's own namespace.
    let token = idp.token("nats").await;
    let mut client = connect_token(&env.nats.url(), &token)
        .await
        .expect("connects");
    let mut sub = client.nats.subscribe("app.ci-job.status").await.unwrap();
    client
        .nats
        .publish("app.ci-job.status", "ok".into())
        .await
        .unwrap();
    client.nats.flush().await.unwrap();
    let msg = tokio::time::timeout(SHORT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.payload.as_ref(), b"ok");
    client
        .nats
        .publish("app.other.status", "x".into())
        .await
        .unwrap();
    client.nats.flush().await.unwrap();
    client
        .expect_error(
            "Permissions Violation for Publish to \"app.other.status\"",
            SHORT,
        )
        .await;

    let admin_only = idp.token("nats:admin").await;
    env.assert_refused(
        connect_token(&env.nats.url(), &admin_only).await,
        "no rule grants access",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_key_is_fetched_on_first_use() {
    let mut idp = NodeIdp::start();
    let env = env_for(&idp).await;
    connect_token(&env.nats.url(), &idp.token("nats").await)
        .await
        .expect("token signed by the first key accepted");
    env.claim_decision("allow", "").await;
    let old = idp.token("nats").await;

    idp.restart_with_new_key();
    let fresh = idp.token("nats").await;
    assert_ne!(kid(&old), kid(&fresh), "the provider did not rotate");
    let client = connect_token(&env.nats.url(), &fresh)
        .await
        .expect("token signed by the new key accepted");
    client.nats.flush().await.unwrap();
    // Its own decision: the one after the first key's.
    let decision = env.claim_decision("allow", "").await;
    assert_eq!(decision["reason_class"], "ok");
    assert_eq!(decision["subject"], idp.client_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_command_fetches_a_usable_token() {
    let idp = NodeIdp::start();
    let env = env_for(&idp).await;
    let secret = idp.secret_file();
    let issuer = idp.issuer();
    let args = |secret: &str| {
        vec![
            "token".to_owned(),
            "--issuer-url".into(),
            issuer.clone(),
            "--client-id".into(),
            idp.client_id.clone(),
            "--client-secret-file".into(),
            secret.to_owned(),
            "--scope".into(),
            "nats".into(),
            "--audience".into(),
            idp.resource.clone(),
        ]
    };
    let run = |a: Vec<String>| run_cli(&a.iter().map(String::as_str).collect::<Vec<_>>());

    let o = run(args(secret.to_str().unwrap()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let token = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let check = run_cli(&[
        "check",
        "--config",
        env.config_path().to_str().unwrap(),
        "--token",
        &token,
    ]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert!(connect_token(&env.nats.url(), &token).await.is_ok());

    let wrong = env.dir.path().join("wrong-secret");
    write_secret(&wrong, "not-the-secret");
    let o = run(args(wrong.to_str().unwrap()));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("invalid_client"), "{err}");
    assert!(!err.contains("not-the-secret"), "secret leaked: {err}");

    let o = run(args("/nonexistent/secret"));
    assert_eq!(o.status.code(), Some(2));
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}
