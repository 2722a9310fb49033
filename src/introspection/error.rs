//! Why an opaque token was refused. Each variant has a stable class for
//! metrics; the text is what operators read and never holds the token.

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
    #[error("token is sender-constrained (cnf); its proof of possession cannot be checked")]
    SenderConstrained,
    #[error("token has no {0} claim")]
    MissingClaim(String),
    #[error("token is too old (issued {age_secs} s ago)")]
    TooOld { age_secs: i64 },
}

impl IntrospectionError {
    /// A stable label for metrics; shared with JWT refusals where the
    /// meaning is the same (`audience`, `token_expired`, …).
    pub fn class(&self) -> &'static str {
        use IntrospectionError::*;
        match self {
            Inactive => "token_inactive",
            Malformed => "token_malformed",
            Unavailable { .. } => "idp_unavailable",
            Timeout { .. } => "idp_timeout",
            Saturated { .. } => "idp_saturated",
            RateLimited { .. } => "idp_rate_limited",
            BadResponse { .. } => "idp_bad_response",
            Userinfo { .. } => "userinfo_failed",
            Audience => "audience",
            Issuer => "issuer_mismatch",
            Expired | TooOld { .. } => "token_expired",
            MissingClaim(_) => "token_malformed",
            NotYetValid => "token_not_yet_valid",
            TokenType(_) | SenderConstrained => "token_type",
        }
    }
}
