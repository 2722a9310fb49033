//! The callout following its IdP's keys end to end: an explicit JWKS URI,
//! rotation on an unknown kid, held keys through an outage, an IdP dead at
//! startup, and floods of unknown kids costing one fetch.

use std::time::Duration;

use crate::support::*;
use jsonwebtoken::{Algorithm, Header};
use nats_oidc_callout::issuer::LocalKey;

const SHORT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_an_explicit_jwks_uri() {
    // A path discovery does not name: a service ignoring jwks_uri would
    // fetch discovery and /jwks instead.
    let env = Env::start(EnvOptions {
        issuer_extra: &format!("jwks_uri = \"{{idp}}{ALT_JWKS_PATH}\""),
        ..Default::default()
    })
    .await;
    let client = connect_token(&env.nats.url(), &env.token("jack", "nats"))
        .await
        .expect("connects");
    round_trip(&client.nats, "app.jack.x").await;
    assert!(
        env.idp.hits(ALT_JWKS_PATH) >= 1,
        "the JWKS at jwks_uri was never fetched"
    );
    assert_eq!(env.idp.hits("/jwks"), 0, "fetched the JWKS discovery names");
    assert_eq!(env.idp.hits("/.well-known/openid-configuration"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_is_picked_up_on_unknown_kid() {
    let env = Env::start(EnvOptions::default()).await;
    let fetches_before = env.idp.jwks_fetches();
    let new_key = LocalKey::generate(Algorithm::ES256).unwrap();
    env.idp.set_keys(&[&new_key]);

    let client = connect_token(&env.nats.url(), &new_key.sign(&env.claims("erin", "nats")))
        .await
        .expect("new key accepted");
    round_trip(&client.nats, "app.erin.x").await;
    assert_eq!(
        env.idp.jwks_fetches(),
        fetches_before + 1,
        "exactly one refetch"
    );

    // The retired key is gone, and the refetch rate limit holds: no new fetch.
    env.assert_refused(
        connect_token(&env.nats.url(), &env.token("erin", "nats")).await,
        "no key with kid",
    )
    .await;
    assert_eq!(env.idp.jwks_fetches(), fetches_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_survive_an_idp_outage() {
    let env = Env::start(EnvOptions {
        issuer_extra: "jwks_refresh = \"1s\"",
        ..Default::default()
    })
    .await;
    env.idp.set_down(true);
    // Wait for a refresh to fail (the event, not a fixed time).
    assert!(
        wait_until(SHORT, || env
            .service()
            .log()
            .contains("JWKS refresh failed")),
        "{}",
        env.service().log()
    );
    let client = connect_token(&env.nats.url(), &env.token("frank", "nats"))
        .await
        .expect("cached keys still verify");
    round_trip(&client.nats, "app.frank.x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_idp_at_startup_denies_until_it_recovers() {
    let env = Env::start(EnvOptions {
        idp_down_at_start: true,
        ..Default::default()
    })
    .await;
    let token = env.token("hana", "nats");
    env.assert_refused(
        connect_token(&env.nats.url(), &token).await,
        "keys unavailable for issuer \"corp\"",
    )
    .await;
    env.idp.set_down(false);
    let client = connect_token_eventually(&env.nats.url(), &token)
        .await
        .unwrap_or_else(|| panic!("never recovered:\n{}", env.service().log()));
    round_trip(&client.nats, "app.hana.x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_flood_and_same_token_storm_cost_at_most_one_fetch() {
    // The refetch limit is what is measured: the tarpit would stretch the
    // flood past `jwks_min_refetch` (`flood.rs` tests the tarpit).
    let env = Env::start(EnvOptions {
        config_extra: "[flood]\nenabled = false\n",
        ..Default::default()
    })
    .await;
    let url = env.nats.url();
    let before = env.idp.jwks_fetches();
    let forged: Vec<String> = (0..1000)
        .map(|i| {
            let mut h = Header::new(Algorithm::RS256);
            h.kid = Some(format!("made-up-{i}"));
            env.key.sign_with_header(&h, &env.claims("mallory", "nats"))
        })
        .collect();
    assert_eq!(storm(&url, forged).await, 0, "no forged kid may connect");
    let flood_fetches = env.idp.jwks_fetches() - before;
    eprintln!("JWKS fetches during a 1000-unknown-kid flood: {flood_fetches}");
    assert!(flood_fetches <= 1, "{flood_fetches} fetches");

    let before = env.idp.jwks_fetches();
    let token = env.token("storm", "nats");
    assert_eq!(storm(&url, vec![token; 1000]).await, 1000);
    let storm_fetches = env.idp.jwks_fetches() - before;
    eprintln!("JWKS fetches during a 1000-connect same-token storm: {storm_fetches}");
    assert_eq!(storm_fetches, 0);
}
