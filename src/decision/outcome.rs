//! What a decision says: the approval, or the typed reason it was denied
//! (one [`ReasonClass`] each, for metrics, the audit event and `check`).

use std::sync::Arc;

use crate::certificate::{BindingError, CertificateError};
use crate::introspection::IntrospectionError;
use crate::issuer::{TokenError, VerifiedToken};
use crate::policy::{Denial, Grant, Origin, RuleTrace};
use crate::reason::ReasonClass;
use crate::verifier::VerifyError;

/// Why a connection was denied: what went wrong, typed, until it is turned
/// into the text the server logs ([`std::fmt::Display`]) and a class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// No token, or a JWT that fails verification (signature, issuer, times).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The IdP called an opaque token inactive, or could not be asked.
    #[error(transparent)]
    Introspection(#[from] IntrospectionError),
    /// The policy denies the verified token (no rule, a conflict, a bad value).
    #[error(transparent)]
    Policy(#[from] Denial),
    /// Less lifetime left than a user is worth issuing for.
    #[error("token expires too soon to issue a user")]
    TokenExpiring,
    /// The revocation's reason, as the operator wrote it.
    #[error("revoked: {0}")]
    Revoked(String),
    /// Fail closed: with `[system]` we do not know yet what is revoked.
    #[error("revocations unavailable: the revocation bucket has not been read since the service started")]
    RevocationsUnavailable,
    /// The server-verified client certificate cannot be read.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// The token's RFC 8705 certificate binding does not hold.
    #[error(transparent)]
    Binding(#[from] BindingError),
    /// The server's request is past its `exp`.
    #[error(
        "request expired {late_secs} s ago: a replay, or the clocks of server and service disagree"
    )]
    StaleRequest {
        /// Seconds between the request's `exp` and our clock.
        late_secs: i64,
    },
    /// A request without `exp` could be replayed forever.
    #[error("request has no exp")]
    RequestWithoutExpiry,
    /// The server's request does not decode or is not addressed to us.
    #[error("{0}")]
    BadRequest(String),
    /// Too many requests in flight; shed rather than queue.
    #[error("service saturated: too many authorization requests in flight")]
    Saturated,
    /// The decision missed its deadline (usually a slow IdP).
    #[error("decision took too long (deadline exceeded); is the IdP slow?")]
    Timeout,
    /// Signing or sealing the answer failed.
    #[error("cannot build response: {0}")]
    Internal(String),
}

impl Reason {
    /// The stable label for metrics and the audit line.
    pub fn class(&self) -> ReasonClass {
        match self {
            Reason::Token(e) => e.class(),
            Reason::Introspection(e) => e.class(),
            Reason::Policy(d) => d.class(),
            Reason::TokenExpiring => ReasonClass::TokenExpiring,
            Reason::Revoked(_) => ReasonClass::Revoked,
            Reason::RevocationsUnavailable => ReasonClass::RevocationsUnavailable,
            Reason::Certificate(_) => ReasonClass::CertificateInvalid,
            Reason::Binding(_) => ReasonClass::CertificateBinding,
            Reason::StaleRequest { .. } | Reason::RequestWithoutExpiry => ReasonClass::StaleRequest,
            Reason::BadRequest(_) => ReasonClass::BadRequest,
            Reason::Saturated => ReasonClass::Saturated,
            Reason::Timeout => ReasonClass::Timeout,
            Reason::Internal(_) => ReasonClass::Internal,
        }
    }
}

/// An approved identity and when its NATS user expires.
#[derive(Debug, Clone)]
pub struct Approval {
    /// What the user may do: account, permissions, limits.
    pub grant: Grant,
    /// Unix seconds; never past the token's `exp`.
    pub expires_at: i64,
    /// The token it was granted for (its kept claims): what a live session
    /// is re-evaluated with and revocations are matched against.
    pub token: Arc<VerifiedToken>,
}

/// A decision and what it was about, for the audit line and `check`.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The issuer's config name, once the token verified.
    pub issuer: Option<String>,
    /// The token's `sub`, once it verified.
    pub subject: Option<String>,
    /// The approval, or why not.
    pub result: Result<Approval, Reason>,
    /// Per-rule verdicts and subject origins, when asked for (`--explain`).
    pub trace: Option<(Vec<RuleTrace>, Vec<Origin>)>,
}

impl Outcome {
    pub(crate) fn denied(reason: impl Into<Reason>) -> Self {
        Self {
            issuer: None,
            subject: None,
            result: Err(reason.into()),
            trace: None,
        }
    }

    /// The denial's class; `None` when allowed.
    pub fn class(&self) -> Option<ReasonClass> {
        self.result.as_ref().err().map(Reason::class)
    }
}

impl From<VerifyError> for Reason {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Token(e) => Reason::Token(e),
            VerifyError::Introspection(e) => Reason::Introspection(e),
        }
    }
}
