//! A fetched token held until it is due for renewal: renewal at 70–80% of
//! its lifetime (jittered, so clients started together do not all hit the
//! IdP together), exponential backoff after IdP errors, and the held token
//! kept in use through an outage for as long as it is valid.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{jwt, TokenError};

/// Lifetime assumed for a token that states none (no `expires_in`, no `exp`).
const UNKNOWN_LIFETIME: Duration = Duration::from_secs(60);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// A token and how long it lives from the moment it was fetched.
#[derive(Clone)]
pub(crate) struct Fetched {
    pub(crate) token: String,
    pub(crate) lifetime: Duration,
}

impl Fetched {
    /// Lifetime from the IdP's `expires_in` if given, else the JWT's `exp`.
    pub(crate) fn new(token: String, expires_in: Option<u64>) -> Fetched {
        let lifetime = match expires_in {
            Some(s) => Duration::from_secs(s),
            None => jwt::expires_at(&token)
                .map(|exp| {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64);
                    Duration::from_secs(exp.saturating_sub(now).max(0) as u64)
                })
                .unwrap_or(UNKNOWN_LIFETIME),
        };
        Fetched { token, lifetime }
    }
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("token", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// How long after fetching to renew: 70% of the lifetime plus up to 10%
/// more by `jitter` (0.0..=1.0).
pub(crate) fn refresh_after(lifetime: Duration, jitter: f64) -> Duration {
    lifetime.mul_f64(0.7 + 0.1 * jitter.clamp(0.0, 1.0))
}

/// The wait after the `failures`-th failure in a row: 1 s doubling up to
/// 60 s, plus up to 25% by `jitter` (0.0..=1.0).
pub(crate) fn backoff(failures: u32, jitter: f64) -> Duration {
    let base = FIRST_RETRY
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_RETRY);
    base.mul_f64(1.0 + 0.25 * jitter.clamp(0.0, 1.0))
}

struct Held {
    token: String,
    renew_at: Instant,
    expires_at: Instant,
}

/// What a caller should do now.
#[derive(Debug, PartialEq)]
enum Plan {
    Use(String),
    Fetch,
    Fail(TokenError),
}

#[derive(Default)]
struct State {
    held: Option<Held>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<TokenError>,
}

impl State {
    fn valid_token(&self, now: Instant) -> Option<String> {
        self.held
            .as_ref()
            .filter(|h| now < h.expires_at)
            .map(|h| h.token.clone())
    }

    fn plan(&self, now: Instant) -> Plan {
        if let Some(h) = self.held.as_ref().filter(|h| now < h.renew_at) {
            return Plan::Use(h.token.clone());
        }
        match self.retry_at {
            Some(at) if now < at => match self.valid_token(now) {
                Some(t) => Plan::Use(t),
                None => Plan::Fail(self.last_error.clone().unwrap_or_else(|| {
                    TokenError::Unavailable("waiting to retry the token fetch".into())
                })),
            },
            _ => Plan::Fetch,
        }
    }

    fn record(
        &mut self,
        now: Instant,
        result: Result<Fetched, TokenError>,
        jitter: f64,
    ) -> Result<String, TokenError> {
        match result {
            Ok(f) => {
                self.held = Some(Held {
                    renew_at: now + refresh_after(f.lifetime, jitter),
                    expires_at: now + f.lifetime,
                    token: f.token.clone(),
                });
                self.failures = 0;
                self.retry_at = None;
                self.last_error = None;
                Ok(f.token)
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                let wait = backoff(self.failures, jitter);
                self.retry_at = Some(now + wait);
                self.last_error = Some(e.clone());
                let held = self.valid_token(now);
                tracing::warn!(error = %e, retry_in = ?wait, using_held_token = held.is_some(),
                    "token fetch failed");
                held.ok_or(e)
            }
        }
    }
}

/// A source's cache: one fetch at a time, the rest wait for its result.
#[derive(Default)]
pub(crate) struct Refreshing {
    state: tokio::sync::Mutex<State>,
}

