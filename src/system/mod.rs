//! The system-account connection (`[system]`): lists live connections on
//! every server (CONNZ) and closes one (KICK). Both handlers live only in
//! the system account, so this is a separate user from `[nats]`.
//!
//! Least privilege — the system user needs exactly:
//!
//! ```text
//! publish:   [ "$SYS.REQ.SERVER.PING.STATSZ", "$SYS.REQ.SERVER.PING.CONNZ",
//!              "$SYS.REQ.SERVER.*.CONNZ", "$SYS.REQ.SERVER.*.KICK" ]
//! subscribe: [ "_INBOX_callout_sys.>" ]          # INBOX_PREFIX
//! ```
//!
//! In config mode the user must also be listed in `auth_callout { auth_users }`,
//! or its own connect is sent to the callout.

mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tokio::time::Instant;

use crate::config::Config;
use crate::connect::{connect, ConnectError, Credentials, Persistence};
pub use wire::{
    replicas_for, ConnInfo, JetStreamStats, MetaCluster, ServerInfo, ServerStats, ServerStatus,
};
use wire::{ApiResponse, Connz};

/// Reply subjects of the system connection: `_INBOX_callout_sys.>` is the
/// only subscription the system user needs.
pub const INBOX_PREFIX: &str = "_INBOX_callout_sys";

/// Everything the system user must be allowed to publish (least privilege).
pub const SYSTEM_PUBLISH: [&str; 4] = [
    "$SYS.REQ.SERVER.PING.STATSZ",
    "$SYS.REQ.SERVER.PING.CONNZ",
    "$SYS.REQ.SERVER.*.CONNZ",
    "$SYS.REQ.SERVER.*.KICK",
];

/// Everything the system user must be allowed to subscribe to.
pub const SYSTEM_SUBSCRIBE: [&str; 1] = ["_INBOX_callout_sys.>"];

/// How long one request (KICK, a CONNZ page) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest a cluster-wide gather waits for servers that stay silent.
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

/// CONNZ page size (nats-server's default and a ~0.5 MB reply with `auth`).
const PAGE: usize = 1024;

/// Pages overlap by this many entries, so connections closing between two
/// page requests (which shifts later ones to lower offsets) are not skipped.
const PAGE_OVERLAP: usize = 64;

/// No server pages through more than this many connections per gather.
const MAX_PAGES: usize = 1000;

/// Why the system connection cannot be made or a request cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// The config has no `[system]` table.
    #[error("no [system] table in the config: closing and listing live connections needs a system-account user")]
    NotConfigured,
    /// Connecting as the system user failed (unreachable, bad credentials).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Subscribing, publishing or flushing a cluster-wide request failed.
    #[error("system request on {subject} failed: {reason}")]
    Request {
        /// The `$SYS.REQ.SERVER.PING.*` subject.
        subject: String,
        /// What the client said.
        reason: String,
    },
}

/// What a KICK achieved. Only `Refused`, `Unreachable` and `TimedOut` leave
/// a connection possibly open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kick {
    /// The server closed the connection.
    Closed,
    /// The server knows no such cid: it is gone already (closed by the client,
    /// expired, or kicked by another instance). Not an error for racing callers.
    NoSuchClient,
    /// No server with that id answers (it left the cluster or restarted under
    /// a new id, which closed its connections).
    Unreachable,
    /// The server answered with another error.
    Refused(String),
    /// No answer in time (also what a missing publish permission looks like).
    TimedOut,
}

impl Kick {
    /// The connection is certainly not open any more.
    pub fn is_gone(&self) -> bool {
        matches!(self, Kick::Closed | Kick::NoSuchClient)
    }
}

/// Which connections a CONNZ gather asks for (server-side filters).
#[derive(Debug, Clone, Default)]
pub struct ConnzQuery {
    /// Exact `authorized_user`.
    pub user: Option<String>,
    /// Exact account name.
    pub account: Option<String>,
}

/// Every server's answer to one cluster-wide CONNZ.
#[derive(Debug, Clone, Default)]
pub struct ConnzGather {
    /// Every server's connections, each with its server's id and name.
    pub connections: Vec<ConnInfo>,
    /// Servers that answered.
    pub servers: Vec<ServerInfo>,
    /// Ids of servers known from STATSZ that did not answer CONNZ in time.
    pub missing: Vec<String>,
    /// Fewer servers answered STATSZ than they say exist.
    pub unknown_missing: usize,
    /// (server id, error) for servers that answered with an error.
    pub errors: Vec<(String, String)>,
}

