//! The policy engine: which token gets which NATS permissions.
//!
//! A policy file is compiled once ([`Policy::load`]); every check that can
//! be made without a token happens there, with file positions. Evaluation
//! ([`Policy::evaluate`]) is a pure function of claims and connection facts.

mod compile;
mod file;
mod template;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Map, Value};

pub use template::{InterpolationError, SubjectTemplate};

pub use crate::certificate::CERTIFICATE_ISSUER;
use crate::certificate::{CertificateCondition, ClientCertificate};
use crate::claims::{lookup, value_matches, Ambiguous};
use crate::subject::{subject_within, validate_subject};

use crate::location::LocatedError;
use crate::protocol::{Permission, ResponsePermission};
use crate::reason::ReasonClass;

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
    certificate: Option<CertificateCondition>,
    scope_permissions: Option<ScopeMapping>,
}

/// Scopes that name subjects (`nats:pub:orders.*`), kept only where a
/// ceiling permission set covers them.
#[derive(Debug, Clone)]
struct ScopeMapping {
    pub_prefix: Option<String>,
    sub_prefix: Option<String>,
    ceiling: String,
}

/// What the service config tells the policy compiler; `Default` knows
/// nothing (a policy checked on its own).
#[derive(Debug, Clone, Copy, Default)]
pub struct Known<'a> {
    /// Issuer names; a rule naming another is an error.
    pub issuers: Option<&'a [String]>,
    /// Operator mode's `[[account]]` names; a grant into another account
    /// could never be signed, so it is an error.
    pub accounts: Option<&'a [String]>,
    /// The callout and system accounts: putting users there is a warning.
    pub privileged_accounts: &'a [String],
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    default_account: Option<String>,
    default_ttl: Duration,
    sets: HashMap<String, PermissionSet>,
    rules: Vec<Rule>,
    warnings: Vec<String>,
    /// Every claim path a rule or a subject template reads, sorted.
    claims_read: Arc<[String]>,
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
    /// The client certificate the server verified, if any.
    pub certificate: Option<&'a ClientCertificate>,
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
    #[error(transparent)]
    Ambiguous(#[from] Ambiguous),
}

impl Denial {
    /// A stable label for metrics.
    pub fn class(&self) -> ReasonClass {
        match self {
            Denial::NoRule => ReasonClass::NoRule,
            Denial::AccountConflict { .. } => ReasonClass::AccountConflict,
            Denial::Interpolation(InterpolationError::Ambiguous(_)) | Denial::Ambiguous(_) => {
                ReasonClass::ClaimAmbiguous
            }
            Denial::Interpolation(InterpolationError::ReservedFirstToken(_)) => {
                ReasonClass::ClaimReservedSubject
            }
            Denial::Interpolation(_) => ReasonClass::ClaimNotAToken,
        }
    }
}

