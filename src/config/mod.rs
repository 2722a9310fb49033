//! The service config: a TOML file ([`file`], the schema) compiled into
//! runtime settings ([`Config`]), like the policy. Every error is collected,
//! syntax and meaning alike, each with file:line:column. Relative paths are
//! resolved against the config file's directory at compile time.

mod builder;
mod compile;
mod file;
mod introspection;
mod issuer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

pub use crate::flood::FloodConfig;
pub use builder::{ConfigBuilder, IssuerBuilder};
pub use introspection::{Introspection, IntrospectionAuth, TokenType};

use crate::location::LocatedError;

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read (missing, unreadable, not UTF-8).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file asked for.
        path: PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
    /// The file was read but is not a valid config: every problem found,
    /// one line each, with its file:line:column.
    #[error("{}", join_errors(.0))]
    Invalid(Vec<LocatedError>),
}

fn join_errors(errors: &[LocatedError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The service's settings, checked and with every path resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its directory, which relative paths were taken from.
    pub base_dir: PathBuf,
    /// `[nats]`: the connection that answers callout requests.
    pub nats: NatsConfig,
    /// `[signing]`: the keys that sign (and decrypt) callout replies.
    pub signing: SigningConfig,
    /// `[token]`: where bearer tokens are read and how long users may live.
    pub token: TokenConfig,
    /// `[[issuer]]`, in file order: a token goes to the one with its `iss`.
    pub issuers: Vec<IssuerConfig>,
    /// Target accounts for operator mode; none means config mode.
    pub accounts: Vec<AccountConfig>,
    /// `[policy]`: the policy file and how it is reloaded.
    pub policy: PolicyRef,
    /// `[http]`: metrics and health endpoints; none means no listener.
    pub http: Option<HttpConfig>,
    /// `[audit]`: where decisions are published besides the log.
    pub audit: AuditConfig,
    /// Per-source failure tracking and the tarpit for failing sources.
    pub flood: FloodConfig,
    /// A system-account user; without it, closing and listing live
    /// connections is off.
    pub system: Option<SystemConfig>,
    /// `[revocation]`: the shared revocation bucket and policy-change handling.
    pub revocation: RevocationConfig,
}

/// `[system]`: a system-account user, to close (KICK) and list (CONNZ) live
/// connections on every server.
#[derive(Debug, Clone)]
pub struct SystemConfig {
    /// Default: the `[nats]` URLs.
    pub urls: Vec<String>,
    /// Goes with `password` or `password_file`.
    pub user: Option<String>,
    /// Exactly one of the credentials below is set.
    pub password: Option<String>,
    /// The password, read from this file.
    pub password_file: Option<PathBuf>,
    /// A server `authorization` token.
    pub token: Option<String>,
    /// A user NKey seed.
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (user JWT and seed), for operator mode.
    pub creds_file: Option<PathBuf>,
    /// Client TLS towards the servers.
    pub tls: Option<TlsConfig>,
}

/// The default `[revocation] bucket`.
pub const DEFAULT_REVOCATION_BUCKET: &str = "nats_oidc_callout_revocations";

/// `[revocation]`: the JetStream KV bucket every instance shares, and what
/// a policy change does to live sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    /// The KV bucket name; default [`DEFAULT_REVOCATION_BUCKET`].
    pub bucket: String,
    /// What a policy reload does to live sessions.
    pub on_policy_change: OnPolicyChange,
}

/// What happens to live sessions whose grant a policy change affects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnPolicyChange {
    /// Close sessions whose grant changed; they reconnect into the new one.
    #[default]
    KickChanged,
    /// Close only sessions the new policy denies.
    KickDenied,
    /// Leave live sessions alone until their user JWT expires.
    Keep,
}

/// How the service connects to NATS (`[nats]`).
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `url` or `urls`: the servers to try.
    pub urls: Vec<String>,
    /// The callout user (in `auth_callout { auth_users }`); a password
    /// needs it.
    pub user: Option<String>,
    /// At most one of the credentials below is set.
    pub password: Option<String>,
    /// The password, read from this file.
    pub password_file: Option<PathBuf>,
    /// A server `authorization` token.
    pub token: Option<String>,
    /// A user NKey seed.
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (user JWT and seed), for operator mode.
    pub creds_file: Option<PathBuf>,
    /// Instances in one queue group share the requests (HA); default
    /// `nats-oidc-callout`.
    pub queue_group: String,
    /// Client TLS towards the servers.
    pub tls: Option<TlsConfig>,
    /// Name of the callout account, for `server-config` and `doctor`.
    pub account: String,
    /// Requests decided at once; beyond this each gets an immediate signed
    /// denial ("service saturated") rather than a silent server timeout.
    pub max_in_flight: usize,
    /// Time one decision may take before it is denied with a reason; kept
    /// below the server's `authorization { timeout }` (default 2 s).
    pub request_timeout: Duration,
}

/// Client TLS (`tls = { … }`) for a NATS connection.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// CA certificates the servers are checked against; default: the
    /// system roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate, for servers that verify clients.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    pub key_file: Option<PathBuf>,
}

/// The keys of the callout (`[signing]`).
#[derive(Debug, Clone)]
pub struct SigningConfig {
    /// Account seed that signs replies and users; its public key is the
    /// server's `auth_callout.issuer`.
    pub issuer_seed_file: PathBuf,
    /// Curve seed for encrypted callout (`auth_callout.xkey`); none means
    /// plain requests.
    pub xkey_seed_file: Option<PathBuf>,
}

