//! RFC 8705 section 3: a token whose `cnf` claim carries `x5t#S256` was
//! issued for one client certificate and is accepted only over a connection
//! that presents that certificate, verified. A stolen bound token is useless
//! without the certificate's private key.

use data_encoding::BASE64URL_NOPAD;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::ClientCertificate;

/// The confirmation member RFC 8705 defines: base64url (no padding) of the
/// SHA-256 of the DER certificate.
pub const CNF_THUMBPRINT: &str = "x5t#S256";

/// Per `[[issuer]]`: `certificate_bound = "required" | "optional"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertificateBound {
    /// Bound tokens are checked; tokens without `cnf` are accepted too.
    #[default]
    Optional,
    /// Every token must be bound to the connection's certificate.
    Required,
}

/// Why a token's RFC 8705 binding does not hold for this connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The token is bound but the connection has no verified certificate.
    #[error(
        "token is bound to a client certificate (cnf.x5t#S256) but the connection has no verified client certificate"
    )]
    NoCertificate,
    /// The token is bound to a different certificate (stolen token?).
    #[error(
        "token is bound to another client certificate (cnf.x5t#S256 {token}, connection {connection})"
    )]
    Mismatch {
        /// The token's `x5t#S256`.
        token: String,
        /// The connection certificate's `x5t#S256`.
        connection: String,
    },
    /// The issuer demands bound tokens and this one is not.
    #[error("issuer requires certificate-bound tokens (cnf.x5t#S256); the token has no cnf claim")]
    Required,
    /// `cnf` is not an object holding a string `x5t#S256`.
    #[error("token's cnf claim is malformed: {0}")]
    Malformed(String),
    /// A `cnf` method (e.g. `jkt`, DPoP) that NATS cannot prove.
    #[error("token's cnf uses {0}, which cannot be proven over NATS; only x5t#S256 is supported")]
    UnsupportedMethod(String),
}

/// Checks a verified token's binding against the connection's verified
/// client certificate. Every failure is a denial: a `cnf` this service
/// cannot check (another confirmation method such as DPoP's `jkt`, also
/// next to `x5t#S256`, or a malformed value) is not ignored, since the
/// issuer meant the token to be unusable without that proof.
pub fn check_binding(
    claims: &Map<String, Value>,
    cert: Option<&ClientCertificate>,
    mode: CertificateBound,
) -> Result<(), BindingError> {
    let Some(cnf) = claims.get("cnf") else {
        return match mode {
            CertificateBound::Optional => Ok(()),
            CertificateBound::Required => Err(BindingError::Required),
        };
    };
    let cnf = cnf
        .as_object()
        .ok_or_else(|| BindingError::Malformed(format!("not an object but {}", kind(cnf))))?;
    let others: Vec<&str> = cnf
        .keys()
        .map(String::as_str)
        .filter(|k| *k != CNF_THUMBPRINT)
        .collect();
    if !others.is_empty() {
        return Err(BindingError::UnsupportedMethod(others.join(", ")));
    }
    let Some(thumbprint) = cnf.get(CNF_THUMBPRINT) else {
        return Err(BindingError::Malformed("an empty object".to_owned()));
    };
    let thumbprint = thumbprint.as_str().ok_or_else(|| {
        BindingError::Malformed(format!("x5t#S256 is {}, not a string", kind(thumbprint)))
    })?;
    let digest = BASE64URL_NOPAD
        .decode(thumbprint.as_bytes())
        .ok()
        .filter(|d| d.len() == 32)
        .ok_or_else(|| {
            BindingError::Malformed(
                "x5t#S256 is not a base64url (unpadded) SHA-256 digest".to_owned(),
            )
        })?;
    let cert = cert.ok_or(BindingError::NoCertificate)?;
    if digest.as_slice() == cert.digest() {
        Ok(())
    } else {
        Err(BindingError::Mismatch {
            token: thumbprint.to_owned(),
            connection: cert.x5t_s256.clone(),
        })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
