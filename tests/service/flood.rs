//! Floods, end to end: a source whose connects keep failing has its
//! denials held in the tarpit (`[flood]`), still signed and with their
//! reason; other sources, and every allowed connect, are not held and
//! lose no `max_in_flight` slot to the held ones. Judged by counts and
//! order, never by elapsed time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::support::*;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The failing source: another loopback address than the clients' own.
const FLOODER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const MALFORMED: &str = "malformed token: expected a JWT with 3 dot-separated parts";

/// A raw connect from `source` with `token`: true when the server refused
/// it (`-ERR`), false when it let it in (`PONG`).
async fn raw_connect(server: SocketAddr, source: Ipv4Addr, token: String) -> bool {
    let attempt = async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
        let mut stream = socket.connect(server).await?;
        let connect = serde_json::json!({"verbose": false, "pedantic": false, "protocol": 1,
            "lang": "test", "version": "0", "auth_token": token});
        stream
            .write_all(format!("CONNECT {connect}\r\nPING\r\n").as_bytes())
            .await?;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed without an answer"));
            }
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if text.contains("-ERR") {
                return Ok(true);
            }
            if text.contains("PONG") {
                return Ok(false);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .expect("an answer within the server's authorization timeout")
        .expect("raw connect")
}

/// Decisions about connects from `host`, in order.
fn decisions_from(env: &Env, host: &str) -> Vec<Map<String, Value>> {
    env.service()
        .decisions()
        .into_iter()
        .filter(|d| d["client_host"] == host)
        .collect()
}

fn held(d: &Map<String, Value>) -> bool {
    d.contains_key("held_ms")
}

async fn wait_for_decisions(env: &Env, host: &str, n: usize) -> Vec<Map<String, Value>> {
    let seen = wait_until_async(Duration::from_secs(10), || async {
        decisions_from(env, host).len() >= n
    })
    .await;
    assert!(
        seen,
        "{n} decisions from {host}: {:#?}",
        env.service().decisions()
    );
    decisions_from(env, host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sources_denials_are_held_and_other_sources_are_not() {
    // One slot: were a held denial to keep its slot, the other source's
    // connect would be refused as saturated.
    let env = Env::start(EnvOptions {
        config_extra: "[flood]\nfailures = 3\nwindow = \"1m\"\nhold = \"1s\"\n\
                       [http]\nlisten = \"127.0.0.1:0\"\n",
        service_nats_extra: "max_in_flight = 1",
        ..Default::default()
    })
    .await;
    let url = env.nats.url();
    let server: SocketAddr = url
        .trim_start_matches("nats://")
        .parse()
        .expect("host:port");
    let flooder = FLOODER.to_string();

    // Below the threshold the source's denials go out at once; the third
    // failure makes it a failing source, and that denial is held.
    for i in 0..3 {
        assert!(raw_connect(server, FLOODER, format!("not-a-jwt-{i}")).await);
    }
    let first = wait_for_decisions(&env, &flooder, 3).await;
    assert_eq!(
        first.iter().map(held).collect::<Vec<_>>(),
        [false, false, true],
        "{first:#?}"
    );
    let ms = first[2]["held_ms"].as_u64().expect("held_ms is a number");
    assert!((1..=1000).contains(&ms), "{:#?}", first[2]);
    assert!(first.iter().all(|d| d["reason"] == MALFORMED), "{first:#?}");

    // Two more from the failing source, asked first and held; one after
    // the other, since two at once could find the one slot taken by the
    // other's decision (saturated) ...
    let mut held_connects = Vec::new();
    for i in 3..5 {
        held_connects.push(tokio::spawn(raw_connect(
            server,
            FLOODER,
            format!("not-a-jwt-{i}"),
        )));
        wait_for_decisions(&env, &flooder, i + 1).await;
    }
    let now_held = decisions_from(&env, &flooder);
    assert!(now_held[3..].iter().all(held), "{now_held:#?}");

    // ... while a valid token from this source is let in, in the one slot,
    // before the held answers go out.
    let client = connect_token(&url, &env.token("ann", "nats"))
        .await
        .expect("a valid token from another source is let in");
    assert!(
        held_connects.iter().all(|h| !h.is_finished()),
        "a held denial was answered before the other source's connect"
    );
    round_trip(&client.nats, "app.ann.x").await;

    // The held denials arrive, signed and with their reason.
    for h in held_connects {
        assert!(h.await.unwrap(), "a held connect was let in");
    }
    // This source's own failure is not held: it has not failed enough.
    let expired = {
        let mut c = env.claims("ann", "nats");
        c["exp"] = (now() - 600).into();
        env.key.sign(&c)
    };
    env.assert_refused(connect_token(&url, &expired).await, "token expired")
        .await;
    let ours = decisions_from(&env, "127.0.0.1");
    assert_eq!(
        ours.iter()
            .map(|d| d["decision"].clone())
            .collect::<Vec<_>>(),
        ["allow", "deny"],
        "{ours:#?}"
    );
    assert!(!ours.iter().any(held), "{ours:#?}");

    // The server logs the service's reason for every one of the five.
    let needle = format!("Auth callout service returned an error: {MALFORMED}");
    assert!(
        wait_until_async(Duration::from_secs(5), || async {
            env.nats.count(&needle) >= 5
        })
        .await,
        "server log:\n{}",
        env.nats.log()
    );
    let metrics = http_get(&format!(
        "http://{}/metrics",
        env.service().http.expect("http bound")
    ))
    .await
    .1;
    for line in [
        "nats_oidc_callout_flood_held_total 3",
        "nats_oidc_callout_flood_held_now 0",
        "nats_oidc_callout_flood_sources_failing 1",
        // The flooder and the client that sent an expired token.
        "nats_oidc_callout_flood_sources_tracked 2",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_guard_off_no_denial_is_held() {
    let env = Env::start(EnvOptions {
        config_extra: "[flood]\nenabled = false\nfailures = 1\n",
        ..Default::default()
    })
    .await;
    let server: SocketAddr = env
        .nats
        .url()
        .trim_start_matches("nats://")
        .parse()
        .expect("host:port");
    for i in 0..3 {
        assert!(raw_connect(server, FLOODER, format!("not-a-jwt-{i}")).await);
    }
    let decisions = wait_for_decisions(&env, &FLOODER.to_string(), 3).await;
    assert!(!decisions.iter().any(held), "{decisions:#?}");
}
