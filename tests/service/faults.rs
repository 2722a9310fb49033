//! Fault injection, end to end: an IdP that hangs or serves garbage, requests
//! replayed or forged on the callout subject, saturation. (Floods and the
//! memory they cost: `process/memory.rs`, which measures the binary.)

use std::time::Duration;

use crate::support::*;
use futures::StreamExt;
use jsonwebtoken::Algorithm;
use nats_oidc_callout::issuer::LocalKey;
use nats_oidc_callout::protocol::{decode, decode_request, encode, AuthorizationResponse};
use nkeys::KeyPairType;

const SHORT: Duration = Duration::from_secs(5);

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(SHORT, sub.next())
        .await
        .expect("message seen")
        .expect("subscription open")
}

async fn auth_user(url: &str) -> async_nats::Client {
    connect_user_pass(url, "auth", "authpw")
        .await
        .expect("the callout account's own user connects")
        .nats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_idp_costs_a_denial_with_a_reason_not_the_known_keys() {
    let env = Env::start(EnvOptions {
        issuer_extra: "jwks_min_refetch = \"1s\"",
        ..Default::default()
    })
    .await;
    let url = env.nats.url();
    let new_key = LocalKey::generate(Algorithm::ES256).unwrap();
    env.idp.set_keys(&[&env.key, &new_key]);
    env.idp.set_fault(IdpFault::Hang);

    // The refetch for the new kid hangs; the per-request deadline answers
    // before the server's own timeout, with a reason.
    let rotated = new_key.sign(&env.claims("rhea", "nats"));
    env.assert_refused(
        connect_token(&url, &rotated).await,
        "decision took too long (deadline exceeded)",
    )
    .await;
    // Keys already held keep working while the fetch hangs.
    let client = connect_token(&url, &env.token("rhea", "nats"))
        .await
        .expect("known key accepted during the hang");
    round_trip(&client.nats, "app.rhea.x").await;

    env.idp.set_fault(IdpFault::None);
    let client = connect_token_eventually(&url, &rotated)
        .await
        .unwrap_or_else(|| panic!("new key never picked up:\n{}", env.service().log()));
    round_trip(&client.nats, "app.rhea.y").await;
    // The hung fetch itself ended at the service's fetch timeout.
    let timed_out = wait_until_async(Duration::from_secs(10), || async {
        env.service()
            .log()
            .contains("JWKS refetch for an unknown kid failed")
    })
    .await;
    assert!(timed_out, "{}", env.service().log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_or_oversized_jwks_keeps_the_last_good_keys() {
    let env = Env::start(EnvOptions {
        issuer_extra: "jwks_refresh = \"1s\"",
        ..Default::default()
    })
    .await;
    let url = env.nats.url();
    let stranger = LocalKey::generate(Algorithm::RS256).unwrap();
    for (fault, logged) in [
        (IdpFault::Garbage, "JWKS is not valid JSON"),
        (IdpFault::Oversized, "document larger than"),
    ] {
        env.idp.set_fault(fault);
        let before = env.idp.jwks_fetches();
        let refreshed = wait_until_async(Duration::from_secs(10), || async {
            env.idp.jwks_fetches() >= before + 2 && env.service().log().contains(logged)
        })
        .await;
        assert!(refreshed, "{fault:?}: {}", env.service().log());
        let client = connect_token(&url, &env.token("gus", "nats"))
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: last good keys must still verify: {e}"));
        round_trip(&client.nats, "app.gus.x").await;
        let unknown = stranger.sign(&env.claims("gus", "nats"));
        env.assert_refused(connect_token(&url, &unknown).await, "no key with kid")
            .await;
    }
}

/// Requests can only come from the server: nats-server refuses a client's
/// publish on the request subject, even from the callout account's user.
/// The service checks signer, freshness and addressing anyway (unit tests in
/// `callout`). Here: the answer the service gives is bound to one server
/// and one user (asserted on the response), so another server refuses it;
/// that refusal and the publish violation are nats-server's, shown as facts
/// the service's threat model relies on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_replayed_to_another_server_and_forged_requests_are_refused() {
    let env = Env::start(EnvOptions {
        xkey: false,
        ..Default::default()
    })
    .await;
    let url = env.nats.url();
    // Whoever holds the callout account's credentials sees requests and answers.
    let spy = auth_user(&url).await;
    let mut requests = spy.subscribe("$SYS.REQ.USER.AUTH").await.unwrap();
    let mut answers = spy.subscribe("$SYS._INBOX.>").await.unwrap();
    spy.flush().await.unwrap();
    let token = env.token("vic", "nats");
    let _victim = connect_token(&url, &token).await.expect("allowed");
    let request = next(&mut requests).await;
    let answer = next(&mut answers).await;
    assert_eq!(Some(answer.subject.clone()), request.reply);
    let request = decode_request(std::str::from_utf8(&request.payload).unwrap()).unwrap();
    let response = decode::<AuthorizationResponse>(
        std::str::from_utf8(&answer.payload).unwrap(),
        KeyPairType::Account,
    )
    .unwrap();
    assert_eq!(response.data.aud, request.nats.server_id.id);
    assert_eq!(response.data.sub, request.nats.user_nkey);
    assert!(response.nats.jwt.is_some());

    // Handed to another server that trusts the same issuer, it is refused.
    let other = NatsServer::start_any_port(&env.nats_config);
    let attacker = auth_user(&other.url()).await;
    let mut theirs = attacker.subscribe("$SYS.REQ.USER.AUTH").await.unwrap();
    attacker.flush().await.unwrap();
    let stolen = answer.payload.clone();
    let replay = tokio::spawn(async move {
        let msg = theirs.next().await.expect("the other server asks");
        attacker
            .publish(msg.reply.expect("reply subject"), stolen)
            .await
            .unwrap();
        attacker.flush().await.unwrap();
    });
    let refused = connect_token(&other.url(), &token).await;
    assert!(refused.is_err(), "a replayed response was accepted");
    tokio::time::timeout(SHORT, replay).await.unwrap().unwrap();
    let rejected = wait_until_async(SHORT, || async {
        other.log().contains("auth callout response is not for")
    })
    .await;
    assert!(rejected, "{}", other.log());

    // A forged request (signed by a non-server key) cannot even be sent.
    let mut forged = request.clone();
    let forged = encode(&mut forged, &nkeys::KeyPair::new_account()).unwrap();
    spy.publish("$SYS.REQ.USER.AUTH", forged.into())
        .await
        .unwrap();
    spy.flush().await.unwrap();
    let blocked = wait_until_async(SHORT, || async {
        env.nats
            .log()
            .contains("Publish Violation - Subject \"$SYS.REQ.USER.AUTH\"")
    })
    .await;
    assert!(blocked, "{}", env.nats.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_service_denies_at_once_with_a_reason() {
    let mut env = Env::start(EnvOptions {
        issuer_extra: "jwks_min_refetch = \"1s\"",
        service_nats_extra: "max_in_flight = 1\nrequest_timeout = \"5s\"",
        ..Default::default()
    })
    .await;
    // A long server timeout keeps the held request in flight long enough
    // for the next connect to arrive, even on a loaded machine.
    let longer = env
        .nats_config
        .replace("timeout: 2", "timeout: 6")
        .replace(PORT, &env.nats.port.to_string());
    env.nats.reconfigure(&longer);
    let url = env.nats.url();
    let ready = connect_token_eventually(&url, &env.token("ready", "nats")).await;
    assert!(ready.is_some(), "{}", env.service().log());

    // One request held in flight by a hanging key refetch...
    env.idp.set_fault(IdpFault::Hang);
    let stranger = LocalKey::generate(Algorithm::ES256).unwrap();
    let held = stranger.sign(&env.claims("held", "nats"));
    // Held past the server's first PING (2 s), the client may report the
    // connection open before the answer; the server's log is what counts.
    let _first = tokio::spawn({
        let url = url.clone();
        async move { connect_token(&url, &held).await.is_ok() }
    });
    let hanging = wait_until_async(SHORT, || async { env.idp.hung_requests() > 0 }).await;
    assert!(hanging, "{}", env.service().log());
    // ...so the next one is refused at once, by the service, with a reason.
    env.assert_refused(
        connect_token(&url, &env.token("next", "nats")).await,
        "service saturated",
    )
    .await;
    // The held one ends in a denial with a reason, never a grant.
    let denied = wait_until_async(Duration::from_secs(10), || async {
        let log = env.nats.log();
        log.contains("returned an error: decision took too long")
            || log.contains("returned an error: no key with kid")
    })
    .await;
    assert!(denied, "{}\n{}", env.service().log(), env.nats.log());
    assert!(
        !env.service()
            .decisions()
            .iter()
            .any(
                |d| d.get("subject").and_then(|v| v.as_str()) == Some("held")
                    && d.get("decision").and_then(|v| v.as_str()) == Some("allow")
            ),
        "the held request was granted"
    );
}