impl Refreshing {
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<String, TokenError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, TokenError>>,
    {
        let mut state = self.state.lock().await;
        match state.plan(Instant::now()) {
            Plan::Use(token) => Ok(token),
            Plan::Fail(e) => Err(e),
            Plan::Fetch => {
                let result = fetch().await;
                state.record(Instant::now(), result, rand::random())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(token: &str, secs: u64) -> Result<Fetched, TokenError> {
        Ok(Fetched {
            token: token.into(),
            lifetime: Duration::from_secs(secs),
        })
    }

    fn down() -> Result<Fetched, TokenError> {
        Err(TokenError::Unavailable("idp down".into()))
    }

    #[test]
    fn renewal_falls_between_70_and_80_percent_of_the_lifetime() {
        let life = Duration::from_secs(100);
        assert_eq!(refresh_after(life, 0.0), Duration::from_secs(70));
        assert_eq!(refresh_after(life, 1.0), Duration::from_secs(80));
        assert_eq!(refresh_after(life, 7.0), Duration::from_secs(80));
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n, 0.0).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX, 0.0), MAX_RETRY);
        assert_eq!(backoff(1, 1.0), Duration::from_millis(1250));
    }

    #[test]
    fn a_fresh_token_is_reused_until_its_renewal_time() {
        let t0 = Instant::now();
        let mut s = State::default();
        assert_eq!(s.plan(t0), Plan::Fetch);
        assert_eq!(s.record(t0, fetched("a", 10), 0.0).unwrap(), "a");
        assert_eq!(s.plan(t0 + Duration::from_secs(6)), Plan::Use("a".into()));
        assert_eq!(s.plan(t0 + Duration::from_secs(7)), Plan::Fetch);
    }

    #[test]
    fn an_outage_backs_off_and_keeps_the_held_token_while_it_is_valid() {
        let t0 = Instant::now();
        let sec = |n| t0 + Duration::from_secs(n);
        let mut s = State::default();
        s.record(t0, fetched("a", 10), 0.0).unwrap();
        // Due for renewal at 7 s; the IdP is down: the held token still serves.
        assert_eq!(s.record(sec(7), down(), 0.0).unwrap(), "a");
        // No new try before the 1 s backoff has passed.
        assert_eq!(
            s.plan(sec(7) + Duration::from_millis(500)),
            Plan::Use("a".into())
        );
        assert_eq!(s.plan(sec(8)), Plan::Fetch);
        assert_eq!(s.record(sec(8), down(), 0.0).unwrap(), "a");
        assert_eq!(s.plan(sec(9)), Plan::Use("a".into())); // 2 s backoff now
                                                           // Past its expiry the held token is never handed out.
        assert_eq!(
            s.record(sec(10), down(), 0.0),
            Err(TokenError::Unavailable("idp down".into()))
        );
        assert!(matches!(s.plan(sec(11)), Plan::Fail(_)));
        // Recovery resets the backoff.
        assert_eq!(s.plan(sec(14)), Plan::Fetch);
        assert_eq!(s.record(sec(14), fetched("b", 10), 0.0).unwrap(), "b");
        assert_eq!(s.failures, 0);
        assert_eq!(s.plan(sec(15)), Plan::Use("b".into()));
    }

    #[test]
    fn the_lifetime_comes_from_expires_in_or_the_jwt_exp() {
        assert_eq!(
            Fetched::new("x".into(), Some(30)).lifetime,
            Duration::from_secs(30)
        );
        assert_eq!(
            Fetched::new("opaque".into(), None).lifetime,
            UNKNOWN_LIFETIME
        );
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 100;
        let payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            format!("{{\"exp\":{exp}}}"),
        );
        let life = Fetched::new(format!("e30.{payload}.s"), None).lifetime;
        assert!((98..=100).contains(&life.as_secs()), "{life:?}");
        assert!(!format!("{:?}", Fetched::new("secret-token".into(), None)).contains("secret"));
    }
}
