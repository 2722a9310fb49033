//! The e2e tier against a real Keycloak (`support::keycloak`, one server per
//! test binary run): tokens from Keycloak's own token endpoint for the realm
//! deploy/keycloak/realm-nats.json go through a real nats-server and the
//! service, whose policy is the shipped one (policies/keycloak.toml, or
//! deploy/policy.toml for the compose files). Tests that only read the realm
//! share one import of it under its compose name, `nats`; the key-rotation
//! test imports its own copy.

mod compose;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::deploy::DeployStack;
use crate::support::keycloak::{jwt_claims, jwt_kid, Keycloak, Realm};
use crate::support::*;
use serde_json::{json, Value};

const SHORT: Duration = Duration::from_secs(5);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn realm_file() -> PathBuf {
    root().join("deploy/keycloak/realm-nats.json")
}

/// The realm `nats`, imported once, and alice's password, set once at run
/// time through the admin API (the realm file carries no password).
struct NatsRealm {
    realm: Realm,
    alice_password: String,
}

async fn nats_realm() -> &'static NatsRealm {
    static REALM: tokio::sync::OnceCell<NatsRealm> = tokio::sync::OnceCell::const_new();
    REALM
        .get_or_init(|| async {
            let realm = Keycloak::shared().import_realm(&realm_file(), "nats").await;
            let alice_password = format!("pw-{}", nkeys::KeyPair::new_user().public_key());
            realm.set_password("alice", &alice_password).await;
            NatsRealm {
                realm,
                alice_password,
            }
        })
        .await
}

/// nats-server and the service trusting `realm` as issuer "keycloak", with
/// policies/keycloak.toml and `/metrics`; `issuer_extra` goes into its
/// `[[issuer]]`.
async fn keycloak_env(realm: &Realm, issuer_extra: &str) -> Env {
    let policy = std::fs::read_to_string(root().join("policies/keycloak.toml")).unwrap();
    let issuer = realm.issuer();
    Env::start(EnvOptions {
        policy: &policy,
        external_issuer: Some((&issuer, "nats")),
        issuer_name: "keycloak",
        issuer_extra,
        config_extra: "[http]\nlisten = \"127.0.0.1:0\"\n",
        ..Default::default()
    })
    .await
}

