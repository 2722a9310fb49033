//! Why a token was refused.

use jsonwebtoken::errors::ErrorKind;

use crate::reason::ReasonClass;

/// Why a token was refused. The text is what operators read in logs and
/// what `check` prints; it never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The request carries no token (or only whitespace).
    #[error("no token presented")]
    Missing,
    /// The token is longer than `max_token_bytes` (the limit).
    #[error("token is larger than {0} bytes")]
    TooLarge(usize),
    /// Not a JWT: bad structure, base64url or JSON (the text says which).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header's `alg` is `none`.
    #[error("algorithm \"none\" is never accepted")]
    AlgNone,
    /// The header's `alg` is no algorithm this service knows.
    #[error("algorithm {0:?} is not supported")]
    UnsupportedAlg(String),
    /// The algorithm is not in the issuer's `algorithms`.
    #[error("algorithm {alg:?} is not allowed for issuer {issuer:?}")]
    AlgNotAllowed {
        /// The header's `alg`.
        alg: String,
        /// The configured issuer name.
        issuer: String,
    },
    /// The header carries `jku`, `x5u`, `jwk` or `crit` (the name).
    #[error("token header carries {0:?}, which is never trusted")]
    ForbiddenHeader(&'static str),
    /// The payload has no `iss`.
    #[error("token has no iss claim")]
    NoIssuer,
    /// No configured issuer has this `iss`.
    #[error("unknown issuer {0:?}")]
    UnknownIssuer(String),
    /// The issuer only introspects opaque tokens.
    #[error("issuer {0:?} does not accept JWTs (its token_types has no \"jwt\")")]
    JwtNotAccepted(String),
    /// The issuer's keys were never loaded and a fetch now failed.
    #[error("keys unavailable for issuer {0:?}")]
    KeysUnavailable(String),
    /// No key has the token's `kid`, even after a refetch.
    #[error("no key with kid {kid:?} for issuer {issuer:?}")]
    UnknownKid {
        /// The header's `kid`.
        kid: String,
        /// The configured issuer name.
        issuer: String,
    },
    /// The issuer's keys (with that `kid`) do not fit the algorithm.
    #[error("no key of issuer {0:?} fits the token's algorithm")]
    KeyMismatch(String),
    /// No `kid`, and more than one key fits the algorithm.
    #[error("token has no kid and issuer {0:?} has several keys")]
    AmbiguousKey(String),
    /// The signature does not verify with the chosen key.
    #[error("bad signature")]
    BadSignature,
    /// `exp` (plus leeway) has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` (minus leeway) is still ahead.
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` holds none of the issuer's audiences.
    #[error("audience mismatch")]
    Audience,
    /// `iss` does not match the issuer that verified it.
    #[error("issuer mismatch")]
    Issuer,
    /// A required claim (`required_claims`, `exp`, `iat` for `max_token_age`) is missing.
    #[error("token has no {0} claim")]
    MissingClaim(String),
    /// A registered claim has the wrong type (`exp` not a number, …).
    #[error("claim {0} has an invalid format")]
    ClaimFormat(String),
    /// The issuer's keys are older than `jwks_max_stale`: the IdP has been
    /// unreachable too long to trust them.
    #[error("keys for issuer {issuer:?} are stale (last refreshed {age_secs} s ago)")]
    StaleKeys {
        /// The configured issuer name.
        issuer: String,
        /// Seconds since the keys were last fetched.
        age_secs: u64,
    },
    /// The header's `typ` is not the issuer's `require_typ`.
    #[error("token typ is {found:?}, expected {expected:?}")]
    Typ {
        /// The header's `typ` (empty when absent).
        found: String,
        /// The issuer's `require_typ`.
        expected: String,
    },
    /// `iat` is further back than `max_token_age`.
    #[error("token is too old (issued {age_secs} s ago)")]
    TooOld {
        /// Seconds since `iat`.
        age_secs: i64,
    },
}

impl TokenError {
    /// The reason class for metrics and the audit event.
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
