//! What the servers' `$SYS.REQ.SERVER.*` replies hold (STATSZ, CONNZ), as
//! far as the service reads them; unknown fields are ignored.

use serde::Deserialize;

/// `server` in every system reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ServerInfo {
    /// `server_name`, or the id when none is set.
    pub name: String,
    /// The host the server listens on.
    pub host: String,
    /// The server's public NKey (N…); KICK and per-server CONNZ go to it.
    pub id: String,
    /// Its cluster's name; empty when not clustered.
    pub cluster: String,
    /// nats-server version.
    #[serde(rename = "ver")]
    pub version: String,
    /// JetStream is enabled on this server.
    pub jetstream: bool,
}

/// `error` in a system reply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(super) struct ApiError {
    pub(super) code: i64,
    pub(super) description: String,
}

/// The envelope of `$SYS.REQ.SERVER.*` replies.
#[derive(Debug, Deserialize)]
pub(super) struct ApiResponse<T> {
    #[serde(default)]
    pub(super) server: ServerInfo,
    pub(super) data: Option<T>,
    pub(super) error: Option<ApiError>,
}

/// A server as its STATSZ reply describes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServerStatus {
    /// Who answered.
    pub server: ServerInfo,
    /// What it counts.
    #[serde(rename = "statsz")]
    pub stats: ServerStats,
}

/// `statsz` in a STATSZ reply (the parts read here).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServerStats {
    /// Client connections open on this server.
    pub connections: u64,
    /// Servers this one knows of in the system, itself included.
    pub active_servers: usize,
    /// Present when JetStream is enabled.
    pub jetstream: Option<JetStreamStats>,
}

/// `statsz.jetstream`: what sizes the revocation bucket's replicas.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct JetStreamStats {
    /// Only the meta leader reports the cluster's size.
    pub meta: Option<MetaCluster>,
}

/// The JetStream meta group as its leader reports it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MetaCluster {
    /// JetStream servers in the cluster, including ones that are down.
    pub cluster_size: usize,
}

/// KV replicas for a cluster: min(3, JetStream servers), at least 1.
pub fn replicas_for(servers: &[ServerStatus]) -> usize {
    let seen = servers.iter().filter(|s| s.server.jetstream).count();
    let meta = servers
        .iter()
        .filter_map(|s| s.stats.jetstream.as_ref()?.meta.as_ref())
        .map(|m| m.cluster_size)
        .max()
        .unwrap_or(0);
    seen.max(meta).clamp(1, 3)
}

/// One page of a server's CONNZ.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(super) struct Connz {
    pub(super) server_id: String,
    pub(super) total: usize,
    pub(super) offset: usize,
    pub(super) limit: usize,
    pub(super) connections: Vec<ConnInfo>,
}

/// One connection in CONNZ (with `"auth": true`); unknown fields ignored.
/// `server_id`/`server_name` are not in the server's JSON: the gather sets
/// them from the reply's envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ConnInfo {
    /// The connection's id, unique per server (KICK takes it).
    pub cid: u64,
    /// `Client` or `Leafnode`.
    pub kind: String,
    /// `nats`, `websocket`, `mqtt`, …
    #[serde(rename = "type")]
    pub conn_type: String,
    /// The client's address as the server sees it.
    pub ip: String,
    /// The client's port.
    pub port: u16,
    /// RFC 3339.
    pub start: String,
    /// Last measured round trip, as the server formats it (`1.2ms`).
    pub rtt: String,
    /// The CONNECT `name` the client chose (not trustworthy).
    pub name: String,
    /// The client library's language (CONNECT `lang`).
    pub lang: String,
    /// The client library's version (CONNECT `version`).
    pub version: String,
    /// For a callout user: the `name` of the user JWT the service issued.
    pub authorized_user: String,
    /// The account the connection is in.
    pub account: String,
    /// The user JWT, when the server shows it (empty for callout users).
    pub jwt: String,
    /// Who signed the user as the server names it (in config mode the
    /// target account's name).
    pub issuer_key: String,
    /// The account's name tag.
    pub name_tag: String,
    /// The user's tags as the server shows them (empty for callout users).
    pub tags: Vec<String>,
    /// The MQTT client id, for MQTT connections.
    pub mqtt_client: String,
    /// The id of the server holding the connection (from the envelope).
    #[serde(skip)]
    pub server_id: String,
    /// That server's name (from the envelope).
    #[serde(skip)]
    pub server_name: String,
}
