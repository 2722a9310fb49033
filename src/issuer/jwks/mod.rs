//! JSON Web Key Sets: parsing and key selection ([`keyset`]), and a
//! per-issuer store that fetches, refreshes and keeps serving keys while the
//! IdP is down ([`store`]).

mod keyset;
mod store;

use std::path::PathBuf;

pub use keyset::{KeyFingerprint, KeySet, NoKey};
pub use store::jwks_uri_from_discovery;
pub(crate) use store::{check_url, KeySource, KeyStore};

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