impl ConnzGather {
    /// Every server known to exist answered without error.
    pub fn complete(&self) -> bool {
        self.missing.is_empty() && self.unknown_missing == 0 && self.errors.is_empty()
    }
}

/// A connection as the system user.
#[derive(Clone)]
pub struct SystemClient {
    client: async_nats::Client,
    request_timeout: Duration,
    gather_timeout: Duration,
}

impl SystemClient {
    /// Connects with `[system]`; a command fails fast, the service retries.
    pub async fn connect(config: &Config, persistence: Persistence) -> Result<Self, SystemError> {
        let system = config.system.as_ref().ok_or(SystemError::NotConfigured)?;
        let client = connect(
            &system.urls,
            Credentials::of_system(system),
            "[system]",
            Some(INBOX_PREFIX),
            persistence,
        )
        .await?;
        Ok(Self::new(client))
    }

    /// Wraps a client that is already connected as a system user with
    /// [`INBOX_PREFIX`] inboxes.
    pub fn new(client: async_nats::Client) -> Self {
        Self {
            client,
            request_timeout: REQUEST_TIMEOUT,
            gather_timeout: GATHER_TIMEOUT,
        }
    }

    /// Replaces the default timeouts (2 s each) of one request and of a
    /// cluster-wide gather.
    pub fn with_timeouts(mut self, request: Duration, gather: Duration) -> Self {
        self.request_timeout = request;
        self.gather_timeout = gather;
        self
    }

