//! The policy engine: which token gets which NATS permissions.
//!
//! A policy file is compiled once ([`Policy::load`]); every check that can
//! be made without a token happens there, with file positions. Evaluation
//! ([`Policy::evaluate`]) is a pure function of claims and connection facts.

mod compile;
mod file;
mod grant;
mod rule;
mod template;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

pub use grant::{Explanation, Origin, RuleTrace};
pub use template::{InterpolationError, SubjectTemplate};

use grant::{close_empty, Collector, Trace};
use rule::{Miss, Rule};

use crate::certificate::ClientCertificate;
pub use crate::certificate::CERTIFICATE_ISSUER;
use crate::claims::Ambiguous;

use crate::location::LocatedError;
use crate::protocol::{Permission, ResponsePermission};
use crate::reason::ReasonClass;

/// Connection types a rule may be limited to (`client_info.type`, or
/// `leafnode` for leaf connections).
pub const CONNECTION_TYPES: [&str; 4] = ["nats", "websocket", "mqtt", "leafnode"];

const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

/// Why a policy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file cannot be read (missing, unreadable, not UTF-8).
    #[error("cannot read policy {path}: {source}")]
    Read {
        /// The file asked for.
        path: std::path::PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
    /// The file was read but is not a valid policy: every problem found,
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
    /// The token's claims (verified or introspected).
    pub claims: &'a Map<String, Value>,
    /// Its scopes, read from the issuer's `scope_claim`.
    pub scopes: &'a [String],
}

/// Facts about the connection from the authorization request. `None` when
/// unknown (`check` without them): rules that need them then do not match.
#[derive(Debug, Clone, Copy, Default)]
pub struct Connection<'a> {
    /// One of [`CONNECTION_TYPES`].
    pub conn_type: Option<&'a str>,
    /// The client's IP address, for `source_cidrs`.
    pub host: Option<&'a str>,
    /// The client certificate the server verified, if any.
    pub certificate: Option<&'a ClientCertificate>,
}

/// The NATS permissions of an issued user, as they go into its JWT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Permissions {
    /// Subjects the user may (allow) and may not (deny) publish to.
    pub publish: Permission,
    /// Subjects the user may and may not subscribe to.
    pub subscribe: Permission,
    /// Replies allowed to requests the user receives, when a set says so.
    pub resp: Option<ResponsePermission>,
}

/// What the policy grants one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The account the user is placed in.
    pub account: String,
    /// Every rule that matched, in policy order.
    pub rules: Vec<String>,
    /// The union of the matched rules' permissions.
    pub permissions: Permissions,
    /// User JWT lifetime: the shortest `ttl` of the matched rules
    /// (further capped by the token's `exp` and `[token] max_ttl`).
    pub ttl: Duration,
}

/// Why the policy grants nothing; the text is the reason the client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No rule matched.
    #[error("no rule grants access")]
    NoRule,
    /// Two matching rules put the user in different accounts; a user has
    /// exactly one, so neither wins.
    #[error("matching rules disagree on the account ({first_account:?} from rule {first_rule:?}, {second_account:?} from rule {second_rule:?})")]
    AccountConflict {
        /// The first matching rule.
        first_rule: String,
        /// Its account.
        first_account: String,
        /// The first later rule with another account.
        second_rule: String,
        /// That account.
        second_account: String,
    },
    /// A granted subject's placeholder is missing from the token or has a
    /// value that cannot go into a subject (dots, wildcards, a reserved
    /// first token, …).
    #[error("{0}")]
    Interpolation(#[from] InterpolationError),
    /// A claim a rule reads holds different values as a dotted key and as
    /// a nested path, so neither is trusted.
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

    /// Compiles policy text; `path` names it in errors.
    pub fn parse(path: &Path, source: &str, known: &Known) -> Result<Self, PolicyError> {
        compile::compile(path, source, known).map_err(PolicyError::Invalid)
    }

    /// What compiled but is probably a mistake (logged at load).
    pub(crate) fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// How many rules the policy has.
    pub(crate) fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The claim paths evaluation can read (rules' `claims`, `{claim.…}`
    /// in permission sets); the token cache keeps only these.
    pub fn claims_read(&self) -> &Arc<[String]> {
        &self.claims_read
    }

    /// Whether any rule or subject reads the client certificate.
    pub(crate) fn reads_certificates(&self) -> bool {
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
    pub(crate) fn accounts(&self) -> Vec<&str> {
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
mod load_tests;
#[cfg(test)]
mod tests;
