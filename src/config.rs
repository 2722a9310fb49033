//! The service config file (TOML), parsed into typed structs. Relative paths
//! are resolved against the config file's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::duration::HumanDuration;
use crate::location::LocatedError;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] LocatedError),
    #[error("{path}: {message}")]
    Semantic { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub nats: NatsConfig,
    pub signing: SigningConfig,
    #[serde(default)]
    pub token: TokenConfig,
    #[serde(rename = "issuer", default)]
    pub issuers: Vec<IssuerConfig>,
    /// Target accounts for operator mode; none means config mode.
    #[serde(rename = "account", default)]
    pub accounts: Vec<AccountConfig>,
    pub policy: PolicyRef,
    #[serde(default)]
    pub http: Option<HttpConfig>,
    #[serde(default)]
    pub audit: AuditConfig,
    /// Directory of the config file; relative paths are taken from here.
    #[serde(skip)]
    pub base_dir: PathBuf,
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    pub url: Option<String>,
    pub urls: Option<Vec<String>>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub token: Option<String>,
    pub nkey_seed_file: Option<PathBuf>,
    pub creds_file: Option<PathBuf>,
    #[serde(default = "default_queue_group")]
    pub queue_group: String,
    pub tls: Option<TlsConfig>,
    /// Name of the callout account, for `server-config` output only.
    #[serde(default = "default_callout_account")]
    pub account: String,
    /// Requests decided at once; beyond this each gets an immediate signed
    /// denial ("service saturated") rather than a silent server timeout.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Time one decision may take before it is denied with a reason; keep
    /// it below the server's `authorization { timeout }` (default 2 s).
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
}

fn default_max_in_flight() -> usize {
    512
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration(Duration::from_millis(1500))
}

fn default_queue_group() -> String {
    "nats-oidc-callout".to_owned()
}

fn default_callout_account() -> String {
    "AUTH".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    #[serde(default = "default_sources")]
    pub sources: Vec<TokenSource>,
    #[serde(default = "default_max_ttl")]
    pub max_ttl: HumanDuration,
    /// Tokens longer than this are refused before any parsing.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Verified tokens kept in memory (reconnect storms cost no signature checks).
    #[serde(default = "default_cache_size")]
    pub cache_size: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            sources: default_sources(),
            max_ttl: default_max_ttl(),
            max_token_bytes: default_max_token_bytes(),
            cache_size: default_cache_size(),
        }
    }
}

fn default_sources() -> Vec<TokenSource> {
    vec![TokenSource::AuthToken, TokenSource::Password]
}

fn default_max_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}

fn default_cache_size() -> u64 {
    100_000
}

fn default_max_token_bytes() -> usize {
    64 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    pub name: String,
    pub issuer: String,
    pub audience: OneOrMany,
    pub jwks_uri: Option<String>,
    pub jwks_file: Option<PathBuf>,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    #[serde(default = "default_leeway")]
    pub leeway: HumanDuration,
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh: HumanDuration,
    /// Shortest interval between two refetches caused by an unknown `kid`.
    #[serde(default = "default_kid_refetch")]
    pub jwks_min_refetch: HumanDuration,
    /// Allow plain-http discovery/JWKS on a non-loopback host.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Keys not refreshed for this long (an IdP outage) stop being used.
    #[serde(default = "default_max_stale")]
    pub jwks_max_stale: HumanDuration,
    /// Required JWT header `typ`, e.g. "at+jwt" for RFC 9068 access tokens.
    pub require_typ: Option<String>,
    /// Claims every token must carry (besides exp, iss, aud).
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Refuse tokens issued (`iat`) longer ago than this; requires `iat`.
    pub max_token_age: Option<HumanDuration>,
    // Opaque tokens: defaults and checks live in `crate::introspection::settings`.
    #[serde(default = "crate::introspection::default_token_types")]
    pub token_types: Vec<crate::introspection::TokenType>,
    pub introspection_endpoint: Option<String>,
    pub introspection_client_id: Option<String>,
    pub introspection_client_secret_file: Option<PathBuf>,
    pub introspection_private_key_file: Option<PathBuf>,
    pub introspection_private_key_alg: Option<Algorithm>,
    #[serde(default)]
    pub introspection_auth: crate::introspection::ClientAuthMethod,
    #[serde(default = "crate::introspection::default_cache")]
    pub introspection_cache: HumanDuration,
    #[serde(default = "crate::introspection::default_negative_cache")]
    pub introspection_negative_cache: HumanDuration,
    #[serde(default = "crate::introspection::default_timeout")]
    pub introspection_timeout: HumanDuration,
    #[serde(default = "crate::introspection::default_max_in_flight")]
    pub introspection_max_in_flight: usize,
    #[serde(default = "crate::introspection::default_rate_limit")]
    pub introspection_rate_limit: u32,
    #[serde(default)]
    pub introspect_jwt: bool,
    #[serde(default)]
    pub userinfo: bool,
    pub userinfo_endpoint: Option<String>,
}

