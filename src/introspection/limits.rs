//! What keeps the IdP safe from us: a cap on calls in flight and a rate
//! limit on calls. Both refuse at once rather than queue, so a flood never
//! builds a backlog of requests that time out anyway.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a call was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `introspection_max_in_flight` calls are already waiting on the IdP.
    Saturated,
    /// `introspection_rate_limit` calls were made within the last second.
    RateLimited,
}

/// Admission to the IdP for one issuer.
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
    bucket: Mutex<Bucket>,
}

/// A token bucket: `rate` calls a second, at most `rate` at once.
struct Bucket {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.refilled).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.rate);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Gate {
    pub(crate) fn new(max_in_flight: usize, rate_per_sec: u32) -> Self {
        let rate = f64::from(rate_per_sec.max(1));
        Self {
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
            bucket: Mutex::new(Bucket {
                rate,
                tokens: rate,
                refilled: Instant::now(),
            }),
        }
    }

    /// A permit for one call, held until the call ends. A saturated gate
    /// spends no rate budget.
    pub(crate) fn enter(&self) -> Result<OwnedSemaphorePermit, Refused> {
        self.enter_at(Instant::now())
    }

    fn enter_at(&self, now: Instant) -> Result<OwnedSemaphorePermit, Refused> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Saturated)?;
        if self.bucket.lock().expect("bucket lock").take(now) {
            Ok(permit)
        } else {
            Err(Refused::RateLimited)
        }
    }

    /// Calls in flight now.
    pub(crate) fn in_flight(&self, max: usize) -> usize {
        max - self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn in_flight_calls_are_capped_and_freed_on_drop() {
        let gate = Gate::new(2, 1000);
        let a = gate.enter().unwrap();
        let _b = gate.enter().unwrap();
        assert_eq!(gate.enter().err(), Some(Refused::Saturated));
        assert_eq!(gate.in_flight(2), 2);
        drop(a);
        assert!(gate.enter().is_ok());
    }

    #[test]
    fn bucket_allows_a_burst_of_rate_then_refills_with_time() {
        let t0 = Instant::now();
        let mut b = Bucket {
            rate: 10.0,
            tokens: 10.0,
            refilled: t0,
        };
        assert_eq!((0..25).filter(|_| b.take(t0)).count(), 10);
        // 0.25 s earns 2.5 calls: two now, the half carried over.
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!((0..25).filter(|_| b.take(t1)).count(), 2);
        let t2 = t1 + Duration::from_millis(50);
        assert!(b.take(t2));
        // A long pause earns no more than one burst.
        let t3 = t2 + Duration::from_secs(60);
        assert_eq!((0..25).filter(|_| b.take(t3)).count(), 10);
    }

    #[test]
    fn a_saturated_gate_spends_no_rate_budget() {
        // t0 before the bucket's own start: no time passes for it.
        let t0 = Instant::now();
        let gate = Gate::new(1, 2);
        let held = gate.enter_at(t0).unwrap();
        for _ in 0..10 {
            assert_eq!(gate.enter_at(t0).err(), Some(Refused::Saturated));
        }
        drop(held);
        assert!(gate.enter_at(t0).is_ok());
        assert_eq!(gate.enter_at(t0).err(), Some(Refused::RateLimited));
    }
}
