//! The in-memory revocation set every instance decides with, kept current
//! by a watcher task on the bucket.
//!
//! The watcher loads the bucket (every key's current value) after opening a
//! watch from the stream's last sequence, so no change between the two is
//! lost; changes apply only when newer (by revision) than what the set
//! holds. When the watch fails or the connection drops, the set keeps the
//! last known revocations and reports itself stale; once connected again it
//! reloads from scratch. Lapse needs no event: `matching` compares
//! `expires_at` with the caller's clock.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv::Operation;
use futures::StreamExt;

use super::store::{decode, RevocationStore};
use super::{Presented, Revocation, Selector, KEY_PREFIX};
use crate::clock::now_unix;

/// Whether the set reflects the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The bucket was never read: nothing is known to be revoked.
    NeverLoaded,
    /// Current: the bucket was read and the watch is running.
    Loaded {
        /// Unix seconds of the load.
        since: i64,
    },
    /// Updates may be missing: the watch broke.
    Stale {
        /// Unix seconds since when updates may be missing.
        since: i64,
        /// Unix seconds of the last good load (None: never).
        loaded: Option<i64>,
        /// Why the watch broke.
        reason: String,
    },
}

#[derive(Default)]
struct State {
    /// KV key → (revision, record). Keys whose value does not decode are
    /// kept with `None`, so a later delete is recognised.
    entries: HashMap<String, (u64, Option<Revocation>)>,
    by_selector: HashMap<Selector, String>,
    health: Option<Health>,
    loaded_at: Option<i64>,
}

impl State {
    fn remove(&mut self, key: &str) {
        if let Some((_, Some(old))) = self.entries.remove(key) {
            self.by_selector.remove(&old.selector);
        }
    }

    fn insert(&mut self, key: String, revision: u64, record: Option<Revocation>) {
        self.remove(&key);
        if let Some(r) = &record {
            self.by_selector.insert(r.selector.clone(), key.clone());
        }
        self.entries.insert(key, (revision, record));
    }

    fn get(&self, selector: &Selector) -> Option<&Revocation> {
        let key = self.by_selector.get(selector)?;
        self.entries.get(key)?.1.as_ref()
    }
}

/// Shared handle to the set; cheap to clone.
#[derive(Clone)]
pub struct RevocationSet {
    state: Arc<RwLock<State>>,
    /// Every revocation as it arrives (and all of them after a reload), for
    /// closing the live connections it covers.
    arrivals: tokio::sync::broadcast::Sender<Revocation>,
}

impl Default for RevocationSet {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            arrivals: tokio::sync::broadcast::channel(256).0,
        }
    }
}

impl RevocationSet {
    /// Empty and [`Health::NeverLoaded`]: decisions fail closed until loaded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Revocations from now on, as they arrive. A receiver that lags
    /// (`RecvError::Lagged`) should check everything against [`snapshot`].
    ///
    /// [`snapshot`]: RevocationSet::snapshot
    pub fn arrivals(&self) -> tokio::sync::broadcast::Receiver<Revocation> {
        self.arrivals.subscribe()
    }

    fn announce(&self, r: &Revocation) {
        if r.is_live(now_unix()) {
            // No receiver (no live-session enforcement) is fine.
            let _ = self.arrivals.send(r.clone());
        }
    }

    /// The first revocation in force at `now` that covers `who`: by subject
    /// and issuer, subject of any issuer, jti, client ids, user nkey.
    pub fn matching(&self, who: &Presented<'_>, now: i64) -> Option<Revocation> {
        let state = self.state.read().expect("revocation set lock");
        if state.by_selector.is_empty() {
            return None;
        }
        let subject = |issuer: Option<&str>| Selector::Subject {
            subject: who.subject.to_owned(),
            issuer: issuer.map(str::to_owned),
        };
        let mut candidates = vec![subject(Some(who.issuer)), subject(None)];
        candidates.extend(who.jti.map(|j| Selector::Jti(j.to_owned())));
        candidates.extend(
            who.client_ids
                .iter()
                .map(|c| Selector::ClientId((*c).to_owned())),
        );
        candidates.extend(who.user_nkey.map(|u| Selector::UserNkey(u.to_owned())));
        candidates
            .iter()
            .filter_map(|s| state.get(s))
            .find(|r| r.is_live(now))
            .cloned()
    }

    /// Revocations in force at `now` (for the "revocations active" gauge).
    pub fn active(&self, now: i64) -> usize {
        let state = self.state.read().expect("revocation set lock");
        state
            .entries
            .values()
            .filter(|(_, r)| r.as_ref().is_some_and(|r| r.is_live(now)))
            .count()
    }

