//! Why a token was refused.

use jsonwebtoken::errors::ErrorKind;

use crate::reason::ReasonClass;

/// Why a token was refused. The text is what operators read in logs and
/// what `check` prints; it never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token presented")]
    Missing,
    #[error("token is larger than {0} bytes")]
    TooLarge(usize),
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("algorithm \"none\" is never accepted")]
    AlgNone,
    #[error("algorithm {0:?} is not supported")]
    UnsupportedAlg(String),
    #[error("algorithm {alg:?} is not allowed for issuer {issuer:?}")]
    AlgNotAllowed { alg: String, issuer: String },
    #[error("token header carries {0:?}, which is never trusted")]
    ForbiddenHeader(&'static str),
    #[error("token has no iss claim")]
    NoIssuer,
    #[error("unknown issuer {0:?}")]
    UnknownIssuer(String),
    #[error("issuer {0:?} does not accept JWTs (its token_types has no \"jwt\")")]
    JwtNotAccepted(String),
    #[error("keys unavailable for issuer {0:?}")]
    KeysUnavailable(String),
    #[error("no key with kid {kid:?} for issuer {issuer:?}")]
    UnknownKid { kid: String, issuer: String },
    #[error("no key of issuer {0:?} fits the token's algorithm")]
    KeyMismatch(String),
    #[error("token has no kid and issuer {0:?} has several keys")]
    AmbiguousKey(String),
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("audience mismatch")]
    Audience,
    #[error("issuer mismatch")]
    Issuer,
    #[error("token has no {0} claim")]
    MissingClaim(String),
    #[error("claim {0} has an invalid format")]
    ClaimFormat(String),
    #[error("keys for issuer {issuer:?} are stale (last refreshed {age_secs} s ago)")]
    StaleKeys { issuer: String, age_secs: u64 },
    #[error("token typ is {found:?}, expected {expected:?}")]
    Typ { found: String, expected: String },
    #[error("token is too old (issued {age_secs} s ago)")]
    TooOld { age_secs: i64 },
}

impl TokenError {
    pub fn class(&self) -> ReasonClass {
        use TokenError::*;
        match self {
            Missing => ReasonClass::NoToken,
            TooLarge(_) | Malformed(_) | ClaimFormat(_) | MissingClaim(_) | Typ { .. } => {
                ReasonClass::TokenMalformed
            }
            AlgNone | UnsupportedAlg(_) | AlgNotAllowed { .. } | ForbiddenHeader(_) => {
                ReasonClass::TokenAlgorithm
            }
            NoIssuer | UnknownIssuer(_) | JwtNotAccepted(_) => ReasonClass::UnknownIssuer,
            KeysUnavailable(_) | StaleKeys { .. } => ReasonClass::KeysUnavailable,
            UnknownKid { .. } | KeyMismatch(_) | AmbiguousKey(_) => ReasonClass::UnknownKey,
            BadSignature => ReasonClass::BadSignature,
            Expired | TooOld { .. } => ReasonClass::TokenExpired,
            NotYetValid => ReasonClass::TokenNotYetValid,
            Audience => ReasonClass::Audience,
            Issuer => ReasonClass::IssuerMismatch,
        }
    }
}

/// jsonwebtoken's verdict in our terms.
pub(super) fn from_jwt_error(kind: ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(c),
        ErrorKind::InvalidClaimFormat(c) => TokenError::ClaimFormat(c),
        ErrorKind::InvalidAlgorithm => TokenError::BadSignature,
        ErrorKind::Json(_) => TokenError::Malformed("claims are not a valid JSON object".into()),
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
            TokenError::Malformed("not a valid JWT".into())
        }
        other => TokenError::Malformed(format!("{other:?}")),
    }
}
