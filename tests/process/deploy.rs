//! The files docker-compose.yml mounts (deploy/) are the ones tested here,
//! run by `support::deploy::DeployStack`; with a real Keycloak serving the
//! compose realm they run in tests/peers/keycloak.rs.

use std::path::Path;

use crate::support::deploy::DeployStack;
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
        "./deploy/keycloak/realm-nats.json:/opt/keycloak/data/import/realm-nats.json",
    ] {
        assert!(
            compose.contains(mount),
            "docker-compose.yml does not mount {mount}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_configs_without_keycloak_refuse_with_the_reason() {
    let stack = DeployStack::start(None);
    // Keycloak's compose name does not resolve here: the service runs, and
    // refuses with the reason.
    let key =
        nats_oidc_callout::issuer::LocalKey::generate(jsonwebtoken::Algorithm::RS256).unwrap();
    let token = key.sign(&serde_json::json!({"iss": "http://localhost:8080/realms/nats", "aud": "nats", "exp": now() + 60}));
    match connect_token(&stack.nats.url(), &token).await {
        Ok(_) => panic!("a token of an unreachable issuer connected"),
        Err(e) => assert_eq!(
            e.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation,
            "{e}"
        ),
    }
    let needle = "Auth callout service returned an error: keys unavailable for issuer \"keycloak\"";
    assert!(
        wait_until(std::time::Duration::from_secs(5), || stack
            .nats
            .log()
            .contains(needle)),
        "{}\n{}",
        stack.nats.log(),
        stack.service.log()
    );
    let ready = reqwest::get(format!("{}/readyz", stack.http_url()))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
}
