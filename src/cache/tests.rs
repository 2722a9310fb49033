use std::sync::atomic::AtomicUsize;

use futures::future::join_all;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::*;

fn key(i: u64) -> Key {
    Sha256::digest(i.to_le_bytes()).into()
}

type Cache = ClockCache<u64, String>;

/// Keys all in one shard's order: a small cache has one shard.
fn held(c: &Cache, keys: &[u64], now: u64) -> Vec<u64> {
    keys.iter()
        .copied()
        .filter(|k| c.get(&key(*k), now).is_some())
        .collect()
}

#[test]
fn a_full_cache_evicts_an_entry_not_read_since_the_hand_passed() {
    let c = Cache::new(3);
    for k in 1..=3 {
        c.insert(key(k), k * 10, 1000, 0);
    }
    assert_eq!(c.get(&key(1), 0), Some(10));
    c.insert(key(4), 40, 1000, 0);
    assert_eq!(c.len(), 3);
    // 1 was read: it gets another round; 2 was not and goes.
    assert_eq!(c.get(&key(2), 0), None);
    assert_eq!(held(&c, &[1, 3, 4], 0), vec![1, 3, 4]);
}

#[test]
fn an_expired_entry_is_evicted_before_a_read_one() {
    let c = Cache::new(2);
    c.insert(key(1), 1, 100, 0);
    c.insert(key(2), 2, 10, 0);
    // Both read: plain CLOCK would clear both and evict 1 on the next turn.
    assert!(c.get(&key(1), 5).is_some() && c.get(&key(2), 5).is_some());
    c.insert(key(3), 3, 100, 50);
    assert_eq!(c.len(), 2);
    assert_eq!(held(&c, &[1, 3], 50), vec![1, 3]);
}

#[test]
fn entries_end_at_their_deadline() {
    let c = Cache::new(10);
    c.insert(key(1), 1, 100, 0);
    assert_eq!(c.get(&key(1), 99), Some(1));
    assert_eq!(c.get(&key(1), 100), None);
    assert_eq!(c.len(), 0, "an expired entry is dropped when read");
    c.insert(key(2), 2, 100, 100);
    assert_eq!(c.len(), 0, "a value expired when it comes is not held");
    c.insert(key(3), 3, 100, 0);
    c.remove(&key(3));
    assert_eq!((c.get(&key(3), 0), c.len()), (None, 0));
}

#[test]
fn a_replaced_entry_takes_no_second_place() {
    let c = Cache::new(2);
    c.insert(key(1), 1, 100, 0);
    c.insert(key(1), 11, 200, 0);
    c.insert(key(2), 2, 100, 0);
    assert_eq!(c.len(), 2);
    assert_eq!(c.get(&key(1), 150), Some(11));
    assert_eq!(c.get(&key(2), 0), Some(2));
}

#[test]
fn the_capacity_bounds_a_sharded_cache_under_concurrent_inserts() {
    const CAPACITY: u64 = 1500;
    let c = Arc::new(Cache::new(CAPACITY));
    assert!(c.shards.len() > 1);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..5000 {
                    let k = t * 1_000_000 + i;
                    c.insert(key(k), k, u64::MAX, 0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let actual: usize = c
        .shards
        .iter()
        .map(|s| s.lock().unwrap().entries.len())
        .sum();
    assert_eq!(actual, c.len(), "the count is what the shards hold");
    assert!(actual <= CAPACITY as usize, "{actual}");
    assert!(
        actual > CAPACITY as usize * 9 / 10,
        "{actual}: the cache fills"
    );
}

#[test]
fn a_zero_capacity_holds_nothing() {
    let c = Cache::new(0);
    c.insert(key(1), 1, 100, 0);
    assert_eq!((c.get(&key(1), 0), c.len()), (None, 0));
}

/// `n` callers of one key at once, the fill waiting for `gate`.
async fn together(
    c: &Cache,
    n: usize,
    fills: &AtomicUsize,
    gate: oneshot::Receiver<Result<u64, String>>,
    open: impl FnOnce(),
) -> Vec<Result<u64, String>> {
    let gate = Mutex::new(Some(gate));
    let callers = (0..n).map(|_| {
        c.get_or_fill(key(7), 0, async {
            fills.fetch_add(1, Ordering::SeqCst);
            let gate = gate
                .lock()
                .unwrap()
                .take()
                .expect("one fill takes the gate");
            gate.await.unwrap().map(|v| (v, 100))
        })
    });
    // join_all polls every caller before the gate opens.
    let (results, ()) = futures::join!(join_all(callers), async { open() });
    results
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_misses_for_one_key_run_one_fill() {
    let c = Cache::new(10);
    let fills = AtomicUsize::new(0);
    let (tx, rx) = oneshot::channel();
    let results = together(&c, 8, &fills, rx, || tx.send(Ok(42)).unwrap()).await;
    assert_eq!(results, vec![Ok(42); 8]);
    assert_eq!(fills.load(Ordering::SeqCst), 1);
    assert_eq!(c.get(&key(7), 0), Some(42), "the success is held");
    assert!(c.running.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_fill_fails_everyone_waiting_and_is_not_kept() {
    let c = Cache::new(10);
    let fills = AtomicUsize::new(0);
    let (tx, rx) = oneshot::channel();
    let results = together(&c, 8, &fills, rx, || tx.send(Err("down".into())).unwrap()).await;
    assert_eq!(results, vec![Err("down".to_owned()); 8]);
    assert_eq!(fills.load(Ordering::SeqCst), 1);
    assert_eq!((c.get(&key(7), 0), c.len()), (None, 0));
    assert!(c.running.lock().unwrap().is_empty());
    // The next miss fills again.
    let again = c.get_or_fill(key(7), 0, async { Ok((5, 100)) }).await;
    assert_eq!(again, Ok(5));
    assert_eq!(c.get(&key(7), 0), Some(5));
}

#[tokio::test(flavor = "current_thread")]
async fn a_caller_that_gives_up_leaves_the_fill_to_the_next() {
    let c = Cache::new(10);
    let (_tx, rx) = oneshot::channel::<()>();
    let abandoned = c.get_or_fill(key(7), 0, async {
        rx.await.ok();
        Ok((1, 100))
    });
    // Polled once (the fill starts and waits), then dropped.
    assert!(futures::poll!(Box::pin(abandoned)).is_pending());
    assert!(c.running.lock().unwrap().is_empty());
    let next = c.get_or_fill(key(7), 0, async { Ok((2, 100)) }).await;
    assert_eq!(next, Ok(2));
}
