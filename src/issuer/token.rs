//! A verified token, reduced to what the decision needs.

use serde_json::{Map, Value};

use super::jwks::KeyFingerprint;
use crate::claims::scopes;

/// A token whose signature and registered claims were verified.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The configured issuer name, which policy rules refer to.
    pub issuer: String,
    /// The claims: all of them, or those kept ([`crate::issuer::KeptClaims`]).
    pub claims: Map<String, Value>,
    /// The scopes in the issuer's `scope_claim` (space-separated or a list).
    pub scopes: Vec<String>,
    /// `sub`, empty when absent.
    pub subject: String,
    /// `exp`, rounded down; `None` when absent.
    pub expires_at: Option<i64>,
    /// The key that verified it; `None` for claims taken on trust
    /// (`check --claims`).
    pub key: Option<KeyFingerprint>,
}

impl VerifiedToken {
    /// The token of `issuer` with these claims; scopes read from `scope_claim`.
    pub fn new(issuer: String, scope_claim: &str, claims: Map<String, Value>) -> Self {
        Self {
            issuer,
            scopes: scopes(&claims, scope_claim),
            subject: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            expires_at: expiry(&claims),
            claims,
            key: None,
        }
    }
}

/// The `exp` claim. NumericDate may be fractional; round down so a user JWT
/// never outlives the token.
pub(super) fn expiry(claims: &Map<String, Value>) -> Option<i64> {
    claims
        .get("exp")
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f.floor() as i64)))
}
