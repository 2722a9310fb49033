//! The service config: a TOML file ([`file`], the schema) compiled into
//! runtime settings ([`Config`]), like the policy. Every error is collected,
//! syntax and meaning alike, each with file:line:column. Relative paths are
//! resolved against the config file's directory at compile time.

mod builder;
mod compile;
mod file;
mod introspection;

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

pub use crate::flood::FloodConfig;
pub use builder::{ConfigBuilder, IssuerBuilder};
pub use introspection::{Introspection, IntrospectionAuth, TokenType};

use crate::location::LocatedError;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
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
    pub nats: NatsConfig,
    pub signing: SigningConfig,
    pub token: TokenConfig,
    pub issuers: Vec<IssuerConfig>,
    /// Target accounts for operator mode; none means config mode.
    pub accounts: Vec<AccountConfig>,
    pub policy: PolicyRef,
    pub http: Option<HttpConfig>,
    pub audit: AuditConfig,
    /// Per-source failure tracking and the tarpit for failing sources.
    pub flood: FloodConfig,
    /// A system-account user; without it, closing and listing live
    /// connections is off.
    pub system: Option<SystemConfig>,
    pub revocation: RevocationConfig,
}

/// `[system]`: a system-account user, to close (KICK) and list (CONNZ) live
/// connections on every server.
#[derive(Debug, Clone)]
pub struct SystemConfig {
    /// Default: the `[nats]` URLs.
    pub urls: Vec<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub token: Option<String>,
    pub nkey_seed_file: Option<PathBuf>,
    pub creds_file: Option<PathBuf>,
    pub tls: Option<TlsConfig>,
}

/// The default `[revocation] bucket`.
pub const DEFAULT_REVOCATION_BUCKET: &str = "nats_oidc_callout_revocations";

/// `[revocation]`: the JetStream KV bucket every instance shares, and what
/// a policy change does to live sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    pub bucket: String,
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
    pub urls: Vec<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub token: Option<String>,
    pub nkey_seed_file: Option<PathBuf>,
    pub creds_file: Option<PathBuf>,
    pub queue_group: String,
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

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct SigningConfig {
    pub issuer_seed_file: PathBuf,
    pub xkey_seed_file: Option<PathBuf>,
}

/// CONNECT fields a bearer token may arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    AuthToken,
    Password,
}

#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub sources: Vec<TokenSource>,
    pub max_ttl: Duration,
    /// Tokens longer than this are refused before any parsing.
    pub max_token_bytes: usize,
    /// Verified tokens kept in memory (reconnect storms cost no signature checks).
    pub cache_size: u64,
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub name: String,
    pub issuer: String,
    pub audience: Vec<String>,
    pub jwks_uri: Option<String>,
    pub jwks_file: Option<PathBuf>,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub scope_claim: String,
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
pub enum KeySourceKind {
    Discovery,
    Uri,
    File,
}

impl IssuerConfig {
    pub fn accepts(&self, kind: TokenType) -> bool {
        self.token_types.contains(&kind)
    }

    /// Whether JWTs that verified are also introspected.
    pub fn introspects_jwt(&self) -> bool {
        self.introspection
            .as_ref()
            .is_some_and(|i| i.introspect_jwt)
    }

    pub fn key_source(&self) -> KeySourceKind {
        match (&self.jwks_file, &self.jwks_uri) {
            (Some(_), _) => KeySourceKind::File,
            (None, Some(_)) => KeySourceKind::Uri,
            (None, None) => KeySourceKind::Discovery,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PolicyRef {
    pub file: PathBuf,
    /// Reload when the file's content changes (besides SIGHUP).
    pub watch: bool,
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

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: String,
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &source)
    }

    pub fn parse(path: &Path, source: &str) -> Result<Self, ConfigError> {
        compile::compile(path, source).map_err(ConfigError::Invalid)
    }

    /// A path taken relative to the config's directory (paths from the file
    /// are already resolved; this is for paths given elsewhere).
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Operator (decentralized JWT) mode: target accounts are configured.
    pub fn operator_mode(&self) -> bool {
        !self.accounts.is_empty()
    }

    pub fn nats_urls(&self) -> Vec<String> {
        self.nats.urls.clone()
    }
}

#[cfg(test)]
mod tests;
