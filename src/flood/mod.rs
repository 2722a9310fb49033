//! Floods of failing connects. A source (the client's address; IPv6 by its
//! /64) whose denials reach `failures` within `window` is *failing*, as in
//! EMQX's flapping detection; while it is, its denials are answered late,
//! after `hold`, from a bounded pool outside `max_in_flight`. A client
//! waiting for its answer cannot reconnect, so an attacker bound by its
//! concurrency slows to a connect per `hold` per connection, and the
//! capacity it took goes back to everyone else.
//!
//! Only denials are ever held, and only the client's own failures count
//! (not overload, timeouts or IdP trouble); an allowed decision never
//! touches the tracker. A held denial is the same signed denial with its
//! reason, just later. With the pool full, denials go out at once.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};

use crate::metrics::Exposition;
use crate::reason::ReasonClass;

/// `[flood]`: when a source counts as failing, and how its denials are held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodConfig {
    /// Off: every denial goes out at once and no source is tracked.
    pub enabled: bool,
    /// Denials from one source within `window` that make it failing.
    pub failures: u32,
    /// How far back a source's denials count.
    pub window: Duration,
    /// How late a failing source's denials are answered; the service keeps
    /// it below `request_timeout` (minus the decision's own time).
    pub hold: Duration,
    /// Denials held at once.
    pub max_held: usize,
    /// Sources tracked at once; beyond, new sources go untracked.
    pub max_sources: usize,
}

impl Default for FloodConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failures: 20,
            window: Duration::from_secs(10),
            hold: Duration::from_secs(1),
            max_held: 4096,
            max_sources: 100_000,
        }
    }
}

/// Holds shorter than this are not worth a task.
const MIN_HOLD: Duration = Duration::from_millis(10);

/// Where connects come from: an IPv4 address, an IPv6 /64 (one host's
/// usual allotment), or the host text when it is not an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
    Other(Box<str>),
}

impl Source {
    fn of(host: &str) -> Option<Source> {
        if host.is_empty() {
            return None;
        }
        Some(match host.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => Source::V4(a.octets()),
            Ok(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let o = a.octets();
                    Source::V6(o[..8].try_into().expect("16 bytes"))
                }
            },
            Err(_) => Source::Other(host.chars().take(64).collect()),
        })
    }
}

/// One source's failures in its current window.
struct Record {
    window_start: Instant,
    failures: u32,
    /// Held while now is before this: each failure at or past the
    /// threshold extends it by a window.
    failing_until: Option<Instant>,
}

/// Whether a denial is the client's own failure: what it presented (a
/// token, inactive or revoked at that, a certificate). Overload, deadlines,
/// the IdP and its keys, the revocation bucket, the server's request and
/// our own errors are not.
fn is_client_failure(class: ReasonClass) -> bool {
    use ReasonClass::*;
    match class {
        NoToken | TokenMalformed | TokenAlgorithm | UnknownIssuer | UnknownKey | BadSignature
        | TokenExpired | TokenNotYetValid | Audience | IssuerMismatch | TokenInactive | NoRule
        | AccountConflict | ClaimNotAToken | ClaimAmbiguous | ClaimReservedSubject
        | TokenExpiring | Revoked | CertificateInvalid | CertificateBinding => true,
        KeysUnavailable
        | IdpUnavailable
        | IdpTimeout
        | IdpSaturated
        | IdpRateLimited
        | IdpBadResponse
        | UserinfoFailed
        | RevocationsUnavailable
        | StaleRequest
        | BadRequest
        | Saturated
        | Timeout
        | Internal => false,
    }
}

/// The tracker and the tarpit, shared by every request.
pub struct Flood {
    config: FloodConfig,
    sources: Mutex<Sources>,
    slots: Arc<Semaphore>,
    release: watch::Sender<bool>,
    held_total: AtomicU64,
    /// Denials of failing sources sent at once because the pool was full.
    overflow_total: AtomicU64,
}

struct Sources {
    map: HashMap<Source, Record>,
    last_prune: Instant,
}