    /// The underlying connection, for requests this type does not wrap.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Closes connection `cid` on server `server_id`.
    pub async fn kick(&self, server_id: &str, cid: u64) -> Kick {
        let subject = format!("$SYS.REQ.SERVER.{server_id}.KICK");
        let body = json!({ "cid": cid }).to_string();
        let reply = tokio::time::timeout(
            self.request_timeout,
            self.client.request(subject, body.into()),
        )
        .await;
        let msg = match reply {
            Err(_) => return Kick::TimedOut,
            Ok(Err(e)) => {
                return match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => Kick::Unreachable,
                    async_nats::RequestErrorKind::TimedOut => Kick::TimedOut,
                    _ => Kick::Refused(e.to_string()),
                }
            }
            Ok(Ok(msg)) => msg,
        };
        match serde_json::from_slice::<ApiResponse<serde_json::Value>>(&msg.payload) {
            Ok(ApiResponse { error: None, .. }) => Kick::Closed,
            Ok(ApiResponse { error: Some(e), .. }) if e.description.contains("no such client") => {
                Kick::NoSuchClient
            }
            Ok(ApiResponse { error: Some(e), .. }) => {
                Kick::Refused(format!("{} (code {})", e.description, e.code))
            }
            Err(e) => Kick::Refused(format!("unreadable KICK reply: {e}")),
        }
    }

    /// Live servers: one STATSZ reply each, gathered until as many servers
    /// answered as they say exist, or the gather timeout.
    pub async fn servers(&self) -> Result<Vec<ServerStatus>, SystemError> {
        let mut statsz = self.ping("STATSZ", "{}".to_owned()).await?;
        let deadline = Instant::now() + self.gather_timeout;
        let mut seen = BTreeMap::new();
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, statsz.next()).await {
            if let Ok(s) = serde_json::from_slice::<ServerStatus>(&msg.payload) {
                seen.insert(s.server.id.clone(), s);
            }
            let expected = seen.values().map(|s| s.stats.active_servers).max();
            if expected.is_some_and(|n| seen.len() >= n) {
                break;
            }
        }
        Ok(seen.into_values().collect())
    }

    /// CONNZ (`auth: true`) from every server: one PING gather for the first
    /// page (stopping once every server STATSZ reveals has answered, or at
    /// the gather timeout), then per-server pages for servers with more.
    pub async fn connz(&self, query: &ConnzQuery) -> Result<ConnzGather, SystemError> {
        let options = |offset: usize| {
            let mut o = json!({ "auth": true, "offset": offset, "limit": PAGE });
            if let Some(u) = &query.user {
                o["user"] = json!(u);
            }
            if let Some(a) = &query.account {
                o["acc"] = json!(a);
            }
            o.to_string()
        };
        let mut statsz = self.ping("STATSZ", "{}".to_owned()).await?;
        let mut connz = self.ping("CONNZ", options(0)).await?;
        let deadline = Instant::now() + self.gather_timeout;
        let mut known = BTreeSet::new();
        let mut expected = 0;
        let mut pages: BTreeMap<String, ApiResponse<Connz>> = BTreeMap::new();
        let mut statsz_open = true;
        loop {
            let answered = known.iter().all(|id| pages.contains_key(id));
            if !known.is_empty() && answered && pages.len() >= expected {
                break;
            }
            tokio::select! {
                msg = statsz.next(), if statsz_open => match msg {
                    Some(msg) => {
                        if let Ok(s) = serde_json::from_slice::<ServerStatus>(&msg.payload) {
                            expected = expected.max(s.stats.active_servers);
                            known.insert(s.server.id);
                        }
                    }
                    None => statsz_open = false,
                },
                msg = connz.next() => match msg {
                    Some(msg) => {
                        if let Ok(r) = serde_json::from_slice::<ApiResponse<Connz>>(&msg.payload) {
                            pages.insert(r.server.id.clone(), r);
                        }
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        drop((statsz, connz));

        let mut gather = ConnzGather {
            unknown_missing: expected.saturating_sub(known.len().max(pages.len())),
            missing: known
                .iter()
                .filter(|id| !pages.contains_key(*id))
                .cloned()
                .collect(),
            ..ConnzGather::default()
        };
        for (id, first) in pages {
            let server = first.server.clone();
            match self.rest_of_connz(first, &options).await {
                Ok(conns) => gather.connections.extend(conns.into_iter().map(|mut c| {
                    c.server_id = server.id.clone();
                    c.server_name = server.name.clone();
                    c
                })),
                Err(e) => gather.errors.push((id, e)),
            }
            gather.servers.push(server);
        }
        Ok(gather)
    }

    /// Pages through one server's CONNZ from its first page.
    async fn rest_of_connz(
        &self,
        first: ApiResponse<Connz>,
        options: &impl Fn(usize) -> String,
    ) -> Result<Vec<ConnInfo>, String> {
        let id = first.server.id.clone();
        let mut by_cid = BTreeMap::new();
        let mut page = first;
        for _ in 0..MAX_PAGES {
            if let Some(e) = page.error {
                return Err(format!("{} (code {})", e.description, e.code));
            }
            let data = page.data.unwrap_or_default();
            let got = data.connections.len();
            let limit = if data.limit == 0 { PAGE } else { data.limit };
            let end = data.offset + got;
            by_cid.extend(data.connections.into_iter().map(|c| (c.cid, c)));
            // The total counts connections before a `user` filter, so a
            // short page is the reliable end.
            if got < limit || end >= data.total {
                return Ok(by_cid.into_values().collect());
            }
            let next = end - PAGE_OVERLAP.min(got / 2);
            let subject = format!("$SYS.REQ.SERVER.{id}.CONNZ");
            let reply = tokio::time::timeout(
                self.request_timeout,
                self.client.request(subject, options(next).into()),
            )
            .await
            .map_err(|_| "CONNZ page timed out".to_owned())?
            .map_err(|e| format!("CONNZ page: {e}"))?;
            page = serde_json::from_slice(&reply.payload)
                .map_err(|e| format!("unreadable CONNZ page: {e}"))?;
        }
        Err(format!("more than {MAX_PAGES} CONNZ pages"))
    }

    /// Publishes a `$SYS.REQ.SERVER.PING.<what>` request; every server
    /// replies on the returned subscription.
    async fn ping(&self, what: &str, body: String) -> Result<async_nats::Subscriber, SystemError> {
        let subject = format!("$SYS.REQ.SERVER.PING.{what}");
        let fail = |reason: String| SystemError::Request {
            subject: subject.clone(),
            reason,
        };
        let inbox = self.client.new_inbox();
        let sub = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| fail(e.to_string()))?;
        self.client
            .publish_with_reply(subject.clone(), inbox, body.into())
            .await
            .map_err(|e| fail(e.to_string()))?;
        self.client.flush().await.map_err(|e| fail(e.to_string()))?;
        Ok(sub)
    }
}

#[cfg(test)]
mod tests;
