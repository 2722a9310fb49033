//! Checks the integration harness itself (tests/support), so that a failure
//! in the end-to-end tests points at the service, not at the scaffolding:
//! a real nats-server round trip and restart, the config it is given for the
//! callout, and the in-process IdP's discovery, JWKS, rotation, outage switch
//! and fetch counter, with keys whose tokens verify against the served JWKs.

use std::time::Duration;

use crate::support::*;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use nats_oidc_callout::issuer::LocalKey;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_round_trip_restart_and_stop() {
    let mut nats = NatsServer::start_any_port(&format!("listen: 127.0.0.1:{PORT}\n"));
    let port = nats.port;
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{port}"));

    let client = connect_anonymous(&nats.url()).await.expect("connect");
    round_trip(&client.nats, "smoke.one").await;
    drop(client);
    assert!(
        nats.log().contains("Server is ready"),
        "server log is captured:\n{}",
        nats.log()
    );

    nats.restart();
    assert_eq!(nats.port, port, "restart keeps the port");
    let client = connect_anonymous(&nats.url()).await.expect("reconnect");
    round_trip(&client.nats, "smoke.two").await;
    drop(client);
    assert_eq!(
        nats.log().matches("Server is ready").count(),
        2,
        "the log spans restarts"
    );

    nats.stop();
    assert!(
        connect_anonymous(&nats.url()).await.is_err(),
        "a stopped server accepts nothing"
    );
}

/// A port someone else holds is reported as taken, not mistaken for the
/// server: a connect there would succeed, the server's own log says no.
#[test]
fn a_taken_port_is_reported_not_mistaken_for_the_server() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let err = NatsServer::try_start(port, &format!("listen: 127.0.0.1:{port}\n"))
        .err()
        .expect("nats-server cannot listen on a taken port");
    assert!(port_taken(&err), "{err}");
}

#[test]
fn callout_server_config_is_accepted_by_nats_server() {
    let dir = tempfile::tempdir().unwrap();
    let account = nkeys::KeyPair::new_account();
    let xkey = nkeys::XKey::new();
    for xkey_pub in [None, Some(xkey.public_key())] {
        let text = callout_server_config(free_port(), &account.public_key(), xkey_pub.as_deref());
        let path = dir.path().join("nats-server.conf");
        std::fs::write(&path, &text).unwrap();
        let out = std::process::Command::new(nats_server_bin())
            .arg("-c")
            .arg(&path)
            .arg("-t")
            .output()
            .expect("run nats-server -t");
        assert!(
            out.status.success(),
            "nats-server rejects the callout config:\n{text}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// GETs `url`, returning the status and the body parsed as JSON (Null if not JSON).
async fn get(http: &reqwest::Client, url: &str) -> reqwest::Result<(u16, Value)> {
    let resp = http.get(url).send().await?;
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// Verifies `token` with the JWK of the same `kid` from `jwks`, as a relying
/// party would: issuer, audience and the key's own algorithm pinned.
fn verify_with_jwks(jwks: &Value, token: &str, issuer: &str) -> Value {
    let kid = jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid");
    let jwk: Jwk = serde_json::from_value(
        jwks["keys"]
            .as_array()
            .expect("keys array")
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .unwrap_or_else(|| panic!("kid {kid} not in {jwks}"))
            .clone(),
    )
    .expect("a JWK");
    let alg = Algorithm::try_from(jwk.common.key_algorithm.expect("alg on the JWK"))
        .expect("a signing alg");
    let mut validation = Validation::new(alg);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[issuer]);
    let key = DecodingKey::from_jwk(&jwk).expect("decoding key from JWK");
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("{alg:?} token does not verify: {e}"))
        .claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_serves_discovery_and_jwks_that_verify_tokens() {
    let rsa = LocalKey::generate(Algorithm::RS256).expect("rsa key");
    let ec = LocalKey::generate(Algorithm::ES256).expect("ec key");
    let idp = Idp::start(&[&rsa, &ec]).await;
    assert!(idp.issuer.starts_with("http://127.0.0.1:"));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let (status, doc) = get(
        &http,
        &format!("{}/.well-known/openid-configuration", idp.issuer),
    )
    .await
    .expect("discovery");
    assert_eq!(status, 200);
    assert_eq!(doc["issuer"], idp.issuer.as_str());
    let jwks_uri = doc["jwks_uri"].as_str().expect("jwks_uri").to_owned();
    assert_eq!(jwks_uri, format!("{}/jwks", idp.issuer));
    assert_eq!(idp.jwks_fetches(), 0, "discovery is not a JWKS fetch");

    let (status, jwks) = get(&http, &jwks_uri).await.expect("jwks");
    assert_eq!(status, 200);
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
    assert_eq!(idp.jwks_fetches(), 1);
    for jwk in jwks["keys"].as_array().unwrap() {
        assert_eq!(jwk["use"], "sig");
        assert!(jwk["kid"].is_string() && jwk["alg"].is_string(), "{jwk}");
        assert!(jwk.get("d").is_none(), "no private part in a JWK: {jwk}");
    }

    let t = now();
    for key in [&rsa, &ec] {
        let claims = json!({"iss": idp.issuer, "aud": AUDIENCE, "sub": "alice",
                            "scope": "nats", "iat": t, "exp": t + 300});
        let token = key.sign(&claims);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, key.alg);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(verify_with_jwks(&jwks, &token, &idp.issuer), claims);
    }

    let (status, _) = get(&http, &format!("{}/nope", idp.issuer))
        .await
        .expect("unknown path answers");
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_rotation_outage_and_fetch_counter() {
    let old = LocalKey::generate(Algorithm::RS256).expect("rsa key");
    let new = LocalKey::generate(Algorithm::RS256).expect("rsa key");
    let idp = Idp::start(&[&old]).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let jwks_uri = format!("{}/jwks", idp.issuer);
    let kids = |jwks: &Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };

    let (_, jwks) = get(&http, &jwks_uri).await.expect("jwks");
    assert_eq!(kids(&jwks), [old.kid.as_str()]);

    idp.set_keys(&[&new]);
    let (_, jwks) = get(&http, &jwks_uri).await.expect("jwks after rotation");
    assert_eq!(kids(&jwks), [new.kid.as_str()], "rotation swaps the JWKS");
    assert_eq!(idp.jwks_fetches(), 2);

    idp.set_down(true);
    for url in [
        jwks_uri.clone(),
        format!("{}/.well-known/openid-configuration", idp.issuer),
    ] {
        let (status, _) = get(&http, &url).await.expect("a down IdP still answers");
        assert_eq!(status, 503, "{url} while down");
    }
    assert_eq!(idp.jwks_fetches(), 2, "failed fetches serve no JWKS");

    idp.set_down(false);
    let (status, jwks) = get(&http, &jwks_uri).await.expect("jwks after outage");
    assert_eq!(status, 200);
    assert_eq!(kids(&jwks), [new.kid.as_str()]);
    assert_eq!(idp.jwks_fetches(), 3);

    let issuer = idp.issuer.clone();
    drop(idp);
    let gone = wait_until_async(Duration::from_secs(5), || {
        let (http, url) = (http.clone(), format!("{issuer}/jwks"));
        async move { http.get(url).send().await.is_err() }
    })
    .await;
    assert!(gone, "a dropped IdP stops listening");
}
