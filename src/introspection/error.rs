//! Why an opaque token was refused. Each variant has a reason class; the
//! text is what operators read and never holds the token.

use crate::reason::ReasonClass;

/// A refusal from the introspection path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntrospectionError {
    /// The IdP answered `"active": false`.
    #[error("token inactive")]
    Inactive,
    /// The token has characters no bearer token has; the IdP is not asked.
    #[error("token is not a bearer token (RFC 6750 characters only)")]
    Malformed,
    /// No usable answer: refused connection, HTTP error, no endpoint.
    #[error("introspection at issuer {issuer:?} failed: {reason}")]
    Unavailable {
        /// The configured issuer name.
        issuer: String,
        /// What went wrong.
        reason: String,
    },
    /// No answer within `introspection_timeout`.
    #[error("introspection at issuer {issuer:?} timed out")]
    Timeout {
        /// The configured issuer name.
        issuer: String,
    },
    /// `introspection_max_in_flight` calls were already waiting.
    #[error("too many introspection calls in flight for issuer {issuer:?}")]
    Saturated {
        /// The configured issuer name.
        issuer: String,
    },
    /// `introspection_rate_limit` was used up for this second.
    #[error("introspection rate limit reached for issuer {issuer:?}")]
    RateLimited {
        /// The configured issuer name.
        issuer: String,
    },
    /// The answer breaks RFC 7662 (not a JSON object, no `active`, …).
    #[error("bad introspection response from issuer {issuer:?}: {reason}")]
    BadResponse {
        /// The configured issuer name.
        issuer: String,
        /// What is wrong with the answer.
        reason: String,
    },
    /// The userinfo call failed or answered about another subject.
    #[error("userinfo at issuer {issuer:?} failed: {reason}")]
    Userinfo {
        /// The configured issuer name.
        issuer: String,
        /// What went wrong.
        reason: String,
    },
    /// `aud` holds none of the issuer's audiences.
    #[error("audience mismatch")]
    Audience,
    /// `iss` is not the issuer's identifier.
    #[error("issuer mismatch")]
    Issuer,
    /// `exp` (plus leeway) has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` (minus leeway) is still ahead.
    #[error("token not yet valid")]
    NotYetValid,
    /// `token_type` names something other than an access token.
    #[error("token_type {0:?} is not an access token")]
    TokenType(String),
    /// A `required_claims` path (or `iat` for `max_token_age`) is missing.
    #[error("token has no {0} claim")]
    MissingClaim(String),
    /// `iat` is further back than `max_token_age`.
    #[error("token is too old (issued {age_secs} s ago)")]
    TooOld {
        /// Seconds since `iat`.
        age_secs: i64,
    },
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
