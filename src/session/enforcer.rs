//! Closing live sessions when what they were granted no longer holds: a
//! revocation covers them, a policy reload changed their grant, or the key
//! that verified their token was withdrawn. Every close is a KICK through
//! the system connection, retried, counted, and written to the audit log.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_unix;
use crate::config::OnPolicyChange;
use crate::decision::Decider;
use crate::issuer::Issuers;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::revocation::{Revocation, RevocationSet};
use crate::system::{Kick, SystemClient};

use super::registry::{Registry, Session};

/// Why a session was closed; a metrics label and the audit event's `cause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// A revocation covers it.
    Revoked,
    /// A policy reload changed its grant (it reconnects into the new one).
    PolicyChanged,
    /// A policy reload denies it now.
    PolicyDenied,
    /// The IdP withdrew the key that verified its token.
    KeyWithdrawn,
    /// Its issuer is no longer in the config (found at startup).
    IssuerRemoved,
}

impl Cause {
    /// The metrics label and audit value.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Revoked => "revoked",
            Cause::PolicyChanged => "policy_changed",
            Cause::PolicyDenied => "policy_denied",
            Cause::KeyWithdrawn => "key_withdrawn",
            Cause::IssuerRemoved => "issuer_removed",
        }
    }

    /// Every cause, so metrics show zeros before the first close.
    pub const ALL: [Cause; 5] = [
        Cause::Revoked,
        Cause::PolicyChanged,
        Cause::PolicyDenied,
        Cause::KeyWithdrawn,
        Cause::IssuerRemoved,
    ];
}

/// KICKs that did not answer (or were refused) are tried again this often,
/// with a growing pause: a server busy for a moment still closes the session.
const KICK_ATTEMPTS: usize = 3;
const KICK_BACKOFF: Duration = Duration::from_millis(100);

/// How many sessions were closed and how many could not be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Closed {
    /// The server confirmed the close (or the client was already gone).
    pub closed: usize,
    /// KICK refused or unanswered after every retry.
    pub failed: usize,
}

impl std::ops::AddAssign for Closed {
    fn add_assign(&mut self, other: Closed) {
        self.closed += other.closed;
        self.failed += other.failed;
    }
}

/// Closes this instance's sessions through the system connection.
pub(crate) struct Enforcer {
    system: SystemClient,
    sessions: Arc<Registry>,
    metrics: Arc<Metrics>,
    on_policy_change: OnPolicyChange,
    /// One revocation is enforced at a time, so `revoke` asking an instance
    /// waits for the closes its watch already started.
    enforcing: tokio::sync::Mutex<Tally>,
}

/// Closes per revocation (its KV key and creation time), for `revoke`'s
/// count; the oldest are forgotten past a few hundred.
#[derive(Default)]
struct Tally(std::collections::VecDeque<((String, i64), Closed)>);

impl Tally {
    const KEEP: usize = 256;

    fn add(&mut self, r: &Revocation, closed: Closed) -> Closed {
        let key = (r.selector.key(), r.created_at);
        if let Some((_, c)) = self.0.iter_mut().find(|(k, _)| *k == key) {
            *c += closed;
            return *c;
        }
        if self.0.len() >= Self::KEEP {
            self.0.pop_front();
        }
        self.0.push_back((key, closed));
        closed
    }
}

impl Enforcer {
    pub(crate) fn new(
        system: SystemClient,
        sessions: Arc<Registry>,
        metrics: Arc<Metrics>,
        on_policy_change: OnPolicyChange,
    ) -> Self {
        Self {
            system,
            sessions,
            metrics,
            on_policy_change,
            enforcing: tokio::sync::Mutex::default(),
        }
    }

    pub(crate) fn sessions(&self) -> &Arc<Registry> {
        &self.sessions
    }

    pub(crate) fn system(&self) -> &SystemClient {
        &self.system
    }

    /// Closes every session `revocation` covers; returns everything this
    /// instance closed for it so far (as it arrived, and now).
    pub(crate) async fn revoked(&self, revocation: &Revocation) -> Closed {
        let mut tally = self.enforcing.lock().await;
        let now = now_unix();
        if !revocation.is_live(now) {
            return tally.add(revocation, Closed::default());
        }
        let covered: Vec<Arc<Session>> = self
            .sessions
            .snapshot(now)
            .into_iter()
            .filter(|s| revocation.selector.covers(&s.presented()))
            .collect();
        let closed = self
            .close_all(&covered, Cause::Revoked, &revocation.denial())
            .await;
        tally.add(revocation, closed)
    }

