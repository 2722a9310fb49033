//! Revocation building blocks against real nats-server processes: the
//! system connection (CONNZ gather, KICK), what CONNZ shows of a
//! callout-issued user, the shared revocation bucket and its watchers, and
//! the `revoke`/`unrevoke`/`revocations`/`sessions` commands.
//!
//! Callout users come from a small in-test responder that answers
//! `$SYS.REQ.USER.AUTH` with users named by `session::user_name`, the way
//! the service names them; the server side is entirely real.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;
use async_nats::jetstream::stream::StorageType;
use futures::StreamExt;
use nats_oidc_callout::clock::now_unix;
use nats_oidc_callout::connect::Persistence;
use nats_oidc_callout::protocol::{
    decode_request, encode, AuthorizationResponse, ClaimsData, NatsClaims, Permission, User,
};
use nats_oidc_callout::revocation::{
    Health, Presented, Revocation, RevocationSet, RevocationStore, Selector, StoreError,
};
use nats_oidc_callout::session::{user_name, SessionFacts};
use nats_oidc_callout::system::{replicas_for, ConnzQuery, Kick, SystemClient, INBOX_PREFIX};
use serde_json::{json, Value};

const BUCKET: &str = "revocations_test";

/// The system user's grants: exactly what `system.rs` documents.
fn sys_permissions() -> String {
    format!(
        r#"permissions: {{
        publish: ["$SYS.REQ.SERVER.PING.STATSZ", "$SYS.REQ.SERVER.PING.CONNZ",
                  "$SYS.REQ.SERVER.*.CONNZ", "$SYS.REQ.SERVER.*.KICK"]
        subscribe: ["{INBOX_PREFIX}.>"]
      }}"#
    )
}

/// A config-mode node: callout into AUTH (which has JetStream), users in
/// APP, a least-privilege system user `sys`.
fn node_config(port: u16, name: &str, store: &Path, issuer: &str, extra: &str) -> String {
    format!(
        r#"listen: 127.0.0.1:{port}
server_name: {name}
jetstream {{ store_dir: "{store}" }}
accounts {{
  AUTH {{ jetstream: enabled, users: [ {{ user: auth, password: authpw }} ] }}
  APP {{}}
  SYS {{ users: [ {{ user: sys, password: syspw, {perms} }} ] }}
}}
system_account: SYS
authorization {{
  timeout: 2
  auth_callout {{
    issuer: {issuer}
    auth_users: [ auth, sys ]
    account: AUTH
  }}
}}
{extra}
"#,
        store = store.display(),
        perms = sys_permissions(),
    )
}

/// Real nats-servers with JetStream, clustered when more than one.
struct Nodes {
    servers: Vec<NatsServer>,
    issuer: nkeys::KeyPair,
    _stores: tempfile::TempDir,
}

impl Nodes {
    fn start(n: usize) -> Nodes {
        Self::start_with(n, "")
    }