/// CONNECT fields a bearer token may arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// CONNECT `auth_token`.
    AuthToken,
    /// CONNECT `pass` (clients that can only send user/password).
    Password,
}

/// Bearer tokens and issued users (`[token]`).
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// Fields read for the token, in order; the first non-empty one wins.
    pub sources: Vec<TokenSource>,
    /// Hard cap on any issued user JWT's lifetime.
    pub max_ttl: Duration,
    /// Tokens longer than this are refused before any parsing.
    pub max_token_bytes: usize,
    /// Verified tokens kept in memory (reconnect storms cost no signature checks).
    pub cache_size: u64,
}

/// One trusted IdP (`[[issuer]]`).
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// The name policy rules refer to.
    pub name: String,
    /// Must equal the token's `iss` exactly.
    pub issuer: String,
    /// The token's `aud` must contain one of these.
    pub audience: Vec<String>,
    /// Keys from this URL instead of discovery.
    pub jwks_uri: Option<String>,
    /// Keys from this file instead of discovery or a URL.
    pub jwks_file: Option<PathBuf>,
    /// Signature algorithms accepted (never HMAC); default RS256.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// The claim holding scopes: `scope` (space-separated) or an array
    /// such as `scp`.
    pub scope_claim: String,
    /// Background refresh interval of the keys.
    pub jwks_refresh: Duration,
    /// Shortest interval between two refetches caused by an unknown `kid`.
    pub jwks_min_refetch: Duration,
    /// Allow plain-http discovery/JWKS on a non-loopback host.
    pub allow_insecure_http: bool,
    /// Keys not refreshed for this long (an IdP outage) stop being used.
    pub jwks_max_stale: Duration,
    /// Required JWT header `typ`, e.g. "at+jwt" for RFC 9068 access tokens.
    pub require_typ: Option<String>,
    /// Claims every token must carry (besides exp, iss, aud).
    pub required_claims: Vec<String>,
    /// Refuse tokens issued (`iat`) longer ago than this; requires `iat`.
    pub max_token_age: Option<Duration>,
    /// RFC 8705: whether every token must be bound to the connection's
    /// client certificate (`required`), or only those that say so.
    pub certificate_bound: crate::certificate::CertificateBound,
    /// Which kinds of token this issuer accepts; `[Jwt]` by default.
    pub token_types: Vec<TokenType>,
    /// Present when opaque tokens are accepted or `introspect_jwt` is set.
    pub introspection: Option<Introspection>,
}

/// Which of the three key sources an issuer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeySourceKind {
    /// The issuer's discovery document names the JWKS URL.
    Discovery,
    /// `jwks_uri`.
    Uri,
    /// `jwks_file`.
    File,
}

impl IssuerConfig {
    /// Whether this issuer takes tokens of that kind (`token_types`).
    pub(crate) fn accepts(&self, kind: TokenType) -> bool {
        self.token_types.contains(&kind)
    }

    /// Whether JWTs that verified are also introspected.
    pub(crate) fn introspects_jwt(&self) -> bool {
        self.introspection
            .as_ref()
            .is_some_and(|i| i.introspect_jwt)
    }

    /// Where the keys come from: a file, a URL, or discovery.
    pub(crate) fn key_source(&self) -> KeySourceKind {
        match (&self.jwks_file, &self.jwks_uri) {
            (Some(_), _) => KeySourceKind::File,
            (None, Some(_)) => KeySourceKind::Uri,
            (None, None) => KeySourceKind::Discovery,
        }
    }
}

/// The policy file (`[policy]`).
#[derive(Debug, Clone)]
pub struct PolicyRef {
    /// The policy's path.
    pub file: PathBuf,
    /// Reload when the file's content changes (besides SIGHUP).
    pub watch: bool,
    /// How often the file is checked for changes.
    pub watch_interval: Duration,
}

/// An operator-mode target account: users for it are signed with its key
/// (or one of its signing keys, then naming the account as issuer_account).
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// The name policy rules use.
    pub name: String,
    /// The account's public key (A…).
    pub public_key: String,
    /// Seed of the account key or of one of its signing keys.
    pub signing_key_file: PathBuf,
}

/// Where decisions are recorded besides the log.
#[derive(Debug, Clone, Default)]
pub struct AuditConfig {
    /// Publish every decision as JSON on this NATS subject.
    pub subject: Option<String>,
}

/// The HTTP listener (`[http]`): `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `host:port` to listen on.
    pub listen: String,
}

impl Config {
    /// Reads and compiles the config file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &source)
    }

    /// Compiles config text; `path` names it in errors and is where
    /// relative paths are taken from.
    pub fn parse(path: &Path, source: &str) -> Result<Self, ConfigError> {
        compile::compile(path, source).map_err(ConfigError::Invalid)
    }

    /// A path taken relative to the config's directory (paths from the file
    /// are already resolved; this is for paths given elsewhere).
    pub(crate) fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Operator (decentralized JWT) mode: target accounts are configured.
    pub(crate) fn operator_mode(&self) -> bool {
        !self.accounts.is_empty()
    }

    /// The `[nats]` servers.
    pub(crate) fn nats_urls(&self) -> Vec<String> {
        self.nats.urls.clone()
    }
}

#[cfg(test)]
mod tests;
