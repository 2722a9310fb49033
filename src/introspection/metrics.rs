//! Counters of the introspection path, rendered into `/metrics` next to
//! the service's own series.

use std::sync::atomic::{AtomicU64, Ordering};

use super::limits::Refused;
use super::Introspector;
use crate::metrics::Exposition;

/// How a call to the introspection endpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// The token is active and passed the issuer's rules.
    Active,
    /// The IdP said the token is not active.
    Inactive,
    /// Active, but refused by the issuer's rules (issuer, audience, type).
    Refused,
    /// No answer in time.
    Timeout,
    /// No usable HTTP answer (refused connection, error status).
    Unavailable,
    /// An answer that breaks the protocol.
    BadResponse,
}

impl CallResult {
    const ALL: [CallResult; 6] = [
        CallResult::Active,
        CallResult::Inactive,
        CallResult::Refused,
        CallResult::Timeout,
        CallResult::Unavailable,
        CallResult::BadResponse,
    ];

    fn label(self) -> &'static str {
        match self {
            CallResult::Active => "active",
            CallResult::Inactive => "inactive",
            CallResult::Refused => "refused",
            CallResult::Timeout => "timeout",
            CallResult::Unavailable => "unavailable",
            CallResult::BadResponse => "bad_response",
        }
    }
}

/// One issuer's counters.
#[derive(Default)]
pub struct Counters {
    calls: [AtomicU64; CallResult::ALL.len()],
    hits_active: AtomicU64,
    hits_refused: AtomicU64,
    saturated: AtomicU64,
    rate_limited: AtomicU64,
    userinfo_ok: AtomicU64,
    userinfo_failed: AtomicU64,
}

impl Counters {
    pub(super) fn call(&self, r: CallResult) {
        self.calls[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn hit(&self, active: bool) {
        let c = if active {
            &self.hits_active
        } else {
            &self.hits_refused
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn skipped(&self, why: Refused) {
        let c = match why {
            Refused::Saturated => &self.saturated,
            Refused::RateLimited => &self.rate_limited,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn userinfo(&self, ok: bool) {
        let c = if ok {
            &self.userinfo_ok
        } else {
            &self.userinfo_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls made to the introspection endpoint, whatever their result.
    pub fn calls(&self) -> u64 {
        self.calls.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Calls that ended with `r`.
    pub fn calls_with(&self, r: CallResult) -> u64 {
        self.calls[r as usize].load(Ordering::Relaxed)
    }

    /// Answers served without a call of their own (from the cache, or
    /// shared with an identical request's call).
    pub fn cache_hits(&self) -> u64 {
        self.hits_active.load(Ordering::Relaxed) + self.hits_refused.load(Ordering::Relaxed)
    }

    /// Tokens denied without a call because of the given limit.
    pub fn skipped_for(&self, why: Refused) -> u64 {
        match why {
            Refused::Saturated => self.saturated.load(Ordering::Relaxed),
            Refused::RateLimited => self.rate_limited.load(Ordering::Relaxed),
        }
    }

    /// Calls made to the userinfo endpoint.
    pub fn userinfo_calls(&self) -> u64 {
        self.userinfo_ok.load(Ordering::Relaxed) + self.userinfo_failed.load(Ordering::Relaxed)
    }
}

/// Writes the introspection series for every introspecting issuer.
pub(crate) fn render_into(out: &mut Exposition, introspectors: &[&Introspector]) {
    let name = "nats_oidc_callout_introspection_calls_total";
    out.header(
        name,
        "counter",
        "Calls to the introspection endpoint by result.",
    );
    for i in introspectors {
        for r in CallResult::ALL {
            let v = i.counters().calls_with(r) as f64;
            out.sample(name, &[("issuer", i.name()), ("result", r.label())], v);
        }
    }
    let name = "nats_oidc_callout_introspection_cache_hits_total";
    out.header(
        name,
        "counter",
        "Opaque tokens answered without a call of their own, by answer.",
    );
    for i in introspectors {
        let c = i.counters();
        for (answer, v) in [("active", &c.hits_active), ("refused", &c.hits_refused)] {
            let v = v.load(Ordering::Relaxed) as f64;
            out.sample(name, &[("issuer", i.name()), ("answer", answer)], v);
        }
    }
    let name = "nats_oidc_callout_introspection_skipped_total";
    out.header(
        name,
        "counter",
        "Opaque tokens denied without a call, by the limit that applied.",
    );
    for i in introspectors {
        for (reason, why) in [
            ("saturated", Refused::Saturated),
            ("rate_limited", Refused::RateLimited),
        ] {
            let v = i.counters().skipped_for(why) as f64;
            out.sample(name, &[("issuer", i.name()), ("reason", reason)], v);
        }
    }
    let name = "nats_oidc_callout_userinfo_calls_total";
    out.header(name, "counter", "Calls to the userinfo endpoint by result.");
    for i in introspectors {
        let c = i.counters();
        for (result, v) in [("ok", &c.userinfo_ok), ("error", &c.userinfo_failed)] {
            let v = v.load(Ordering::Relaxed) as f64;
            out.sample(name, &[("issuer", i.name()), ("result", result)], v);
        }
    }
    let name = "nats_oidc_callout_introspection_in_flight";
    out.header(name, "gauge", "Calls to the IdP waiting for an answer.");
    for i in introspectors {
        out.sample(name, &[("issuer", i.name())], i.in_flight() as f64);
    }
    let name = "nats_oidc_callout_introspection_cache_entries";
    out.header(name, "gauge", "Introspection answers held in the cache.");
    for i in introspectors {
        out.sample(name, &[("issuer", i.name())], i.cache_entries() as f64);
    }
}
