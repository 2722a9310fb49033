//! The service: one NATS connection as the callout's auth user, a queue
//! subscription on `$SYS.REQ.USER.AUTH`, bounded concurrent handling, and
//! policy reloads. It runs inside any tokio runtime: shutdown and reload
//! are handed in (the CLI wires them to signals, tests to channels), and
//! readiness can be awaited.

mod reload;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::audit::AuditEvent;
use crate::callout::{Callout, Reply, SetupError};
use crate::config::Config;
use crate::connect::{connect, ConnectError, Credentials, Persistence};
use crate::decision::Reason;
use crate::flood::Flood;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::protocol::{AUTH_SUBJECT, XKEY_HEADER};
use crate::revocation::RevocationSet;
use crate::system::SystemError;
use reload::{watch_policy, Reloader};

/// How long a shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the service could not start, or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Keys, issuers or the policy could not be loaded.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The `[nats]` connection could not be made.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The server refused the subscription to the callout subject.
    #[error("cannot subscribe to {AUTH_SUBJECT}: {0}")]
    Subscribe(String),
    /// The `[http]` address could not be bound.
    #[error("cannot listen on {0} for http: {1}")]
    Http(String, std::io::Error),
    /// The `[system]` connection could not be made.
    #[error(transparent)]
    System(#[from] SystemError),
    /// The service's task panicked or was cancelled.
    #[error("the service task failed: {0}")]
    Crashed(String),
}

/// What a started service offers once it listens for requests.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The bound `[http] listen` address, when configured.
    pub http: Option<SocketAddr>,
}

/// A service started by [`run`].
pub struct Running {
    ready: watch::Receiver<Option<Ready>>,
    task: Option<JoinHandle<Result<(), ServiceError>>>,
    ended: Option<Result<(), ServiceError>>,
}

impl Running {
    /// Waits until the service listens for requests, or for the error that
    /// stopped it first.
    pub async fn ready(&mut self) -> Result<Ready, ServiceError> {
        if let Ok(r) = self.ready.wait_for(Option::is_some).await {
            return Ok(r.clone().expect("waited for Some"));
        }
        // The sender is gone: the task ended before it was ready.
        let ended = self.finish().await;
        Err(match ended {
            Err(e) => e,
            Ok(()) => ServiceError::Crashed("stopped before it was ready".into()),
        })
    }

    /// Waits for the service to stop (after its shutdown future resolved).
    pub async fn wait(mut self) -> Result<(), ServiceError> {
        self.finish().await
    }

    async fn finish(&mut self) -> Result<(), ServiceError> {
        if let Some(task) = self.task.take() {
            self.ended = Some(
                task.await
                    .unwrap_or_else(|e| Err(ServiceError::Crashed(e.to_string()))),
            );
        }
        match self.ended.take() {
            Some(Err(e)) => Err(e),
            Some(Ok(())) | None => Ok(()),
        }
    }
}

/// Starts the service on the current runtime. It stops (draining requests
/// in flight) when `shutdown` resolves; every message on `reload` reloads
/// the policy.
pub fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reload: mpsc::Receiver<()>,
) -> Running {
    let (ready_tx, ready) = watch::channel(None);
    let task = tokio::spawn(serve(config, shutdown, reload, ready_tx));
    Running {
        ready,
        task: Some(task),
        ended: None,
    }
}

