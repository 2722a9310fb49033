//! The union of the matched rules' grants, and (for `check --explain`)
//! why each rule matched and where each granted subject came from.

use serde_json::{Map, Value};

use super::{Denial, Grant};
use super::{Identity, InterpolationError, PermissionSet, Permissions, ScopeMapping};
use crate::certificate::ClientCertificate;
use crate::protocol::{Permission, ResponsePermission};
use crate::subject::{subject_within, validate_subject};

/// Why one rule matched or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTrace {
    /// The rule's name.
    pub rule: String,
    /// Whether every condition held.
    pub matched: bool,
    /// The first condition that failed, when it did not match.
    pub reason: Option<String>,
}

/// One granted subject and what granted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `pub.allow`, `pub.deny`, `sub.allow` or `sub.deny`.
    pub list: &'static str,
    /// The subject as granted (placeholders filled in).
    pub subject: String,
    /// The rule that granted it.
    pub rule: String,
    /// Through what: a permission set, a scope or a scope ceiling.
    pub via: String,
}

#[derive(Debug, Default)]
pub(super) struct Trace {
    pub(super) rules: Vec<RuleTrace>,
    pub(super) origins: Vec<Origin>,
}

/// The result of [`Policy::explain`](super::Policy::explain).
#[derive(Debug)]
pub struct Explanation {
    /// Every rule, in policy order.
    pub rules: Vec<RuleTrace>,
    /// Every granted subject, in the order it was added.
    pub origins: Vec<Origin>,
    /// What [`Policy::evaluate`](super::Policy::evaluate) returns.
    pub result: Result<Grant, Denial>,
}

/// Accumulates the union of grants, recording origins when tracing.
pub(super) struct Collector<'t> {
    pub(super) permissions: Permissions,
    pub(super) trace: Option<&'t mut Trace>,
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

    pub(super) fn grant_set(
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
    pub(super) fn grant_scopes(
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
pub(super) fn close_empty(p: &mut Permission) {
    if p.allow.is_empty() {
        p.deny = vec![">".to_owned()];
    }
}
