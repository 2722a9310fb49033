//! A bounded cache keyed by SHA-256 digests, shared by the verified-token
//! cache and the introspection answer cache.
//!
//! Memory is what bounds those caches (100k entries by default), so it is
//! lean: a few shards, each a map in insertion order with a CLOCK hand for
//! eviction (an entry read since the hand last passed gets another round;
//! an expired one goes first). Each entry has a deadline on the caller's
//! clock (milliseconds; the caller passes `now`), checked when it is read,
//! so there are no timers. Misses for one key at the same time run one
//! fill (single flight); a failed fill is shared with those waiting for it
//! and never kept.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use indexmap::IndexMap;
use tokio::sync::OnceCell;

/// A SHA-256 digest: any of its bytes is uniform, which picks the shard.
pub(crate) type Key = [u8; 32];

/// Shards of a cache this large or more; smaller ones have one.
const SHARDS: usize = 16;
const SHARDED_FROM: u64 = 1024;

/// One fill's result and its deadline, shared by everyone who waits for it.
type Fill<V, E> = Arc<OnceCell<Result<(V, u64), E>>>;

/// Values by key, at most `capacity` of them in all shards.
pub(crate) struct ClockCache<V, E> {
    shards: Box<[Mutex<Shard<V>>]>,
    capacity: usize,
    len: AtomicUsize,
    /// Fills running now, by key: later arrivals wait for them.
    running: Mutex<HashMap<Key, Fill<V, E>>>,
}

struct Shard<V> {
    entries: IndexMap<Key, Slot<V>>,
    /// The CLOCK hand: the index eviction looks at next.
    hand: usize,
}

struct Slot<V> {
    value: V,
    /// Served while `now` is below it.
    until: u64,
    /// Read since the hand last passed it.
    referenced: bool,
}

impl<V: Clone, E: Clone> ClockCache<V, E> {
    /// An empty cache for at most `capacity` values; sharded when large.
    pub(crate) fn new(capacity: u64) -> Self {
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

    fn shard(&self, key: &Key) -> MutexGuard<'_, Shard<V>> {
        self.shards[usize::from(key[0]) % self.shards.len()]
            .lock()
            .expect("cache shard lock")
    }

    /// The value for `key` if it is held and its deadline is after `now`;
    /// an expired one is dropped.
    pub(crate) fn get(&self, key: &Key, now: u64) -> Option<V> {
        let mut shard = self.shard(key);
        let i = shard.entries.get_index_of(key)?;
        let slot = &mut shard.entries[i];
        if slot.until > now {
            slot.referenced = true;
            return Some(slot.value.clone());
        }
        shard.entries.swap_remove_index(i);
        self.len.fetch_sub(1, Ordering::Relaxed);
        None
    }

    /// Drops `key`'s entry (one its owner found no longer servable).
    pub(crate) fn remove(&self, key: &Key) {
        if self.shard(key).entries.swap_remove(key).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Holds `value` until `until`; a full cache evicts one entry first. A
    /// value already expired at `now` is not held.
    pub(crate) fn insert(&self, key: Key, value: V, until: u64, now: u64) {
        if until <= now {
            return;
        }
        let mut shard = self.shard(&key);
        let slot = Slot {
            value,
            until,
            referenced: false,
        };
        if let Some(held) = shard.entries.get_mut(&key) {
            *held = slot;
            return;
        }
        // Each insert takes its place in the count before it looks, so
        // racing inserts into other shards never take the total past the
        // capacity.
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

    /// The value `fill` makes for `key` (with its deadline), run once for
    /// all who ask at the same time; a success is held, a failure only
    /// shared with them. It does not look in the cache first: see [`get`].
    ///
    /// [`get`]: ClockCache::get
    pub(crate) async fn get_or_fill<F>(&self, key: Key, now: u64, fill: F) -> Result<V, E>
    where
        F: Future<Output = Result<(V, u64), E>>,
    {
        let cell = self
            .running
            .lock()
            .expect("cache lock")
            .entry(key)
            .or_default()
            .clone();
        // Removes the entry even when the caller gives up (deadline): a
        // waiter still holding the cell runs its own fill then.
        let _running = Running {
            running: &self.running,
            key,
            cell: &cell,
        };
        cell.get_or_init(|| async {
            let result = fill.await;
            if let Ok((value, until)) = &result {
                self.insert(key, value.clone(), *until, now);
            }
            result
        })
        .await
        .clone()
        .map(|(value, _)| value)
    }

    /// Entries held, expired ones not yet evicted included.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

impl<V> Shard<V> {
    /// CLOCK: drops the first entry at or after the hand that is expired
    /// or was not read since the hand last passed (read ones get another
    /// round); false when the shard is empty.
    fn evict_one(&mut self, now: u64) -> bool {
        for _ in 0..=2 * self.entries.len() {
            if self.hand >= self.entries.len() {
                self.hand = 0;
            }
            let Some((_, slot)) = self.entries.get_index_mut(self.hand) else {
                return false;
            };
            if slot.referenced && slot.until > now {
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

/// A fill in progress, forgotten when its caller is done.
struct Running<'a, V, E> {
    running: &'a Mutex<HashMap<Key, Fill<V, E>>>,
    key: Key,
    cell: &'a Fill<V, E>,
}

impl<V, E> Drop for Running<'_, V, E> {
    fn drop(&mut self) {
        let mut running = self.running.lock().expect("cache lock");
        if running
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, self.cell))
        {
            running.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests;
