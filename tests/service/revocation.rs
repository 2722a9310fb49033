//! Revocable identity end to end: a 3-node JetStream cluster with the
//! callout on every node, two service instances, clients on every server.
//! Revocations close live connections cluster-wide and deny reconnects
//! with the reason; they lapse, survive restarts, and a policy reload that
//! narrows a grant closes exactly the affected connections.

use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;

const SHORT: Duration = Duration::from_secs(5);

/// A connected client and the moment the server dropped it.
struct Watched {
    client: async_nats::Client,
    dropped: tokio::sync::oneshot::Receiver<Instant>,
}

async fn watched(url: &str, token: &str) -> Watched {
    let (tx, dropped) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let client = async_nats::ConnectOptions::with_token(token.to_owned())
        .connection_timeout(SHORT)
        .max_reconnects(Some(0))
        .event_callback(move |event| {
            let sent = matches!(event, async_nats::Event::Disconnected)
                .then(|| tx.lock().unwrap().take())
                .flatten()
                .map(|tx| tx.send(Instant::now()));
            async move {
                let _ = sent;
            }
        })
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    Watched { client, dropped }
}

impl Watched {
    /// When the server dropped it, if it did within `limit`.
    async fn dropped_within(&mut self, limit: Duration) -> Option<Instant> {
        tokio::time::timeout(limit, &mut self.dropped)
            .await
            .ok()?
            .ok()
    }

    /// Still connected: a round trip on its own subject works.
    async fn alive(&self, subject: &str) {
        round_trip(&self.client, subject).await;
    }
}

