//! The decision: token → issuer → policy → lifetime. Pure apart from the
//! issuers' key fetching and introspection; shared by `serve` (for every connection) and
//! `check` (for one token), so both decide exactly alike.

mod outcome;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::certificate::{check_binding, BindingError, CertificateBound};
use crate::config::Config;
use crate::issuer::{Issuers, TokenError, VerifiedToken};
use crate::policy::{
    Connection, Grant, Identity, Known, Origin, Policy, PolicyError, RuleTrace, CERTIFICATE_ISSUER,
};
use crate::revocation::{Health, Presented, RevocationSet};
use crate::verifier::{SetupError, Verifier};

pub use outcome::{Approval, Outcome, Reason};

/// Why the decider cannot start (or `check` cannot run).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The policy file is missing or invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// An issuer's keys or introspection cannot be set up.
    #[error(transparent)]
    Issuers(#[from] SetupError),
}

/// Token in, decision out: issuers, policy and lifetime caps. Needs no
/// signing key, so `check` can run where the service's secrets are not.
pub struct Decider {
    verifier: Verifier,
    /// The verifier's issuers, for names, binding modes and `--claims`.
    issuers: Arc<Issuers>,
    policy: RwLock<Arc<Policy>>,
    max_ttl: Duration,
    /// Operator mode's target accounts: a policy granting others is refused
    /// at load and at reload.
    accounts: Option<Vec<String>>,
    /// The callout account (and the system account): granting them is a
    /// policy warning.
    privileged_accounts: Vec<String>,
    reloads: AtomicU64,
    failed_reloads: AtomicU64,
    /// The revocations in force, with `[system]`; `None` decides without.
    revocations: Option<RevocationSet>,
}

/// Who is connecting, besides the token: what the policy's connection
/// conditions and the revocation check read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// Client facts the policy's conditions read (host, name, TLS, …).
    pub conn: Connection<'a>,
    /// The NATS user key of this connection (revocable by `--user-nkey`).
    pub user_nkey: Option<&'a str>,
}

impl Decider {
    /// Builds the issuers and loads the policy; no network yet.
    pub fn from_config(config: &Config) -> Result<Self, LoadError> {
        let verifier = Verifier::from_config(config)?;
        let issuers = verifier.issuers().clone();
        let accounts: Option<Vec<String>> = config
            .operator_mode()
            .then(|| config.accounts.iter().map(|a| a.name.clone()).collect());
        let privileged_accounts = vec![config.nats.account.clone(), "SYS".into(), "$SYS".into()];
        let policy = load(
            &config.resolve(&config.policy.file),
            &issuers,
            accounts.as_deref(),
            &privileged_accounts,
        )?;
        Ok(Self {
            verifier,
            issuers,
            policy: RwLock::new(Arc::new(policy)),
            max_ttl: config.token.max_ttl,
            accounts,
            privileged_accounts,
            reloads: AtomicU64::new(0),
            failed_reloads: AtomicU64::new(0),
            revocations: None,
        })
    }

    /// Checks every decision against `set` from now on.
    pub fn with_revocations(mut self, set: RevocationSet) -> Self {
        self.revocations = Some(set);
        self
    }

    /// For warming key caches and naming issuers.
    pub fn issuers(&self) -> &Arc<Issuers> {
        &self.issuers
    }

