//! Counters for `/metrics`, in the Prometheus text format. Hand-written:
//! a handful of series does not need a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

/// Upper bounds (seconds) of the decision latency histogram.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.5,
];

use crate::reason::{ReasonClass, ALLOWED};
use crate::session::Cause;

/// One count per denial class, and the last for allowed decisions.
type Counts = [AtomicU64; ReasonClass::ALL.len() + 1];

/// The service's own counters: decisions by issuer and result, decision
/// latency, requests in flight and session closes by cause.
#[derive(Default)]
pub struct Metrics {
    /// Decisions by issuer, then by result: counting one takes a shared
    /// lock and an atomic add, and allocates only for a new issuer.
    decisions: RwLock<BTreeMap<String, Box<Counts>>>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_nanos: AtomicU64,
    in_flight: AtomicI64,
    /// Live connections closed, and closes that failed, by cause.
    closed: Mutex<BTreeMap<Cause, u64>>,
    close_failures: Mutex<BTreeMap<Cause, u64>>,
}

impl Metrics {
    /// Counts one decision: `denied` is its class, `None` when allowed.
    pub(crate) fn record_decision(
        &self,
        denied: Option<ReasonClass>,
        issuer: &str,
        took: Duration,
    ) {
        let slot = denied.map_or(ReasonClass::ALL.len(), |c| c as usize);
        let counted = self
            .decisions
            .read()
            .expect("metrics lock")
            .get(issuer)
            .map(|counts| counts[slot].fetch_add(1, Ordering::Relaxed))
            .is_some();
        if !counted {
            self.decisions
                .write()
                .expect("metrics lock")
                .entry(issuer.to_owned())
                .or_insert_with(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))))[slot]
                .fetch_add(1, Ordering::Relaxed);
        }
        let secs = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_nanos.fetch_add(
            took.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// Counts one live connection closed for `cause`.
    pub(crate) fn connection_closed(&self, cause: Cause) {
        *self
            .closed
            .lock()
            .expect("metrics lock")
            .entry(cause)
            .or_default() += 1;
    }

    /// Counts one close for `cause` that failed: the connection outlived every attempt.
    pub(crate) fn close_failed(&self, cause: Cause) {
        *self
            .close_failures
            .lock()
            .expect("metrics lock")
            .entry(cause)
            .or_default() += 1;
    }

    /// A request is being decided (the in-flight gauge).
    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was decided or refused at its deadline (the in-flight gauge).
    pub(crate) fn request_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Writes the decision series; other sources append their own.
    pub(crate) fn render_into(&self, out: &mut Exposition) {
        out.header(
            "nats_oidc_callout_decisions_total",
            "counter",
            "Authorization decisions by result, reason class and issuer.",
        );
        let results = ReasonClass::ALL
            .iter()
            .map(|c| ("deny", c.as_str()))
            .chain([("allow", ALLOWED)]);
        for (issuer, counts) in self.decisions.read().expect("metrics lock").iter() {
            for ((result, class), n) in results.clone().zip(counts.iter()) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    out.sample(
                        "nats_oidc_callout_decisions_total",
                        &[
                            ("result", result),
                            ("reason_class", class),
                            ("issuer", issuer),
                        ],
                        n as f64,
                    );
                }
            }
        }
        let name = "nats_oidc_callout_decision_duration_seconds";
        out.header(
            name,
            "histogram",
            "Time from request received to response ready.",
        );
        for (i, bound) in BUCKETS.iter().enumerate() {
            let le = bound.to_string();
            out.sample(
                &format!("{name}_bucket"),
                &[("le", &le)],
                self.latency_buckets[i].load(Ordering::Relaxed) as f64,
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed) as f64;
        out.sample(&format!("{name}_bucket"), &[("le", "+Inf")], count);
        out.sample(
            &format!("{name}_sum"),
            &[],
            self.latency_sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        );
        out.sample(&format!("{name}_count"), &[], count);
        out.header(
            "nats_oidc_callout_in_flight_requests",
            "gauge",
            "Authorization requests being handled.",
        );
        out.sample(
            "nats_oidc_callout_in_flight_requests",
            &[],
            self.in_flight.load(Ordering::Relaxed) as f64,
        );
        for (name, help, counts) in [
            (
                "nats_oidc_callout_connections_closed_total",
                "Live connections closed, by cause.",
                &self.closed,
            ),
            (
                "nats_oidc_callout_connection_close_failures_total",
                "Live connections that could not be closed (KICK refused or unanswered), by cause.",
                &self.close_failures,
            ),
        ] {
            out.header(name, "counter", help);
            let counts = counts.lock().expect("metrics lock");
            // Every cause, zeros too: an alert on a rate needs the series.
            for cause in Cause::ALL {
                let n = counts.get(&cause).copied().unwrap_or(0);
                out.sample(name, &[("cause", cause.as_str())], n as f64);
            }
        }
    }
}

/// A Prometheus text exposition being written.
#[derive(Default)]
pub struct Exposition(pub(crate) String);

impl Exposition {
    /// Starts a series: its `# HELP` and `# TYPE` lines.
    pub(crate) fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample line, label values escaped as the format requires.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        let expired = Some(ReasonClass::TokenExpired);
        m.record_decision(None, "corp", Duration::from_micros(300));
        m.record_decision(expired, "corp", Duration::from_millis(20));
        m.record_decision(expired, "corp", Duration::from_millis(20));
        let mut out = Exposition::default();
        m.render_into(&mut out);
        let text = out.0;
        assert!(text.contains("nats_oidc_callout_decisions_total{result=\"deny\",reason_class=\"token_expired\",issuer=\"corp\"} 2"), "{text}");
        assert!(
            text.contains("nats_oidc_callout_decision_duration_seconds_bucket{le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("nats_oidc_callout_decision_duration_seconds_bucket{le=\"0.025\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("nats_oidc_callout_decision_duration_seconds_count 3"),
            "{text}"
        );
    }

    #[test]
    fn every_result_is_counted_under_its_own_name() {
        let m = Metrics::default();
        for (i, c) in ReasonClass::ALL.iter().enumerate() {
            for _ in 0..=i {
                m.record_decision(Some(*c), "corp", Duration::ZERO);
            }
        }
        m.record_decision(None, "other", Duration::ZERO);
        let mut out = Exposition::default();
        m.render_into(&mut out);
        for (i, c) in ReasonClass::ALL.iter().enumerate() {
            let line = format!(
                "nats_oidc_callout_decisions_total{{result=\"deny\",reason_class=\"{c}\",issuer=\"corp\"}} {}\n",
                i + 1
            );
            assert!(out.0.contains(&line), "{line} in\n{}", out.0);
        }
        assert!(out.0.contains(
            "nats_oidc_callout_decisions_total{result=\"allow\",reason_class=\"ok\",issuer=\"other\"} 1\n"
        ));
        assert!(!out
            .0
            .contains("result=\"allow\",reason_class=\"ok\",issuer=\"corp\""));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.sample("x", &[("issuer", "a\"b\\c")], 1.0);
        assert_eq!(out.0, "x{issuer=\"a\\\"b\\\\c\"} 1\n");
    }
}
