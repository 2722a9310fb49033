//! Where an issuer's keys come from, and the store that keeps the current
//! set: fetched at start, refreshed, refetched (rate-limited) for an unknown
//! `kid`, and kept through IdP outages.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{JwksError, KeySet};

/// Largest discovery or JWKS document accepted.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub(crate) enum KeySource {
    /// A JWKS file (`jwks_file`), read at start and at each refresh.
    File(PathBuf),
    /// Discovery at the issuer URL; its `jwks_uri` is looked up first.
    Discovery {
        /// The issuer URL.
        issuer: String,
    },
    /// A JWKS URL (`jwks_uri`).
    Uri(String),
}

/// An issuer's current keys plus how to get new ones.
pub(crate) struct KeyStore {
    source: KeySource,
    http: reqwest::Client,
    allow_insecure_http: bool,
    current: RwLock<Option<Arc<KeySet>>>,
    /// One fetch at a time per issuer; waiters reuse its result.
    fetch_lock: tokio::sync::Mutex<()>,
    last_kid_refetch: Mutex<Option<Instant>>,
    min_refetch: Duration,
    fetches: AtomicU64,
    failures: AtomicU64,
}

impl KeyStore {
    /// A store with no keys yet; the first [`KeyStore::refresh`] loads them.
    pub(crate) fn new(source: KeySource, min_refetch: Duration, allow_insecure_http: bool) -> Self {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("static reqwest client config");
        Self {
            source,
            http,
            allow_insecure_http,
            current: RwLock::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
            last_kid_refetch: Mutex::new(None),
            min_refetch,
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// The keys now in use, if any were ever loaded.
    pub(crate) fn current(&self) -> Option<Arc<KeySet>> {
        self.current.read().expect("key lock").clone()
    }

    /// Number of fetch attempts so far (files and URLs alike).
    pub(crate) fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Number of failed fetch attempts so far.
    pub(crate) fn failure_count(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Loads the keys now. On failure the previous keys stay in place.
    pub(crate) async fn refresh(&self) -> Result<Arc<KeySet>, JwksError> {
        let started = Instant::now();
        let _guard = self.fetch_lock.lock().await;
        // Someone else refreshed while we waited: use their result.
        if let Some(current) = self.current() {
            if current.fetched_at >= started {
                return Ok(current);
            }
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let set = Arc::new(self.load().await.inspect_err(|_| {
            self.failures.fetch_add(1, Ordering::Relaxed);
        })?);
        // Keycloak and Entra publish encryption keys beside signing keys:
        // routine, so not a warning at every refresh.
        for why in &set.skipped {
            tracing::debug!(source = ?self.source, "{why}");
        }
        *self.current.write().expect("key lock") = Some(set.clone());
        Ok(set)
    }

    /// A refetch because a token named an unknown `kid`; at most one per
    /// `min_refetch`, so a flood of made-up kids cannot hammer the IdP.
    pub(crate) async fn refetch_for_unknown_kid(&self) -> Option<Arc<KeySet>> {
        {
            let mut last = self.last_kid_refetch.lock().expect("refetch lock");
            if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
                return None;
            }
            *last = Some(Instant::now());
        }
        match self.refresh().await {
            Ok(set) => Some(set),
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refetch for an unknown kid failed");
                None
            }
        }
    }

    async fn load(&self) -> Result<KeySet, JwksError> {
        match &self.source {
            KeySource::File(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| JwksError::File(path.clone(), e.to_string()))?;
                KeySet::parse(&bytes)
            }
            KeySource::Uri(uri) => KeySet::parse(&self.get(uri).await?),
            KeySource::Discovery { issuer } => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let jwks_uri = jwks_uri_from_discovery(&self.get(&url).await?, &url, issuer)?;
                KeySet::parse(&self.get(&jwks_uri).await?)
            }
        }
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, JwksError> {
        check_url(url, self.allow_insecure_http)?;
        let fail = |reason: String| JwksError::Fetch {
            url: url.to_owned(),
            reason,
        };
        let mut resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(fail(format!(
                    "document larger than {MAX_DOCUMENT_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Reads an OpenID discovery document fetched from `url`: it must name
/// `issuer` exactly (OpenID Discovery 1.0 §4.3), and yields its `jwks_uri`.
pub fn jwks_uri_from_discovery(doc: &[u8], url: &str, issuer: &str) -> Result<String, JwksError> {
    let fail = |reason: String| JwksError::Fetch {
        url: url.to_owned(),
        reason,
    };
    let doc: Value = serde_json::from_slice(doc).map_err(|e| fail(format!("not JSON: {e}")))?;
    let found = doc
        .get("issuer")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if found != issuer {
        return Err(JwksError::IssuerMismatch {
            url: url.to_owned(),
            found: found.to_owned(),
            expected: issuer.to_owned(),
        });
    }
    doc.get("jwks_uri")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| fail("discovery document has no jwks_uri".into()))
}

/// https everywhere except loopback, unless explicitly allowed.
pub(crate) fn check_url(url: &str, allow_insecure_http: bool) -> Result<(), JwksError> {
    crate::https::check_url(url, allow_insecure_http).map_err(|e| match e {
        crate::https::UrlError::Insecure(u) => JwksError::Insecure(u),
        crate::https::UrlError::Invalid { url, reason } => JwksError::Fetch { url, reason },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_must_name_the_issuer_exactly_and_a_jwks_uri() {
        let url = "https://idp.test/.well-known/openid-configuration";
        let doc = |v: Value| v.to_string().into_bytes();
        let ok = doc(
            serde_json::json!({"issuer": "https://idp.test", "jwks_uri": "https://idp.test/k"}),
        );
        assert_eq!(
            jwks_uri_from_discovery(&ok, url, "https://idp.test").unwrap(),
            "https://idp.test/k"
        );
        let slash =
            doc(serde_json::json!({"issuer": "https://idp.test/", "jwks_uri": "https://x/k"}));
        assert!(matches!(
            jwks_uri_from_discovery(&slash, url, "https://idp.test"),
            Err(JwksError::IssuerMismatch { .. })
        ));
        let no_uri = doc(serde_json::json!({"issuer": "https://idp.test"}));
        let e = jwks_uri_from_discovery(&no_uri, url, "https://idp.test").unwrap_err();
        assert!(e.to_string().contains("no jwks_uri"), "{e}");
        let e = jwks_uri_from_discovery(b"<html>", url, "https://idp.test").unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
    }
}
