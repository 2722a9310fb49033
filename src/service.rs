//! The service loop: one NATS connection as the callout's auth user, a
//! queue subscription on `$SYS.REQ.USER.AUTH`, bounded concurrent handling,
//! policy reload on SIGHUP, drain on SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::authorize::{read_secret, Authorizer, Reply, SetupError};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::protocol::XKEY_HEADER;

/// Subject nats-server publishes authorization requests on.
pub const AUTH_SUBJECT: &str = "$SYS.REQ.USER.AUTH";

/// How long a shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("cannot connect to NATS at {urls}: {reason}")]
    Connect { urls: String, reason: String },
    #[error("cannot subscribe to {AUTH_SUBJECT}: {0}")]
    Subscribe(String),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot listen on {0} for http: {1}")]
    Http(String, std::io::Error),
}

pub async fn run(config: Config) -> Result<(), ServiceError> {
    let authorizer = Arc::new(Authorizer::from_config(&config)?);
    log_startup(&config, &authorizer).await;
    authorizer.decider().issuers().spawn_refresh();
    if config.policy.watch {
        spawn_policy_watch(config.clone(), authorizer.clone());
    }

    let client = connect(&config).await?;
    let mut requests = client
        .queue_subscribe(AUTH_SUBJECT, config.nats.queue_group.clone())
        .await
        .map_err(|e| ServiceError::Subscribe(e.to_string()))?;
    client
        .flush()
        .await
        .map_err(|e| ServiceError::Subscribe(e.to_string()))?;

    let metrics = Arc::new(Metrics::default());
    if let Some(http) = &config.http {
        let state = Arc::new(crate::http::State {
            authorizer: authorizer.clone(),
            metrics: metrics.clone(),
            nats: client.clone(),
        });
        let addr = crate::http::spawn(&http.listen, state)
            .await
            .map_err(|e| ServiceError::Http(http.listen.clone(), e))?;
        tracing::info!(%addr, "http: /metrics /healthz /readyz");
    }

    let mut term = signal(SignalKind::terminate()).map_err(ServiceError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServiceError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(ServiceError::Signals)?;
    // Beyond max_in_flight requests are denied at once with a reason, so an
    // overload never turns into server timeouts; the deadline answers well
    // inside the server's callout timeout (a late answer is dropped).
    let slots = Arc::new(Semaphore::new(config.nats.max_in_flight));
    let deadline: Duration = config.nats.request_timeout.into();
    let mut tasks = JoinSet::new();
    let mut lost_subscription = false;
    tracing::info!(queue_group = %config.nats.queue_group, "ready: listening for authorization requests");

    loop {
        tokio::select! {
            msg = requests.next() => {
                let Some(msg) = msg else {
                    tracing::error!("subscription closed by the NATS client");
                    lost_subscription = true;
                    break;
                };
                let Some(reply_to) = msg.reply.clone() else {
                    tracing::warn!("authorization request without a reply subject ignored");
                    continue;
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    // Saturated: a prompt, reasoned denial beats a silent 2 s timeout.
                    let xkey = msg.headers.as_ref().and_then(|h| h.get(XKEY_HEADER)).map(|v| v.as_str().to_owned());
                    let mut reply = authorizer.refuse(&msg.payload, xkey.as_deref(), "saturated",
                        "service saturated: too many authorization requests in flight");
                    metrics.record_decision("deny", "saturated", "", Duration::ZERO);
                    let _ = client.publish(reply_to, std::mem::take(&mut reply.payload).into()).await;
                    AuditEvent::of(&reply, Duration::ZERO).log();
                    continue;
                };
                let authorizer = authorizer.clone();
                let client = client.clone();
                let metrics = metrics.clone();
                let audit_subject = config.audit.subject.clone();
                tasks.spawn(async move {
                    let server_xkey = msg
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(XKEY_HEADER))
                        .map(|v| v.as_str().to_owned());
                    let started = Instant::now();
                    metrics.request_started();
                    let mut reply = match tokio::time::timeout(
                        deadline,
                        authorizer.respond(&msg.payload, server_xkey.as_deref()),
                    )
                    .await
                    {
                        Ok(reply) => reply,
                        Err(_) => authorizer.refuse(&msg.payload, server_xkey.as_deref(), "timeout",
                            "decision took too long (deadline exceeded); is the IdP slow?"),
                    };
                    let took = started.elapsed();
                    let o = &reply.outcome;
                    let result = if o.result.is_ok() { "allow" } else { "deny" };
                    metrics.record_decision(result, o.class, o.issuer.as_deref().unwrap_or(""), took);
                    metrics.request_finished();
                    let payload = std::mem::take(&mut reply.payload);
                    if let Err(e) = client.publish(reply_to, payload.into()).await {
                        tracing::warn!(error = %e, "could not publish authorization response");
                    }
                    let event = AuditEvent::of(&reply, took);
                    event.log();
                    if let Some(subject) = audit_subject.as_deref() {
                        let json = serde_json::to_vec(&event).expect("audit event serializes");
                        if let Err(e) = client.publish(subject.to_owned(), json.into()).await {
                            tracing::warn!(error = %e, "could not publish the audit event");
                        }
                    }
                    drop(permit);
                });
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "authorization task failed; the server will time the client out");
                }
            }
            _ = hup.recv() => reload(&config, &authorizer),
            _ = term.recv() => { tracing::info!("SIGTERM: draining"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: draining"); break; }
        }
    }

    // Each step is bounded: with the server gone, NATS calls would wait for
    // a reconnect that may never come.
    let connected = client.connection_state() == async_nats::connection::State::Connected;
    if connected {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, requests.unsubscribe()).await;
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(abandoned = tasks.len(), "drain timed out");
    }
    if connected {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, client.flush()).await;
    }
    tracing::info!("stopped");
    if lost_subscription {
        // Exit non-zero so a supervisor restarts the service.
        return Err(ServiceError::Subscribe(
            "the subscription was closed".into(),
        ));
    }
    Ok(())
}

