//! Revocations and live sessions at run time (with `[system]`): the watch
//! on the shared bucket, this instance's session records, the tasks that
//! close what no longer holds, and the instance's answers to `revoke` and
//! `sessions`.
//!
//! Failure behaviour: until the bucket was read once every connect is
//! denied (`revocations_unavailable`: nothing could be checked); once read,
//! a lost watch keeps serving the last known set, marked stale on /readyz
//! and in metrics, and reloads when NATS is back. Revocations are rare and
//! the last set is complete up to the break, while denying everyone would
//! turn a JetStream hiccup into an outage.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::task::JoinSet;

use crate::callout::{Callout, Reply};
use crate::clock::now_unix;
use crate::config::Config;
use crate::connect::Persistence;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::revocation::{Health, Revocation, RevocationSet, RevocationStore};
use crate::session::{
    split_user_name, Cause, Closed, Enforcer, Registry, Session, Target, ENFORCE_SUBJECT,
    SESSIONS_SUBJECT,
};
use crate::system::{replicas_for, ConnzQuery, SystemClient, SystemError};

/// How long start waits for the bucket's first read before serving anyway
/// (denying every connect until it arrives).
const FIRST_LOAD: Duration = Duration::from_secs(5);
/// Revocations are re-checked against the sessions, expired sessions
/// dropped and withdrawn keys looked for this often; a close that failed is
/// retried at the next tick.
const TICK: Duration = Duration::from_secs(2);
/// Sessions are compared with the servers' CONNZ this often, to forget
/// connections that ended.
const RECONCILE: Duration = Duration::from_secs(30);

/// The live-session side of one running service.
pub struct Live {
    /// The revocations in force, as the decider sees them.
    pub set: RevocationSet,
    /// The connections we authorized that are still open.
    pub sessions: Arc<Registry>,
    enforcer: Arc<Enforcer>,
}