/// Which of the three key sources an issuer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySourceKind {
    Discovery,
    Uri,
    File,
}

impl IssuerConfig {
    pub fn key_source(&self) -> KeySourceKind {
        match (&self.jwks_file, &self.jwks_uri) {
            (Some(_), _) => KeySourceKind::File,
            (None, Some(_)) => KeySourceKind::Uri,
            (None, None) => KeySourceKind::Discovery,
        }
    }
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::RS256]
}

fn default_leeway() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn default_scope_claim() -> String {
    "scope".to_owned()
}

fn default_jwks_refresh() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}

fn default_max_stale() -> HumanDuration {
    HumanDuration(Duration::from_secs(24 * 3600))
}

fn default_kid_refetch() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    pub file: PathBuf,
    /// Reload when the file's content changes (besides SIGHUP).
    #[serde(default = "yes")]
    pub watch: bool,
    #[serde(default = "default_watch_interval")]
    pub watch_interval: HumanDuration,
}

fn yes() -> bool {
    true
}

fn default_watch_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}

/// An operator-mode target account: users for it are signed with its key
/// (or one of its signing keys, then naming the account as issuer_account).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// The name policy rules use.
    pub name: String,
    /// The account's public key (A…).
    pub public_key: String,
    /// Seed of the account key or of one of its signing keys.
    pub signing_key_file: PathBuf,
}

/// Where decisions are recorded besides the log.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Publish every decision as JSON on this NATS subject.
    pub subject: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
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
        let mut config: Config =
            toml::from_str(source).map_err(|e| LocatedError::from_toml(path, source, &e))?;
        config.path = path.to_path_buf();
        config.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        config.check()?;
        Ok(config)
    }

    /// A path from the config, taken relative to the config's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn semantic(&self, message: String) -> ConfigError {
        ConfigError::Semantic {
            path: self.path.clone(),
            message,
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.nats.url.is_some() == self.nats.urls.is_some() {
            return Err(self.semantic("[nats] needs exactly one of `url` and `urls`".into()));
        }
        let secrets = [
            self.nats.password.is_some(),
            self.nats.password_file.is_some(),
            self.nats.token.is_some(),
            self.nats.nkey_seed_file.is_some(),
            self.nats.creds_file.is_some(),
        ];
        if secrets.iter().filter(|s| **s).count() > 1 {
            return Err(self.semantic(
                "[nats] takes at most one of password, password_file, token, nkey_seed_file, creds_file"
                    .into(),
            ));
        }
        if (self.nats.password.is_some() || self.nats.password_file.is_some())
            && self.nats.user.is_none()
        {
            return Err(self.semantic("[nats] a password needs `user`".into()));
        }
        if !(1..=65_536).contains(&self.nats.max_in_flight) {
            return Err(self.semantic(format!(
                "[nats] max_in_flight {} is outside 1..65536",
                self.nats.max_in_flight
            )));
        }
        // Beyond the server's timeout an answer is dropped, and beyond 10 s
        // the request itself counts as expired, so the denial would be empty.
        let timeout = Duration::from(self.nats.request_timeout);
        if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(10) {
            return Err(self.semantic(format!(
                "[nats] request_timeout {} is outside 10ms..10s; keep it below the server's \
                 authorization timeout",
                self.nats.request_timeout
            )));
        }
        if let Some(subject) = &self.audit.subject {
            if crate::policy::validate_subject(subject).is_err() || subject.contains(['*', '>']) {
                return Err(self.semantic(format!(
                    "[audit] subject {subject:?} is not a plain NATS subject"
                )));
            }
        }
        if self.token.sources.is_empty() {
            return Err(self.semantic("[token] sources must name at least one field".into()));
        }
        if self.issuers.is_empty() {
            return Err(self.semantic("at least one [[issuer]] is required".into()));
        }
        let mut accounts = std::collections::HashSet::new();
        for a in &self.accounts {
            if !accounts.insert(a.name.as_str()) {
                return Err(self.semantic(format!("account name {:?} is used twice", a.name)));
            }
            if !nkeys::KeyPair::from_public_key(&a.public_key)
                .is_ok_and(|k| k.key_pair_type() == nkeys::KeyPairType::Account)
            {
                return Err(self.semantic(format!(
                    "account {:?}: public_key {:?} is not an account public key (A…)",
                    a.name, a.public_key
                )));
            }
        }
        let mut names = std::collections::HashSet::new();
        for iss in &self.issuers {
            if !names.insert(iss.name.as_str()) {
                return Err(self.semantic(format!("issuer name {:?} is used twice", iss.name)));
            }
            if iss.jwks_uri.is_some() && iss.jwks_file.is_some() {
                return Err(self.semantic(format!(
                    "issuer {:?}: set at most one of jwks_uri and jwks_file",
                    iss.name
                )));
            }
            if iss.audience.to_vec().is_empty() {
                return Err(self.semantic(format!("issuer {:?}: audience is empty", iss.name)));
            }
            if iss.algorithms.is_empty() {
                return Err(self.semantic(format!("issuer {:?}: algorithms is empty", iss.name)));
            }
            if let Some(alg) = iss.algorithms.iter().find(|a| is_hmac(a)) {
                return Err(self.semantic(format!(
                    "issuer {:?}: {alg:?} is a shared-secret algorithm and is never accepted",
                    iss.name
                )));
            }
            crate::introspection::check_settings(iss)
                .map_err(|m| self.semantic(format!("issuer {:?}: {m}", iss.name)))?;
        }
        Ok(())
    }

    /// Operator (decentralized JWT) mode: target accounts are configured.
    pub fn operator_mode(&self) -> bool {
        !self.accounts.is_empty()
    }

    pub fn nats_urls(&self) -> Vec<String> {
        match (&self.nats.url, &self.nats.urls) {
            (Some(u), _) => vec![u.clone()],
            (None, Some(us)) => us.clone(),
            (None, None) => Vec::new(),
        }
    }
}

