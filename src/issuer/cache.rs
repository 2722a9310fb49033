//! The verified-token cache: a reconnect storm with one token costs one
//! signature check. Entries hold only the claims the policy reads, are
//! keyed by SHA-256 of the token (never the token itself), and are honoured
//! only while the key that verified them is still published and fresh.
//!
//! Memory is what bounds it (100k entries by default), so it is lean: a
//! few shards, each a map in insertion order with a CLOCK hand for
//! eviction (an entry read since the hand last passed gets another round;
//! an expired one goes first). An entry's lifetime is checked when it is
//! read, so there are no timers. Identical tokens missing together are
//! verified once (single flight).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::jwks::KeyFingerprint;
use super::token::{expiry, VerifiedToken};
use super::{Issuer, KeptClaims, TokenError};
use crate::claims::{lookup, roots};

pub(super) type Key = [u8; 32];

/// Shards of a cache this large or more; smaller ones have one.
const SHARDS: usize = 16;
const SHARDED_FROM: u64 = 1024;

/// One verification's result, shared by everyone who waits for it.
type Verification = Arc<OnceCell<Result<Cached, TokenError>>>;

/// Verified tokens by key, at most `capacity` of them in all shards.
pub(super) struct Cache {
    shards: Box<[Mutex<Shard>]>,
    capacity: usize,
    len: AtomicUsize,
    /// Verifications running now, by key: later arrivals wait for them.
    running: Mutex<HashMap<Key, Verification>>,
}

struct Shard {
    entries: IndexMap<Key, Slot>,
    /// The CLOCK hand: the index eviction looks at next.
    hand: usize,
}

struct Slot {
    cached: Cached,
    /// Read since the hand last passed it.
    referenced: bool,
}

impl Cache {
    pub(super) fn new(capacity: u64) -> Self {
        let n = if capacity >= SHARDED_FROM { SHARDS } else { 1 };
        let shards = (0..n)
            .map(|_| {
                Mutex::new(Shard {
                    entries: IndexMap::new(),
                    hand: 0,
                })
            })
            .collect();
        Self {
            shards,
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            len: AtomicUsize::new(0),
            running: Mutex::new(HashMap::new()),
        }
    }

    fn shard(&self, key: &Key) -> std::sync::MutexGuard<'_, Shard> {
        // The key is a SHA-256: any of its bytes is uniform.
        self.shards[usize::from(key[0]) % self.shards.len()]
            .lock()
            .expect("cache shard lock")
    }

    /// The cached token for `key`, if one may be served at `now`. An entry
    /// that ended is dropped; stale keys are an error, as for a fresh check.
    pub(super) fn get(&self, key: &Key, now: i64) -> Result<Option<VerifiedToken>, TokenError> {
        let mut shard = self.shard(key);
        let Some(i) = shard.entries.get_index_of(key) else {
            return Ok(None);
        };
        let slot = &mut shard.entries[i];
        if slot.cached.servable(now)? {
            slot.referenced = true;
            return Ok(Some(slot.cached.token()));
        }
        shard.entries.swap_remove_index(i);
        self.len.fetch_sub(1, Ordering::Relaxed);
        Ok(None)
    }

    fn insert(&self, key: Key, cached: Cached, now: i64) {
        let mut shard = self.shard(&key);
        let slot = Slot {
            cached,
            referenced: false,
        };
        if let Some(held) = shard.entries.get_mut(&key) {
            *held = slot;
            return;
        }
        // A full cache makes room in this shard first; each insert takes
        // its place in the count before it looks, so racing inserts into
        // other shards never take the total past the capacity.
        if self.len.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            let evicted = shard.evict_one(now);
            // The evicted entry's place, or our own when there was none.
            self.len.fetch_sub(1, Ordering::Relaxed);
            if !evicted {
                return;
            }
        }
        shard.entries.insert(key, slot);
    }

    /// The entry for `key` from `verify`, run once for all who ask at the
    /// same time; a success is cached, a failure only shared with them.
    pub(super) async fn get_or_verify<F>(
        &self,
        key: Key,
        now: i64,
        verify: F,
    ) -> Result<Cached, TokenError>
    where
        F: Future<Output = Result<Cached, TokenError>>,
    {
        let cell = self
            .running
            .lock()
            .expect("cache lock")
            .entry(key)
            .or_default()
            .clone();
        // Removes the entry even when the caller gives up (deadline): a
        // waiter still holding the cell runs the verification itself.
        let _running = Running {
            cache: self,
            key,
            cell: &cell,
        };
        cell.get_or_init(|| async {
            let result = verify.await;
            if let Ok(cached) = &result {
                self.insert(key, cached.clone(), now);
            }
            result
        })
        .await
        .clone()
    }

    /// Entries held, expired ones not yet evicted included.
    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

impl Shard {
    /// CLOCK: drops the first entry at or after the hand that is expired
    /// or was not read since the hand last passed (read ones get another
    /// round); false when the shard is empty.
    fn evict_one(&mut self, now: i64) -> bool {
        for _ in 0..=2 * self.entries.len() {
            if self.hand >= self.entries.len() {
                self.hand = 0;
            }
            let Some((_, slot)) = self.entries.get_index_mut(self.hand) else {
                return false;
            };
            if slot.referenced && slot.cached.expires_at > now {
                slot.referenced = false;
                self.hand += 1;
            } else {
                // The last entry moves to the hand; it is looked at next.
                self.entries.swap_remove_index(self.hand);
                return true;
            }
        }
        false
    }
}