impl Live {
    /// Connects the system user and starts the bucket watch and the
    /// enforcement tasks (into `tasks`, which the service stops at exit).
    pub async fn start(
        config: &Config,
        nats: &async_nats::Client,
        set: RevocationSet,
        callout: Arc<Callout>,
        metrics: Arc<Metrics>,
        tasks: &mut JoinSet<()>,
    ) -> Result<Live, SystemError> {
        let system = SystemClient::connect(config, Persistence::Service).await?;
        let sessions = Arc::new(Registry::new(config.token.cache_size as usize));
        let enforcer = Arc::new(Enforcer::new(
            system.clone(),
            sessions.clone(),
            metrics,
            config.revocation.on_policy_change,
        ));
        tasks.spawn(watch_bucket(
            nats.clone(),
            system.clone(),
            config.revocation.bucket.clone(),
            set.clone(),
        ));
        let loaded = tokio::time::timeout(FIRST_LOAD, async {
            while set.health() == Health::NeverLoaded {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if loaded.is_err() {
            tracing::warn!(bucket = %config.revocation.bucket,
                "revocations not loaded yet: every connect is denied until they are");
        }
        tasks.spawn(close_on_arrival(set.clone(), enforcer.clone()));
        tasks.spawn(tick(set.clone(), enforcer.clone(), callout.clone()));
        tasks.spawn(reconcile(enforcer.clone()));
        tasks.spawn(forget_removed_issuers(enforcer.clone(), callout));
        tasks.spawn(answer_cli(nats.clone(), set.clone(), enforcer.clone()));
        Ok(Live {
            set,
            sessions,
            enforcer,
        })
    }

    /// Records an allowed connection as a live session.
    pub fn record(&self, reply: &Reply) {
        let Ok(approval) = &reply.outcome.result else {
            return;
        };
        let now = now_unix();
        self.sessions.insert(
            Session {
                server_id: reply.client.server_id.clone(),
                cid: reply.client.cid,
                user_nkey: reply.client.user_nkey.clone(),
                token: approval.token.clone(),
                grant: approval.grant.clone(),
                expires_at: approval.expires_at,
                started: now,
                conn_type: reply.client.conn_type.clone(),
                host: reply.client.host.clone(),
                certificate: reply.client.certificate.clone(),
            },
            now,
        );
    }

    /// Re-evaluates the live sessions under a policy just loaded.
    pub fn policy_reloaded(&self, callout: Arc<Callout>, policy: Arc<Policy>) {
        let enforcer = self.enforcer.clone();
        tokio::spawn(async move {
            let closed = enforcer.policy_changed(callout.decider(), &policy).await;
            if closed != Closed::default() {
                tracing::info!(
                    closed = closed.closed,
                    failed = closed.failed,
                    "live sessions re-evaluated after the policy change"
                );
            }
        });
    }
}

/// Opens (creating if missing) the bucket and keeps the set current; an
/// unreachable bucket is retried until it answers.
async fn watch_bucket(
    nats: async_nats::Client,
    system: SystemClient,
    bucket: String,
    set: RevocationSet,
) {
    let mut pause = Duration::from_millis(250);
    let store = loop {
        let replicas = system
            .servers()
            .await
            .map(|s| replicas_for(&s))
            .unwrap_or(1);
        match RevocationStore::open_or_create(&nats, &bucket, replicas).await {
            Ok(store) => break store,
            Err(e) => {
                tracing::warn!(bucket = %bucket, error = %e,
                    "revocation bucket unavailable; connects are denied until it is read");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    };
    // The watcher runs until this task is aborted with the service.
    let _watcher = set.watch(store);
    std::future::pending::<()>().await;
}

/// Closes the sessions each new revocation covers, as it arrives.
async fn close_on_arrival(set: RevocationSet, enforcer: Arc<Enforcer>) {
    let mut arrivals = set.arrivals();
    loop {
        let closed = match arrivals.recv().await {
            Ok(revocation) => {
                tracing::info!(
                    target: "audit.revocation",
                    event = "revocation",
                    selector = %revocation.selector,
                    reason = %revocation.reason,
                    by = %revocation.by,
                    expires_at = revocation.expires_at,
                    "revocation in force"
                );
                enforcer.revoked(&revocation).await
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                enforcer.enforce_all(&set).await
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        if closed != Closed::default() {
            tracing::info!(
                closed = closed.closed,
                failed = closed.failed,
                "revocation enforced"
            );
        }
    }
}

/// Forgets expired sessions, retries closes, and closes sessions whose
/// verifying key was withdrawn.
async fn tick(set: RevocationSet, enforcer: Arc<Enforcer>, callout: Arc<Callout>) {
    let mut every = tokio::time::interval(TICK);
    loop {
        every.tick().await;
        enforcer.sessions().sweep(now_unix());
        enforcer.enforce_all(&set).await;
        enforcer.keys_withdrawn(callout.decider().issuers()).await;
    }
}

/// Forgets sessions the servers no longer have (closed by the client, or by
/// a server restart). Only servers that answered are judged.
async fn reconcile(enforcer: Arc<Enforcer>) {
    let mut every = tokio::time::interval(RECONCILE);
    every.tick().await;
    loop {
        every.tick().await;
        if enforcer.sessions().is_empty() {
            continue;
        }
        let Ok(gather) = enforcer.system().connz(&ConnzQuery::default()).await else {
            continue;
        };
        let answered: std::collections::HashSet<&str> =
            gather.servers.iter().map(|s| s.id.as_str()).collect();
        let live: std::collections::HashSet<(&str, u64)> = gather
            .connections
            .iter()
            .map(|c| (c.server_id.as_str(), c.cid))
            .collect();
        enforcer.sessions().retain(|s| {
            !answered.contains(s.server_id.as_str())
                || live.contains(&(s.server_id.as_str(), s.cid))
        });
    }
}

/// At start: connections in the policy's accounts named for an issuer the
/// config no longer has were authorized on trust this config withdrew;
/// they are closed.
async fn forget_removed_issuers(enforcer: Arc<Enforcer>, callout: Arc<Callout>) {
    let decider = callout.decider();
    let names = decider.issuers().names();
    let issuers: Vec<&str> = names.iter().map(String::as_str).collect();
    let policy = decider.policy();
    let accounts = policy.accounts();
    let Ok(gather) = enforcer.system().connz(&ConnzQuery::default()).await else {
        return;
    };
    for c in &gather.connections {
        let Some((issuer, subject)) = c.authorized_user.split_once('/') else {
            continue;
        };
        if !accounts.contains(&c.account.as_str())
            || split_user_name(&c.authorized_user, &issuers).is_some()
        {
            continue;
        }
        let target = Target {
            server_id: &c.server_id,
            cid: c.cid,
            issuer,
            subject,
            account: &c.account,
        };
        enforcer
            .close_found(
                &target,
                Cause::IssuerRemoved,
                "its issuer is no longer configured",
            )
            .await;
    }
}

/// Answers `sessions` (this instance's records) and `revoke` (close what a
/// revocation covers now, and say how many).
async fn answer_cli(nats: async_nats::Client, set: RevocationSet, enforcer: Arc<Enforcer>) {
    let (Ok(mut list), Ok(mut enforce)) = (
        nats.subscribe(SESSIONS_SUBJECT).await,
        nats.subscribe(ENFORCE_SUBJECT).await,
    ) else {
        tracing::warn!(
            "cannot subscribe for `sessions` and `revoke`: they will not see this instance"
        );
        return;
    };
    loop {
        let (msg, body) = tokio::select! {
            Some(msg) = list.next() => {
                let all: Vec<_> = enforcer
                    .sessions()
                    .snapshot(now_unix())
                    .iter()
                    .map(|s| s.summary())
                    .collect();
                let body = serde_json::to_vec(&all).expect("sessions serialize");
                (msg, body)
            }
            Some(msg) = enforce.next() => {
                let closed = match serde_json::from_slice::<Revocation>(&msg.payload) {
                    Ok(r) => enforcer.revoked(&r).await,
                    Err(_) => enforcer.enforce_all(&set).await,
                };
                (msg, serde_json::to_vec(&closed).expect("counts serialize"))
            }
            else => return,
        };
        if let Some(reply) = msg.reply {
            let _ = nats.publish(reply, body.into()).await;
        }
    }
}