async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()>,
    mut reload: mpsc::Receiver<()>,
    ready: watch::Sender<Option<Ready>>,
) -> Result<(), ServiceError> {
    // With [system], every decision is checked against the revocations.
    let revocations = RevocationSet::new();
    let callout = match config.system {
        Some(_) => Callout::from_config(&config)?.with_revocations(revocations.clone()),
        None => Callout::from_config(&config)?,
    };
    let callout = Arc::new(callout);
    log_startup(&config, &callout).await;
    // Everything started here stops with the service.
    let mut background = JoinSet::new();
    callout.decider().issuers().spawn_refresh(&mut background);
    callout
        .decider()
        .verifier()
        .spawn_discovery(&mut background);
    let metrics = Arc::new(Metrics::default());
    let client = connect(
        &config.nats.urls,
        Credentials::of_nats(&config.nats),
        "[nats]",
        None,
        Persistence::Service,
    )
    .await?;
    let live = match config.system {
        Some(_) => Some(Arc::new(
            Live::start(
                &config,
                &client,
                revocations,
                callout.clone(),
                metrics.clone(),
                &mut background,
            )
            .await?,
        )),
        None => {
            tracing::warn!(
                "no [system] in the config: revocations and live sessions are off \
                 (connections are judged once, at connect)"
            );
            None
        }
    };
    let reloader = Arc::new(Reloader {
        config: config.clone(),
        callout: callout.clone(),
        live: live.clone(),
    });
    if config.policy.watch {
        background.spawn(watch_policy(reloader.clone()));
    }
    let mut requests = client
        .queue_subscribe(AUTH_SUBJECT, config.nats.queue_group.clone())
        .await
        .map_err(|e| ServiceError::Subscribe(e.to_string()))?;
    client
        .flush()
        .await
        .map_err(|e| ServiceError::Subscribe(e.to_string()))?;

    let flood = Arc::new(Flood::new(config.flood.clone()));
    let http = match &config.http {
        None => None,
        Some(http) => {
            let state = Arc::new(crate::http::State {
                callout: callout.clone(),
                metrics: metrics.clone(),
                flood: flood.clone(),
                nats: client.clone(),
                live: live.clone(),
            });
            let listener = tokio::net::TcpListener::bind(&http.listen)
                .await
                .map_err(|e| ServiceError::Http(http.listen.clone(), e))?;
            let addr = listener
                .local_addr()
                .map_err(|e| ServiceError::Http(http.listen.clone(), e))?;
            background.spawn(crate::http::serve(listener, state));
            tracing::info!(%addr, "http: /metrics /healthz /readyz");
            Some(addr)
        }
    };

    // Beyond max_in_flight requests are denied at once with a reason, so an
    // overload never turns into server timeouts; the deadline answers well
    // inside the server's callout timeout (a late answer is dropped).
    let slots = Arc::new(Semaphore::new(config.nats.max_in_flight));
    let handler = Arc::new(Handler {
        callout: callout.clone(),
        client: client.clone(),
        metrics,
        flood: flood.clone(),
        deadline: config.nats.request_timeout,
        audit_subject: config.audit.subject.clone(),
        live,
    });
    let mut tasks = JoinSet::new();
    let mut lost_subscription = false;
    tokio::pin!(shutdown);
    tracing::info!(queue_group = %config.nats.queue_group, "ready: listening for authorization requests");
    let _ = ready.send(Some(Ready { http }));

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
                // Finished tasks are reaped here, as requests come: waiting
                // for each one would wake this loop once more per request.
                while let Some(done) = tasks.try_join_next() {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "authorization task failed; the server will time the client out");
                    }
                }
                let handler = handler.clone();
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tasks.spawn(async move {
                            handler.decide(msg, reply_to).await;
                            drop(permit);
                        });
                    }
                    // Saturated: a prompt, reasoned denial beats a silent 2 s timeout.
                    Err(_) => handler.refuse(msg, reply_to, Reason::Saturated).await,
                }
            }
            Some(()) = reload.recv() => reloader.reload(),
            () = &mut shutdown => { tracing::info!("shutting down: draining"); break; }
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
    flood.release_all(DRAIN_TIMEOUT).await;
    if connected {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, client.flush()).await;
    }
    background.abort_all();
    tracing::info!("stopped");
    if lost_subscription {
        // Exit non-zero so a supervisor restarts the service.
        return Err(ServiceError::Subscribe(
            "the subscription was closed".into(),
        ));
    }
    Ok(())
}

/// Handles one request: decide (or refuse), answer, count, audit.
struct Handler {
    callout: Arc<Callout>,
    client: async_nats::Client,
    metrics: Arc<Metrics>,
    flood: Arc<Flood>,
    deadline: Duration,
    audit_subject: Option<String>,
    live: Option<Arc<Live>>,
}

