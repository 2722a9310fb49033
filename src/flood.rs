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
    pub enabled: bool,
    /// Denials from one source within `window` that make it failing.
    pub failures: u32,
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
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    const BAD: Option<ReasonClass> = Some(ReasonClass::TokenMalformed);
    const BUDGET: Duration = Duration::from_millis(1500);

    fn flood(failures: u32, max_held: usize, max_sources: usize) -> Flood {
        Flood::new(FloodConfig {
            failures,
            max_held,
            max_sources,
            hold: Duration::from_secs(3600),
            ..FloodConfig::default()
        })
    }

    /// A send that counts when it ran.
    fn send(sent: &Arc<AtomicUsize>) -> impl Future<Output = ()> + Send + 'static {
        let sent = sent.clone();
        async move {
            sent.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_source_fails_at_the_threshold_and_only_that_source() {
        let f = flood(3, 10, 100);
        let t = Instant::now();
        assert!(!f.record_failure("10.0.0.1", t));
        assert!(!f.record_failure("10.0.0.1", t));
        assert!(f.record_failure("10.0.0.1", t));
        assert!(f.record_failure("10.0.0.1", t));
        assert!(!f.record_failure("10.0.0.2", t));
    }

    #[test]
    fn failures_spread_over_windows_never_make_a_source_failing() {
        let f = flood(3, 10, 100);
        let w = f.config.window;
        let t = Instant::now();
        for i in 0..10 {
            let at = t + w * i;
            assert!(!f.record_failure("10.0.0.1", at));
            assert!(!f.record_failure("10.0.0.1", at + Duration::from_millis(1)));
        }
    }

    #[test]
    fn a_failing_source_recovers_a_window_after_its_last_failure() {
        let f = flood(2, 10, 100);
        let w = f.config.window;
        let t = Instant::now();
        f.record_failure("10.0.0.1", t);
        assert!(f.record_failure("10.0.0.1", t));
        // Still failing within the window: its next failure is held.
        assert!(f.record_failure("10.0.0.1", t + w / 2));
        // A window after that failure, one more failure starts afresh.
        assert!(!f.record_failure("10.0.0.1", t + w / 2 + w + w));
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        let f = flood(2, 10, 100);
        let t = Instant::now();
        f.record_failure("2001:db8:1:2::1", t);
        assert!(f.record_failure("2001:db8:1:2::ffff", t));
        assert!(!f.record_failure("2001:db8:1:3::1", t));
        f.record_failure("::ffff:10.0.0.9", t);
        assert!(f.record_failure("10.0.0.9", t));
    }

    #[test]
    fn no_host_is_never_tracked() {
        let f = flood(1, 10, 100);
        assert!(!f.record_failure("", Instant::now()));
        assert_eq!(f.source_counts().0, 0);
    }

    #[test]
    fn the_source_table_is_bounded_and_stale_sources_make_room() {
        let f = flood(1, 10, 2);
        let t = Instant::now();
        assert!(f.record_failure("10.0.0.1", t));
        assert!(f.record_failure("10.0.0.2", t));
        // Full: a third source is not tracked, the others still are.
        assert!(!f.record_failure("10.0.0.3", t));
        assert!(f.record_failure("10.0.0.1", t));
        assert_eq!(f.source_counts().0, 2);
        // Once the first two stopped failing a window ago, they make room.
        let later = t + f.config.window * 3;
        assert!(f.record_failure("10.0.0.3", later));
        assert_eq!(f.source_counts().0, 1);
    }

    #[tokio::test]
    async fn allowed_decisions_and_service_side_denials_are_never_held() {
        let f = flood(1, 10, 100);
        let sent = Arc::new(AtomicUsize::new(0));
        assert!(f.hold("10.0.0.1", None, BUDGET, send(&sent)).is_err());
        for class in [
            ReasonClass::Saturated,
            ReasonClass::Timeout,
            ReasonClass::KeysUnavailable,
            ReasonClass::Internal,
            ReasonClass::StaleRequest,
        ] {
            assert!(f
                .hold("10.0.0.1", Some(class), BUDGET, send(&sent))
                .is_err());
        }
        // None of them counted as a failure of the source.
        assert_eq!(f.source_counts().0, 0);
    }

    /// Waits (bounded) until `sent` reaches `n`.
    async fn until_sent(sent: &AtomicUsize, n: usize) {
        for _ in 0..1000 {
            if sent.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} of {n} sent", sent.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn held_denials_go_out_after_the_hold_and_the_pool_is_bounded() {
        let f = flood(1, 2, 100);
        let sent = Arc::new(AtomicUsize::new(0));
        // The hold is cut to what is left of the request's time.
        let short = Duration::from_millis(20);
        assert_eq!(
            f.hold("10.0.0.1", BAD, short, send(&sent)).ok(),
            Some(short)
        );
        assert_eq!(
            f.hold("10.0.0.1", BAD, Duration::MAX, send(&sent)).ok(),
            Some(f.config.hold)
        );
        // The pool holds two: the third goes out at once, counted.
        assert!(f.hold("10.0.0.1", BAD, BUDGET, send(&sent)).is_err());
        assert_eq!(f.overflow_total.load(Ordering::Relaxed), 1);
        assert_eq!(f.held_total.load(Ordering::Relaxed), 2);
        // The short hold ends; the hour-long one is still held.
        until_sent(&sent, 1).await;
        assert_eq!(f.held_now(), 1);
        assert_eq!(sent.load(Ordering::SeqCst), 1);
        f.release_all(Duration::from_secs(30)).await;
        assert_eq!(sent.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn release_all_sends_every_held_denial_now() {
        let f = flood(1, 10, 100);
        let sent = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            assert!(f.hold("10.0.0.1", BAD, BUDGET, send(&sent)).is_ok());
        }
        f.release_all(Duration::from_secs(30)).await;
        assert_eq!(sent.load(Ordering::SeqCst), 3);
        assert_eq!(f.held_now(), 0);
    }

    #[tokio::test]
    async fn disabled_tracks_and_holds_nothing() {
        let f = Flood::new(FloodConfig {
            enabled: false,
            failures: 1,
            ..FloodConfig::default()
        });
        let sent = Arc::new(AtomicUsize::new(0));
        assert!(f.hold("10.0.0.1", BAD, BUDGET, send(&sent)).is_err());
        assert_eq!(f.source_counts().0, 0);
    }

    #[test]
    fn metrics_name_every_series() {
        let f = flood(1, 10, 100);
        f.record_failure("10.0.0.1", Instant::now());
        let mut out = Exposition::default();
        f.render_into(&mut out);
        for line in [
            "nats_oidc_callout_flood_sources_tracked 1",
            "nats_oidc_callout_flood_sources_failing 1",
            "nats_oidc_callout_flood_held_total 0",
            "nats_oidc_callout_flood_held_now 0",
            "nats_oidc_callout_flood_overflow_total 0",
        ] {
            assert!(out.0.contains(line), "{line} in\n{}", out.0);
        }
    }
}