fn is_hmac(a: &Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[nats]
url = "nats://127.0.0.1:4222"
user = "auth"
password = "pw"

[signing]
issuer_seed_file = "keys/issuer.nk"

[[issuer]]
name = "corp"
issuer = "https://idp.example.com"
audience = "nats"

[policy]
file = "policy.toml"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(Path::new("/etc/callout/callout.toml"), MINIMAL).unwrap();
        assert_eq!(c.nats.queue_group, "nats-oidc-callout");
        assert_eq!(
            c.token.sources,
            vec![TokenSource::AuthToken, TokenSource::Password]
        );
        assert_eq!(c.token.max_ttl.0, Duration::from_secs(3600));
        assert_eq!(c.issuers[0].algorithms, vec![Algorithm::RS256]);
        assert_eq!(c.issuers[0].audience.to_vec(), vec!["nats".to_string()]);
        assert_eq!(
            c.resolve(&c.policy.file),
            PathBuf::from("/etc/callout/policy.toml")
        );
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let src = MINIMAL.replace(
            "audience = \"nats\"",
            "audience = \"nats\"\naudiance = \"x\"",
        );
        let err = Config::parse(Path::new("c.toml"), &src).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("c.toml:14:"), "{text}");
        assert!(text.contains("audiance"), "{text}");
    }

    #[test]
    fn hmac_algorithms_are_refused() {
        let src = MINIMAL.replace(
            "audience = \"nats\"",
            "audience = \"nats\"\nalgorithms = [\"HS256\"]",
        );
        let err = Config::parse(Path::new("c.toml"), &src).unwrap_err();
        assert!(err.to_string().contains("never accepted"), "{err}");
    }

    #[test]
    fn bad_duration_is_reported() {
        let src = MINIMAL.replace("[policy]", "[token]\nmax_ttl = \"forever\"\n\n[policy]");
        let err = Config::parse(Path::new("c.toml"), &src).unwrap_err();
        assert!(err.to_string().contains("invalid duration"), "{err}");
    }

    #[test]
    fn request_limits_are_bounded() {
        let c = Config::parse(Path::new("c.toml"), MINIMAL).unwrap();
        assert_eq!(c.nats.max_in_flight, 512);
        assert_eq!(c.nats.request_timeout.0, Duration::from_millis(1500));
        for (line, needle) in [
            ("max_in_flight = 0", "max_in_flight"),
            ("max_in_flight = 9223372036854775807", "max_in_flight"),
            ("request_timeout = \"0s\"", "request_timeout"),
            ("request_timeout = \"11s\"", "request_timeout"),
        ] {
            let src = MINIMAL.replace("password = \"pw\"", &format!("password = \"pw\"\n{line}"));
            let err = Config::parse(Path::new("c.toml"), &src).unwrap_err();
            assert!(err.to_string().contains(needle), "{line}: {err}");
        }
    }
}