impl Handler {
    async fn decide(&self, msg: async_nats::Message, reply_to: async_nats::Subject) {
        let server_xkey = server_xkey(&msg);
        let started = Instant::now();
        self.metrics.request_started();
        let reply = match tokio::time::timeout(
            self.deadline,
            self.callout.respond(&msg.payload, server_xkey.as_deref()),
        )
        .await
        {
            Ok(reply) => reply,
            Err(_) => self
                .callout
                .refuse(&msg.payload, server_xkey.as_deref(), Reason::Timeout),
        };
        self.metrics.request_finished();
        self.finish(reply, reply_to, started.elapsed()).await;
    }

    async fn refuse(&self, msg: async_nats::Message, reply_to: async_nats::Subject, why: Reason) {
        let reply = self
            .callout
            .refuse(&msg.payload, server_xkey(&msg).as_deref(), why);
        self.finish(reply, reply_to, Duration::ZERO).await;
    }

    async fn finish(&self, mut reply: Reply, reply_to: async_nats::Subject, took: Duration) {
        let o = &reply.outcome;
        self.metrics
            .record_decision(o.class(), o.issuer.as_deref().unwrap_or(""), took);
        let payload = std::mem::take(&mut reply.payload);
        let send = publish(self.client.clone(), reply_to, payload);
        // A failing source's denial waits in the tarpit, outside max_in_flight.
        let held = match self.flood.hold(
            &reply.client.host,
            o.class(),
            self.deadline.saturating_sub(took),
            send,
        ) {
            Ok(hold) => Some(hold),
            Err(send) => {
                if send.await {
                    if let Some(live) = &self.live {
                        live.record(&reply);
                    }
                }
                None
            }
        };
        // The event is built only for a reader: the log at info, or NATS.
        if self.audit_subject.is_none() && !tracing::enabled!(target: "audit", tracing::Level::INFO)
        {
            return;
        }
        let event = AuditEvent::of(&reply, took).held(held);
        event.log();
        if let Some(subject) = self.audit_subject.as_deref() {
            let json = serde_json::to_vec(&event).expect("audit event serializes");
            if let Err(e) = self.client.publish(subject.to_owned(), json.into()).await {
                tracing::warn!(error = %e, "could not publish the audit event");
            }
        }
    }
}

/// Sends an answer; false when it could not be sent.
async fn publish(
    client: async_nats::Client,
    reply_to: async_nats::Subject,
    payload: Vec<u8>,
) -> bool {
    let sent = client.publish(reply_to, payload.into()).await;
    if let Err(e) = &sent {
        tracing::warn!(error = %e, "could not publish authorization response");
    }
    sent.is_ok()
}

fn server_xkey(msg: &async_nats::Message) -> Option<String> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(XKEY_HEADER))
        .map(|v| v.as_str().to_owned())
}

async fn log_startup(config: &Config, callout: &Callout) {
    for (name, result) in callout.decider().issuers().load_all().await {
        match result {
            Ok(n) => tracing::info!(issuer = %name, keys = n, "issuer keys loaded"),
            Err(e) => tracing::warn!(issuer = %name, error = %e,
                "issuer keys unavailable; its tokens are denied until a fetch succeeds"),
        }
    }
    for (name, result) in callout.decider().verifier().resolve_endpoints().await {
        match result {
            Ok(()) => tracing::info!(issuer = %name, "introspection endpoint known"),
            Err(e) => tracing::warn!(issuer = %name, error = %e,
                "introspection endpoint unknown; its opaque tokens are denied until discovery succeeds"),
        }
    }
    let policy = callout.decider().policy();
    for w in policy.warnings() {
        tracing::warn!(warning = %w, "policy warning");
    }
    tracing::info!(
        issuer_key = %callout.signer_public_key(),
        xkey = callout.xkey_public_key().is_some(),
        rules = policy.rule_count(),
        max_ttl = %humantime::format_duration(config.token.max_ttl),
        mode = if config.operator_mode() { "operator" } else { "config" },
        "starting"
    );
}