fn reload(config: &Config, authorizer: &Authorizer) {
    let path = config.resolve(&config.policy.file);
    match authorizer.decider().reload_policy(&path) {
        Ok(p) => tracing::info!(rules = p.rule_count(), "policy reloaded"),
        Err(e) => tracing::error!(error = %e, "policy reload failed; keeping the previous policy"),
    }
}

/// Reloads the policy when its content changes. Content, not mtime: editors
/// and Kubernetes ConfigMap updates (symlink swaps) both change it.
fn spawn_policy_watch(config: Config, authorizer: Arc<Authorizer>) {
    let path = config.resolve(&config.policy.file);
    let every: Duration = config.policy.watch_interval.into();
    let digest = |p: &std::path::Path| std::fs::read(p).ok().map(Sha256::digest);
    tokio::spawn(async move {
        let mut last = digest(&path);
        loop {
            tokio::time::sleep(every).await;
            let now = digest(&path);
            if now.is_some() && now != last {
                last = now;
                tracing::info!(file = %path.display(), "policy file changed");
                reload(&config, &authorizer);
            }
        }
    });
}

async fn log_startup(config: &Config, authorizer: &Authorizer) {
    for (name, result) in authorizer.decider().issuers().load_all().await {
        match result {
            Ok(n) => tracing::info!(issuer = %name, keys = n, "issuer keys loaded"),
            Err(e) => tracing::warn!(issuer = %name, error = %e,
                "issuer keys unavailable; its tokens are denied until a fetch succeeds"),
        }
    }
    let policy = authorizer.decider().policy();
    for w in policy.warnings() {
        tracing::warn!(warning = %w, "policy warning");
    }
    tracing::info!(
        issuer_key = %authorizer.signer_public_key(),
        xkey = authorizer.xkey_public_key().is_some(),
        rules = policy.rule_count(),
        max_ttl = %config.token.max_ttl,
        mode = if config.operator_mode() { "operator" } else { "config" },
        "starting"
    );
}

