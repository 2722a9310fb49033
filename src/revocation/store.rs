//! The revocation bucket: a JetStream KV bucket in the `[nats]` user's
//! account (the system account cannot have JetStream).
//!
//! Created if missing with file storage (revocations survive restarts of
//! every server), history 1, replicas = min(3, JetStream servers), and
//! per-message TTLs (nats-server ≥ 2.11, `allow_msg_ttl`): a revocation
//! with `--for` is published with `Nats-TTL`, so the server removes it and
//! leaves a delete marker every watcher sees. Readers also honour the
//! record's `expires_at`, so a revocation stops matching on the second even
//! when the server's expiry sweep or the marker is late, and no sweeper
//! task in any instance is needed.
//!
//! Unrevoke purges the key (the purge marker stays, so a watcher that was
//! away still learns of it). The tests run the `[nats]` user without
//! permission limits; a restricted one needs the JetStream API
//! (`$JS.API.>`), the bucket's subjects (`$KV.<bucket>.>`) and its inboxes.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream::StorageType};
use async_nats::HeaderMap;
use futures::TryStreamExt;

use super::{Revocation, Selector, KEY_PREFIX};

/// How long the delete marker of an expired revocation stays in the bucket
/// (watchers see it at once; later ones load the bucket without it).
pub const MARKER_TTL: Duration = Duration::from_secs(3600);

/// Largest stored record (selector values are capped at 4 KiB each).
const MAX_VALUE_SIZE: i32 = 64 * 1024;

/// Why the revocation bucket cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The account has no JetStream.
    #[error("JetStream is not available to the [nats] user's account ({0}); revocations need JetStream with file storage")]
    NoJetStream(String),
    /// The service only opens the bucket; `revoke` makes it.
    #[error("the revocation bucket {0:?} does not exist (`revoke` creates it; check [revocation] bucket)")]
    NotFound(String),
    /// `revoke` could not make the bucket (permissions, storage).
    #[error("cannot create the revocation bucket {bucket:?}: {reason}")]
    Create {
        /// The bucket's name.
        bucket: String,
        /// JetStream's error.
        reason: String,
    },
    /// A read, write or watch failed.
    #[error("revocation bucket {bucket:?}: {reason}")]
    Io {
        /// The bucket's name.
        bucket: String,
        /// JetStream's error.
        reason: String,
    },
}

/// One bucket entry as read: key, revision, and the record (None when the
/// value does not decode or does not belong to its key).
pub(crate) type StoredEntry = (String, u64, Option<Revocation>);

/// The shared revocation bucket.
#[derive(Clone)]
pub struct RevocationStore {
    client: async_nats::Client,
    js: jetstream::Context,
    kv: kv::Store,
    bucket: String,
    /// The bucket allows `Nats-TTL` (created by us on nats-server ≥ 2.11).
    ttl: bool,
}

impl RevocationStore {
    /// Opens an existing bucket; [`StoreError::NotFound`] if it is missing.
    pub async fn open(client: &async_nats::Client, bucket: &str) -> Result<Self, StoreError> {
        let js = jetstream::new(client.clone());
        preflight(&js).await?;
        match stream_ttl(&js, bucket).await? {
            Some(ttl) => Self::handle(client, js, bucket, ttl).await,
            None => Err(StoreError::NotFound(bucket.to_owned())),
        }
    }

    /// Opens the bucket, creating it with `replicas` if it is missing. An
    /// existing bucket is used as it is.
    pub async fn open_or_create(
        client: &async_nats::Client,
        bucket: &str,
        replicas: usize,
    ) -> Result<Self, StoreError> {
        let js = jetstream::new(client.clone());
        preflight(&js).await?;
        if let Some(ttl) = stream_ttl(&js, bucket).await? {
            return Self::handle(client, js, bucket, ttl).await;
        }
        let created = js
            .create_key_value(kv::Config {
                bucket: bucket.to_owned(),
                description: "nats-oidc-callout revocations".into(),
                history: 1,
                storage: StorageType::File,
                num_replicas: replicas.max(1),
                max_value_size: MAX_VALUE_SIZE,
                limit_markers: Some(MARKER_TTL),
                ..Default::default()
            })
            .await;
        if let Err(e) = created {
            // Another instance may have created it first.
            return match stream_ttl(&js, bucket).await? {
                Some(ttl) => Self::handle(client, js, bucket, ttl).await,
                None => Err(StoreError::Create {
                    bucket: bucket.to_owned(),
                    reason: e.to_string(),
                }),
            };
        }
        tracing::info!(bucket, replicas, "revocation bucket created");
        Self::handle(client, js, bucket, true).await
    }

