//! The shipped compose files (`deploy/`) run as processes beside Keycloak.

use super::*;

/// docker-compose.yml's own files (deploy/nats-server.conf,
/// deploy/callout.toml, deploy/policy.toml) as processes beside Keycloak
/// serving the compose realm under its compose name, `nats`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_stack_files_work_with_keycloak() {
    let NatsRealm {
        realm,
        alice_password,
    } = nats_realm().await;
    let stack = DeployStack::start(Some(&Keycloak::shared().url()));
    let ready = wait_until_async(SHORT, || async {
        http_get(&format!("{}/readyz", stack.http_url())).await.0 == 200
    })
    .await;
    assert!(ready, "{}", stack.service.log());

    let secret = realm.client_secret("ci-bot").await;
    let bot_token = realm.token_by_client_credentials("ci-bot", &secret).await;
    let decision = check(&stack.config_path(), &bot_token);
    assert_eq!(decision["rules"], json!(["publishers"]), "{decision}");
    assert_eq!(
        decision["permissions"],
        json!({
            "pub": allow(json!(["events.>"])),
            "sub": {"allow": [], "deny": [">"]},
            "resp": null
        })
    );
    let mut bot = connect_token(&stack.nats.url(), &bot_token)
        .await
        .expect("ci-bot connects through the compose files");
    expect_publish_denied(&mut bot, "app.ci-bot.x").await;
    expect_subscribe_denied(&mut bot, "events.>").await;

    let alice_token = realm
        .token_by_password("nats-cli", "alice", alice_password)
        .await;
    let sub = jwt_claims(&alice_token)["sub"]
        .as_str()
        .expect("sub")
        .to_owned();
    let decision = check(&stack.config_path(), &alice_token);
    assert_eq!(decision["rules"], json!(["nats-users"]), "{decision}");
    assert_eq!(
        sorted(&decision["permissions"]["sub"]["allow"]),
        sorted(&json!(["app.nats-cli.>", format!("_INBOX.{sub}.>")])),
        "{decision}"
    );
    let mut alice = connect_token(&stack.nats.url(), &alice_token)
        .await
        .expect("alice connects through the compose files");
    round_trip(&alice.nats, "app.nats-cli.notes").await;
    expect_subscribe_denied(&mut alice, "_INBOX.>").await;
}