    pub(crate) fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The policy in force now; a reload swaps it for later calls.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().expect("policy lock").clone()
    }

    /// Swaps in a new policy; on error the current one stays.
    pub fn reload_policy(&self, path: &Path) -> Result<Arc<Policy>, PolicyError> {
        match load(
            path,
            &self.issuers,
            self.accounts.as_deref(),
            &self.privileged_accounts,
        ) {
            Ok(p) => {
                let policy = Arc::new(p);
                *self.policy.write().expect("policy lock") = policy.clone();
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(policy)
            }
            Err(e) => {
                self.failed_reloads.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// (successful, failed) policy reloads since start.
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads.load(Ordering::Relaxed),
            self.failed_reloads.load(Ordering::Relaxed),
        )
    }

    /// Validates a token and evaluates the policy, as for a connection.
    pub async fn decide(
        &self,
        token: &str,
        request: &Request<'_>,
        now: i64,
        explain: bool,
    ) -> Outcome {
        // One policy for both steps: the cache keeps the claims it reads.
        let policy = self.policy();
        match self
            .verifier
            .verify(token, Some(policy.claims_read()))
            .await
        {
            Ok(verified) => match self.binding(&verified, request) {
                Ok(()) => self.evaluate(&policy, verified, request, now, explain),
                Err(e) => Outcome {
                    issuer: Some(verified.issuer.clone()),
                    subject: Some(verified.subject.clone()),
                    ..Outcome::denied(e)
                },
            },
            Err(e) => Outcome::denied(e),
        }
    }

    /// RFC 8705: a token bound to a client certificate is good only over a
    /// connection with that certificate, verified; an issuer may require
    /// every token to be bound.
    fn binding(&self, token: &VerifiedToken, request: &Request<'_>) -> Result<(), BindingError> {
        let mode = self
            .issuers
            .by_name(&token.issuer)
            .map_or(CertificateBound::Optional, |i| i.config.certificate_bound);
        check_binding(&token.claims, request.conn.certificate, mode)
    }

    /// Decides a connection that presents a verified client certificate and
    /// no bearer token: the identity of the `certificate` pseudo-issuer,
    /// whose subject is the SPIFFE ID if there is one, else the subject DN.
    pub fn decide_certificate(&self, request: &Request<'_>, now: i64, explain: bool) -> Outcome {
        let Some(cert) = request.conn.certificate else {
            return Outcome::denied(TokenError::Missing);
        };
        let subject = cert
            .san_uri
            .iter()
            .find(|u| u.starts_with("spiffe://"))
            .cloned()
            .unwrap_or_else(|| cert.subject.clone());
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(subject));
        let identity = VerifiedToken::new(CERTIFICATE_ISSUER.to_owned(), "scope", claims);
        self.evaluate(&self.policy(), Arc::new(identity), request, now, explain)
    }

    /// Evaluates the policy on unverified claims (`check --claims`): `iss`
    /// picks the issuer, whose scope claim is then read.
    pub fn decide_claims(
        &self,
        claims: Map<String, Value>,
        request: &Request<'_>,
        now: i64,
        explain: bool,
    ) -> Outcome {
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(issuer) = self.issuers.by_iss(iss) else {
            return Outcome::denied(if iss.is_empty() {
                TokenError::NoIssuer
            } else {
                TokenError::UnknownIssuer(iss.to_owned())
            });
        };
        let verified = VerifiedToken::new(
            issuer.config.name.clone(),
            &issuer.config.scope_claim,
            claims,
        );
        self.evaluate(&self.policy(), Arc::new(verified), request, now, explain)
    }

    fn evaluate(
        &self,
        policy: &Policy,
        token: Arc<VerifiedToken>,
        request: &Request<'_>,
        now: i64,
        explain: bool,
    ) -> Outcome {
        let (result, trace) = match self.revoked(&token, request, now) {
            Some(reason) => (Err(reason), None),
            None => self.grant(policy, &token, &request.conn, now, explain),
        };
        Outcome {
            issuer: Some(token.issuer.clone()),
            subject: Some(token.subject.clone()),
            result: result.map(|(grant, expires_at)| Approval {
                grant,
                expires_at,
                token: token.clone(),
            }),
            trace,
        }
    }

    /// Why a revocation denies this identity, if one does. Before the bucket
    /// was ever read nothing can be checked, so every connect is denied
    /// (fail closed); once read, a stale set still answers with what it
    /// last knew (reported on /readyz and in metrics).
    fn revoked(&self, token: &VerifiedToken, request: &Request<'_>, now: i64) -> Option<Reason> {
        let set = self.revocations.as_ref()?;
        if set.health() == Health::NeverLoaded {
            return Some(Reason::RevocationsUnavailable);
        }
        let who = Presented::from_claims(&token.issuer, &token.claims, request.user_nkey);
        set.matching(&who, now).map(|r| Reason::Revoked(r.reason))
    }

    /// The policy's grant for a verified token and its lifetime.
    #[allow(clippy::type_complexity)]
    fn grant(
        &self,
        policy: &Policy,
        token: &VerifiedToken,
        conn: &Connection<'_>,
        now: i64,
        explain: bool,
    ) -> (
        Result<(Grant, i64), Reason>,
        Option<(Vec<RuleTrace>, Vec<Origin>)>,
    ) {
        let identity = Identity {
            issuer: &token.issuer,
            claims: &token.claims,
            scopes: &token.scopes,
        };
        let (evaluated, trace) = if explain {
            let e = policy.explain(&identity, conn);
            (e.result, Some((e.rules, e.origins)))
        } else {
            (policy.evaluate(&identity, conn), None)
        };
        let result = evaluated.map_err(Reason::from).and_then(|grant| {
            let expires_at = self.expiry(&grant, token.expires_at, now);
            if expires_at <= now {
                Err(Reason::TokenExpiring)
            } else {
                Ok((grant, expires_at))
            }
        });
        (result, trace)
    }

    /// What `policy` grants a live session now, for re-evaluation: the same
    /// evaluation as at connect, on the claims kept for it.
    pub fn regrant(
        &self,
        policy: &Policy,
        token: &VerifiedToken,
        conn: &Connection<'_>,
        now: i64,
    ) -> Result<Grant, Reason> {
        self.grant(policy, token, conn, now, false)
            .0
            .map(|(g, _)| g)
    }

    /// The user lives no longer than the grant's ttl, `max_ttl`, and the
    /// token it was minted from.
    fn expiry(&self, grant: &Grant, token_exp: Option<i64>, now: i64) -> i64 {
        let cap = grant
            .ttl
            .min(self.max_ttl)
            .as_secs()
            .min(i64::MAX as u64 / 2) as i64;
        let mut exp = now.saturating_add(cap);
        if let Some(t) = token_exp {
            exp = exp.min(t);
        }
        exp
    }
}

/// Compiles the policy against what the config defines.
fn load(
    path: &Path,
    issuers: &Issuers,
    accounts: Option<&[String]>,
    privileged_accounts: &[String],
) -> Result<Policy, PolicyError> {
    let names = issuers.names();
    Policy::load(
        path,
        &Known {
            issuers: Some(&names),
            accounts,
            privileged_accounts,
        },
    )
}
