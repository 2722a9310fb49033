//! JSON Web Key Sets: parsing, key selection, and a per-issuer store that
//! fetches, refreshes and keeps serving keys while the IdP is down.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// Largest discovery or JWKS document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    #[error("JWKS is not valid JSON with a \"keys\" array: {0}")]
    Malformed(String),
    #[error("JWKS holds no usable signing key")]
    Empty,
    #[error("cannot read {0}: {1}")]
    File(PathBuf, String),
    #[error("fetching {url} failed: {reason}")]
    Fetch { url: String, reason: String },
    #[error("discovery at {url} names issuer {found:?}, expected {expected:?}")]
    IssuerMismatch {
        url: String,
        found: String,
        expected: String,
    },
    #[error("{0} is not https; use https or set allow_insecure_http for a non-loopback host")]
    Insecure(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }
}

/// One verification key, with what it may be used for.
pub struct KeyEntry {
    pub kid: Option<String>,
    alg: Option<Algorithm>,
    kind: KeyKind,
    pub key: DecodingKey,
}

impl KeyEntry {
    /// A key is only used with the algorithm its type (and `alg`, if
    /// declared) allows: no RSA key for ES256, no EC key for HS256.
    fn usable_for(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }

    fn from_json(v: &Value) -> Option<KeyEntry> {
        let obj = v.as_object()?;
        if obj
            .get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            return None;
        }
        let alg = match obj.get("alg") {
            None => None,
            Some(a) => Some(Algorithm::from_str(a.as_str()?).ok()?),
        };
        let kind = match (
            obj.get("kty")?.as_str()?,
            obj.get("crv").and_then(Value::as_str),
        ) {
            ("RSA", _) => KeyKind::Rsa,
            ("EC", Some("P-256")) => KeyKind::P256,
            ("EC", Some("P-384")) => KeyKind::P384,
            ("OKP", Some("Ed25519")) => KeyKind::Ed25519,
            _ => return None,
        };
        let jwk: Jwk = serde_json::from_value(v.clone()).ok()?;
        let key = DecodingKey::from_jwk(&jwk).ok()?;
        Some(KeyEntry {
            kid: obj.get("kid").and_then(Value::as_str).map(str::to_owned),
            alg,
            kind,
            key,
        })
    }
}

/// The keys of one issuer at one point in time.
pub struct KeySet {
    keys: Vec<KeyEntry>,
    pub fetched_at: Instant,
}

/// Why no key was chosen for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoKey {
    UnknownKid,
    WrongAlgorithm,
    Ambiguous,
}

impl KeySet {
    /// Parses a JWKS. Keys this service cannot use (encryption keys,
    /// unsupported types) are skipped; a set with none left is an error.
    pub fn parse(bytes: &[u8]) -> Result<KeySet, JwksError> {
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| JwksError::Malformed(e.to_string()))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwksError::Malformed("no \"keys\" array".into()))?;
        let keys: Vec<KeyEntry> = keys.iter().filter_map(KeyEntry::from_json).collect();
        if keys.is_empty() {
            return Err(JwksError::Empty);
        }
        Ok(KeySet {
            keys,
            fetched_at: Instant::now(),
        })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Picks the key for a token. Without `kid`, the set must hold exactly
    /// one key usable for `alg`.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&KeyEntry, NoKey> {
        match kid {
            Some(kid) => {
                let mut same_kid = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if same_kid.peek().is_none() {
                    return Err(NoKey::UnknownKid);
                }
                same_kid
                    .find(|k| k.usable_for(alg))
                    .ok_or(NoKey::WrongAlgorithm)
            }
            None => {
                let mut usable = self.keys.iter().filter(|k| k.usable_for(alg));
                match (usable.next(), usable.next()) {
                    (Some(k), None) => Ok(k),
                    (None, _) => Err(NoKey::WrongAlgorithm),
                    (Some(_), Some(_)) => Err(NoKey::Ambiguous),
                }
            }
        }
    }
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    File(PathBuf),
    /// `discovery` is the issuer URL; its jwks_uri is looked up first.
    Discovery {
        issuer: String,
    },
    Uri(String),
}

/// An issuer's current keys plus how to get new ones.
pub struct KeyStore {
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
    pub fn new(source: KeySource, min_refetch: Duration, allow_insecure_http: bool) -> Self {
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

    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current.read().expect("key lock").clone()
    }

