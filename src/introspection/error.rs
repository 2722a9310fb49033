//! Why an opaque token was refused. Each variant has a reason class; the
//! text is what operators read and never holds the token.

use crate::reason::ReasonClass;

/// A refusal from the introspection path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntrospectionError {
    #[error("token inactive")]
    Inactive,
    #[error("token is not a bearer token (RFC 6750 characters only)")]
    Malformed,
    #[error("introspection at issuer {issuer:?} failed: {reason}")]
    Unavailable { issuer: String, reason: String },
    #[error("introspection at issuer {issuer:?} timed out")]
    Timeout { issuer: String },
    #[error("too many introspection calls in flight for issuer {issuer:?}")]
    Saturated { issuer: String },
    #[error("introspection rate limit reached for issuer {issuer:?}")]
    RateLimited { issuer: String },
    #[error("bad introspection response from issuer {issuer:?}: {reason}")]
    BadResponse { issuer: String, reason: String },
    #[error("userinfo at issuer {issuer:?} failed: {reason}")]
    Userinfo { issuer: String, reason: String },
    #[error("audience mismatch")]
    Audience,
    #[error("issuer mismatch")]
    Issuer,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token_type {0:?} is not an access token")]
    TokenType(String),
    #[error("token has no {0} claim")]
    MissingClaim(String),
    #[error("token is too old (issued {age_secs} s ago)")]
    TooOld { age_secs: i64 },
}

impl IntrospectionError {
    /// The reason class; shared with JWT refusals where the meaning is the
    /// same (`audience`, `token_expired`, …).
    pub fn class(&self) -> ReasonClass {
        use IntrospectionError::*;
        match self {
            Inactive => ReasonClass::TokenInactive,
            Malformed | MissingClaim(_) | TokenType(_) => ReasonClass::TokenMalformed,
            Unavailable { .. } => ReasonClass::IdpUnavailable,
            Timeout { .. } => ReasonClass::IdpTimeout,
            Saturated { .. } => ReasonClass::IdpSaturated,
            RateLimited { .. } => ReasonClass::IdpRateLimited,
            BadResponse { .. } => ReasonClass::IdpBadResponse,
            Userinfo { .. } => ReasonClass::UserinfoFailed,
            Audience => ReasonClass::Audience,
            Issuer => ReasonClass::IssuerMismatch,
            Expired | TooOld { .. } => ReasonClass::TokenExpired,
            NotYetValid => ReasonClass::TokenNotYetValid,
        }
    }
}
