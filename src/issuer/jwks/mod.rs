//! JSON Web Key Sets: parsing and key selection ([`keyset`]), and a
//! per-issuer store that fetches, refreshes and keeps serving keys while the
//! IdP is down ([`store`]).

mod keyset;
mod store;

use std::path::PathBuf;

pub use keyset::{KeyFingerprint, KeySet, NoKey};
pub use store::jwks_uri_from_discovery;
pub(crate) use store::{check_url, KeySource, KeyStore};

/// Why an issuer's keys could not be loaded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    /// The document is not JSON or has no `keys` array.
    #[error("JWKS is not valid JSON with a \"keys\" array: {0}")]
    Malformed(String),
    /// Every key was skipped (encryption keys, unsupported types).
    #[error("JWKS holds no usable signing key")]
    Empty,
    /// The `jwks_file` cannot be read (path, error).
    #[error("cannot read {0}: {1}")]
    File(PathBuf, String),
    /// The discovery or JWKS fetch failed, or the URL is not valid.
    #[error("fetching {url} failed: {reason}")]
    Fetch {
        /// The URL fetched.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Discovery names another issuer than the configured one.
    #[error("discovery at {url} names issuer {found:?}, expected {expected:?}")]
    IssuerMismatch {
        /// The discovery URL.
        url: String,
        /// The `issuer` in the discovery document.
        found: String,
        /// The configured issuer URL.
        expected: String,
    },
    /// A plain-http URL for a non-loopback host without `allow_insecure_http`.
    #[error("{0} is not https; use https or set allow_insecure_http for a non-loopback host")]
    Insecure(String),
}