    /// Number of fetch attempts so far (files and URLs alike).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Number of failed fetch attempts so far.
    pub fn failure_count(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Loads the keys now. On failure the previous keys stay in place.
    pub async fn refresh(&self) -> Result<Arc<KeySet>, JwksError> {
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
        *self.current.write().expect("key lock") = Some(set.clone());
        Ok(set)
    }

    /// A refetch because a token named an unknown `kid`; at most one per
    /// `min_refetch`, so a flood of made-up kids cannot hammer the IdP.
    pub async fn refetch_for_unknown_kid(&self) -> Option<Arc<KeySet>> {
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
pub fn check_url(url: &str, allow_insecure_http: bool) -> Result<(), JwksError> {
    let parsed = url::Url::parse(url).map_err(|e| JwksError::Fetch {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback || allow_insecure_http => Ok(()),
        _ => Err(JwksError::Insecure(url.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_N: &str = "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw";

    fn rsa(kid: &str, alg: Option<&str>) -> Value {
        let mut v = serde_json::json!({"kty": "RSA", "kid": kid, "n": RSA_N, "e": "AQAB"});
        if let Some(a) = alg {
            v["alg"] = a.into();
        }
        v
    }

    fn set(keys: Vec<Value>) -> KeySet {
        KeySet::parse(serde_json::json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

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

    #[test]
    fn selects_by_kid_and_checks_algorithm_fit() {
        let s = set(vec![rsa("a", Some("RS256")), rsa("b", None)]);
        assert_eq!(
            s.select(Some("a"), Algorithm::RS256)
                .unwrap()
                .kid
                .as_deref(),
            Some("a")
        );
        assert_eq!(
            s.select(Some("a"), Algorithm::PS256).err(),
            Some(NoKey::WrongAlgorithm)
        );
        assert!(s.select(Some("b"), Algorithm::PS256).is_ok());
        assert_eq!(
            s.select(Some("b"), Algorithm::ES256).err(),
            Some(NoKey::WrongAlgorithm)
        );
        assert_eq!(
            s.select(Some("c"), Algorithm::RS256).err(),
            Some(NoKey::UnknownKid)
        );
        assert_eq!(
            s.select(None, Algorithm::RS256).err(),
            Some(NoKey::Ambiguous)
        );
    }

    #[test]
    fn no_kid_is_fine_with_exactly_one_usable_key() {
        let s = set(vec![rsa("only", None)]);
        assert!(s.select(None, Algorithm::RS256).is_ok());
        assert_eq!(
            s.select(None, Algorithm::ES256).err(),
            Some(NoKey::WrongAlgorithm)
        );
    }

    #[test]
    fn unusable_keys_are_skipped_and_empty_sets_refused() {
        let enc =
            serde_json::json!({"kty": "RSA", "kid": "e", "use": "enc", "n": RSA_N, "e": "AQAB"});
        let hmac = serde_json::json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"});
        let odd_alg = rsa("x", Some("RSA-OAEP"));
        let s = set(vec![
            enc.clone(),
            hmac.clone(),
            odd_alg.clone(),
            rsa("ok", None),
        ]);
        assert_eq!(s.len(), 1);
        let only_bad = serde_json::json!({ "keys": [enc, hmac, odd_alg] }).to_string();
        assert_eq!(
            KeySet::parse(only_bad.as_bytes()).err(),
            Some(JwksError::Empty)
        );
        assert!(matches!(KeySet::parse(b"{}"), Err(JwksError::Malformed(_))));
        assert!(matches!(
            KeySet::parse(b"not json"),
            Err(JwksError::Malformed(_))
        ));
    }

    #[test]
    fn https_required_except_loopback() {
        assert!(check_url("https://idp.example.com/jwks", false).is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks", false).is_ok());
        assert!(check_url("http://[::1]:8080/jwks", false).is_ok());
        assert!(check_url("http://localhost/jwks", false).is_ok());
        assert!(check_url("http://idp.example.com/jwks", false).is_err());
        assert!(check_url("http://idp.example.com/jwks", true).is_ok());
        assert!(check_url("file:///etc/passwd", true).is_err());
    }
}
