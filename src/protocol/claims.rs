//! The `nats` objects of the three JWTs an auth callout handles. Every field
//! the Go side marks `omitempty` is defaulted, so requests from any server
//! version 2.10+ parse.

// Field names and meanings are nats-io/jwt's (v2 `authorization.go`,
// `user_claims.go`, `account_claims.go`); documented there, not repeated here.
#![allow(missing_docs)]

use serde::{Deserialize, Serialize};

use super::jwt::NatsType;

/// Subject nats-server publishes authorization requests on.
pub const AUTH_SUBJECT: &str = "$SYS.REQ.USER.AUTH";

/// The `aud` of every request the server sends.
pub const AUTHORIZATION_REQUEST_AUDIENCE: &str = "nats-authorization-request";

/// The `nats` object of the request the server sends for each connect.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthorizationRequest {
    pub server_id: ServerId,
    pub user_nkey: String,
    pub client_info: ClientInfo,
    pub connect_opts: ConnectOpts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_tls: Option<ClientTls>,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
}

/// The server asking; `id` is the `aud` our response must carry.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerId {
    pub name: String,
    pub host: String,
    pub id: String,
    pub version: String,
    pub cluster: String,
    pub tags: Vec<String>,
    pub xkey: String,
}

/// What the server knows of the connecting client (host, type, …).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientInfo {
    pub host: String,
    pub id: u64,
    pub user: String,
    pub name: String,
    pub tags: Vec<String>,
    pub name_tag: String,
    pub kind: String,
    #[serde(rename = "type")]
    pub conn_type: String,
    pub mqtt_id: String,
    pub nonce: String,
}

/// The client's CONNECT options, where the bearer token arrives.
#[derive(Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectOpts {
    pub jwt: String,
    pub nkey: String,
    pub sig: String,
    pub auth_token: String,
    pub user: String,
    pub pass: String,
    pub name: String,
    pub lang: String,
    pub version: String,
    pub protocol: i64,
}

/// Credentials never reach a log through `{:?}`.
impl std::fmt::Debug for ConnectOpts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOpts")
            .field("user", &self.user)
            .field("nkey", &self.nkey)
            .field("name", &self.name)
            .field("lang", &self.lang)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// The connection's TLS state; see [`crate::certificate`] for what it holds.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientTls {
    pub version: String,
    pub cipher: String,
    pub certs: Vec<String>,
    pub verified_chains: Vec<Vec<String>>,
}

impl NatsType for AuthorizationRequest {
    const TYPE: &'static str = "authorization_request";
    fn type_and_version(&self) -> (&str, u32) {
        (&self.kind, self.version)
    }
}

/// Exactly one of `jwt` and `error` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_account: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
}

impl AuthorizationResponse {
    /// Admits the client as the user in `user_jwt`.
    pub fn allow(user_jwt: String) -> Self {
        Self::new(Some(user_jwt), None)
    }

    /// Refuses the client; the server logs `reason`.
    pub fn deny(reason: String) -> Self {
        Self::new(None, Some(reason))
    }

    fn new(jwt: Option<String>, error: Option<String>) -> Self {
        Self {
            jwt,
            error,
            issuer_account: None,
            kind: Self::TYPE.to_owned(),
            version: 2,
        }
    }
}

impl NatsType for AuthorizationResponse {
    const TYPE: &'static str = "authorization_response";
    fn type_and_version(&self) -> (&str, u32) {
        (&self.kind, self.version)
    }
}

/// Subjects allowed and denied for publish or subscribe.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// Replies allowed to requests received; `ttl` is a Go `time.Duration`:
/// nanoseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponsePermission {
    pub max: i64,
    pub ttl: i64,
}

/// The `nats` object of a user JWT, in nats-io/jwt's field order. The
/// limits are always unlimited: the server ignores them for callout users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    #[serde(rename = "pub", default)]
    pub publish: Permission,
    #[serde(rename = "sub", default)]
    pub subscribe: Permission,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp: Option<ResponsePermission>,
    pub subs: i64,
    pub data: i64,
    pub payload: i64,
    /// Sentinels are bearer tokens: presented without a nonce signature.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bearer_token: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_account: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
}

impl User {
    /// A v2 user with these permissions and unlimited limits.
    pub fn new(
        publish: Permission,
        subscribe: Permission,
        resp: Option<ResponsePermission>,
    ) -> Self {
        Self {
            publish,
            subscribe,
            resp,
            subs: -1,
            data: -1,
            payload: -1,
            bearer_token: false,
            issuer_account: None,
            kind: Self::TYPE.to_owned(),
            version: 2,
        }
    }
}

impl NatsType for User {
    const TYPE: &'static str = "user";
    fn type_and_version(&self) -> (&str, u32) {
        (&self.kind, self.version)
    }
}

/// `authorization` of an account JWT: switches the auth callout on for
/// operator mode.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalAuthorization {
    pub auth_users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_accounts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xkey: Option<String>,
}

/// Account limits, all unlimited: a missing limit would read as zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLimits {
    pub subs: i64,
    pub data: i64,
    pub payload: i64,
    pub imports: i64,
    pub exports: i64,
    pub wildcards: bool,
    pub conn: i64,
    pub leaf: i64,
    /// JetStream for the account; absent means off.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub jetstream: Option<JetStreamLimits>,
}

/// nats-io/jwt's JetStream limits (flattened into an account's `limits`);
/// any non-zero storage turns JetStream on for the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JetStreamLimits {
    pub mem_storage: i64,
    pub disk_storage: i64,
    pub streams: i64,
    pub consumer: i64,
}

impl JetStreamLimits {
    /// Every limit -1, which turns JetStream on for the account.
    pub fn unlimited() -> Self {
        Self {
            mem_storage: -1,
            disk_storage: -1,
            streams: -1,
            consumer: -1,
        }
    }
}

impl Default for AccountLimits {
    fn default() -> Self {
        Self {
            subs: -1,
            data: -1,
            payload: -1,
            imports: -1,
            exports: -1,
            wildcards: true,
            conn: -1,
            leaf: -1,
            jetstream: None,
        }
    }
}

/// The `nats` object of an account JWT (operator mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub limits: AccountLimits,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<ExternalAuthorization>,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
}

impl Account {
    /// A v2 account; `authorization` switches the callout on for it.
    pub fn new(signing_keys: Vec<String>, authorization: Option<ExternalAuthorization>) -> Self {
        Self {
            limits: AccountLimits::default(),
            signing_keys,
            authorization,
            kind: Self::TYPE.to_owned(),
            version: 2,
        }
    }
}

impl NatsType for Account {
    const TYPE: &'static str = "account";
    fn type_and_version(&self) -> (&str, u32) {
        (&self.kind, self.version)
    }
}

/// The `nats` object of an operator JWT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_account: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
}

impl Operator {
    /// A v2 operator whose system account is `system_account`.
    pub fn new(system_account: String) -> Self {
        Self {
            system_account: Some(system_account),
            kind: Self::TYPE.to_owned(),
            version: 2,
        }
    }
}

impl NatsType for Operator {
    const TYPE: &'static str = "operator";
    fn type_and_version(&self) -> (&str, u32) {
        (&self.kind, self.version)
    }
}

/// A `.creds` file: a user JWT and its seed, in the format NATS clients read.
pub fn creds(user_jwt: &str, user_seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{user_seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}