    async fn handle(
        client: &async_nats::Client,
        js: jetstream::Context,
        bucket: &str,
        ttl: bool,
    ) -> Result<Self, StoreError> {
        let kv = js.get_key_value(bucket).await.map_err(|e| StoreError::Io {
            bucket: bucket.to_owned(),
            reason: e.to_string(),
        })?;
        if !ttl {
            tracing::warn!(
                bucket,
                "the revocation bucket has no per-message TTL: expired revocations stop \
                 matching but stay in the bucket until `unrevoke`"
            );
        }
        Ok(Self {
            client: client.clone(),
            js,
            kv,
            bucket: bucket.to_owned(),
            ttl,
        })
    }

    /// For log lines and error messages.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub(crate) fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub(crate) fn kv(&self) -> &kv::Store {
        &self.kv
    }

    fn io(&self, reason: impl ToString) -> StoreError {
        StoreError::Io {
            bucket: self.bucket.clone(),
            reason: reason.to_string(),
        }
    }

    /// Stores (or replaces) the revocation for its selector; returns the
    /// revision. With `expires_at` the server removes it then.
    pub async fn revoke(&self, revocation: &Revocation, now: i64) -> Result<u64, StoreError> {
        revocation.selector.validate().map_err(|e| self.io(e))?;
        let subject = format!("$KV.{}.{}", self.bucket, revocation.selector.key());
        let body = serde_json::to_vec(revocation).expect("a revocation serializes");
        let mut headers = HeaderMap::new();
        if let (true, Some(at)) = (self.ttl, revocation.expires_at) {
            let secs = at.saturating_sub(now).max(1);
            headers.insert("Nats-TTL", secs.to_string().as_str());
        }
        let ack = self
            .js
            .publish_with_headers(subject, headers, body.into())
            .await
            .map_err(|e| self.io(e))?
            .await
            .map_err(|e| self.io(e))?;
        Ok(ack.sequence)
    }

    /// Lifts the revocation for `selector`; true if a live one was there.
    pub async fn unrevoke(&self, selector: &Selector, now: i64) -> Result<bool, StoreError> {
        let key = selector.key();
        let entry = self.kv.entry(key.as_str()).await.map_err(|e| self.io(e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(false);
        };
        let live = decode(&key, &entry.value).is_some_and(|r| r.is_live(now));
        self.kv.purge(key.as_str()).await.map_err(|e| self.io(e))?;
        Ok(live)
    }

    /// Revocations in force at `now`, oldest first.
    pub async fn list(&self, now: i64) -> Result<Vec<Revocation>, StoreError> {
        let mut live: Vec<Revocation> = self
            .entries()
            .await?
            .into_iter()
            .filter_map(|(_, _, r)| r)
            .filter(|r| r.is_live(now))
            .collect();
        live.sort_by(|a, b| {
            (a.created_at, a.selector.key()).cmp(&(b.created_at, b.selector.key()))
        });
        Ok(live)
    }

    /// Every revocation key's current value, expired ones included.
    pub(crate) async fn entries(&self) -> Result<Vec<StoredEntry>, StoreError> {
        let keys: Vec<String> = self
            .kv
            .keys()
            .await
            .map_err(|e| self.io(e))?
            .try_collect()
            .await
            .map_err(|e| self.io(e))?;
        let mut out = Vec::new();
        for key in keys.into_iter().filter(|k| k.starts_with(KEY_PREFIX)) {
            let entry = self.kv.entry(key.as_str()).await.map_err(|e| self.io(e))?;
            if let Some(e) = entry.filter(|e| e.operation == kv::Operation::Put) {
                let record = decode(&key, &e.value);
                out.push((key, e.revision, record));
            }
        }
        Ok(out)
    }

    /// The bucket stream's last sequence: a watch from the next one sees
    /// every later change.
    pub(crate) async fn last_sequence(&self) -> Result<u64, StoreError> {
        let mut stream = self
            .js
            .get_stream(format!("KV_{}", self.bucket))
            .await
            .map_err(|e| self.io(e))?;
        let info = stream.info().await.map_err(|e| self.io(e))?;
        Ok(info.state.last_sequence)
    }
}

/// A stored record, if it decodes and its selector owns `key` (a record put
/// under another key by hand could never be lifted by `unrevoke`).
pub(crate) fn decode(key: &str, value: &[u8]) -> Option<Revocation> {
    let r: Revocation = serde_json::from_slice(value).ok()?;
    (r.selector.key() == key).then_some(r)
}

/// JetStream answers for this account, else a clear error.
async fn preflight(js: &jetstream::Context) -> Result<(), StoreError> {
    js.query_account()
        .await
        .map(|_| ())
        .map_err(|e| StoreError::NoJetStream(e.to_string()))
}

/// Whether the bucket exists (Some) and allows per-message TTLs.
async fn stream_ttl(js: &jetstream::Context, bucket: &str) -> Result<Option<bool>, StoreError> {
    match js.get_stream(format!("KV_{bucket}")).await {
        Ok(stream) => Ok(Some(stream.cached_info().config.allow_message_ttl)),
        Err(e) => match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(StoreError::Io {
                bucket: bucket.to_owned(),
                reason: e.to_string(),
            }),
        },
    }
}