impl Policy {
    /// Loads and compiles a policy against what the service config defines.
    pub fn load(path: &Path, known: &Known) -> Result<Self, PolicyError> {
        let source = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &source, known)
    }

    pub fn parse(path: &Path, source: &str, known: &Known) -> Result<Self, PolicyError> {
        compile::compile(path, source, known).map_err(PolicyError::Invalid)
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The claim paths evaluation can read (rules' `claims`, `{claim.…}`
    /// in permission sets); the token cache keeps only these.
    pub fn claims_read(&self) -> &Arc<[String]> {
        &self.claims_read
    }

    /// Whether any rule or subject reads the client certificate.
    pub fn reads_certificates(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.certificate.is_some() || r.issuer.as_deref() == Some(CERTIFICATE_ISSUER))
            || self.sets.values().any(|s| {
                [&s.publish, &s.subscribe]
                    .into_iter()
                    .flat_map(|p| p.allow.iter().chain(&p.deny))
                    .any(SubjectTemplate::reads_certificate)
            })
    }

    /// Every account a grant can name.
    pub fn accounts(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.default_account.iter().map(String::as_str).collect();
        for a in self.rules.iter().filter_map(|r| r.account.as_deref()) {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }

    /// Evaluates the policy. Every matching rule contributes; no match denies.
    pub fn evaluate(&self, who: &Identity, conn: &Connection) -> Result<Grant, Denial> {
        self.run(who, conn, None)
    }

    /// Evaluates and records why each rule matched or not, and where each
    /// granted subject came from (`check --explain`).
    pub fn explain(&self, who: &Identity, conn: &Connection) -> Explanation {
        let mut trace = Trace::default();
        let result = self.run(who, conn, Some(&mut trace));
        Explanation {
            rules: trace.rules,
            origins: trace.origins,
            result,
        }
    }

    fn run(
        &self,
        who: &Identity,
        conn: &Connection,
        mut trace: Option<&mut Trace>,
    ) -> Result<Grant, Denial> {
        let mut matched: Vec<&Rule> = Vec::new();
        for rule in &self.rules {
            let verdict = rule.check(who, conn);
            if let Some(t) = trace.as_deref_mut() {
                t.rules.push(RuleTrace {
                    rule: rule.name.clone(),
                    matched: verdict.is_ok(),
                    reason: verdict.as_ref().err().map(ToString::to_string),
                });
            }
            match verdict {
                Ok(()) => matched.push(rule),
                Err(Miss::Ambiguous(a)) => return Err(Denial::Ambiguous(a)),
                Err(Miss::No(_)) => {}
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
        let mut out = Collector {
            permissions: Permissions::default(),
            trace,
        };
        let mut ttl = Duration::MAX;
        for rule in &matched {
            ttl = ttl.min(rule.ttl.unwrap_or(self.default_ttl));
            for set_name in &rule.grant {
                let set = &self.sets[set_name];
                let via = format!("permission set {set_name:?}");
                out.grant_set(&rule.name, &via, set, who.claims, conn.certificate)?;
            }
            if let Some(mapping) = &rule.scope_permissions {
                out.grant_scopes(
                    &rule.name,
                    mapping,
                    &self.sets[&mapping.ceiling],
                    who,
                    conn.certificate,
                )?;
            }
        }
        let mut permissions = out.permissions;
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

/// See [`Policy::claims_read`].
fn claims_read(sets: &HashMap<String, PermissionSet>, rules: &[Rule]) -> Arc<[String]> {
    let templates = sets.values().flat_map(|s| {
        [&s.publish, &s.subscribe]
            .into_iter()
            .flat_map(|p| p.allow.iter().chain(&p.deny))
    });
    let mut paths: Vec<String> = templates
        .flat_map(SubjectTemplate::claims)
        .chain(
            rules
                .iter()
                .flat_map(|r| r.claims.iter().map(|(n, _)| n.as_str())),
        )
        .map(str::to_owned)
        .collect();
    paths.sort();
    paths.dedup();
    paths.into()
}

/// Why one rule matched or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTrace {
    pub rule: String,
    pub matched: bool,
    pub reason: Option<String>,
}

/// One granted subject and what granted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `pub.allow`, `pub.deny`, `sub.allow` or `sub.deny`.
    pub list: &'static str,
    pub subject: String,
    pub rule: String,
    pub via: String,
}

#[derive(Debug, Default)]
struct Trace {
    rules: Vec<RuleTrace>,
    origins: Vec<Origin>,
}

/// The result of [`Policy::explain`].
#[derive(Debug)]
pub struct Explanation {
    pub rules: Vec<RuleTrace>,
    pub origins: Vec<Origin>,
    pub result: Result<Grant, Denial>,
}

/// Accumulates the union of grants, recording origins when tracing.
struct Collector<'t> {
    permissions: Permissions,
    trace: Option<&'t mut Trace>,
}

impl Collector<'_> {
    fn add(&mut self, list: &'static str, subject: String, rule: &str, via: &str) {
        if let Some(t) = self.trace.as_deref_mut() {
            t.origins.push(Origin {
                list,
                subject: subject.clone(),
                rule: rule.to_owned(),
                via: via.to_owned(),
            });
        }
        let p = &mut self.permissions;
        let dest = match list {
            "pub.allow" => &mut p.publish.allow,
            "pub.deny" => &mut p.publish.deny,
            "sub.allow" => &mut p.subscribe.allow,
            _ => &mut p.subscribe.deny,
        };
        if !dest.contains(&subject) {
            dest.push(subject);
        }
    }

    fn grant_set(
        &mut self,
        rule: &str,
        via: &str,
        set: &PermissionSet,
        claims: &Map<String, Value>,
        cert: Option<&ClientCertificate>,
    ) -> Result<(), InterpolationError> {
        for (list, templates) in [
            ("pub.allow", &set.publish.allow),
            ("pub.deny", &set.publish.deny),
            ("sub.allow", &set.subscribe.allow),
            ("sub.deny", &set.subscribe.deny),
        ] {
            for t in templates {
                self.add(list, t.render(claims, cert)?, rule, via);
            }
        }
        if let Some(r) = set.resp {
            let merged = self
                .permissions
                .resp
                .get_or_insert(ResponsePermission { max: 0, ttl: 0 });
            merged.max = merged.max.max(r.max);
            merged.ttl = merged.ttl.max(r.ttl);
        }
        Ok(())
    }

    /// Subjects named by scopes, each kept only if the ceiling allows it;
    /// the ceiling's deny lists always apply.
    fn grant_scopes(
        &mut self,
        rule: &str,
        mapping: &ScopeMapping,
        ceiling: &PermissionSet,
        who: &Identity,
        cert: Option<&ClientCertificate>,
    ) -> Result<(), InterpolationError> {
        let directions = [
            (
                &mapping.pub_prefix,
                &ceiling.publish,
                "pub.allow",
                "pub.deny",
            ),
            (
                &mapping.sub_prefix,
                &ceiling.subscribe,
                "sub.allow",
                "sub.deny",
            ),
        ];
        for (prefix, bounds, allow_list, deny_list) in directions {
            let Some(prefix) = prefix else { continue };
            let allowed: Vec<String> = bounds
                .allow
                .iter()
                .map(|t| t.render(who.claims, cert))
                .collect::<Result<_, _>>()?;
            let mut any = false;
            for scope in who.scopes {
                let Some(subject) = scope.strip_prefix(prefix.as_str()) else {
                    continue;
                };
                if validate_subject(subject).is_ok()
                    && allowed.iter().any(|c| subject_within(subject, c))
                {
                    any = true;
                    let via = format!("scope {scope:?} within ceiling {:?}", mapping.ceiling);
                    self.add(allow_list, subject.to_owned(), rule, &via);
                }
            }
            if any {
                let via = format!("ceiling {:?}", mapping.ceiling);
                for t in &bounds.deny {
                    self.add(deny_list, t.render(who.claims, cert)?, rule, &via);
                }
            }
        }
        Ok(())
    }
}

/// nats-server reads a direction with no allow list as unrestricted, so a
/// grant of nothing is written as an explicit deny of everything.
fn close_empty(p: &mut Permission) {
    if p.allow.is_empty() {
        p.deny = vec![">".to_owned()];
    }
}

/// Why a rule does not match: the first condition it fails, or a claim it
/// reads that the token answers two ways (which denies the whole decision).
#[derive(Debug)]
enum Miss {
    No(String),
    Ambiguous(Ambiguous),
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::No(reason) => f.write_str(reason),
            Miss::Ambiguous(a) => a.fmt(f),
        }
    }
}