impl Flood {
    /// An empty tracker with `config`'s limits.
    pub fn new(config: FloodConfig) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(config.max_held)),
            config,
            sources: Mutex::new(Sources {
                map: HashMap::new(),
                last_prune: Instant::now(),
            }),
            release: watch::channel(false).0,
            held_total: AtomicU64::new(0),
            overflow_total: AtomicU64::new(0),
        }
    }

    /// Counts a decision from `host` (`denied` is its class, `None` when
    /// allowed) and says whether its answer is held: `Ok(hold)` when `send`
    /// was taken into the tarpit to run after `hold`, `Err(send)` when the
    /// caller sends now. `budget` is what is left of the request's time.
    pub fn hold<F>(
        &self,
        host: &str,
        denied: Option<ReasonClass>,
        budget: Duration,
        send: F,
    ) -> Result<Duration, F>
    where
        F: Future + Send + 'static,
    {
        let Some(class) = denied else {
            return Err(send);
        };
        let hold = self.config.hold.min(budget);
        if !self.config.enabled
            || !is_client_failure(class)
            || !self.record_failure(host, Instant::now())
            || hold < MIN_HOLD
        {
            return Err(send);
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.overflow_total.fetch_add(1, Ordering::Relaxed);
            return Err(send);
        };
        self.held_total.fetch_add(1, Ordering::Relaxed);
        let mut release = self.release.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(hold) => {}
                _ = release.wait_for(|r| *r) => {}
            }
            send.await;
            drop(slot);
        });
        Ok(hold)
    }

    /// Counts one failure of `host`; true when the source is failing.
    fn record_failure(&self, host: &str, now: Instant) -> bool {
        let Some(source) = Source::of(host) else {
            return false;
        };
        let c = &self.config;
        let mut sources = self.sources.lock().expect("flood lock");
        if now.duration_since(sources.last_prune) >= c.window {
            sources.prune(now, c.window);
        }
        if !sources.map.contains_key(&source) && sources.map.len() >= c.max_sources {
            sources.prune(now, c.window);
            if sources.map.len() >= c.max_sources {
                return false;
            }
        }
        let r = sources.map.entry(source).or_insert(Record {
            window_start: now,
            failures: 0,
            failing_until: None,
        });
        if now.duration_since(r.window_start) >= c.window {
            r.window_start = now;
            r.failures = 0;
        }
        r.failures = r.failures.saturating_add(1);
        if r.failures >= c.failures {
            r.failing_until = Some(now + c.window);
        }
        r.failing_until.is_some_and(|t| t > now)
    }

    /// Sends every held denial now and waits (up to `within`) until they
    /// are out: shutdown answers, it does not drop.
    pub async fn release_all(&self, within: Duration) {
        self.release.send_replace(true);
        let all = u32::try_from(self.config.max_held).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(within, self.slots.acquire_many(all)).await;
    }

    /// Denials being held right now.
    pub fn held_now(&self) -> usize {
        self.config.max_held - self.slots.available_permits()
    }

    /// (tracked, failing) sources.
    fn source_counts(&self) -> (usize, usize) {
        let now = Instant::now();
        let sources = self.sources.lock().expect("flood lock");
        let failing = sources
            .map
            .values()
            .filter(|r| r.failing_until.is_some_and(|t| t > now))
            .count();
        (sources.map.len(), failing)
    }

    /// The tracker's gauges and counters for `/metrics`.
    pub fn render_into(&self, out: &mut Exposition) {
        let (tracked, failing) = self.source_counts();
        for (name, kind, help, value) in [
            (
                "nats_oidc_callout_flood_sources_tracked",
                "gauge",
                "Client sources with recent failed connects.",
                tracked as f64,
            ),
            (
                "nats_oidc_callout_flood_sources_failing",
                "gauge",
                "Sources whose denials are held (failures over the [flood] threshold).",
                failing as f64,
            ),
            (
                "nats_oidc_callout_flood_held_total",
                "counter",
                "Denials held before being sent.",
                self.held_total.load(Ordering::Relaxed) as f64,
            ),
            (
                "nats_oidc_callout_flood_held_now",
                "gauge",
                "Denials being held now.",
                self.held_now() as f64,
            ),
            (
                "nats_oidc_callout_flood_overflow_total",
                "counter",
                "Denials of failing sources sent at once because max_held were held.",
                self.overflow_total.load(Ordering::Relaxed) as f64,
            ),
        ] {
            out.header(name, kind, help);
            out.sample(name, &[], value);
        }
    }
}

impl Sources {
    /// Forgets sources whose window ended and that are no longer failing.
    fn prune(&mut self, now: Instant, window: Duration) {
        self.map.retain(|_, r| {
            now.duration_since(r.window_start) < window || r.failing_until.is_some_and(|t| t > now)
        });
        self.last_prune = now;
    }
}

#[cfg(test)]
mod tests;