async fn connect(config: &Config) -> Result<async_nats::Client, ServiceError> {
    let urls = config.nats_urls();
    let fail = |reason: String| ServiceError::Connect {
        urls: urls.join(","),
        reason,
    };
    let n = &config.nats;
    let mut opts = if let Some(creds) = &n.creds_file {
        async_nats::ConnectOptions::with_credentials_file(config.resolve(creds))
            .await
            .map_err(|e| fail(format!("creds_file: {e}")))?
    } else if let Some(seed) = &n.nkey_seed_file {
        async_nats::ConnectOptions::with_nkey(read_secret(&config.resolve(seed))?)
    } else if let Some(token) = &n.token {
        async_nats::ConnectOptions::with_token(token.clone())
    } else if let (Some(user), Some(pw)) = (&n.user, &n.password) {
        async_nats::ConnectOptions::with_user_and_password(user.clone(), pw.clone())
    } else if let (Some(user), Some(pw_file)) = (&n.user, &n.password_file) {
        async_nats::ConnectOptions::with_user_and_password(
            user.clone(),
            read_secret(&config.resolve(pw_file))?,
        )
    } else {
        async_nats::ConnectOptions::new()
    };
    if let Some(tls) = &n.tls {
        opts = opts.require_tls(true);
        if let Some(ca) = &tls.ca_file {
            opts = opts.add_root_certificates(config.resolve(ca));
        }
        if let (Some(c), Some(k)) = (&tls.cert_file, &tls.key_file) {
            opts = opts.add_client_certificate(config.resolve(c), config.resolve(k));
        }
    }
    let opts = opts
        .name("nats-oidc-callout")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .event_callback(|event| async move {
            tracing::info!(event = %event, "nats connection event");
        });
    let addrs: Vec<async_nats::ServerAddr> = urls
        .iter()
        .map(|u| u.parse().map_err(|e| fail(format!("{u}: {e}"))))
        .collect::<Result<_, _>>()?;
    opts.connect(addrs).await.map_err(|e| fail(e.to_string()))
}

/// One decision, as logged and as published on the audit subject. It
/// carries no token and no secret.
#[derive(serde::Serialize)]
struct AuditEvent<'a> {
    decision: &'static str,
    reason: Option<&'a str>,
    reason_class: &'static str,
    issuer: Option<&'a str>,
    subject: Option<&'a str>,
    client_host: &'a str,
    client_name: &'a str,
    server_id: &'a str,
    rules: &'a [String],
    account: Option<&'a str>,
    expires_at: Option<i64>,
    duration_us: u64,
}

impl<'a> AuditEvent<'a> {
    fn of(reply: &'a Reply, took: Duration) -> Self {
        let o = &reply.outcome;
        let approval = o.result.as_ref().ok();
        AuditEvent {
            decision: if approval.is_some() { "allow" } else { "deny" },
            reason: o.result.as_ref().err().map(String::as_str),
            reason_class: o.class,
            issuer: o.issuer.as_deref(),
            subject: o.subject.as_deref(),
            client_host: &reply.client_host,
            client_name: &reply.client_name,
            server_id: &reply.server_id,
            rules: approval.map_or(&[], |a| a.grant.rules.as_slice()),
            account: approval.map(|a| a.grant.account.as_str()),
            expires_at: approval.map(|a| a.expires_at),
            duration_us: took.as_micros().min(u64::MAX as u128) as u64,
        }
    }

    fn log(&self) {
        tracing::info!(
            target: "audit",
            decision = self.decision,
            reason = self.reason,
            reason_class = self.reason_class,
            issuer = self.issuer,
            subject = self.subject,
            client_host = self.client_host,
            client_name = self.client_name,
            server_id = self.server_id,
            rules = %self.rules.join(","),
            account = self.account,
            expires_at = self.expires_at,
            duration_us = self.duration_us,
            "authorization decision"
        );
    }
}