    /// Closes every session some revocation in `set` covers (after a missed
    /// arrival, and as the periodic retry of closes that failed).
    pub(crate) async fn enforce_all(&self, set: &RevocationSet) -> Closed {
        let now = now_unix();
        let covered: Vec<(Arc<Session>, Revocation)> = self
            .sessions
            .snapshot(now)
            .into_iter()
            .filter_map(|s| {
                let r = set.matching(&s.presented(), now)?;
                Some((s, r))
            })
            .collect();
        let mut total = Closed::default();
        for (s, r) in covered {
            total += self
                .close_all(std::slice::from_ref(&s), Cause::Revoked, &r.denial())
                .await;
        }
        total
    }

    /// Re-evaluates every session under `policy` (just loaded) and closes
    /// those `on_policy_change` says must reconnect.
    pub(crate) async fn policy_changed(&self, decider: &Decider, policy: &Policy) -> Closed {
        if self.on_policy_change == OnPolicyChange::Keep {
            return Closed::default();
        }
        let now = now_unix();
        let mut total = Closed::default();
        for s in self.sessions.snapshot(now) {
            let cause = match decider.regrant(policy, &s.token, &s.connection(), now) {
                Err(_) => Cause::PolicyDenied,
                Ok(grant)
                    if grant.account != s.grant.account
                        || grant.permissions != s.grant.permissions =>
                {
                    if self.on_policy_change == OnPolicyChange::KickDenied {
                        continue;
                    }
                    Cause::PolicyChanged
                }
                Ok(_) => continue,
            };
            total += self
                .close_all(std::slice::from_ref(&s), cause, "the policy changed")
                .await;
        }
        total
    }

    /// Closes sessions whose token was verified with a key its issuer no
    /// longer publishes (a new connect with that token would be refused).
    pub(crate) async fn keys_withdrawn(&self, issuers: &Issuers) -> Closed {
        if self.on_policy_change == OnPolicyChange::Keep {
            return Closed::default();
        }
        let now = now_unix();
        let gone: Vec<Arc<Session>> = self
            .sessions
            .snapshot(now)
            .into_iter()
            .filter(|s| {
                let Some(key) = s.token.key else {
                    return false;
                };
                let keys = issuers
                    .iter()
                    .find(|i| i.config.name == s.token.issuer)
                    .and_then(|i| i.keys.current());
                // An issuer without keys (never fetched) withdrew nothing.
                keys.is_some_and(|k| !k.holds(&key))
            })
            .collect();
        self.close_all(&gone, Cause::KeyWithdrawn, "the signing key was withdrawn")
            .await
    }

    async fn close_all(&self, sessions: &[Arc<Session>], cause: Cause, detail: &str) -> Closed {
        let mut out = Closed::default();
        for s in sessions {
            if self.close(s, cause, detail).await {
                out.closed += 1;
            } else {
                out.failed += 1;
            }
        }
        out
    }

    /// KICKs one session, retrying what may be passing; true once it is
    /// certainly gone (also when another instance closed it first).
    async fn close(&self, s: &Session, cause: Cause, detail: &str) -> bool {
        let target = Target {
            server_id: &s.server_id,
            cid: s.cid,
            issuer: &s.token.issuer,
            subject: &s.token.subject,
            account: &s.grant.account,
        };
        let gone = self.kick(&target, cause, detail).await;
        if gone {
            self.sessions.remove(&s.server_id, s.cid);
        }
        gone
    }

    /// Closes a connection this instance has no record of (another
    /// instance authorized it before a restart), as found in CONNZ.
    pub(crate) async fn close_found(
        &self,
        target: &Target<'_>,
        cause: Cause,
        detail: &str,
    ) -> bool {
        self.kick(target, cause, detail).await
    }

    async fn kick(&self, t: &Target<'_>, cause: Cause, detail: &str) -> bool {
        let mut pause = KICK_BACKOFF;
        let mut result = Kick::TimedOut;
        for attempt in 1..=KICK_ATTEMPTS {
            result = self.system.kick(t.server_id, t.cid).await;
            if result.is_gone() || attempt == KICK_ATTEMPTS {
                break;
            }
            tokio::time::sleep(pause).await;
            pause *= 4;
        }
        let gone = result.is_gone();
        if gone {
            self.metrics.connection_closed(cause);
        } else {
            self.metrics.close_failed(cause);
        }
        tracing::info!(
            target: "audit.session",
            event = "close",
            cause = cause.as_str(),
            result = ?result,
            issuer = t.issuer,
            subject = t.subject,
            server_id = t.server_id,
            client_id = t.cid,
            account = t.account,
            detail,
            "live connection {}",
            if gone { "closed" } else { "could not be closed" }
        );
        gone
    }
}

/// Which connection to close, and whose it is (for the audit line).
pub(crate) struct Target<'a> {
    pub(crate) server_id: &'a str,
    pub(crate) cid: u64,
    pub(crate) issuer: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) account: &'a str,
}
