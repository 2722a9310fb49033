//! What the servers' `$SYS.REQ.SERVER.*` replies hold (STATSZ, CONNZ), as
//! far as the service reads them; unknown fields are ignored.

use serde::Deserialize;

/// `server` in every system reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ServerInfo {
    pub name: String,
    pub host: String,
    pub id: String,
    pub cluster: String,
    #[serde(rename = "ver")]
    pub version: String,
    pub jetstream: bool,
}

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
    pub server: ServerInfo,
    #[serde(rename = "statsz")]
    pub stats: ServerStats,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServerStats {
    pub connections: u64,
    /// Servers this one knows of in the system, itself included.
    pub active_servers: usize,
    pub jetstream: Option<JetStreamStats>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct JetStreamStats {
    /// Only the meta leader reports the cluster's size.
    pub meta: Option<MetaCluster>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MetaCluster {
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
    pub cid: u64,
    /// `Client` or `Leafnode`.
    pub kind: String,
    /// `nats`, `websocket`, `mqtt`, …
    #[serde(rename = "type")]
    pub conn_type: String,
    pub ip: String,
    pub port: u16,
    /// RFC 3339.
    pub start: String,
    pub rtt: String,
    /// The CONNECT `name` the client chose (not trustworthy).
    pub name: String,
    pub lang: String,
    pub version: String,
    /// For a callout user: the `name` of the user JWT the service issued.
    pub authorized_user: String,
    pub account: String,
    pub jwt: String,
    pub issuer_key: String,
    pub name_tag: String,
    pub tags: Vec<String>,
    pub mqtt_client: String,
    #[serde(skip)]
    pub server_id: String,
    #[serde(skip)]
    pub server_name: String,
}
