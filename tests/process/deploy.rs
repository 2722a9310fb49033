//! The files docker-compose.yml mounts (deploy/) are the ones tested here:
//! nats-server runs deploy/nats-server.conf as is, the service runs
//! deploy/callout.toml and deploy/policy.toml with only the NATS address and
//! the HTTP port moved to loopback (the compose network has no Keycloak here).

use std::path::Path;
use std::process::Command;

use crate::support::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn compose_mounts_the_tested_files() {
    let compose = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    for mount in [
        "./deploy/nats-server.conf:/etc/nats/nats-server.conf",
        "./deploy/callout.toml:/etc/nats-oidc-callout/callout.toml",
        "./deploy/policy.toml:/etc/nats-oidc-callout/policy.toml",
    ] {
        assert!(
            compose.contains(mount),
            "docker-compose.yml does not mount {mount}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_configs_run_against_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("keys")).unwrap();
    let issuer = nkeys::KeyPair::new_account();
    let xkey = nkeys::XKey::new();
    write_secret(&d.join("keys/issuer.nk"), &issuer.seed().unwrap());
    write_secret(&d.join("keys/xkey.nk"), &xkey.seed().unwrap());
    write_secret(&d.join("keys/auth.password"), "deploy-test-password");

    let check = Command::new(nats_server_bin())
        .args(["-t", "-c"])
        .arg(root().join("deploy/nats-server.conf"))
        .env("CALLOUT_ISSUER", issuer.public_key())
        .env("CALLOUT_XKEY", xkey.public_key())
        .env("AUTH_PASSWORD", "deploy-test-password")
        .env("NATS_LISTEN", "127.0.0.1:4222")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let conf = std::fs::read_to_string(root().join("deploy/nats-server.conf"))
        .unwrap()
        // The server picks its port (-1) and says which.
        .replace("$NATS_LISTEN", &format!("127.0.0.1:{PORT}"))
        .replace("$CALLOUT_ISSUER", &issuer.public_key())
        .replace("$CALLOUT_XKEY", &xkey.public_key())
        .replace("$AUTH_PASSWORD", "deploy-test-password");
    let nats = NatsServer::start_any_port(&conf);

    let config = std::fs::read_to_string(root().join("deploy/callout.toml"))
        .unwrap()
        .replace("nats://nats:4222", &nats.url())
        .replace("0.0.0.0:9090", "127.0.0.1:0");
    std::fs::write(d.join("callout.toml"), config).unwrap();
    std::fs::copy(root().join("deploy/policy.toml"), d.join("policy.toml")).unwrap();
    let validate = run_cli(&[
        "validate",
        "--config",
        d.join("callout.toml").to_str().unwrap(),
    ]);
    assert!(
        validate.status.success(),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );

    let service = ServiceProcess::start(&d.join("callout.toml"));
    // No Keycloak here: the service runs, and refuses with the reason.
    let key =
        nats_oidc_callout::issuer::LocalKey::generate(jsonwebtoken::Algorithm::RS256).unwrap();
    let token = key.sign(&serde_json::json!({"iss": "http://keycloak:8080/realms/nats", "aud": "nats", "exp": now() + 60}));
    match connect_token(&nats.url(), &token).await {
        Ok(_) => panic!("a token of an unreachable issuer connected"),
        Err(e) => assert_eq!(
            e.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation,
            "{e}"
        ),
    }
    let needle = "Auth callout service returned an error: keys unavailable for issuer \"keycloak\"";
    assert!(
        wait_until(std::time::Duration::from_secs(5), || nats
            .log()
            .contains(needle)),
        "{}\n{}",
        nats.log(),
        service.log()
    );
    let ready = reqwest::get(format!("http://{}/readyz", service.http_addr()))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
}