fn json_out(o: &std::process::Output) -> Value {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_subject_closes_it_on_every_server_and_denies_its_reconnect() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    let alice = cluster.token("alice", "nats");
    let bob = cluster.token("bob", "nats");
    let mut alices = Vec::new();
    let mut bobs = Vec::new();
    for node in 0..3 {
        alices.push(watched(&cluster.url(node), &alice).await);
        bobs.push(watched(&cluster.url(node), &bob).await);
    }
    // Both instances served some of them (one queue group).
    let served: Vec<usize> = cluster
        .services
        .iter()
        .map(|s| s.decision_count())
        .collect();
    assert_eq!(served.iter().sum::<usize>(), 6, "{served:?}");

    let started = Instant::now();
    let out = json_out(&cluster.cli(
        "revoke",
        &[
            "--subject",
            "alice",
            "--issuer",
            "corp",
            "--reason",
            "stolen laptop",
        ],
    ));
    assert_eq!(out["closed"], 3, "{out}");
    assert_eq!(out["failed"], 0, "{out}");
    assert_eq!(out["revoked"]["selector"]["subject"], "alice", "{out}");
    let mut took = Vec::new();
    for a in &mut alices {
        let at = a
            .dropped_within(SHORT)
            .await
            .expect("every alice connection is closed");
        took.push(at.duration_since(started));
    }
    eprintln!("revoke command to closed, 3 servers: {took:?}");
    for (node, b) in bobs.iter().enumerate() {
        b.alive(&format!("app.bob.n{node}")).await;
    }
    // Her reconnect, on any server, is denied with the reason.
    for node in 0..3 {
        assert!(connect_token(&cluster.url(node), &alice).await.is_err());
    }
    let reason = "Auth callout service returned an error: revoked: stolen laptop";
    let seen = wait_until_async(SHORT, || async { cluster.count(reason) >= 3 }).await;
    assert!(seen, "{}", cluster.logs());
    // The listing shows it, and `sessions` shows bob everywhere, alice nowhere.
    let list = json_out(&cluster.cli("revocations", &["--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let sessions = json_out(&cluster.cli("sessions", &["--json"]));
    let subjects: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, vec!["bob", "bob", "bob"], "{sessions}");
    for s in sessions.as_array().unwrap() {
        assert_eq!(s["rules"], serde_json::json!(["nats-users"]), "{s}");
        assert!(s["expires"].as_i64().unwrap() > now(), "{s}");
    }
}

/// A jti, a client id or a user nkey is not in CONNZ: the instance that
/// authorized the connection closes it, from its own records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_by_jti_client_id_and_user_nkey_are_closed_by_the_instances() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    for (selector, who) in [("--jti", "carol"), ("--client-id", "dave")] {
        let claims = cluster.claims(who, "nats");
        let value = match selector {
            "--jti" => claims["jti"].as_str().unwrap().to_owned(),
            _ => claims["client_id"].as_str().unwrap().to_owned(),
        };
        let token = cluster.key.sign(&claims);
        let mut conn = watched(&cluster.url(1), &token).await;
        let out = json_out(&cluster.cli(
            "revoke",
            &[selector, &value, "--reason", "leaked in a CI log"],
        ));
        assert_eq!(out["closed"], 1, "{selector}: {out}");
        assert!(conn.dropped_within(SHORT).await.is_some(), "{selector}");
        assert!(connect_token(&cluster.url(2), &token).await.is_err());
    }
    // A user nkey names one connection: the one the decision recorded.
    let erin = cluster.token("erin", "nats");
    let mut conn = watched(&cluster.url(0), &erin).await;
    let decisions: Vec<_> = cluster
        .services
        .iter()
        .flat_map(|s| s.decisions())
        .filter(|d| d.get("subject").and_then(Value::as_str) == Some("erin"))
        .collect();
    assert_eq!(decisions.len(), 1);
    let nkey = decisions[0]["user_nkey"].as_str().unwrap().to_owned();
    let out = json_out(&cluster.cli("revoke", &["--user-nkey", &nkey, "--reason", "one session"]));
    assert_eq!(out["closed"], 1, "{out}");
    assert!(conn.dropped_within(SHORT).await.is_some());
    // A new connection of erin has a new user nkey: it is not revoked.
    let again = connect_token(&cluster.url(0), &erin)
        .await
        .expect("new nkey");
    round_trip(&again.nats, "app.erin.x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_for_a_while_lapses_and_the_client_gets_back_in() {
    let cluster = Cluster::start(ClusterOptions {
        nodes: 1,
        instances: 1,
        ..Default::default()
    })
    .await;
    let frank = cluster.token("frank", "nats");
    let mut conn = watched(&cluster.url(0), &frank).await;
    let out = json_out(&cluster.cli(
        "revoke",
        &["--subject", "frank", "--for", "3s", "--reason", "cool off"],
    ));
    assert_eq!(out["closed"], 1, "{out}");
    assert!(out["revoked"]["expires_at"].as_i64().is_some(), "{out}");
    assert!(conn.dropped_within(SHORT).await.is_some());
    assert!(connect_token(&cluster.url(0), &frank).await.is_err());
    let back = connect_token_eventually(&cluster.url(0), &frank)
        .await
        .expect("back in once the revocation lapsed");
    round_trip(&back.nats, "app.frank.x").await;
    let list = json_out(&cluster.cli("revocations", &["--json"]));
    assert_eq!(
        list,
        serde_json::json!([]),
        "a lapsed revocation is not listed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_survive_restarting_both_instances_and_a_server() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let gina = cluster.token("gina", "nats");
    json_out(&cluster.cli(
        "revoke",
        &["--subject", "gina", "--reason", "left the company"],
    ));
    for s in &mut cluster.services {
        s.stop().expect("stops");
    }
    cluster.services.clear();
    cluster.nodes[2].restart();
    cluster.start_instance();
    cluster.start_instance();
    for node in 0..3 {
        let refused = connect_token(&cluster.url(node), &gina).await;
        assert!(refused.is_err(), "gina got back in on node {node}");
    }
    let reason = "Auth callout service returned an error: revoked: left the company";
    assert!(
        wait_until_async(SHORT, || async { cluster.count(reason) >= 3 }).await,
        "{}",
        cluster.logs()
    );
    // unrevoke lifts it; a second unrevoke finds nothing (exit 1).
    let o = cluster.cli("unrevoke", &["--subject", "gina"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        cluster
            .cli("unrevoke", &["--subject", "gina"])
            .status
            .code(),
        Some(1)
    );
    let back = connect_token_eventually(&cluster.url(1), &gina)
        .await
        .expect("back in after unrevoke");
    round_trip(&back.nats, "app.gina.x").await;
}

const TWO_RULES: &str = r#"
[defaults]
account = "APP"
ttl = "15m"

[permissions.own]
pub = { allow = ["app.{claim.sub}.>"] }
sub = { allow = ["app.{claim.sub}.>", "_INBOX.{claim.sub}.>"] }

[permissions.admin]
pub = { allow = ["admin.>"] }

[[rules]]
name = "users"
scopes = ["nats"]
grant = ["own"]

[[rules]]
name = "admins"
scopes = ["nats:admin"]
grant = ["admin"]
"#;

/// A reload that narrows one rule closes exactly the connections whose
/// grant changed; they come back with the narrower grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_reload_that_narrows_a_grant_closes_exactly_the_affected_connections() {
    let cluster = Cluster::start(ClusterOptions {
        policy: TWO_RULES,
        ..Default::default()
    })
    .await;
    let user = cluster.token("hank", "nats");
    let admin = cluster.token("ida", "nats nats:admin");
    let mut users = Vec::new();
    let mut admins = Vec::new();
    for node in 0..3 {
        users.push(watched(&cluster.url(node), &user).await);
        admins.push(watched(&cluster.url(node), &admin).await);
    }
    std::fs::write(
        cluster.dir.path().join("policy.toml"),
        TWO_RULES.replace("admin.>", "admin.reports.>"),
    )
    .unwrap();
    let reloaded = Instant::now();
    for s in &cluster.services {
        s.reload();
    }
    let mut took = Vec::new();
    for a in &mut admins {
        let at = a.dropped_within(SHORT).await.expect("admins are closed");
        took.push(at.duration_since(reloaded));
    }
    eprintln!("reload to closed, 3 servers: {took:?}");
    for (node, u) in users.iter().enumerate() {
        u.alive(&format!("app.hank.n{node}")).await;
    }
    // Back, with the narrower grant.
    let mut back = connect_token(&cluster.url(0), &admin)
        .await
        .expect("reconnects");
    back.nats
        .publish("admin.users.delete", "x".into())
        .await
        .unwrap();
    back.nats.flush().await.unwrap();
    back.expect_error(
        "Permissions Violation for Publish to \"admin.users.delete\"",
        SHORT,
    )
    .await;
    let closes: usize = cluster
        .services
        .iter()
        .map(|s| s.log().matches("cause=\"policy_changed\"").count())
        .sum();
    assert_eq!(closes, 3, "exactly the three admin connections");
}

/// `keep` leaves live sessions alone after a reload; only new connects see
/// the new policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keep_a_policy_reload_closes_nothing() {
    let cluster = Cluster::start(ClusterOptions {
        nodes: 1,
        instances: 1,
        policy: TWO_RULES,
        revocation: "on_policy_change = \"keep\"",
        ..Default::default()
    })
    .await;
    let admin = cluster.token("jo", "nats nats:admin");
    let conn = watched(&cluster.url(0), &admin).await;
    std::fs::write(
        cluster.dir.path().join("policy.toml"),
        TWO_RULES.replace("admin.>", "admin.reports.>"),
    )
    .unwrap();
    cluster.services[0].reload();
    assert!(wait_until(SHORT, || cluster.services[0]
        .log()
        .contains("policy reloaded")));
    // The old grant holds until the user JWT expires.
    conn.client
        .publish("admin.users.delete", "x".into())
        .await
        .unwrap();
    conn.client.flush().await.unwrap();
    round_trip(&conn.client, "app.jo.x").await;
    assert!(!cluster.services[0].log().contains("event=\"close\""));
}

/// Measures revoke-to-closed and reload-to-closed over 20 tries each
/// (printed; see BENCHMARKS.md), and checks every try closed its client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_and_reload_to_closed_over_twenty_tries() {
    let cluster = Cluster::start(ClusterOptions {
        policy: TWO_RULES,
        ..Default::default()
    })
    .await;
    let mut revoke = Vec::new();
    for i in 0..20 {
        let sub = format!("kim{i}");
        let token = cluster.token(&sub, "nats");
        let mut conn = watched(&cluster.url(i % 3), &token).await;
        let started = Instant::now();
        let out = json_out(&cluster.cli("revoke", &["--subject", &sub, "--reason", "measure"]));
        assert_eq!(out["closed"], 1, "{out}");
        let at = conn.dropped_within(SHORT).await.expect("closed");
        revoke.push(at.duration_since(started));
    }
    let mut reload = Vec::new();
    for i in 0..20 {
        let token = cluster.token(&format!("lou{i}"), "nats nats:admin");
        let mut conn = watched(&cluster.url(i % 3), &token).await;
        let (from, to) = if i % 2 == 0 {
            ("admin.>", "admin.reports.>")
        } else {
            ("admin.reports.>", "admin.>")
        };
        let current = std::fs::read_to_string(cluster.dir.path().join("policy.toml")).unwrap();
        let current = if current.contains("admin.reports.>") {
            current
        } else {
            TWO_RULES.to_owned()
        };
        let next = current.replace(from, to);
        std::fs::write(cluster.dir.path().join("policy.toml"), next).unwrap();
        let started = Instant::now();
        for s in &cluster.services {
            s.reload();
        }
        let at = conn
            .dropped_within(SHORT)
            .await
            .expect("closed by the reload");
        reload.push(at.duration_since(started));
    }
    for (name, mut t) in [
        ("revoke (CLI start) to closed", revoke),
        ("reload to closed", reload),
    ] {
        t.sort();
        eprintln!(
            "{name}: p50 {:?}, max {:?} over {} tries",
            t[t.len() / 2],
            t[t.len() - 1],
            t.len()
        );
    }
}
