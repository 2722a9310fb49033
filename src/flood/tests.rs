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