impl From<String> for Miss {
    fn from(reason: String) -> Self {
        Miss::No(reason)
    }
}

impl Rule {
    /// `Ok` when the rule matches, else the first reason it does not.
    fn check(&self, who: &Identity, conn: &Connection) -> Result<(), Miss> {
        if let Some(i) = self.issuer.as_deref().filter(|i| *i != who.issuer) {
            return Err(format!("issuer is {:?}, rule wants {i:?}", who.issuer).into());
        }
        if let Some(s) = self.scopes.iter().find(|s| !who.scopes.contains(s)) {
            return Err(format!("scope {s:?} not granted").into());
        }
        for (name, patterns) in &self.claims {
            match lookup(who.claims, name).map_err(Miss::Ambiguous)? {
                None => return Err(format!("claim {name:?} is missing").into()),
                Some(v) if !patterns.iter().any(|p| value_matches(v, p)) => {
                    return Err(format!("claim {name:?} does not match {patterns:?}").into())
                }
                Some(_) => {}
            }
        }
        if !self.connection_types.is_empty() {
            match conn.conn_type {
                Some(t) if self.connection_types.iter().any(|c| c == t) => {}
                Some(t) => {
                    return Err(
                        format!("connection type {t:?} not in {:?}", self.connection_types).into(),
                    )
                }
                None => return Err(Miss::No("connection type unknown".into())),
            }
        }
        if !self.source_cidrs.is_empty() {
            let Some(ip) = conn.host.and_then(|h| h.parse::<IpAddr>().ok()) else {
                return Err(Miss::No("client address unknown".into()));
            };
            if !self.source_cidrs.iter().any(|n| n.contains(&ip)) {
                return Err(format!("client address {ip} not in the rule's source_cidrs").into());
            }
        }
        if let Some(condition) = &self.certificate {
            let cert = conn
                .certificate
                .ok_or_else(|| Miss::No("no verified client certificate".into()))?;
            condition.matches(cert).map_err(Miss::No)?;
        }
        Ok(())
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
