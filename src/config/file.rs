//! The service config file as written: the TOML schema. Values that get a
//! semantic check keep their position ([`Spanned`]) for the error message.

use std::path::PathBuf;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_spanned::Spanned;

use super::introspection::{ClientAuthMethod, TokenType};
use crate::duration::HumanDuration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    pub(super) nats: Spanned<NatsFile>,
    pub(super) signing: SigningFile,
    #[serde(default)]
    pub(super) token: TokenFile,
    #[serde(rename = "issuer", default)]
    pub(super) issuers: Vec<Spanned<IssuerFile>>,
    #[serde(rename = "account", default)]
    pub(super) accounts: Vec<AccountFile>,
    pub(super) policy: PolicyFile,
    pub(super) http: Option<HttpFile>,
    #[serde(default)]
    pub(super) audit: AuditFile,
    #[serde(default)]
    pub(super) flood: FloodFile,
    pub(super) system: Option<Spanned<SystemFile>>,
    #[serde(default)]
    pub(super) revocation: RevocationFile,
}

/// `[system]`: the same credential keys as `[nats]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SystemFile {
    pub(super) url: Option<String>,
    pub(super) urls: Option<Vec<String>>,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) token: Option<String>,
    pub(super) nkey_seed_file: Option<PathBuf>,
    pub(super) creds_file: Option<PathBuf>,
    pub(super) tls: Option<TlsFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RevocationFile {
    pub(super) bucket: Option<Spanned<String>>,
    pub(super) on_policy_change: Option<super::OnPolicyChange>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NatsFile {
    pub(super) url: Option<String>,
    pub(super) urls: Option<Vec<String>>,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) token: Option<String>,
    pub(super) nkey_seed_file: Option<PathBuf>,
    pub(super) creds_file: Option<PathBuf>,
    pub(super) queue_group: Option<String>,
    pub(super) tls: Option<TlsFile>,
    pub(super) account: Option<String>,
    pub(super) max_in_flight: Option<Spanned<usize>>,
    pub(super) request_timeout: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsFile {
    pub(super) ca_file: Option<PathBuf>,
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SigningFile {
    pub(super) issuer_seed_file: PathBuf,
    pub(super) xkey_seed_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenFile {
    pub(super) sources: Option<Spanned<Vec<super::TokenSource>>>,
    pub(super) max_ttl: Option<HumanDuration>,
    pub(super) max_token_bytes: Option<usize>,
    pub(super) cache_size: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IssuerFile {
    pub(super) name: Spanned<String>,
    pub(super) issuer: Spanned<String>,
    pub(super) audience: Spanned<OneOrMany>,
    pub(super) jwks_uri: Option<String>,
    pub(super) jwks_file: Option<PathBuf>,
    pub(super) algorithms: Option<Spanned<Vec<Algorithm>>>,
    pub(super) leeway: Option<Spanned<HumanDuration>>,
    pub(super) scope_claim: Option<String>,
    pub(super) jwks_refresh: Option<Spanned<HumanDuration>>,
    pub(super) jwks_min_refetch: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    pub(super) allow_insecure_http: bool,
    pub(super) jwks_max_stale: Option<Spanned<HumanDuration>>,
    pub(super) require_typ: Option<String>,
    #[serde(default)]
    pub(super) required_claims: Vec<String>,
    pub(super) max_token_age: Option<HumanDuration>,
    pub(super) certificate_bound: Option<crate::certificate::CertificateBound>,
    pub(super) token_types: Option<Spanned<Vec<TokenType>>>,
    pub(super) introspection_endpoint: Option<Spanned<String>>,
    pub(super) introspection_client_id: Option<String>,
    pub(super) introspection_auth: Option<Spanned<ClientAuthMethod>>,
    pub(super) introspection_client_secret_file: Option<PathBuf>,
    pub(super) introspection_private_key_file: Option<PathBuf>,
    pub(super) introspection_private_key_alg: Option<Algorithm>,
    pub(super) introspection_cache: Option<Spanned<HumanDuration>>,
    pub(super) introspection_negative_cache: Option<Spanned<HumanDuration>>,
    pub(super) introspection_timeout: Option<Spanned<HumanDuration>>,
    pub(super) introspection_max_in_flight: Option<Spanned<usize>>,
    pub(super) introspection_rate_limit: Option<Spanned<u32>>,
    pub(super) introspect_jwt: Option<Spanned<bool>>,
    pub(super) userinfo: Option<Spanned<bool>>,
    pub(super) userinfo_endpoint: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccountFile {
    pub(super) name: Spanned<String>,
    pub(super) public_key: Spanned<String>,
    pub(super) signing_key_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyFile {
    pub(super) file: PathBuf,
    pub(super) watch: Option<bool>,
    pub(super) watch_interval: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpFile {
    pub(super) listen: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditFile {
    pub(super) subject: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FloodFile {
    pub(super) enabled: Option<bool>,
    pub(super) failures: Option<Spanned<u32>>,
    pub(super) window: Option<Spanned<HumanDuration>>,
    pub(super) hold: Option<Spanned<HumanDuration>>,
    pub(super) max_held: Option<Spanned<usize>>,
    pub(super) max_sources: Option<Spanned<usize>>,
}
