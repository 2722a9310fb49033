//! The policy engine: which token gets which NATS permissions.
//!
//! A policy file is compiled once ([`Policy::load`]); every check that can
//! be made without a token happens there, with file positions. Evaluation
//! ([`Policy::evaluate`]) is a pure function of claims and connection facts.

mod claims;
mod file;
mod subject;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Map, Value};

pub use claims::{glob_match, lookup, scopes, value_matches};
pub use subject::{is_plain_token, validate_subject, InterpolationError, SubjectTemplate};

use crate::location::LocatedError;
use crate::protocol::{Permission, ResponsePermission};

/// Connection types a rule may be limited to (`client_info.type`, or
/// `leafnode` for leaf connections).
pub const CONNECTION_TYPES: [&str; 4] = ["nats", "websocket", "mqtt", "leafnode"];

const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {path}: {source}")]
    Read {
        path: std::path::PathBuf,
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

#[derive(Debug, Clone)]
struct TemplatePermission {
    allow: Vec<SubjectTemplate>,
    deny: Vec<SubjectTemplate>,
}

#[derive(Debug, Clone)]
struct PermissionSet {
    publish: TemplatePermission,
    subscribe: TemplatePermission,
    resp: Option<ResponsePermission>,
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    issuer: Option<String>,
    scopes: Vec<String>,
    claims: Vec<(String, Vec<String>)>,
    grant: Vec<String>,
    account: Option<String>,
    ttl: Option<Duration>,
    connection_types: Vec<String>,
    source_cidrs: Vec<IpNet>,
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    default_account: Option<String>,
    default_ttl: Duration,
    sets: HashMap<String, PermissionSet>,
    rules: Vec<Rule>,
    warnings: Vec<String>,
}

/// Who is asking: the verified token, reduced to what rules look at.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// The configured issuer name (not the `iss` URL).
    pub issuer: &'a str,
    pub claims: &'a Map<String, Value>,
    pub scopes: &'a [String],
}

/// Facts about the connection from the authorization request. `None` when
/// unknown (`check` without them): rules that need them then do not match.
#[derive(Debug, Clone, Copy, Default)]
pub struct Connection<'a> {
    pub conn_type: Option<&'a str>,
    pub host: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Permissions {
    pub publish: Permission,
    pub subscribe: Permission,
    pub resp: Option<ResponsePermission>,
}

/// What the policy grants one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub account: String,
    pub rules: Vec<String>,
    pub permissions: Permissions,
    pub ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("no rule grants access")]
    NoRule,
    #[error("matching rules disagree on the account ({first_account:?} from rule {first_rule:?}, {second_account:?} from rule {second_rule:?})")]
    AccountConflict {
        first_rule: String,
        first_account: String,
        second_rule: String,
        second_account: String,
    },
    #[error("{0}")]
    Interpolation(#[from] InterpolationError),
}

impl Policy {
    /// Loads and compiles a policy. `issuers`, when given, are the issuer
    /// names the config defines; rules naming others are errors.
    pub fn load(path: &Path, issuers: Option<&[String]>) -> Result<Self, PolicyError> {
        let source = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &source, issuers)
    }

    pub fn parse(
        path: &Path,
        source: &str,
        issuers: Option<&[String]>,
    ) -> Result<Self, PolicyError> {
        file::compile(path, source, issuers).map_err(PolicyError::Invalid)
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Evaluates the policy. Every matching rule contributes; no match denies.
    pub fn evaluate(&self, who: &Identity, conn: &Connection) -> Result<Grant, Denial> {
        let mut matched: Vec<&Rule> = Vec::new();
        for rule in &self.rules {
            if rule.matches(who, conn) {
                matched.push(rule);
            }
        }
        let Some(first) = matched.first() else {
            return Err(Denial::NoRule);
        };
        let account_of = |r: &Rule| r.account.clone().or_else(|| self.default_account.clone());
        // Compilation guarantees every rule has an account (its own or the default).
        let account = account_of(first).unwrap_or_default();
        for rule in &matched[1..] {
            let other = account_of(rule).unwrap_or_default();
            if other != account {
                return Err(Denial::AccountConflict {
                    first_rule: first.name.clone(),
                    first_account: account,
                    second_rule: rule.name.clone(),
                    second_account: other,
                });
            }
        }
        let mut permissions = Permissions::default();
        let mut ttl = Duration::MAX;
        for rule in &matched {
            ttl = ttl.min(rule.ttl.unwrap_or(self.default_ttl));
            for set_name in &rule.grant {
                let set = &self.sets[set_name];
                render_into(&mut permissions.publish, &set.publish, who.claims)?;
                render_into(&mut permissions.subscribe, &set.subscribe, who.claims)?;
                if let Some(r) = set.resp {
                    let merged = permissions
                        .resp
                        .get_or_insert(ResponsePermission { max: 0, ttl: 0 });
                    merged.max = merged.max.max(r.max);
                    merged.ttl = merged.ttl.max(r.ttl);
                }
            }
        }
        close_empty(&mut permissions.publish);
        close_empty(&mut permissions.subscribe);
        Ok(Grant {
            account,
            rules: matched.iter().map(|r| r.name.clone()).collect(),
            permissions,
            ttl,
        })
    }
}

/// nats-server reads a direction with no allow list as unrestricted, so a
/// grant of nothing is written as an explicit deny of everything.
fn close_empty(p: &mut Permission) {
    if p.allow.is_empty() {
        p.deny = vec![">".to_owned()];
    }
}

fn render_into(
    out: &mut Permission,
    templates: &TemplatePermission,
    claims: &Map<String, Value>,
) -> Result<(), InterpolationError> {
    for (dest, src) in [
        (&mut out.allow, &templates.allow),
        (&mut out.deny, &templates.deny),
    ] {
        for t in src {
            let subject = t.render(claims)?;
            if !dest.contains(&subject) {
                dest.push(subject);
            }
        }
    }
    Ok(())
}

impl Rule {
    fn matches(&self, who: &Identity, conn: &Connection) -> bool {
        if self.issuer.as_deref().is_some_and(|i| i != who.issuer) {
            return false;
        }
        if !self.scopes.iter().all(|s| who.scopes.contains(s)) {
            return false;
        }
        let claims_match = self.claims.iter().all(|(name, patterns)| {
            lookup(who.claims, name).is_some_and(|v| patterns.iter().any(|p| value_matches(v, p)))
        });
        if !claims_match {
            return false;
        }
        if !self.connection_types.is_empty()
            && !conn
                .conn_type
                .is_some_and(|t| self.connection_types.iter().any(|c| c == t))
        {
            return false;
        }
        if !self.source_cidrs.is_empty() {
            let Some(ip) = conn.host.and_then(|h| h.parse::<IpAddr>().ok()) else {
                return false;
            };
            if !self.source_cidrs.iter().any(|n| n.contains(&ip)) {
                return false;
            }
        }
        true
    }
}

/// Serializable view of the grant, used by `check`'s JSON.
pub fn permissions_json(p: &Permissions) -> Value {
    let perm = |x: &Permission| serde_json::json!({"allow": x.allow, "deny": x.deny});
    serde_json::json!({
        "pub": perm(&p.publish),
        "sub": perm(&p.subscribe),
        "resp": p.resp.map(|r| serde_json::json!({"max": r.max, "ttl": humantime::format_duration(Duration::from_nanos(r.ttl.max(0) as u64)).to_string()})),
    })
}

#[cfg(test)]
mod tests;