    /// Bucket entries that are not valid revocations (ignored).
    pub fn invalid(&self) -> usize {
        let state = self.state.read().expect("revocation set lock");
        state.entries.values().filter(|(_, r)| r.is_none()).count()
    }

    /// Revocations in force at `now`.
    pub fn snapshot(&self, now: i64) -> Vec<Revocation> {
        let state = self.state.read().expect("revocation set lock");
        state
            .entries
            .values()
            .filter_map(|(_, r)| r.clone())
            .filter(|r| r.is_live(now))
            .collect()
    }

    /// For `/readyz` and the decision's fail-closed check.
    pub fn health(&self) -> Health {
        let state = self.state.read().expect("revocation set lock");
        state.health.clone().unwrap_or(Health::NeverLoaded)
    }

    /// Replaces everything with a fresh load of the bucket.
    pub(super) fn replace(&self, entries: Vec<(String, u64, Option<Revocation>)>, now: i64) {
        let mut state = self.state.write().expect("revocation set lock");
        let mut fresh = State::default();
        for (key, revision, record) in entries {
            fresh.insert(key, revision, record);
        }
        fresh.health = Some(Health::Loaded { since: now });
        fresh.loaded_at = Some(now);
        *state = fresh;
        for (_, r) in state.entries.values() {
            if let Some(r) = r {
                self.announce(r);
            }
        }
    }

    /// Applies one change from the watch, unless the set holds a newer one.
    pub(super) fn apply(&self, key: &str, revision: u64, operation: Operation, value: &[u8]) {
        if !key.starts_with(KEY_PREFIX) {
            return;
        }
        let mut state = self.state.write().expect("revocation set lock");
        if state
            .entries
            .get(key)
            .is_some_and(|(held, _)| *held >= revision)
        {
            return;
        }
        match operation {
            Operation::Put => {
                let record = decode(key, value);
                if let Some(r) = &record {
                    self.announce(r);
                }
                state.insert(key.to_owned(), revision, record);
            }
            Operation::Delete | Operation::Purge => state.remove(key),
        }
    }

    fn mark_stale(&self, reason: String, now: i64) {
        let mut state = self.state.write().expect("revocation set lock");
        if let Some(Health::Stale { .. }) = state.health {
            return;
        }
        state.health = Some(Health::Stale {
            since: now,
            loaded: state.loaded_at,
            reason,
        });
    }

    fn is_stale(&self) -> bool {
        matches!(self.health(), Health::Stale { .. })
    }

    /// Starts the watcher task that keeps this set current from `store`.
    pub fn watch(&self, store: RevocationStore) -> Watcher {
        let set = self.clone();
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            loop {
                let reason = set.follow(&store, &mut backoff).await;
                tracing::warn!(bucket = store.bucket(), reason = %reason,
                    "revocation watch interrupted; serving the last known revocations");
                set.mark_stale(reason, now_unix());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        });
        Watcher { task }
    }

    /// Loads the bucket and follows its changes; returns why it stopped.
    async fn follow(&self, store: &RevocationStore, backoff: &mut Duration) -> String {
        let start = match store.last_sequence().await {
            Ok(seq) => seq,
            Err(e) => return e.to_string(),
        };
        let mut watch = match store
            .kv()
            .watch_from_revision(format!("{KEY_PREFIX}>"), start + 1)
            .await
        {
            Ok(w) => w,
            Err(e) => return format!("cannot watch: {e}"),
        };
        match store.entries().await {
            Ok(entries) => {
                let n = entries.len();
                self.replace(entries, now_unix());
                *backoff = Duration::from_millis(250);
                tracing::info!(bucket = store.bucket(), entries = n, "revocations loaded");
            }
            Err(e) => return e.to_string(),
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                entry = watch.next() => match entry {
                    Some(Ok(e)) => self.apply(&e.key, e.revision, e.operation, &e.value),
                    Some(Err(e)) => return format!("watch failed: {e}"),
                    None => return "watch ended".into(),
                },
                _ = tick.tick() => {
                    let connected = store.client().connection_state()
                        == async_nats::connection::State::Connected;
                    if !connected {
                        self.mark_stale("disconnected from NATS".into(), now_unix());
                    } else if self.is_stale() {
                        return "reconnected: reloading".into();
                    }
                }
            }
        }
    }
}

/// The watcher task; aborted on drop.
pub struct Watcher {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
