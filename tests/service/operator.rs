//! Operator (decentralized JWT) mode, from `bootstrap --mode operator`:
//! users land in the account their rule names, accounts stay isolated, and
//! a user signed with a key the account does not trust is refused.

use std::path::Path;
use std::time::Duration;

use crate::support::*;
use futures::StreamExt;

const TWO_ACCOUNTS: &str = r#"
[permissions.shared]
pub = { allow = ["shared.>", "app.{claim.sub}.>"] }
sub = { allow = ["shared.>", "app.{claim.sub}.>", "_INBOX.{claim.sub}.>"] }

[[rules]]
name = "team-a"
scopes = ["a"]
grant = ["shared"]
account = "APP"

[[rules]]
name = "team-b"
scopes = ["b"]
grant = ["shared"]
account = "OTHER"
"#;

fn token(dir: &Path, sub: &str, scope: &str) -> String {
    let o = run_cli(&[
        "dev-token",
        "--dir",
        dir.to_str().unwrap(),
        "--sub",
        sub,
        "--scope",
        scope,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// The `--port` bootstrap is given; [`start`] moves the server to a port it
/// picks itself.
const BOOTSTRAP_PORT: &str = "4999";

/// Bootstraps an operator-mode setup with APP and OTHER and the two-account
/// policy.
fn bootstrap(dir: &Path) {
    let o = run_cli(&[
        "bootstrap",
        "--dir",
        dir.to_str().unwrap(),
        "--mode",
        "operator",
        "--accounts",
        "APP,OTHER",
        "--port",
        BOOTSTRAP_PORT,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(dir.join("policy.toml"), TWO_ACCOUNTS).unwrap();
}

/// Starts nats-server and the service from a bootstrapped directory. The
/// server picks its port (no port is chosen here and bound later by
/// someone else); the service's `[nats] url` is pointed at it.
fn start(dir: &Path) -> (NatsServer, Service) {
    let conf = std::fs::read_to_string(dir.join("nats-server.conf")).unwrap();
    assert!(conf.contains("operator: ") && conf.contains("resolver: MEMORY"));
    let listen = format!("listen: 127.0.0.1:{BOOTSTRAP_PORT}\n");
    assert!(conf.contains(&listen), "{conf}");
    let nats =
        NatsServer::start_any_port(&conf.replace(&listen, &format!("listen: 127.0.0.1:{PORT}\n")));
    let config_path = dir.join("callout.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let url = format!("\"nats://127.0.0.1:{BOOTSTRAP_PORT}\"");
    assert!(config.contains(&url), "{config}");
    std::fs::write(
        &config_path,
        config.replace(&url, &format!("\"{}\"", nats.url())),
    )
    .unwrap();
    let service = Service::start(&config_path);
    (nats, service)
}

async fn received(sub: &mut async_nats::Subscriber) -> bool {
    tokio::time::timeout(Duration::from_millis(500), sub.next())
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_land_in_their_rules_account_and_accounts_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap(dir.path());
    let (nats, service) = start(dir.path());
    let alice = connect_token(&nats.url(), &token(dir.path(), "alice", "a"))
        .await
        .expect("alice");
    let bob = connect_token(&nats.url(), &token(dir.path(), "bob", "b"))
        .await
        .expect("bob");

    let mut alice_sees = alice.nats.subscribe("shared.news").await.unwrap();
    let mut bob_sees = bob.nats.subscribe("shared.news").await.unwrap();
    alice.nats.flush().await.unwrap();
    bob.nats.flush().await.unwrap();

    bob.nats
        .publish("shared.news", "from OTHER".into())
        .await
        .unwrap();
    bob.nats.flush().await.unwrap();
    assert!(received(&mut bob_sees).await, "bob's own account delivers");
    assert!(
        !received(&mut alice_sees).await,
        "account OTHER leaked into APP"
    );

    alice
        .nats
        .publish("shared.news", "from APP".into())
        .await
        .unwrap();
    alice.nats.flush().await.unwrap();
    assert!(
        received(&mut alice_sees).await,
        "alice's own account delivers"
    );
    assert!(
        !received(&mut bob_sees).await,
        "account APP leaked into OTHER"
    );

    // Each user's own decision names the account it was placed in.
    let account_of = |sub: &str| {
        let decisions = service.decisions();
        let mine: Vec<_> = decisions
            .iter()
            .filter(|d| d.get("subject").and_then(|v| v.as_str()) == Some(sub))
            .collect();
        assert_eq!(mine.len(), 1, "{sub}: {decisions:#?}");
        assert_eq!(mine[0]["decision"], "allow", "{sub}");
        mine[0]["account"].as_str().unwrap().to_owned()
    };
    assert_eq!(account_of("alice"), "APP");
    assert_eq!(account_of("bob"), "OTHER");
    assert!(
        service.log().contains("mode=\"operator\""),
        "{}",
        service.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signed_by_an_untrusted_key_is_refused_by_the_server() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap(dir.path());
    // OTHER's users are now signed by a key OTHER's JWT does not list.
    let rogue = nkeys::KeyPair::new_account();
    write_secret(&dir.path().join("keys/rogue.nk"), &rogue.seed().unwrap());
    let config = std::fs::read_to_string(dir.path().join("callout.toml"))
        .unwrap()
        .replace("keys/accounts/OTHER.signing.nk", "keys/rogue.nk");
    std::fs::write(dir.path().join("callout.toml"), config).unwrap();
    let (nats, service) = start(dir.path());

    assert!(connect_token(&nats.url(), &token(dir.path(), "alice", "a"))
        .await
        .is_ok());
    let bob = connect_token(&nats.url(), &token(dir.path(), "bob", "b")).await;
    assert!(bob.is_err(), "a user signed by an untrusted key got in");
    // The policy allowed bob (his own decision says so); the server refused
    // the user the service signed, for its signer, not for a timeout.
    let bobs: Vec<_> = service
        .decisions()
        .into_iter()
        .filter(|d| d.get("subject").and_then(|v| v.as_str()) == Some("bob"))
        .collect();
    assert_eq!(bobs.len(), 1, "{bobs:#?}");
    assert_eq!(bobs[0]["decision"], "allow");
    assert_eq!(bobs[0]["account"], "OTHER");
    // What nats-server 2.15.1 logs for a user JWT whose signer the
    // account does not list: this rogue key, by name.
    let untrusted = format!("User JWT issuer \"{}\" is not known", rogue.public_key());
    assert!(
        wait_until(Duration::from_secs(5), || nats.log().contains(&untrusted)),
        "{}",
        nats.log()
    );
}

/// A reload naming an account with no `[[account]]` is refused and the old
/// policy stays (before: users got an empty denial, "no reason supplied").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_naming_an_unconfigured_account_keeps_the_old_policy() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap(dir.path());
    let (nats, service) = start(dir.path());
    std::fs::write(
        dir.path().join("policy.toml"),
        TWO_ACCOUNTS.replace("account = \"OTHER\"", "account = \"GHOST\""),
    )
    .unwrap();
    service.reload();
    assert!(
        wait_until(Duration::from_secs(5), || service
            .log()
            .contains("policy reload failed")),
        "{}",
        service.log()
    );
    assert!(
        service.log().contains("\"GHOST\" has no [[account]]"),
        "{}",
        service.log()
    );
    let bob = connect_token(&nats.url(), &token(dir.path(), "bob", "b"))
        .await
        .expect("the previous policy still places bob");
    round_trip(&bob.nats, "app.bob.x").await;
    let decisions = service.decisions();
    assert_eq!(decisions.last().unwrap()["account"], "OTHER");
}

/// Users are signed by the account's signing key and name the account.
#[test]
fn bootstrap_uses_signing_keys_for_users() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_cli(&[
        "bootstrap",
        "--dir",
        dir.path().to_str().unwrap(),
        "--mode",
        "operator",
    ]);
    assert!(o.status.success());
    let config = std::fs::read_to_string(dir.path().join("callout.toml")).unwrap();
    assert!(
        config.contains("signing_key_file = \"keys/accounts/APP.signing.nk\""),
        "{config}"
    );
    let seed = std::fs::read_to_string(dir.path().join("keys/accounts/APP.signing.nk")).unwrap();
    let signing = nkeys::KeyPair::from_seed(seed.trim()).unwrap().public_key();
    let conf = std::fs::read_to_string(dir.path().join("nats-server.conf")).unwrap();
    let app_jwt = conf
        .lines()
        .filter_map(|l| l.trim().split_once(": "))
        .map(|(_, jwt)| jwt)
        .find(|jwt| jwt.split('.').count() == 3 && jwt_part(jwt).contains("\"name\":\"APP\""))
        .expect("APP account JWT in the resolver preload");
    assert!(
        jwt_part(app_jwt).contains(&signing),
        "signing key not listed in APP's JWT"
    );
}

fn jwt_part(jwt: &str) -> String {
    use base64::Engine;
    let body = jwt.split('.').nth(1).unwrap();
    String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .unwrap(),
    )
    .unwrap()
}

/// Revocation works the same in operator mode: bootstrap's `[system]` user
/// and JetStream bucket close alice's live connection and deny her
/// reconnect with the reason; bob, in the other account, stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_subject_in_operator_mode_closes_it_and_denies_its_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap(dir.path());
    let (nats, service) = start(dir.path());
    let alice_token = token(dir.path(), "alice", "a");
    let (dropped_tx, dropped) = tokio::sync::oneshot::channel();
    let dropped_tx = std::sync::Mutex::new(Some(dropped_tx));
    let alice = async_nats::ConnectOptions::with_token(alice_token.clone())
        .max_reconnects(Some(0))
        .event_callback(move |event| {
            if matches!(event, async_nats::Event::Disconnected) {
                if let Some(tx) = dropped_tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
            }
            async {}
        })
        .connect(nats.url())
        .await
        .expect("alice connects before the revocation");
    let bob = connect_token(&nats.url(), &token(dir.path(), "bob", "b"))
        .await
        .expect("bob");
    alice.flush().await.unwrap();

    let config = dir.path().join("callout.toml");
    let out = run_cli(&[
        "revoke",
        "--config",
        config.to_str().unwrap(),
        "--subject",
        "alice",
        "--reason",
        "laptop stolen",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["closed"], 1, "{answer} {stderr}");

    let closed = tokio::time::timeout(Duration::from_secs(5), dropped).await;
    assert!(
        matches!(closed, Ok(Ok(()))),
        "alice's connection was not closed:\n{}",
        nats.log()
    );
    let again = async_nats::ConnectOptions::with_token(alice_token)
        .connect(nats.url())
        .await;
    assert!(again.is_err(), "alice got back in after her revocation");
    let refused = "Auth callout service returned an error: revoked: laptop stolen";
    assert!(
        wait_until(Duration::from_secs(5), || nats.log().contains(refused)),
        "{}",
        nats.log()
    );
    assert_eq!(
        bob.nats.connection_state(),
        async_nats::connection::State::Connected,
        "bob was closed with alice"
    );
    assert!(
        !service
            .decisions()
            .iter()
            .any(|d| d["subject"] == "bob" && d["decision"] == "deny"),
        "bob was denied: {:#?}",
        service.decisions()
    );
}
