//! Replies stay with the identity that asked: with the shipped multi-tenant
//! policy, one tenant's request is answered on its own inbox prefix and
//! another tenant's wildcard subscriptions get nothing of it.

use std::time::Duration;

use crate::support::*;
use futures::StreamExt;

/// A token for `sub` of `tenant` with the scope the policy requires.
fn token(env: &Env, sub: &str, tenant: &str) -> String {
    let mut c = env.claims(sub, "nats");
    c["tenant"] = tenant.into();
    env.key.sign(&c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_read_another_tenants_replies() {
    let policy = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/multi-tenant.toml"),
    )
    .unwrap();
    let env = Env::start(EnvOptions {
        policy: &policy,
        ..Default::default()
    })
    .await;
    let url = env.nats.url();

    // globex runs a service and a client that asks it, with the inbox
    // prefix its grant names.
    let service = connect_token(&url, &token(&env, "g-svc", "globex"))
        .await
        .expect("globex service");
    let mut requests = service
        .nats
        .subscribe("tenant.globex.balance")
        .await
        .unwrap();
    service.nats.flush().await.unwrap();
    let responder = tokio::spawn(async move {
        let msg = requests.next().await.expect("a request");
        let reply = msg.reply.expect("a reply subject");
        service
            .nats
            .publish(reply, "globex-private-balance=42".into())
            .await
            .unwrap();
        service.nats.flush().await.unwrap();
        service
    });
    let asker = connect_with_options(
        async_nats::ConnectOptions::with_token(token(&env, "g1", "globex"))
            .custom_inbox_prefix("_INBOX.globex.g1"),
        &url,
    )
    .await
    .expect("globex client");

    // acme listens on every inbox it can think of.
    let mut acme = connect_token(&url, &token(&env, "a1", "acme"))
        .await
        .expect("acme client");
    let mut eavesdrop = Vec::new();
    for wide in ["_INBOX.>", "_INBOX.globex.>", ">"] {
        eavesdrop.push(acme.nats.subscribe(wide).await.unwrap());
        acme.nats.flush().await.unwrap();
        acme.expect_error(
            &format!("Permissions Violation for Subscription to \"{wide}\""),
            Duration::from_secs(5),
        )
        .await;
    }
    // Its own inbox is granted, and stays quiet.
    let mut own = acme.nats.subscribe("_INBOX.acme.a1.>").await.unwrap();
    acme.nats.flush().await.unwrap();

    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        asker.nats.request("tenant.globex.balance", "?".into()),
    )
    .await
    .expect("answered in time")
    .expect("the request is answered");
    assert_eq!(answer.payload.as_ref(), b"globex-private-balance=42");
    assert!(
        answer.subject.starts_with("_INBOX.globex.g1."),
        "{}",
        answer.subject
    );
    let _service = responder.await.unwrap();

    for sub in eavesdrop.iter_mut().chain(std::iter::once(&mut own)) {
        let got = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
        assert!(
            !matches!(got, Ok(Some(_))),
            "acme received a message: {:?}",
            got.map(|m| m.map(|m| String::from_utf8_lossy(&m.payload).into_owned()))
        );
    }
    // Its own inbox was never refused.
    let errors = acme.errors_so_far();
    assert!(
        errors.iter().all(|e| !e.contains("_INBOX.acme.a1")),
        "{errors:?}"
    );
}