/// A verification in progress, forgotten when its caller is done.
struct Running<'a> {
    cache: &'a Cache,
    key: Key,
    cell: &'a Verification,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut running = self.cache.running.lock().expect("cache lock");
        if running
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, self.cell))
        {
            running.remove(&self.key);
        }
    }
}

/// A cache entry. Memory is what bounds the cache (100k entries by
/// default), so it holds only the claims the policy reads, as JSON text:
/// a parsed `serde_json::Map` of a typical access token takes ~8 KB on
/// the heap, this ~100 bytes. A hit parses it back (about a microsecond).
#[derive(Clone)]
pub(super) struct Cached {
    issuer: Arc<Issuer>,
    /// The kept claims, a JSON object.
    claims: Box<str>,
    /// Served until then (Unix seconds): see [`serve_until`].
    expires_at: i64,
    key: KeyFingerprint,
}

impl Cached {
    pub(super) fn new(
        issuer: Arc<Issuer>,
        claims: Map<String, Value>,
        keep: KeptClaims,
        key: KeyFingerprint,
    ) -> Self {
        let expires_at = serve_until(&issuer, &claims);
        let claims = kept(&issuer, claims, keep);
        Self {
            claims: serde_json::to_string(&claims)
                .expect("claims serialize")
                .into_boxed_str(),
            expires_at,
            issuer,
            key,
        }
    }

    pub(super) fn token(&self) -> VerifiedToken {
        let claims = serde_json::from_str(&self.claims).expect("the cache holds JSON it wrote");
        let mut token = VerifiedToken::new(
            self.issuer.config.name.clone(),
            &self.issuer.config.scope_claim,
            claims,
        );
        token.key = Some(self.key);
        token
    }

    /// Whether a hit may be served: `Ok(false)` when the entry ended (its
    /// time is up, or the IdP withdrew the key that verified it, so the
    /// token must be checked again), an error when the issuer's keys went
    /// stale, which bounds hits exactly as it bounds fresh checks.
    pub(super) fn servable(&self, now: i64) -> Result<bool, TokenError> {
        if self.expires_at <= now {
            return Ok(false);
        }
        let Some(keys) = self.issuer.keys.current() else {
            return Ok(false);
        };
        let age = keys.fetched_at.elapsed();
        if age > self.issuer.config.jwks_max_stale {
            return Err(TokenError::StaleKeys {
                issuer: self.issuer.config.name.clone(),
                age_secs: age.as_secs(),
            });
        }
        Ok(keys.holds(&self.key))
    }
}

/// Until when a verified token may be served from the cache: its `exp`, or
/// earlier when `max_token_age` ends it first (a hit does not re-check
/// `iat`, which the entry no longer holds). 0 (never) without `exp`.
fn serve_until(issuer: &Issuer, claims: &Map<String, Value>) -> i64 {
    let exp = expiry(claims).unwrap_or(0);
    let aged = issuer.config.max_token_age.and_then(|max| {
        let iat = claims.get("iat").and_then(Value::as_i64)?;
        Some(iat.saturating_add(max.as_secs() as i64))
    });
    aged.map_or(exp, |a| a.min(exp))
}

/// SHA-256 over the token and the kept paths, each length-prefixed (`None`
/// differs from every list).
pub(super) fn cache_key(token: &str, keep: KeptClaims) -> Key {
    let mut h = Sha256::new();
    h.update((token.len() as u64).to_le_bytes());
    h.update(token.as_bytes());
    match keep {
        None => h.update([0]),
        Some(paths) => {
            h.update([1]);
            for p in paths.iter() {
                h.update((p.len() as u64).to_le_bytes());
                h.update(p.as_bytes());
            }
        }
    }
    h.finalize().into()
}

/// The claims at `keep`'s paths, plus `sub`, `exp` and the scope claim, such
/// that [`lookup`] answers every kept path on them exactly as on all the
/// claims. A path with one reading is stored under its whole name (lookup
/// tries the whole name first). A path the token answers two ways keeps
/// every top-level claim any reading starts from, so the ambiguity, and
/// the denial it causes, survive the cache.
fn kept(issuer: &Issuer, claims: Map<String, Value>, keep: KeptClaims) -> Map<String, Value> {
    let Some(paths) = keep else {
        return claims;
    };
    let always = ["sub", "exp", issuer.config.scope_claim.as_str()];
    let mut out = Map::new();
    for path in always.into_iter().chain(paths.iter().map(String::as_str)) {
        match lookup(&claims, path) {
            Ok(Some(v)) => {
                out.insert(path.to_owned(), v.clone());
            }
            Ok(None) => {}
            Err(_) => {
                for root in roots(path) {
                    if let Some(v) = claims.get(root) {
                        out.insert(root.to_owned(), v.clone());
                    }
                }
            }
        }
    }
    out
}