    fn start_with(n: usize, extra: &str) -> Nodes {
        let issuer = nkeys::KeyPair::new_account();
        let stores = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, r)| format!("nats-route://127.0.0.1:{r}"))
            .collect();
        let servers = ports
            .iter()
            .enumerate()
            .map(|(i, (port, route))| {
                let store = stores.path().join(format!("n{i}"));
                let cluster = if n > 1 {
                    format!(
                        "cluster {{ name: c, listen: 127.0.0.1:{route}, routes: [{}] }}",
                        routes.join(", ")
                    )
                } else {
                    String::new()
                };
                let config = node_config(
                    *port,
                    &format!("n{}", i + 1),
                    &store,
                    &issuer.public_key(),
                    &format!("{cluster}\n{extra}"),
                );
                NatsServer::start(*port, &config)
            })
            .collect();
        Nodes {
            servers,
            issuer,
            _stores: stores,
        }
    }

    fn url(&self, i: usize) -> String {
        self.servers[i].url()
    }

    fn logs(&self) -> String {
        self.servers.iter().map(|s| s.log()).collect()
    }

    async fn auth(&self, i: usize) -> async_nats::Client {
        async_nats::ConnectOptions::with_user_and_password("auth".into(), "authpw".into())
            .connect(self.url(i))
            .await
            .expect("auth user connects")
    }

    async fn system(&self, i: usize) -> SystemClient {
        let client =
            async_nats::ConnectOptions::with_user_and_password("sys".into(), "syspw".into())
                .custom_inbox_prefix(INBOX_PREFIX)
                .connect(self.url(i))
                .await
                .expect("system user connects");
        SystemClient::new(client)
    }

    /// Waits (bounded) until every node knows every other one and JetStream
    /// answers; returns a system client on node 1.
    async fn ready(&self) -> SystemClient {
        let sys = self.system(0).await;
        let n = self.servers.len();
        let all = wait_until_async(Duration::from_secs(30), || async {
            sys.servers().await.is_ok_and(|s| s.len() == n)
        })
        .await;
        assert!(all, "the {n} nodes never saw each other:\n{}", self.logs());
        let auth = self.auth(0).await;
        let js = async_nats::jetstream::new(auth);
        let up = wait_until_async(Duration::from_secs(30), || async {
            js.query_account().await.is_ok()
        })
        .await;
        assert!(up, "JetStream never became available:\n{}", self.logs());
        sys
    }

    /// Opens (creating) the bucket once the JetStream cluster accepts it.
    async fn store(&self, i: usize, replicas: usize) -> RevocationStore {
        let client = self.auth(i).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match RevocationStore::open_or_create(&client, BUCKET, replicas).await {
                Ok(s) => return s,
                Err(e) if Instant::now() > deadline => {
                    panic!("bucket unavailable: {e}\n{}", self.logs())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

/// Answers authorization requests like the service, minus OIDC: the token
/// is JSON `{"iss": issuer name, "sub": …, "tags": […], "name": override}`.
struct Responder {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn responder(nodes: &Nodes) -> Responder {
    let client = nodes.auth(0).await;
    let mut requests = client
        .queue_subscribe("$SYS.REQ.USER.AUTH", "callout".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let seed = nodes.issuer.seed().unwrap();
    let task = tokio::spawn(async move {
        let key = nkeys::KeyPair::from_seed(&seed).unwrap();
        while let Some(msg) = requests.next().await {
            let (Some(reply), Ok(text)) = (msg.reply.clone(), std::str::from_utf8(&msg.payload))
            else {
                continue;
            };
            let request = decode_request(text).expect("a real request");
            let req = request.nats;
            let token: Value = serde_json::from_str(&req.connect_opts.auth_token).unwrap();
            let name = token["name"].as_str().map_or_else(
                || {
                    user_name(
                        token["iss"].as_str().unwrap(),
                        token["sub"].as_str().unwrap(),
                    )
                },
                str::to_owned,
            );
            let all = Permission {
                allow: vec![">".into()],
                deny: vec![],
            };
            let mut user = serde_json::to_value(User::new(all.clone(), all, None)).unwrap();
            if let Some(tags) = token.get("tags") {
                user["tags"] = tags.clone();
            }
            let now = now_unix();
            let mut claims = NatsClaims {
                data: ClaimsData {
                    aud: "APP".into(),
                    exp: now + 600,
                    iat: now,
                    name,
                    sub: req.user_nkey.clone(),
                    ..ClaimsData::default()
                },
                nats: user,
            };
            let jwt = encode(&mut claims, &key).unwrap();
            let mut response = NatsClaims {
                data: ClaimsData {
                    aud: req.server_id.id.clone(),
                    iat: now,
                    sub: req.user_nkey.clone(),
                    ..ClaimsData::default()
                },
                nats: AuthorizationResponse::allow(jwt),
            };
            let answer = encode(&mut response, &key).unwrap();
            let _ = client.publish(reply, answer.into()).await;
        }
    });
    Responder { task }
}

fn token(issuer: &str, subject: &str) -> String {
    json!({"iss": issuer, "sub": subject}).to_string()
}

/// A callout-authorized client on node `i`, with its (server id, cid).
async fn user(nodes: &Nodes, i: usize, token: &str) -> (Client, String, u64) {
    let client = connect_token(&nodes.url(i), token)
        .await
        .unwrap_or_else(|e| panic!("callout user refused on node {i}: {e}\n{}", nodes.logs()));
    let info = client.nats.server_info();
    (client, info.server_id, info.client_id)
}

fn awkward_subjects() -> Vec<String> {
    vec![
        "alice".into(),
        "a/b/c".into(),
        "with spaces".into(),
        "ünï/cödé 名前 🚀".into(),
        "s".repeat(300),
    ]
}

fn revocation(selector: Selector, expires_at: Option<i64>) -> Revocation {
    Revocation {
        selector,
        reason: "laptop stolen".into(),
        created_at: now_unix(),
        expires_at,
        by: "test@host".into(),
    }
}

fn subject(s: &str, issuer: Option<&str>) -> Selector {
    Selector::Subject {
        subject: s.into(),
        issuer: issuer.map(Into::into),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connz_shows_the_issued_name_and_nothing_else_of_the_user_jwt() {
    let nodes = Nodes::start(1);
    let sys = nodes.ready().await;
    let _callout = responder(&nodes).await;
    let mut clients = Vec::new();
    for sub in awkward_subjects() {
        let name = user_name("corp", &sub);
        let tok = json!({"iss": "corp", "sub": sub, "tags": ["jti:tok-1", "client:web"]});
        let (client, server_id, cid) = user(&nodes, 0, &tok.to_string()).await;
        clients.push(client);
        // The `user` filter matches the issued name exactly.
        let query = ConnzQuery {
            user: Some(name.clone()),
            account: None,
        };
        let gather = sys.connz(&query).await.unwrap();
        assert!(gather.complete(), "{gather:?}");
        assert_eq!(gather.connections.len(), 1, "{name:?}: {gather:?}");
        assert_eq!(gather.servers.len(), 1);
        let conn = &gather.connections[0];
        assert_eq!(
            (conn.server_id.as_str(), conn.cid),
            (server_id.as_str(), cid)
        );
        assert_eq!(conn.authorized_user, name);
        assert_eq!(conn.account, "APP");
        // What the user JWT carried besides its name does not show.
        assert!(conn.tags.is_empty(), "{conn:?}");
        assert!(conn.jwt.is_empty(), "{conn:?}");
        // Both name the target account (config mode: its name), not the service.
        assert_eq!(
            (conn.issuer_key.as_str(), conn.name_tag.as_str()),
            ("APP", "APP")
        );
        let facts = SessionFacts::from_connz(conn, &["corp"]).unwrap();
        assert_eq!(
            (facts.issuer.as_str(), facts.subject.as_str()),
            ("corp", sub.as_str())
        );
        assert!(facts.start.is_some());
    }
    // The raw reply, for the record (cargo test -- --nocapture).
    let reply = sys
        .client()
        .request(
            format!(
                "$SYS.REQ.SERVER.{}.CONNZ",
                sys.servers().await.unwrap()[0].server.id
            ),
            json!({"auth": true, "user": "corp/alice"})
                .to_string()
                .into(),
        )
        .await
        .unwrap();
    eprintln!("CONNZ: {}", String::from_utf8_lossy(&reply.payload));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_is_created_with_file_storage_history_one_and_message_ttls() {
    let nodes = Nodes::start(1);
    nodes.ready().await;
    let client = nodes.auth(0).await;
    let err = RevocationStore::open(&client, BUCKET).await.err().unwrap();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    nodes.store(0, 1).await;
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(format!("KV_{BUCKET}")).await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert_eq!(config.storage, StorageType::File);
    assert_eq!(config.max_messages_per_subject, 1);
    assert!(config.allow_message_ttl);
    assert_eq!(config.num_replicas, 1);
    // Opening again uses the bucket as it is.
    RevocationStore::open(&client, BUCKET).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_unrevoke_and_list_round_trip_with_any_values() {
    let nodes = Nodes::start(1);
    nodes.ready().await;
    let store = nodes.store(0, 1).await;
    let now = now_unix();
    let nkey = nkeys::KeyPair::new_user().public_key();
    let mut selectors: Vec<Selector> = awkward_subjects()
        .iter()
        .flat_map(|s| {
            [
                subject(s, Some("corp")),
                subject(s, None),
                Selector::Jti(s.clone()),
                Selector::ClientId(s.clone()),
            ]
        })
        .collect();
    selectors.push(Selector::UserNkey(nkey));
    for s in &selectors {
        store
            .revoke(&revocation(s.clone(), None), now)
            .await
            .unwrap();
    }
    // Revoking again replaces (one entry per selector).
    let mut again = revocation(selectors[0].clone(), Some(now + 3600));
    again.reason = "updated".into();
    store.revoke(&again, now).await.unwrap();
    let listed = store.list(now).await.unwrap();
    assert_eq!(listed.len(), selectors.len());
    for s in &selectors {
        assert!(listed.iter().any(|r| &r.selector == s), "{s} missing");
    }
    let first = listed.iter().find(|r| r.selector == selectors[0]).unwrap();
    assert_eq!(
        (first.reason.as_str(), first.expires_at),
        ("updated", Some(now + 3600))
    );

    assert!(store.unrevoke(&selectors[1], now).await.unwrap());
    assert!(!store.unrevoke(&selectors[1], now).await.unwrap());
    assert!(!store
        .unrevoke(&Selector::Jti("never".into()), now)
        .await
        .unwrap());
    let listed = store.list(now).await.unwrap();
    assert_eq!(listed.len(), selectors.len() - 1);
    assert!(!listed.iter().any(|r| r.selector == selectors[1]));
    // Past its expiry a revocation is not listed (and unrevoke finds none).
    assert!(!store
        .list(now + 3601)
        .await
        .unwrap()
        .iter()
        .any(|r| r.selector == selectors[0]));
    assert!(!store.unrevoke(&selectors[0], now + 3601).await.unwrap());
}

fn alice_presented() -> Presented<'static> {
    Presented {
        issuer: "corp",
        subject: "alice",
        ..Presented::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_another_node_sees_revocations_and_their_removal() {
    let nodes = Nodes::start(3);
    let sys = nodes.ready().await;
    let servers = sys.servers().await.unwrap();
    assert_eq!(replicas_for(&servers), 3);
    let a = nodes.store(0, 3).await;
    // An existing revocation is loaded; later ones arrive by the watch.
    let now = now_unix();
    a.revoke(&revocation(subject("bob", None), None), now)
        .await
        .unwrap();
    let b = nodes.store(2, 3).await;
    let set = RevocationSet::new();
    assert_eq!(set.health(), Health::NeverLoaded);
    let _watcher = set.watch(b);
    let bob = Presented {
        subject: "bob",
        ..alice_presented()
    };
    let loaded = wait_until_async(Duration::from_secs(10), || async {
        matches!(set.health(), Health::Loaded { .. })
    })
    .await;
    assert!(loaded, "{:?}", set.health());
    assert!(set.matching(&bob, now_unix()).is_some());
    assert!(set.matching(&alice_presented(), now_unix()).is_none());

    a.revoke(
        &revocation(subject("alice", Some("corp")), None),
        now_unix(),
    )
    .await
    .unwrap();
    let seen = wait_until_async(Duration::from_secs(10), || async {
        set.matching(&alice_presented(), now_unix()).is_some()
    })
    .await;
    assert!(seen, "instance B never saw A's revocation");
    assert_eq!(
        set.matching(&alice_presented(), now_unix())
            .unwrap()
            .denial(),
        "revoked: laptop stolen"
    );
    assert_eq!(set.active(now_unix()), 2);

    assert!(a
        .unrevoke(&subject("alice", Some("corp")), now_unix())
        .await
        .unwrap());
    let lifted = wait_until_async(Duration::from_secs(10), || async {
        set.matching(&alice_presented(), now_unix()).is_none()
    })
    .await;
    assert!(lifted, "instance B never saw the unrevoke");
    assert_eq!(set.active(now_unix()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_for_a_duration_lapses_and_the_server_removes_it() {
    let nodes = Nodes::start(1);
    nodes.ready().await;
    let store = nodes.store(0, 1).await;
    let set = RevocationSet::new();
    let _watcher = set.watch(store.clone());
    let now = now_unix();
    store
        .revoke(&revocation(subject("alice", None), Some(now + 2)), now)
        .await
        .unwrap();
    let seen = wait_until_async(Duration::from_secs(10), || async {
        set.matching(&alice_presented(), now).is_some()
    })
    .await;
    assert!(seen, "the watcher never saw the revocation");
    // At expiry it stops matching whatever the bucket says.
    assert!(set.matching(&alice_presented(), now + 2).is_none());
    // The server removes it (per-message TTL) and watchers see the marker.
    let removed = wait_until_async(Duration::from_secs(15), || async {
        set.active(0) == 0 && store.list(0).await.is_ok_and(|l| l.is_empty())
    })
    .await;
    assert!(removed, "the expired revocation is still in the bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_serves_the_last_known_set_while_the_server_is_away_and_reloads_after() {
    let mut nodes = Nodes::start(1);
    nodes.ready().await;
    let store = nodes.store(0, 1).await;
    store
        .revoke(&revocation(subject("alice", None), None), now_unix())
        .await
        .unwrap();
    let set = RevocationSet::new();
    let _watcher = set.watch(store);
    let loaded = wait_until_async(Duration::from_secs(10), || async {
        set.matching(&alice_presented(), now_unix()).is_some()
    })
    .await;
    assert!(loaded, "{:?}", set.health());
    let Health::Loaded { since: first } = set.health() else {
        panic!("{:?}", set.health())
    };

    nodes.servers[0].stop();
    let stale = wait_until_async(Duration::from_secs(10), || async {
        matches!(set.health(), Health::Stale { .. })
    })
    .await;
    assert!(stale, "{:?}", set.health());
    let Health::Stale { loaded, reason, .. } = set.health() else {
        unreachable!()
    };
    assert_eq!(loaded, Some(first));
    assert!(reason.contains("disconnected"), "{reason}");
    // The last known revocations still apply.
    assert!(set.matching(&alice_presented(), now_unix()).is_some());

    nodes.servers[0].restart();
    nodes.ready().await;
    // A change made by another instance while this one reconnects is seen.
    let other = nodes.store(0, 1).await;
    other
        .revoke(&revocation(subject("bob", None), None), now_unix())
        .await
        .unwrap();
    let bob = Presented {
        subject: "bob",
        ..alice_presented()
    };
    let back = wait_until_async(Duration::from_secs(20), || async {
        matches!(set.health(), Health::Loaded { .. }) && set.matching(&bob, now_unix()).is_some()
    })
    .await;
    assert!(back, "{:?}", set.health());
    assert!(set.matching(&alice_presented(), now_unix()).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_survive_a_restart_of_every_server() {
    let mut nodes = Nodes::start(3);
    nodes.ready().await;
    let store = nodes.store(1, 3).await;
    let now = now_unix();
    let kept = revocation(subject("ü ber/alice", Some("corp")), None);
    store.revoke(&kept, now).await.unwrap();
    drop(store);
    for s in &mut nodes.servers {
        s.stop();
    }
    for s in &mut nodes.servers {
        s.restart();
    }
    nodes.ready().await;
    let client = nodes.auth(2).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = match RevocationStore::open(&client, BUCKET).await {
            Ok(s) => s.list(now).await.ok(),
            Err(_) => None,
        };
        match listed {
            Some(l) if !l.is_empty() => break l,
            _ if Instant::now() > deadline => panic!("bucket not back:\n{}", nodes.logs()),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    assert_eq!(listed, vec![kept]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connz_gathers_connections_from_all_three_servers() {
    let nodes = Nodes::start(3);
    let sys = nodes.ready().await;
    let _callout = responder(&nodes).await;
    let mut clients = Vec::new();
    for i in 0..3 {
        for k in 0..2 {
            clients.push(user(&nodes, i, &token("corp", &format!("u{i}-{k}"))).await);
        }
    }
    let gather = sys.connz(&ConnzQuery::default()).await.unwrap();
    assert!(gather.complete(), "{gather:?}");
    assert_eq!(gather.servers.len(), 3);
    for (_, server_id, cid) in &clients {
        assert!(
            gather
                .connections
                .iter()
                .any(|c| &c.server_id == server_id && c.cid == *cid),
            "cid {cid} on {server_id} missing"
        );
    }
    let sessions: Vec<SessionFacts> = gather
        .connections
        .iter()
        .filter_map(|c| SessionFacts::from_connz(c, &["corp"]))
        .collect();
    assert_eq!(sessions.len(), 6, "{sessions:?}");
    let names: std::collections::HashSet<&str> =
        sessions.iter().map(|s| s.server_name.as_str()).collect();
    assert_eq!(names.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connz_pages_through_more_connections_than_one_page() {
    let nodes = Nodes::start(1);
    let sys = nodes.ready().await;
    let _callout = responder(&nodes).await;
    // 1100 connections: more than one 1024-entry page.
    let mut clients = Vec::new();
    for _ in 0..1100 {
        let opts =
            async_nats::ConnectOptions::with_user_and_password("auth".into(), "authpw".into());
        clients.push(opts.connect(nodes.url(0)).await.unwrap());
    }
    let gather = sys.connz(&ConnzQuery::default()).await.unwrap();
    assert!(gather.complete(), "{:?}", gather.errors);
    let mut cids: Vec<u64> = gather.connections.iter().map(|c| c.cid).collect();
    cids.sort_unstable();
    cids.dedup();
    assert_eq!(
        cids.len(),
        gather.connections.len(),
        "duplicates across pages"
    );
    for c in &clients {
        let cid = c.server_info().client_id;
        assert!(cids.contains(&cid), "cid {cid} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_closes_a_client_on_another_server_and_reports_gone_ones() {
    let nodes = Nodes::start(3);
    let sys = nodes.ready().await;
    let _callout = responder(&nodes).await;
    let (mut victim, server_id, cid) = user(&nodes, 2, &token("corp", "alice")).await;
    let (bystander, _, _) = user(&nodes, 2, &token("corp", "bob")).await;
    assert_eq!(sys.kick(&server_id, cid).await, Kick::Closed);
    victim
        .expect_error("disconnected", Duration::from_secs(5))
        .await;
    round_trip(&bystander.nats, "bystander.still.here").await;
    // Racing closers: the second one finds it gone, which is not a failure.
    let again = sys.kick(&server_id, cid).await;
    assert_eq!(again, Kick::NoSuchClient);
    assert!(again.is_gone());
    let nobody = nkeys::KeyPair::new_server().public_key();
    assert_eq!(sys.kick(&nobody, 1).await, Kick::Unreachable);
}

/// Not a timing assertion: every kick must close its connection; the
/// timings are printed for notes/BENCHMARKS.md (`-- --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicks_and_gathers_on_three_nodes_repeatedly() {
    let nodes = Nodes::start(3);
    let sys = nodes.ready().await;
    let _callout = responder(&nodes).await;
    let (mut kicks, mut closes, mut gathers) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..20 {
        let node = 1 + round % 2;
        let (mut victim, server_id, cid) =
            user(&nodes, node, &token("corp", &format!("r{round}"))).await;
        let started = Instant::now();
        let gather = sys.connz(&ConnzQuery::default()).await.unwrap();
        gathers.push(started.elapsed());
        assert!(gather.complete(), "{gather:?}");
        assert!(gather
            .connections
            .iter()
            .any(|c| c.cid == cid && c.server_id == server_id));
        let started = Instant::now();
        assert_eq!(sys.kick(&server_id, cid).await, Kick::Closed);
        kicks.push(started.elapsed());
        victim
            .expect_error("disconnected", Duration::from_secs(5))
            .await;
        closes.push(started.elapsed());
    }
    for (what, mut v) in [
        ("kick reply", kicks),
        ("client saw close", closes),
        ("connz gather", gathers),
    ] {
        v.sort();
        eprintln!(
            "measure: {what}: p50 {:?} max {:?} (n={})",
            v[v.len() / 2],
            v[v.len() - 1],
            v.len()
        );
    }
}

// ---- the commands ----

struct CliEnv {
    dir: tempfile::TempDir,
}

impl CliEnv {
    /// A service config for the commands; `system` adds the `[system]` table.
    fn new(url: &str, system: bool, extra: &str) -> CliEnv {
        let dir = tempfile::tempdir().unwrap();
        write_secret(&dir.path().join("sys.password"), "syspw\n");
        let system = if system {
            "[system]\nuser = \"sys\"\npassword_file = \"sys.password\"\n"
        } else {
            ""
        };
        let config = format!(
            r#"
[nats]
url = "{url}"
user = "auth"
password = "authpw"

[signing]
issuer_seed_file = "issuer.nk"

[[issuer]]
name = "corp"
issuer = "https://idp.example.test"
audience = "nats"

[[issuer]]
name = "github"
issuer = "https://token.actions.example.test"
audience = "nats"

[policy]
file = "policy.toml"

{system}
[revocation]
bucket = "{BUCKET}"
{extra}
"#
        );
        std::fs::write(dir.path().join("callout.toml"), config).unwrap();
        CliEnv { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("callout.toml")
    }

    fn run(&self, args: &[&str]) -> (i32, Value, String) {
        let config = self.config();
        let mut all = vec![args[0], "--config", config.to_str().unwrap()];
        all.extend(&args[1..]);
        let out = run_cli(&all);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (
            out.status.code().unwrap_or(-1),
            json,
            format!("{stdout}{stderr}"),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_command_closes_the_subjects_connections_on_every_server() {
    let nodes = Nodes::start(3);
    nodes.ready().await;
    let _callout = responder(&nodes).await;
    let env = CliEnv::new(&nodes.url(0), true, "");
    let mut alices = Vec::new();
    for i in 0..3 {
        alices.push(user(&nodes, i, &token("corp", "alice")).await.0);
    }
    let (github_alice, _, _) = user(&nodes, 1, &token("github", "alice")).await;
    let (bob, _, _) = user(&nodes, 2, &token("corp", "bob")).await;

    let (code, out, text) = env.run(&[
        "revoke",
        "--subject",
        "alice",
        "--issuer",
        "corp",
        "--reason",
        "left the company",
        "--for",
        "1h",
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(out["closed"], 3, "{text}");
    assert_eq!(out["failed"], 0, "{text}");
    assert_eq!(
        out["revoked"]["selector"],
        json!({"subject": "alice", "issuer": "corp"})
    );
    assert_eq!(out["revoked"]["reason"], "left the company");
    let created = out["revoked"]["created_at"].as_i64().unwrap();
    assert_eq!(out["revoked"]["expires_at"].as_i64(), Some(created + 3600));
    for alice in &mut alices {
        alice
            .expect_error("disconnected", Duration::from_secs(5))
            .await;
    }
    // The test's responder knows no revocations (the service will deny the
    // reconnect), so the closed clients may come back: close them for good.
    drop(alices);
    let sys = nodes.system(0).await;
    let corp_alice = ConnzQuery {
        user: Some("corp/alice".into()),
        account: None,
    };
    let gone = wait_until_async(Duration::from_secs(10), || async {
        sys.connz(&corp_alice)
            .await
            .is_ok_and(|g| g.connections.is_empty())
    })
    .await;
    assert!(gone, "corp/alice still connected");
    // Another issuer's alice and bob are left alone.
    round_trip(&github_alice.nats, "github.alice").await;
    round_trip(&bob.nats, "bob").await;

    let (code, list, text) = env.run(&["revocations", "--json"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{text}");
    assert_eq!(list[0]["reason"], "left the company");
    let (code, _, text) = env.run(&["revocations"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("subject \"alice\" of issuer \"corp\""),
        "{text}"
    );

    let (code, sessions, text) = env.run(&["sessions", "--json"]);
    assert_eq!(code, 0, "{text}");
    let mut who: Vec<String> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["issuer"].as_str().unwrap(),
                s["subject"].as_str().unwrap()
            )
        })
        .collect();
    who.sort();
    assert_eq!(who, vec!["corp/bob", "github/alice"], "{text}");
    let (code, _, text) = env.run(&["sessions"]);
    assert_eq!(code, 0);
    assert!(text.contains("corp/bob"), "{text}");

    let (code, out, text) = env.run(&["unrevoke", "--subject", "alice", "--issuer", "corp"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        out["unrevoked"],
        json!({"subject": "alice", "issuer": "corp"})
    );
    let (code, _, text) = env.run(&["unrevoke", "--subject", "alice", "--issuer", "corp"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no revocation in force"), "{text}");
    let (code, list, _) = env.run(&["revocations", "--json"]);
    assert_eq!((code, list), (0, json!([])));

    // Without --issuer: the subject under every issuer.
    let (code, out, text) = env.run(&["revoke", "--subject", "alice"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(out["closed"], 1, "{text}");
    assert_eq!(out["revoked"]["reason"], "revoked by an operator");
    assert!(out["revoked"].get("expires_at").is_none(), "{text}");
    let mut github_alice = github_alice;
    github_alice
        .expect_error("disconnected", Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_refuse_bad_input_with_exit_2_and_a_reason() {
    let nodes = Nodes::start(1);
    nodes.ready().await;
    let env = CliEnv::new(&nodes.url(0), true, "");
    let no_system = CliEnv::new(&nodes.url(0), false, "");
    let account = nkeys::KeyPair::new_account().public_key();
    let cases: Vec<(&CliEnv, Vec<&str>, &str)> = vec![
        (&env, vec!["revoke"], "--subject"),
        (
            &env,
            vec!["revoke", "--subject", "a", "--jti", "b"],
            "cannot be used with",
        ),
        (
            &env,
            vec!["revoke", "--jti", "b", "--issuer", "corp"],
            "--issuer goes with --subject",
        ),
        (
            &env,
            vec!["unrevoke", "--jti", "b", "--issuer", "corp"],
            "--issuer goes with --subject",
        ),
        (
            &env,
            vec!["revoke", "--subject", "a", "--issuer", "nope"],
            "not an [[issuer]] name",
        ),
        (&env, vec!["revoke", "--subject", ""], "subject is empty"),
        (
            &env,
            vec!["revoke", "--user-nkey", &account],
            "not a user public key",
        ),
        (
            &env,
            vec!["revoke", "--subject", "a", "--for", "0s"],
            "at least 1s",
        ),
        (
            &env,
            vec!["revoke", "--subject", "a", "--for", "soon"],
            "--for",
        ),
        (
            &env,
            vec!["revoke", "--subject", "a", "--reason", ""],
            "--reason",
        ),
        (
            &no_system,
            vec!["revoke", "--subject", "a"],
            "needs a [system] table",
        ),
        (&no_system, vec!["sessions"], "needs a [system] table"),
        (&env, vec!["unrevoke"], "--subject"),
        (&env, vec!["unrevoke", "--subject", "a"], "does not exist"),
        (&env, vec!["revocations"], "does not exist"),
    ];
    for (e, args, needle) in cases {
        let (code, _, text) = e.run(&args);
        assert_eq!(code, 2, "{args:?}: {text}");
        assert!(text.contains(needle), "{args:?}: {text}");
    }
    // A bad [system] table is a config error naming the file.
    let broken = CliEnv::new(&nodes.url(0), false, "[system]\nuser = \"sys\"\n");
    let (code, _, text) = broken.run(&["sessions"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("callout.toml") && text.contains("[system] needs credentials"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_without_jetstream_is_refused_with_exit_2() {
    let issuer = nkeys::KeyPair::new_account();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    // The same node without any jetstream.
    let config = node_config(port, "n1", dir.path(), &issuer.public_key(), "")
        .replace(
            &format!("jetstream {{ store_dir: \"{}\" }}\n", dir.path().display()),
            "",
        )
        .replace("jetstream: enabled, ", "");
    let _server = NatsServer::start(port, &config);
    let env = CliEnv::new(&format!("nats://127.0.0.1:{port}"), true, "");
    let (code, _, text) = env.run(&["revoke", "--subject", "alice"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("JetStream is not available"), "{text}");
    let (code, _, text) = env.run(&["revocations"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("JetStream is not available"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_connection_connects_from_the_config_with_least_privilege() {
    let nodes = Nodes::start(1);
    nodes.ready().await;
    let _callout = responder(&nodes).await;
    let env = CliEnv::new(&nodes.url(0), true, "");
    let config = nats_oidc_callout::config::Config::load(&env.config()).unwrap();
    let sys = SystemClient::connect(&config, Persistence::Command)
        .await
        .unwrap()
        .with_timeouts(Duration::from_secs(2), Duration::from_secs(2));
    let (_c, server_id, cid) = user(&nodes, 0, &token("corp", "alice")).await;
    assert_eq!(sys.servers().await.unwrap().len(), 1);
    assert_eq!(sys.kick(&server_id, cid).await, Kick::Closed);
    // Anything beyond its grants is refused by the server (no answer).
    let other = sys
        .client()
        .request("$SYS.REQ.SERVER.PING.VARZ", "{}".into());
    let refused = tokio::time::timeout(Duration::from_secs(3), other).await;
    assert!(!matches!(refused, Ok(Ok(_))), "VARZ answered: {refused:?}");
}