/// `check --token` on the service's own config: the exact decision.
fn check(config: &Path, token: &str) -> Value {
    let out = run_cli(&[
        "check",
        "--config",
        config.to_str().unwrap(),
        "--token",
        token,
    ]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn allow(subjects: Value) -> Value {
    json!({"allow": subjects, "deny": []})
}

/// One sample of the service's /metrics.
async fn metric(env: &Env, series: &str) -> f64 {
    let addr = env.service().http.expect("[http] listen");
    let (_, text) = http_get(&format!("http://{addr}/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

async fn expect_publish_denied(client: &mut Client, subject: &str) {
    client
        .nats
        .publish(subject.to_owned(), "x".into())
        .await
        .unwrap();
    client.nats.flush().await.unwrap();
    client
        .expect_error(
            &format!("Permissions Violation for Publish to \"{subject}\""),
            SHORT,
        )
        .await;
}

async fn expect_subscribe_denied(client: &mut Client, subject: &str) {
    let _sub = client.nats.subscribe(subject.to_owned()).await.unwrap();
    client.nats.flush().await.unwrap();
    client
        .expect_error(
            &format!("Permissions Violation for Subscription to \"{subject}\""),
            SHORT,
        )
        .await;
}

/// Sorted, for comparing subject lists whatever their order.
fn sorted(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|s| s.as_str().expect("a subject").to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_token_gets_realm_and_client_roles_through_keycloak_policy() {
    let realm = &nats_realm().await.realm;
    let secret = realm.client_secret("ci-bot").await;
    let token = realm.token_by_client_credentials("ci-bot", &secret).await;
    let claims = jwt_claims(&token);
    assert_eq!(claims["azp"], "ci-bot", "{claims}");
    assert_eq!(
        claims["resource_access"]["nats"]["roles"],
        json!(["publisher"]),
        "{claims}"
    );
    // The service account's own id, as Keycloak made it at import.
    let sa = claims["sub"].as_str().expect("sub").to_owned();

    let env = keycloak_env(realm, "").await;
    let decision = check(&env.config_path(), &token);
    assert_eq!(decision["allowed"], true, "{decision}");
    assert_eq!(decision["issuer"], "keycloak");
    assert_eq!(
        decision["rules"],
        json!(["inventory-writers", "readers"]),
        "{decision}"
    );
    let perms = &decision["permissions"];
    assert_eq!(
        perms["pub"],
        allow(json!(["inventory.ci-bot.>"])),
        "{perms}"
    );
    assert_eq!(perms["sub"]["deny"], json!([]), "{perms}");
    // Replies only on its own inbox prefixes (by client id and by its id).
    assert_eq!(
        sorted(&perms["sub"]["allow"]),
        sorted(&json!([
            "_INBOX.ci-bot.>",
            format!("_INBOX.{sa}.>"),
            "inventory.>"
        ])),
        "{perms}"
    );
    assert_eq!(perms["resp"], Value::Null, "{perms}");

    let mut bot = connect_token(&env.nats.url(), &token)
        .await
        .expect("ci-bot connects with its Keycloak token");
    let d = env.claim_decision("allow", "").await;
    assert_eq!(d["rules"], "inventory-writers,readers", "{d:?}");
    assert_eq!(d["subject"], sa.as_str(), "{d:?}");
    round_trip(&bot.nats, "inventory.ci-bot.stock").await;
    expect_publish_denied(&mut bot, "inventory.other-client.stock").await;
    expect_subscribe_denied(&mut bot, "user.>").await;
    expect_subscribe_denied(&mut bot, "_INBOX.>").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_grant_user_gets_subjects_of_their_own() {
    let NatsRealm {
        realm,
        alice_password,
    } = nats_realm().await;
    let token = realm
        .token_by_password("nats-cli", "alice", alice_password)
        .await;
    let claims = jwt_claims(&token);
    assert_eq!(claims["preferred_username"], "alice", "{claims}");
    let sub = claims["sub"].as_str().expect("sub").to_owned();

    let env = keycloak_env(realm, "").await;
    let decision = check(&env.config_path(), &token);
    assert_eq!(decision["rules"], json!(["people"]), "{decision}");
    assert_eq!(decision["subject"], sub.as_str());
    let perms = &decision["permissions"];
    assert_eq!(perms["pub"], allow(json!([format!("user.{sub}.>")])));
    assert_eq!(perms["sub"]["deny"], json!([]), "{perms}");
    assert_eq!(
        sorted(&perms["sub"]["allow"]),
        sorted(&json!([format!("user.{sub}.>"), format!("_INBOX.{sub}.>")])),
        "{perms}"
    );
    assert_eq!(perms["resp"], Value::Null, "{perms}");

    // Her client uses her own inbox prefix, as the policy asks.
    let mut alice = connect_with_options(
        async_nats::ConnectOptions::with_token(token.clone())
            .custom_inbox_prefix(format!("_INBOX.{sub}")),
        &env.nats.url(),
    )
    .await
    .expect("alice connects with her Keycloak token");
    let d = env.claim_decision("allow", "").await;
    assert_eq!(d["rules"], "people", "{d:?}");
    round_trip(&alice.nats, &format!("user.{sub}.notes")).await;
    let _inbox = alice.nats.subscribe(alice.nats.new_inbox()).await.unwrap();
    expect_publish_denied(&mut alice, "user.someone-else.notes").await;
    expect_subscribe_denied(&mut alice, "inventory.>").await;
    expect_subscribe_denied(&mut alice, "_INBOX.>").await;
    assert!(
        !alice
            .errors_so_far()
            .iter()
            .any(|e| e.contains(&format!("_INBOX.{sub}."))),
        "her own inbox was refused: {:?}",
        alice.errors_so_far()
    );
    // A wrong password gets no token from Keycloak.
    let refused = reqwest::Client::new()
        .post(format!("{}/protocol/openid-connect/token", realm.issuer()))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "nats-cli"),
            ("username", "alice"),
            ("password", "not-her-password"),
        ])
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

/// Keycloak key rotation through its admin API, followed by two services:
/// A refreshes its keys hourly, so only the unknown-kid refetch can teach
/// it the new key; B refreshes every 2 s and, at its next refresh, stops
/// honouring the withdrawn key (cached verifications of it included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_key_rotation_is_followed() {
    let realm = Keycloak::shared()
        .import_realm(&realm_file(), "nats-rot")
        .await;
    let secret = realm.client_secret("ci-bot").await;
    let old = realm.rsa_signing_keys().await.remove(0);
    let old_token = realm.token_by_client_credentials("ci-bot", &secret).await;
    assert_eq!(jwt_kid(&old_token), old.kid);

    let a = keycloak_env(&realm, "jwks_refresh = \"1h\"").await;
    let b = keycloak_env(&realm, "jwks_refresh = \"2s\"").await;
    let keys = "nats_oidc_callout_jwks_keys{issuer=\"keycloak\"}";
    let fetches = "nats_oidc_callout_jwks_fetches_total{issuer=\"keycloak\"}";
    assert_eq!(metric(&a, keys).await, 1.0);
    for env in [&a, &b] {
        connect_token(&env.nats.url(), &old_token)
            .await
            .expect("a token of the original key is accepted");
    }

    // Step 1: a new active key with a higher priority signs from now on.
    let new = realm.rotate_key("rsa-rotated").await;
    assert_ne!(new.kid, old.kid);
    let new_token = realm.token_by_client_credentials("ci-bot", &secret).await;
    assert_eq!(jwt_kid(&new_token), new.kid);
    let fetched = metric(&a, fetches).await;
    connect_token(&a.nats.url(), &new_token)
        .await
        .expect("A accepts the new key's token after refetching on its unknown kid");
    assert_eq!(metric(&a, fetches).await, fetched + 1.0);
    assert_eq!(metric(&a, keys).await, 2.0);

    // Step 2: the old key is disabled and leaves the JWKS. B verified the
    // old token before (a cached verification); its next refresh ends it.
    realm.disable_key_provider(&old.provider).await;
    assert_eq!(realm.jwks_signing_kids().await, vec![new.kid.clone()]);
    let refused = wait_until_async(Duration::from_secs(30), || async {
        connect_token(&b.nats.url(), &old_token).await.is_err()
    })
    .await;
    assert!(refused, "B still accepts the withdrawn key's token");
    let reason = format!("no key with kid \"{}\" for issuer \"keycloak\"", old.kid);
    let d = b.claim_decision("deny", &reason).await;
    assert_eq!(d["reason_class"], "unknown_key", "{d:?}");
    let logged = format!("Auth callout service returned an error: {reason}");
    assert!(
        wait_until(SHORT, || b.nats.log().contains(&logged)),
        "server log lacks {logged:?}:\n{}\n{}",
        b.nats.log(),
        b.service().log()
    );
    assert_eq!(metric(&b, keys).await, 1.0);
    connect_token(&b.nats.url(), &new_token)
        .await
        .expect("B accepts the new key's token");
    // A has not reached its next refresh (an hour away): until then it
    // still honours the withdrawn key, which is what `jwks_refresh` bounds.
    connect_token(&a.nats.url(), &old_token)
        .await
        .expect("A, before its refresh, still accepts the withdrawn key");
}

/// Keycloak's introspection endpoint (RFC 7662) asked about its own JWTs
/// (`introspect_jwt`) by the client `nats`, the tokens' audience (Keycloak
/// 26.6.2 and later answer `active: false` to a client not in `aud`): a
/// token revoked at Keycloak (RFC 7009), whose signature is as good as
/// before, is refused once the cache window ends; a new token of the same
/// user still connects. Asked by a client outside `aud`, Keycloak disowns
/// every token: all are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_at_keycloak_is_refused_through_introspection() {
    let NatsRealm {
        realm,
        alice_password,
    } = nats_realm().await;
    let keys = tempfile::tempdir().unwrap();
    let secret = realm.new_client_secret("nats").await;
    let env = keycloak_env(realm, &introspecting_as("nats", &secret, keys.path())).await;
    let base = format!("http://{}", env.service().http.expect("[http] listen"));
    let ready = wait_until_async(SHORT, || async {
        http_get(&format!("{base}/readyz")).await.0 == 200
    })
    .await;
    assert!(ready, "{}", http_get(&format!("{base}/readyz")).await.1);

    let token = realm
        .token_by_password("nats-cli", "alice", alice_password)
        .await;
    let sub = jwt_claims(&token)["sub"].as_str().expect("sub").to_owned();
    let alice = match connect_token(&env.nats.url(), &token).await {
        Ok(c) => c,
        Err(e) => panic!(
            "alice's token, active at Keycloak, was refused ({e}): {:#?}",
            env.service().decisions()
        ),
    };
    round_trip(&alice.nats, &format!("user.{sub}.notes")).await;
    env.claim_decision("allow", "").await;
    let active =
        "nats_oidc_callout_introspection_calls_total{issuer=\"keycloak\",result=\"active\"}";
    assert_eq!(metric(&env, active).await, 1.0);

    realm.revoke("nats-cli", &token).await;
    // Past the 1 s window the service asks Keycloak again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    env.assert_refused(
        connect_token(&env.nats.url(), &token).await,
        "token inactive",
    )
    .await;
    let deny = env.service().decisions().pop().expect("a decision");
    assert_eq!(deny["reason_class"], "token_inactive", "{deny:?}");
    let inactive =
        "nats_oidc_callout_introspection_calls_total{issuer=\"keycloak\",result=\"inactive\"}";
    assert_eq!(metric(&env, inactive).await, 1.0);

    let fresh = realm
        .token_by_password("nats-cli", "alice", alice_password)
        .await;
    connect_token(&env.nats.url(), &fresh)
        .await
        .expect("a new token of hers connects");
    assert_no_token_in(&env.service().log(), &token);

    // Introspecting as a client outside the tokens' audience: Keycloak
    // says `active: false` about every token, so every one is refused.
    let secret = realm.add_confidential_client("nats-outsider").await;
    let outsider = keycloak_env(
        realm,
        &introspecting_as("nats-outsider", &secret, keys.path()),
    )
    .await;
    outsider
        .assert_refused(
            connect_token(&outsider.nats.url(), &fresh).await,
            "token inactive",
        )
        .await;
}

/// `[[issuer]]` lines: JWTs re-checked by introspection as `client_id`
/// (client_secret_basic), its secret in a 0600 file in `dir`; answers
/// reused for 1 s.
fn introspecting_as(client_id: &str, secret: &str, dir: &Path) -> String {
    let file = dir.join(format!("{client_id}.secret"));
    write_secret(&file, secret);
    format!(
        "introspect_jwt = true\n\
         introspection_client_id = \"{client_id}\"\n\
         introspection_client_secret_file = \"{}\"\n\
         introspection_cache = \"1s\"\n\
         introspection_timeout = \"5s\"\n",
        file.display()
    )
}
