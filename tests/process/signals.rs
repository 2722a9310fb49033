//! Signals reach the binary: SIGHUP reloads the policy (a broken one is
//! logged and the old one stays), SIGTERM drains and exits 0, also with the
//! server gone.

use std::time::Duration;

use crate::support::*;

const SHORT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policy_and_keeps_it_when_the_new_one_is_broken() {
    let env = Env::start(EnvOptions {
        policy_extra: "watch = false",
        start_service: false,
        ..Default::default()
    })
    .await;
    let service = ServiceProcess::start(&env.config_path());
    let url = env.nats.url();
    let token = env.token("ivan", "nats");
    assert!(connect_token(&url, &token).await.is_ok());

    let policy = env.dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        DEFAULT_POLICY.replace("scopes = [\"nats\"]", "scopes = [\"nats:admin\"]"),
    )
    .unwrap();
    service.signal("-HUP");
    assert!(
        wait_until(SHORT, || service.log().contains("policy reloaded")),
        "{}",
        service.log()
    );
    env.assert_refused(connect_token(&url, &token).await, "no rule grants access")
        .await;

    std::fs::write(
        &policy,
        "[[rules]]\nname = \"broken\"\ngrant = [\"missing\"]\n",
    )
    .unwrap();
    service.signal("-HUP");
    assert!(
        wait_until(SHORT, || service.log().contains("policy reload failed")),
        "{}",
        service.log()
    );
    let admin = env.token("ivan", "nats:admin");
    let client = connect_token(&url, &admin)
        .await
        .expect("previous policy still in force");
    round_trip(&client.nats, "app.ivan.x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero_even_with_the_server_gone() {
    let mut env = Env::start(EnvOptions {
        start_service: false,
        ..Default::default()
    })
    .await;
    let mut service = ServiceProcess::start(&env.config_path());
    let client = connect_token(&env.nats.url(), &env.token("gina", "nats"))
        .await
        .expect("connects");
    round_trip(&client.nats, "app.gina.x").await;
    env.nats.stop();
    let status = service.stop().expect("service exits on SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        service.log()
    );
    assert!(service.log().contains("SIGTERM"), "{}", service.log());
    assert!(service.log().contains("stopped"), "{}", service.log());
}
