//! Compilation of a policy file into a [`Policy`]. Errors are collected,
//! not stopped at, so `validate` reports them all with file positions.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_spanned::Spanned;

use super::file::{Patterns, PermissionSetFile, PolicyFile, RuleFile, ScopeMappingFile};
use super::{
    claims_read, Known, PermissionSet, Policy, Rule, ScopeMapping, SubjectTemplate,
    TemplatePermission, CERTIFICATE_ISSUER, CONNECTION_TYPES, DEFAULT_TTL,
};
use crate::location::{LocatedError, Location};
use crate::protocol::ResponsePermission;
use crate::subject::subject_within;

/// Registered claims whose values always contain `.`, `/` or spaces.
const NEVER_A_TOKEN: [&str; 3] = ["iss", "scope", "scp"];
/// Registered claims that differ in every token.
const CHANGES_EVERY_TOKEN: [&str; 4] = ["exp", "iat", "nbf", "jti"];

/// Stands for another identity's reply subject: a subscribe permission
/// that covers it lets one identity read the replies meant for others.
const FOREIGN_INBOX: &str = "_INBOX.someone-else.reply";

struct Compiler<'a> {
    path: &'a Path,
    source: &'a str,
    known: &'a Known<'a>,
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

    fn warn<T>(&mut self, at: &Spanned<T>, message: impl std::fmt::Display) {
        let at = self.locate(at);
        self.warnings.push(format!("{at}: {message}"));
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
                            self.warn(s, format!("{{claim.{claim}}} changes with every token; subjects built from it are unpredictable"));
                        }
                    }
                    if t.first_token_templated() {
                        self.warn(s, format!("{:?} puts a claim in the first subject token: the IdP then chooses the subject space (values starting with `$` or equal to `_INBOX` are refused); prefer a literal first token", t.to_string()));
                    }
                    out.push(t)
                }
                Err(e) => self.error(s, e),
            }
        }
        out
    }

    fn permission_set(&mut self, name: &str, set: &Spanned<PermissionSetFile>) -> PermissionSet {
        let body = set.get_ref();
        for s in &body.publish.allow {
            if s.get_ref() == ">" {
                self.warn(
                    s,
                    format!("permission set {name:?} allows publishing to every subject (\">\")"),
                );
            }
        }
        for s in &body.subscribe.allow {
            let literal = !s.get_ref().contains('{');
            if literal && subject_within(FOREIGN_INBOX, s.get_ref()) {
                self.warn(s, format!("permission set {name:?} subscribes to {:?}, which covers every identity's reply inbox: one identity can read the replies meant for another. Grant a per-identity inbox such as \"_INBOX.{{claim.sub}}.>\" and set the client's custom inbox prefix to match", s.get_ref()));
            }
        }
        let resp = body.resp.as_ref().map(|r| ResponsePermission {
            max: r.max,
            ttl: r
                .ttl
                .map_or(0, |d| d.0.as_nanos().min(i64::MAX as u128) as i64),
        });
        if resp.is_some_and(|r| r.max < 1) {
            self.error(
                set,
                format!("permission set {name:?}: resp.max must be at least 1"),
            );
        }
        PermissionSet {
            publish: TemplatePermission {
                allow: self.templates(&body.publish.allow),
                deny: self.templates(&body.publish.deny),
            },
            subscribe: TemplatePermission {
                allow: self.templates(&body.subscribe.allow),
                deny: self.templates(&body.subscribe.deny),
            },
            resp,
        }
    }

    /// Account names become the user JWT's `aud`; keep them plain. In
    /// operator mode each must have an `[[account]]` to sign with.
    fn account(&mut self, account: &Spanned<String>) {
        let a = account.get_ref();
        if a.is_empty() || a.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
            self.error(
                account,
                format!("account {a:?} is not a valid account name"),
            );
        }
        if let Some(known) = self.known.accounts {
            if !known.contains(a) {
                self.error(account, format!("account {a:?} has no [[account]] entry in the service config (operator mode signs users only for configured accounts; it has: {})", known.join(", ")));
            }
        }
        if self.known.privileged_accounts.contains(a) {
            self.warn(account, format!("users are put into account {a:?}, the callout's or the system account: they would share it with the service or the server's internals"));
        }
    }

    fn rule(
        &mut self,
        spanned: &Spanned<RuleFile>,
        sets: &HashMap<String, PermissionSet>,
        default_account: Option<&String>,
    ) -> Rule {
        let r = spanned.get_ref();
        if let (Some(known), Some(issuer)) = (self.known.issuers, &r.issuer) {
            if !known.contains(issuer.get_ref()) && issuer.get_ref() != CERTIFICATE_ISSUER {
                self.error(
                    issuer,
                    format!(
                        "rule {:?}: unknown issuer {:?} (the config defines: {}; \"{CERTIFICATE_ISSUER}\" names certificate-only connections)",
                        r.name,
                        issuer.get_ref(),
                        known.join(", ")
                    ),
                );
            }
        }
        for g in &r.grant {
            if !sets.contains_key(g.get_ref()) {
                self.error(
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
            self.account(a);
        } else if default_account.is_none() {
            self.error(
                spanned,
                format!("rule {:?} has no account and [defaults] sets none", r.name),
            );
        }
        for t in &r.connection_types {
            if !CONNECTION_TYPES.contains(&t.get_ref().as_str()) {
                self.error(
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
                Err(_) => self.error(
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
                self.error(
                    patterns,
                    format!(
                        "rule {:?}: claim {name:?} lists no values, so the rule can never match",
                        r.name
                    ),
                );
            }
            claims.push((name.clone(), list));
        }
        if let Some(c) = &r.certificate {
            for w in c.get_ref().warnings() {
                self.warn(c, format!("rule {:?}: {w}", r.name));
            }
        }
        let scope_permissions = r
            .scope_permissions
            .as_ref()
            .map(|m| self.scope_mapping(&r.name, m, sets));
        if r.grant.is_empty() && scope_permissions.is_none() {
            self.error(spanned, format!("rule {:?} grants nothing", r.name));
        }
        if let Some(s) = r
            .scopes
            .iter()
            .find(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            self.error(
                spanned,
                format!(
                    "rule {:?}: scope {s:?} can never be granted (scopes are single words)",
                    r.name
                ),
            );
        }
        if r.ttl.is_some_and(|t| t.0.is_zero()) {
            self.error(spanned, format!("rule {:?}: ttl must be positive", r.name));
        }
        Rule {
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
            certificate: r.certificate.as_ref().map(|c| c.get_ref().clone()),
            scope_permissions,
        }
    }

    fn scope_mapping(
        &mut self,
        rule: &str,
        m: &Spanned<ScopeMappingFile>,
        sets: &HashMap<String, PermissionSet>,
    ) -> ScopeMapping {
        let body = m.get_ref();
        if !sets.contains_key(body.ceiling.get_ref()) {
            self.error(
                &body.ceiling,
                format!(
                    "rule {rule:?}: ceiling {:?} is not a defined permission set",
                    body.ceiling.get_ref()
                ),
            );
        }
        if body.pub_prefix.is_none() && body.sub_prefix.is_none() {
            self.error(
                m,
                format!("rule {rule:?}: scope_permissions needs pub_prefix or sub_prefix"),
            );
        }
        if [&body.pub_prefix, &body.sub_prefix]
            .into_iter()
            .flatten()
            .any(|p| p.is_empty() || p.chars().any(char::is_whitespace))
        {
            self.error(
                m,
                format!("rule {rule:?}: scope prefixes must be non-empty and without spaces"),
            );
        }
        ScopeMapping {
            pub_prefix: body.pub_prefix.clone(),
            sub_prefix: body.sub_prefix.clone(),
            ceiling: body.ceiling.get_ref().clone(),
        }
    }

    /// A rule without conditions matches every token; beside a rule with
    /// another account it makes every decision an account conflict.
    fn unconditional(
        &mut self,
        rules: &[Rule],
        spans: &[Spanned<RuleFile>],
        default_account: Option<&String>,
    ) {
        let effective = |r: &Rule| r.account.clone().or_else(|| default_account.cloned());
        for (i, r) in rules.iter().enumerate() {
            let unconditional = r.issuer.is_none()
                && r.scopes.is_empty()
                && r.claims.is_empty()
                && r.connection_types.is_empty()
                && r.source_cidrs.is_empty()
                && r.certificate.is_none();
            if !unconditional {
                continue;
            }
            self.warnings.push(format!(
                "rule {:?} has no conditions: it matches every token of every issuer",
                r.name
            ));
            if let Some(other) = rules.iter().find(|o| effective(o) != effective(r)) {
                self.error(
                    &spans[i],
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
    }
}

pub(super) fn compile(
    path: &Path,
    source: &str,
    known: &Known,
) -> Result<Policy, Vec<LocatedError>> {
    let file: PolicyFile =
        toml::from_str(source).map_err(|e| vec![LocatedError::from_toml(path, source, &e)])?;
    let mut c = Compiler {
        path,
        source,
        known,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let sets: HashMap<String, PermissionSet> = file
        .permissions
        .iter()
        .map(|(name, set)| (name.clone(), c.permission_set(name, set)))
        .collect();
    let default_account = file.defaults.account.as_ref().map(|a| a.get_ref().clone());
    if let Some(a) = &file.defaults.account {
        c.account(a);
    }
    let mut rules = Vec::new();
    let mut names = HashMap::new();
    for spanned in &file.rules {
        let name = &spanned.get_ref().name;
        if let Some(previous) = names.insert(name.clone(), c.locate(spanned)) {
            c.error(
                spanned,
                format!("rule name {name:?} is already used at {previous}"),
            );
        }
        rules.push(c.rule(spanned, &sets, default_account.as_ref()));
    }
    c.unconditional(&rules, &file.rules, default_account.as_ref());
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
