//! The policy file as written, and its compilation into a [`Policy`].
//! Errors are collected, not stopped at, so `validate` reports them all.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{
    claims_read, PermissionSet, Policy, Rule, ScopeMapping, SubjectTemplate, TemplatePermission,
    CONNECTION_TYPES, DEFAULT_TTL,
};
use crate::duration::HumanDuration;
use crate::location::{LocatedError, Location};
use crate::protocol::ResponsePermission;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    permissions: BTreeMap<String, Spanned<PermissionSetFile>>,
    #[serde(default)]
    rules: Vec<Spanned<RuleFile>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Defaults {
    account: Option<Spanned<String>>,
    ttl: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PermissionSetFile {
    #[serde(rename = "pub", default)]
    publish: PermissionFile,
    #[serde(rename = "sub", default)]
    subscribe: PermissionFile,
    resp: Option<ResponseFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PermissionFile {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseFile {
    #[serde(default = "one")]
    max: i64,
    ttl: Option<HumanDuration>,
}

fn one() -> i64 {
    1
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Patterns {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    issuer: Option<Spanned<String>>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    claims: BTreeMap<String, Spanned<Patterns>>,
    #[serde(default)]
    grant: Vec<Spanned<String>>,
    account: Option<Spanned<String>>,
    ttl: Option<HumanDuration>,
    #[serde(default)]
    connection_types: Vec<Spanned<String>>,
    #[serde(default)]
    source_cidrs: Vec<Spanned<String>>,
    scope_permissions: Option<Spanned<ScopeMappingFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeMappingFile {
    pub_prefix: Option<String>,
    sub_prefix: Option<String>,
    ceiling: Spanned<String>,
}

/// Registered claims whose values always contain `.`, `/` or spaces.
const NEVER_A_TOKEN: [&str; 3] = ["iss", "scope", "scp"];
/// Registered claims that differ in every token.
const CHANGES_EVERY_TOKEN: [&str; 4] = ["exp", "iat", "nbf", "jti"];

struct Compiler<'a> {
    path: &'a Path,
    source: &'a str,
    errors: Vec<LocatedError>,
    warnings: Vec<String>,
}

impl Compiler<'_> {
    fn error<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        self.errors.push(LocatedError {
            location: self.locate(at),
            message: message.into(),
        });
    }

    fn locate<T>(&self, at: &Spanned<T>) -> Location {
        Location::from_span(self.path, self.source, at.span())
    }

    fn templates(&mut self, subjects: &[Spanned<String>]) -> Vec<SubjectTemplate> {
        let mut out = Vec::new();
        for s in subjects {
            match SubjectTemplate::parse(s.get_ref()) {
                Ok(t) => {
                    for claim in t.claims() {
                        if NEVER_A_TOKEN.contains(&claim) {
                            self.error(s, format!("{{claim.{claim}}} can never be a single subject token (it holds a URL or a list)"));
                        } else if CHANGES_EVERY_TOKEN.contains(&claim) {
                            let at = self.locate(s);
                            self.warnings.push(format!("{at}: {{claim.{claim}}} changes with every token; subjects built from it are unpredictable"));
                        }
                    }
                    out.push(t)
                }
                Err(e) => self.error(s, e),
            }
        }
        out
    }
}

pub(super) fn compile(
    path: &Path,
    source: &str,
    issuers: Option<&[String]>,
) -> Result<Policy, Vec<LocatedError>> {
    let file: PolicyFile =
        toml::from_str(source).map_err(|e| vec![LocatedError::from_toml(path, source, &e)])?;
    let mut c = Compiler {
        path,
        source,
        errors: Vec::new(),
        warnings: Vec::new(),
    };

    let mut sets = HashMap::new();
    for (name, set) in &file.permissions {
        let body = set.get_ref();
        let publish = TemplatePermission {
            allow: c.templates(&body.publish.allow),
            deny: c.templates(&body.publish.deny),
        };
        for s in &body.publish.allow {
            if s.get_ref() == ">" {
                let at = c.locate(s);
                c.warnings.push(format!(
                    "{at}: permission set {name:?} allows publishing to every subject (\">\")"
                ));
            }
        }
        let resp = body.resp.as_ref().map(|r| ResponsePermission {
            max: r.max,
            ttl: r
                .ttl
                .map_or(0, |d| d.0.as_nanos().min(i64::MAX as u128) as i64),
        });
        if let Some(r) = &resp {
            if r.max < 1 {
                c.error(
                    set,
                    format!("permission set {name:?}: resp.max must be at least 1"),
                );
            }
        }
        let subscribe = TemplatePermission {
            allow: c.templates(&body.subscribe.allow),
            deny: c.templates(&body.subscribe.deny),
        };
        sets.insert(
            name.clone(),
            PermissionSet {
                publish,
                subscribe,
                resp,
            },
        );
    }

    let default_account = file.defaults.account.as_ref().map(|a| a.get_ref().clone());
    if let Some(a) = &file.defaults.account {
        check_account(&mut c, a);
    }

    let mut rules = Vec::new();
    let mut names = HashMap::new();
    for spanned in &file.rules {
        let r = spanned.get_ref();
        if let Some(previous) = names.insert(r.name.clone(), c.locate(spanned)) {
            c.error(
                spanned,
                format!("rule name {:?} is already used at {previous}", r.name),
            );
        }
        if let (Some(known), Some(issuer)) = (issuers, &r.issuer) {
            if !known.contains(issuer.get_ref()) {
                c.error(
                    issuer,
                    format!(
                        "rule {:?}: unknown issuer {:?} (the config defines: {})",
                        r.name,
                        issuer.get_ref(),
                        known.join(", ")
                    ),
                );
            }
        }
        for g in &r.grant {
            if !sets.contains_key(g.get_ref()) {
                c.error(
                    g,
                    format!(
                        "rule {:?} grants undefined permission set {:?}",
                        r.name,
                        g.get_ref()
                    ),
                );
            }
        }
        if let Some(a) = &r.account {
            check_account(&mut c, a);
        } else if default_account.is_none() {
            c.error(
                spanned,
                format!("rule {:?} has no account and [defaults] sets none", r.name),
            );
        }
        for t in &r.connection_types {
            if !CONNECTION_TYPES.contains(&t.get_ref().as_str()) {
                c.error(
                    t,
                    format!(
                        "unknown connection type {:?} (expected one of {})",
                        t.get_ref(),
                        CONNECTION_TYPES.join(", ")
                    ),
                );
            }
        }
        let mut cidrs = Vec::new();
        for s in &r.source_cidrs {
            match s.get_ref().parse::<ipnet::IpNet>() {
                Ok(n) => cidrs.push(n),
                Err(_) => c.error(
                    s,
                    format!("{:?} is not a CIDR (e.g. 10.0.0.0/8)", s.get_ref()),
                ),
            }
        }
        let mut claims = Vec::new();
        for (name, patterns) in &r.claims {
            let list = match patterns.get_ref() {
                Patterns::One(p) => vec![p.clone()],
                Patterns::Many(ps) => ps.clone(),
            };
            if list.is_empty() {
                c.error(
                    patterns,
                    format!(
                        "rule {:?}: claim {name:?} lists no values, so the rule can never match",
                        r.name
                    ),
                );
            }
            claims.push((name.clone(), list));
        }
        let scope_permissions = r.scope_permissions.as_ref().map(|m| {
            let body = m.get_ref();
            if !sets.contains_key(body.ceiling.get_ref()) {
                c.error(
                    &body.ceiling,
                    format!(
                        "rule {:?}: ceiling {:?} is not a defined permission set",
                        r.name,
                        body.ceiling.get_ref()
                    ),
                );
            }
            if body.pub_prefix.is_none() && body.sub_prefix.is_none() {
                c.error(
                    m,
                    format!(
                        "rule {:?}: scope_permissions needs pub_prefix or sub_prefix",
                        r.name
                    ),
                );
            }
            if [&body.pub_prefix, &body.sub_prefix]
                .into_iter()
                .flatten()
                .any(|p| p.is_empty() || p.chars().any(char::is_whitespace))
            {
                c.error(
                    m,
                    format!(
                        "rule {:?}: scope prefixes must be non-empty and without spaces",
                        r.name
                    ),
                );
            }
            ScopeMapping {
                pub_prefix: body.pub_prefix.clone(),
                sub_prefix: body.sub_prefix.clone(),
                ceiling: body.ceiling.get_ref().clone(),
            }
        });
        if r.grant.is_empty() && scope_permissions.is_none() {
            c.error(spanned, format!("rule {:?} grants nothing", r.name));
        }
        if let Some(s) = r
            .scopes
            .iter()
            .find(|s| s.is_empty() || s.chars().any(char::is_whitespace))
        {
            c.error(
                spanned,
                format!(
                    "rule {:?}: scope {s:?} can never be granted (scopes are single words)",
                    r.name
                ),
            );
        }
        if r.ttl.is_some_and(|t| t.0.is_zero()) {
            c.error(spanned, format!("rule {:?}: ttl must be positive", r.name));
        }
        rules.push(Rule {
            name: r.name.clone(),
            issuer: r.issuer.as_ref().map(|i| i.get_ref().clone()),
            scopes: r.scopes.clone(),
            claims,
            grant: r.grant.iter().map(|g| g.get_ref().clone()).collect(),
            account: r.account.as_ref().map(|a| a.get_ref().clone()),
            ttl: r.ttl.map(Duration::from),
            connection_types: r
                .connection_types
                .iter()
                .map(|t| t.get_ref().clone())
                .collect(),
            source_cidrs: cidrs,
            scope_permissions,
        });
    }
    let effective = |r: &Rule| r.account.clone().or_else(|| default_account.clone());
    for (i, r) in rules.iter().enumerate() {
        let unconditional = r.issuer.is_none()
            && r.scopes.is_empty()
            && r.claims.is_empty()
            && r.connection_types.is_empty()
            && r.source_cidrs.is_empty();
        if !unconditional {
            continue;
        }
        c.warnings.push(format!(
            "rule {:?} has no conditions: it matches every token of every issuer",
            r.name
        ));
        if let Some(other) = rules.iter().find(|o| effective(o) != effective(r)) {
            c.error(
                &file.rules[i],
                format!(
                    "rule {:?} matches every token, so it always conflicts with rule {:?} on the account ({:?} vs {:?})",
                    r.name,
                    other.name,
                    effective(r).unwrap_or_default(),
                    effective(other).unwrap_or_default()
                ),
            );
        }
    }
    if rules.is_empty() {
        c.warnings.push(format!(
            "{}: the policy has no rules, so every token is denied",
            path.display()
        ));
    }

    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    Ok(Policy {
        default_account,
        default_ttl: file.defaults.ttl.map_or(DEFAULT_TTL, Duration::from),
        claims_read: claims_read(&sets, &rules),
        sets,
        rules,
        warnings: c.warnings,
    })
}

/// Account names become the user JWT's `aud`; keep them plain.
fn check_account(c: &mut Compiler, account: &Spanned<String>) {
    let a = account.get_ref();
    if a.is_empty() || a.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        c.error(
            account,
            format!("account {a:?} is not a valid account name"),
        );
    }
}
