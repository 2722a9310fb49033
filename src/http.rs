//! The operator's HTTP endpoint (`[http] listen`): `/metrics` (Prometheus),
//! `/healthz` (the process runs) and `/readyz` (NATS connected, policy
//! loaded, keys available for every issuer).

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::callout::Callout;
use crate::clock::now_unix;
use crate::flood::Flood;
use crate::introspection::Introspector;
use crate::metrics::{Exposition, Metrics};
use crate::revocation::Health;

/// What the endpoints report on.
pub(crate) struct State {
    /// Issuers, keys and policy, for `/readyz` and their metrics.
    pub(crate) callout: Arc<Callout>,
    /// What `/metrics` exposes.
    pub(crate) metrics: Arc<Metrics>,
    /// The service's connection, for `/readyz`.
    pub(crate) nats: async_nats::Client,
    /// The flood tracker, for its metrics.
    pub(crate) flood: Arc<Flood>,
    /// Revocations and sessions, with `[system]`.
    pub(crate) live: Option<Arc<crate::live::Live>>,
}

/// Serves the endpoints on `listener` until the task is aborted.
pub(crate) async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/metrics") => {
            let entries = state.callout.decider().issuers().cache_entries().await;
            (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                render(&state, entries),
            )
        }
        ("GET", "/healthz") => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        ("GET", "/readyz") => {
            let (ready, report) = readiness(&state);
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, "text/plain", report)
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    Ok(Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts"))
}

fn nats_connected(state: &State) -> bool {
    state.nats.connection_state() == async_nats::connection::State::Connected
}

/// Ready when NATS is connected and every issuer has keys; the body says
/// which check failed.
fn readiness(state: &State) -> (bool, String) {
    let mut ready = nats_connected(state);
    let mut report = format!(
        "nats: {}\n",
        if ready { "connected" } else { "disconnected" }
    );
    let policy = state.callout.decider().policy();
    report += &format!("policy: loaded ({} rules)\n", policy.rule_count());
    for issuer in state.callout.decider().issuers().with_keys() {
        let keys = issuer.keys.current().map_or(0, |k| k.len());
        ready &= keys > 0;
        report += &format!("issuer {}: {keys} keys\n", issuer.config.name);
    }
    for i in state.callout.decider().verifier().introspectors() {
        let known = i.endpoints_known();
        ready &= known;
        report += &format!(
            "issuer {}: introspection endpoint {}\n",
            i.name(),
            if known { "known" } else { "not yet discovered" }
        );
    }
    match &state.live {
        None => report += "revocations: off (no [system])\n",
        Some(live) => {
            let health = live.set.health();
            ready &= matches!(health, Health::Loaded { .. });
            report += &match health {
                Health::Loaded { .. } => format!(
                    "revocations: loaded ({} in force)\n",
                    live.set.active(now_unix())
                ),
                Health::NeverLoaded => {
                    "revocations: never loaded (every connect is denied)\n".into()
                }
                Health::Stale { since, reason, .. } => format!(
                    "revocations: stale since {since} ({reason}); serving the last known set\n"
                ),
            };
            report += &format!("sessions: {} live\n", live.sessions.len());
        }
    }
    (ready, report)
}

fn render(state: &State, cache_entries: u64) -> String {
    let mut out = Exposition::default();
    state.metrics.render_into(&mut out);
    state.flood.render_into(&mut out);
    let issuers = state.callout.decider().issuers();
    let per_issuer = [
        (
            "nats_oidc_callout_jwks_fetches_total",
            "counter",
            "JWKS fetch attempts.",
        ),
        (
            "nats_oidc_callout_jwks_fetch_failures_total",
            "counter",
            "Failed JWKS fetch attempts.",
        ),
        ("nats_oidc_callout_jwks_keys", "gauge", "Usable keys held."),
        (
            "nats_oidc_callout_jwks_key_age_seconds",
            "gauge",
            "Time since the keys were last refreshed.",
        ),
    ];
    for (i, (name, kind, help)) in per_issuer.iter().enumerate() {
        out.header(name, kind, help);
        for issuer in issuers.with_keys() {
            let keys = issuer.keys.current();
            let value = match i {
                0 => issuer.keys.fetch_count() as f64,
                1 => issuer.keys.failure_count() as f64,
                2 => keys.map_or(0.0, |k| k.len() as f64),
                _ => match keys {
                    Some(k) => k.fetched_at.elapsed().as_secs_f64(),
                    None => continue,
                },
            };
            out.sample(name, &[("issuer", &issuer.config.name)], value);
        }
    }
    let counters = [
        (
            "nats_oidc_callout_token_cache_hits_total",
            "Tokens served from the verified-token cache.",
            issuers.cache_hits(),
        ),
        (
            "nats_oidc_callout_signature_checks_total",
            "Token signatures verified.",
            issuers.signature_checks(),
        ),
    ];
    for (name, help, v) in counters {
        out.header(name, "counter", help);
        out.sample(name, &[], v as f64);
    }
    out.header(
        "nats_oidc_callout_token_cache_entries",
        "gauge",
        "Verified tokens held in the cache.",
    );
    out.sample(
        "nats_oidc_callout_token_cache_entries",
        &[],
        cache_entries as f64,
    );
    let introspectors: Vec<&Introspector> = state
        .callout
        .decider()
        .verifier()
        .introspectors()
        .iter()
        .map(|i| &**i)
        .collect();
    crate::introspection::render_into(&mut out, &introspectors);
    let (ok, failed) = state.callout.decider().reload_counts();
    out.header(
        "nats_oidc_callout_policy_reloads_total",
        "counter",
        "Policy reloads by result.",
    );
    out.sample(
        "nats_oidc_callout_policy_reloads_total",
        &[("result", "ok")],
        ok as f64,
    );
    out.sample(
        "nats_oidc_callout_policy_reloads_total",
        &[("result", "error")],
        failed as f64,
    );
    // Exported with or without [system] (then all zero, `enabled` 0), so
    // dashboards and alerts always find the series.
    let now = now_unix();
    let live = state.live.as_deref();
    for (name, help, value) in [
        (
            "nats_oidc_callout_revocations_enabled",
            "1 when revocations and live sessions are on (a [system] user is configured).",
            f64::from(u8::from(live.is_some())),
        ),
        (
            "nats_oidc_callout_revocations_active",
            "Revocations in force.",
            live.map_or(0.0, |l| l.set.active(now) as f64),
        ),
        (
            "nats_oidc_callout_revocations_stale",
            "1 while the revocation set may miss changes (watch lost; the last known set is served) or was never loaded.",
            live.map_or(0.0, |l| {
                f64::from(u8::from(!matches!(l.set.health(), Health::Loaded { .. })))
            }),
        ),
        (
            "nats_oidc_callout_sessions_live",
            "Live connections this instance authorized.",
            live.map_or(0.0, |l| l.sessions.len() as f64),
        ),
    ] {
        out.header(name, "gauge", help);
        out.sample(name, &[], value);
    }
    out.header(
        "nats_oidc_callout_nats_connected",
        "gauge",
        "1 when connected to NATS.",
    );
    out.sample(
        "nats_oidc_callout_nats_connected",
        &[],
        if nats_connected(state) { 1.0 } else { 0.0 },
    );
    out.0
}
