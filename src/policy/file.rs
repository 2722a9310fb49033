//! The policy file as written: the TOML schema, with positions kept for
//! the errors [`super::compile`] reports.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::duration::HumanDuration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyFile {
    #[serde(default)]
    pub(super) defaults: Defaults,
    #[serde(default)]
    pub(super) permissions: BTreeMap<String, Spanned<PermissionSetFile>>,
    #[serde(default)]
    pub(super) rules: Vec<Spanned<RuleFile>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Defaults {
    pub(super) account: Option<Spanned<String>>,
    pub(super) ttl: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PermissionSetFile {
    #[serde(rename = "pub", default)]
    pub(super) publish: PermissionFile,
    #[serde(rename = "sub", default)]
    pub(super) subscribe: PermissionFile,
    pub(super) resp: Option<ResponseFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct PermissionFile {
    #[serde(default)]
    pub(super) allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) deny: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResponseFile {
    #[serde(default = "one")]
    pub(super) max: i64,
    pub(super) ttl: Option<HumanDuration>,
}

fn one() -> i64 {
    1
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Patterns {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleFile {
    pub(super) name: String,
    pub(super) issuer: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) scopes: Vec<String>,
    #[serde(default)]
    pub(super) claims: BTreeMap<String, Spanned<Patterns>>,
    #[serde(default)]
    pub(super) grant: Vec<Spanned<String>>,
    pub(super) account: Option<Spanned<String>>,
    pub(super) ttl: Option<HumanDuration>,
    #[serde(default)]
    pub(super) connection_types: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) source_cidrs: Vec<Spanned<String>>,
    pub(super) scope_permissions: Option<Spanned<ScopeMappingFile>>,
    pub(super) certificate: Option<Spanned<crate::certificate::CertificateCondition>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScopeMappingFile {
    pub(super) pub_prefix: Option<String>,
    pub(super) sub_prefix: Option<String>,
    pub(super) ceiling: Spanned<String>,
}
