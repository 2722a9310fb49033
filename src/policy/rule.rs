//! One rule's conditions: issuer, scopes, claims, connection type, source
//! address and client certificate, checked in that order.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::{Connection, Identity, ScopeMapping};
use crate::certificate::CertificateCondition;
use crate::claims::{lookup, value_matches, Ambiguous};

/// A compiled `[[rule]]`.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub(super) name: String,
    pub(super) issuer: Option<String>,
    pub(super) scopes: Vec<String>,
    pub(super) claims: Vec<(String, Vec<String>)>,
    pub(super) grant: Vec<String>,
    pub(super) account: Option<String>,
    pub(super) ttl: Option<Duration>,
    pub(super) connection_types: Vec<String>,
    pub(super) source_cidrs: Vec<IpNet>,
    pub(super) certificate: Option<CertificateCondition>,
    pub(super) scope_permissions: Option<ScopeMapping>,
}

/// Why a rule does not match: the first condition it fails, or a claim it
/// reads that the token answers two ways (which denies the whole decision).
#[derive(Debug)]
pub(super) enum Miss {
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
    pub(super) fn check(&self, who: &Identity, conn: &Connection) -> Result<(), Miss> {
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
