//! Revocation building blocks against real nats-server processes: the
//! system connection (CONNZ gather, KICK), what CONNZ shows of a
//! callout-issued user, the shared revocation bucket and its watchers, and
//! the `revoke`/`unrevoke`/`revocations`/`sessions` commands.
//!
//! Callout users come from a small in-test responder that answers
//! `$SYS.REQ.USER.AUTH` with users named by `session::user_name`, the way
//! the service names them; the server side is entirely real.

mod bucket;
mod cli;
mod system;

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
/// Retried (bounded): the responder's subscription reaches the other nodes
/// over the routes a moment after it subscribes on node 1.
async fn user(nodes: &Nodes, i: usize, token: &str) -> (Client, String, u64) {
    let client = connect_token_eventually(&nodes.url(i), token)
        .await
        .unwrap_or_else(|| panic!("callout user refused on node {i}:\n{}", nodes.logs()));
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
