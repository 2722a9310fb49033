//! xkey (curve25519 + XSalsa20-Poly1305) sealing of callout payloads, in
//! nats-io/nkeys' format: `xkv1` || 24-byte nonce || NaCl box.
//!
//! The X25519 agreement with a server's key is computed once per server
//! key and reused: it is by far the most expensive step of a decision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crypto_box::aead::{Aead, AeadCore, OsRng};
use crypto_box::{PublicKey, SalsaBox, SecretKey};

/// Header carrying the server's public xkey on a sealed request.
pub const XKEY_HEADER: &str = "Nats-Server-Xkey";

const VERSION: &[u8] = b"xkv1";
const NONCE_LEN: usize = 24;
/// Servers a service talks to are few (one key per server start); beyond
/// this the cache is simply cleared.
const MAX_CACHED_SERVERS: usize = 256;

/// Why a request cannot be opened, or a seed not used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// A sealed request without the server's key to open it with.
    #[error("sealed request has no {XKEY_HEADER} header")]
    MissingServerKey,
    /// The header's value is not a curve public key.
    #[error("{XKEY_HEADER} header is not a curve public key")]
    BadServerKey,
    /// The server encrypts but we have no xkey: the two configs disagree.
    #[error("request is sealed but this service has no xkey configured")]
    NoServiceKey,
    /// We have an xkey but the server does not encrypt: refused, not downgraded.
    #[error("request is not sealed but this service requires encryption (xkey is configured)")]
    NotSealed,
    /// Decryption failed: the server sealed for another key, or tampering.
    #[error("sealed request cannot be opened with this service's xkey")]
    Open,
    /// The configured seed is not an `SX…` curve seed.
    #[error("not a curve seed (SX…)")]
    BadSeed,
}

/// The precomputed box shared with one server.
pub type ServerBox = Arc<SalsaBox>;

/// This service's curve key, with the agreements already computed.
pub struct Sealer {
    secret: SecretKey,
    public: String,
    boxes: Mutex<HashMap<[u8; 32], ServerBox>>,
}

impl Sealer {
    /// From the `SX…` seed in the config's `xkey_seed_file`.
    pub fn from_seed(seed: &str) -> Result<Self, SealError> {
        let xkey = nkeys::XKey::from_seed(seed).map_err(|_| SealError::BadSeed)?;
        let (_, raw) = nkeys::decode_seed(seed).map_err(|_| SealError::BadSeed)?;
        Ok(Self {
            secret: SecretKey::from(raw),
            public: xkey.public_key(),
            boxes: Mutex::new(HashMap::new()),
        })
    }

    /// The `X…` key nats-server's `auth_callout.xkey` must name.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    fn server_box(&self, server_xkey: &str) -> Result<ServerBox, SealError> {
        let raw = nkeys::XKey::from_public_key(server_xkey)
            .ok()
            .and_then(|_| nkeys::from_public_key(server_xkey).ok())
            .map(|(_, raw)| raw)
            .ok_or(SealError::BadServerKey)?;
        let mut boxes = self.boxes.lock().expect("xkey cache lock");
        if let Some(b) = boxes.get(&raw) {
            return Ok(b.clone());
        }
        if boxes.len() >= MAX_CACHED_SERVERS {
            boxes.clear();
        }
        let b = Arc::new(SalsaBox::new(&PublicKey::from(raw), &self.secret));
        boxes.insert(raw, b.clone());
        Ok(b)
    }
}

/// Plain requests are JWTs, which always start with `eyJ`.
fn is_sealed(payload: &[u8]) -> bool {
    !payload.starts_with(b"eyJ")
}

/// Returns the request JWT and, when it was sealed, the box to seal the
/// answer with. A service with an xkey refuses plain requests and vice
/// versa, so a misconfigured pair is found at the first connection.
pub fn open_request(
    payload: &[u8],
    server_xkey: Option<&str>,
    sealer: Option<&Sealer>,
) -> Result<(Vec<u8>, Option<ServerBox>), SealError> {
    match (is_sealed(payload), sealer) {
        (false, None) => Ok((payload.to_vec(), None)),
        (false, Some(_)) => Err(SealError::NotSealed),
        (true, None) => Err(SealError::NoServiceKey),
        (true, Some(sealer)) => {
            let server = sealer.server_box(server_xkey.ok_or(SealError::MissingServerKey)?)?;
            let body = payload.strip_prefix(VERSION).ok_or(SealError::Open)?;
            if body.len() <= NONCE_LEN {
                return Err(SealError::Open);
            }
            let (nonce, sealed) = body.split_at(NONCE_LEN);
            let opened = server
                .decrypt(nonce.into(), sealed)
                .map_err(|_| SealError::Open)?;
            Ok((opened, Some(server)))
        }
    }
}

/// Seals a response JWT for the server whose request it answers.
pub fn seal_response(token: &[u8], server: &SalsaBox) -> Vec<u8> {
    let nonce = SalsaBox::generate_nonce(&mut OsRng);
    let sealed = server
        .encrypt(&nonce, token)
        .expect("XSalsa20-Poly1305 encryption of an in-memory buffer cannot fail");
    let mut out = Vec::with_capacity(VERSION.len() + NONCE_LEN + sealed.len());
    out.extend_from_slice(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}
