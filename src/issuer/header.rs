//! What is read of a token before its signature is checked: the header, and
//! from the payload only which issuer it claims and whether its time claims
//! have a shape a verifier can compare. Everything here is attacker input.

use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;

use super::TokenError;

/// The parts of a JWT read before verification.
pub(super) struct Unverified {
    pub alg: Algorithm,
    /// `alg` as written, for messages.
    pub alg_name: String,
    pub typ: Option<String>,
    pub kid: Option<String>,
    pub iss: String,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    jku: Option<Value>,
    x5u: Option<Value>,
    jwk: Option<Value>,
    crit: Option<Value>,
}

#[derive(Deserialize)]
struct Peek {
    iss: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iat: Option<Value>,
}

/// Splits and reads a compact JWT. Keys come only from the configured
/// issuer, so `jku`, `x5u`, `jwk` and any `crit` are refused outright.
pub(super) fn read(token: &str) -> Result<Unverified, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "expected a JWT with 3 dot-separated parts".into(),
        ));
    };
    let header: Header = decode_part(h, "header")?;
    if header.alg.eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgNone);
    }
    for (name, present) in [
        ("jku", header.jku.is_some()),
        ("x5u", header.x5u.is_some()),
        ("jwk", header.jwk.is_some()),
        ("crit", header.crit.is_some()),
    ] {
        if present {
            return Err(TokenError::ForbiddenHeader(name));
        }
    }
    let alg = Algorithm::from_str(&header.alg)
        .map_err(|_| TokenError::UnsupportedAlg(truncate(&header.alg)))?;
    let peek: Peek = decode_part(p, "payload")?;
    for (name, v) in [("exp", &peek.exp), ("nbf", &peek.nbf), ("iat", &peek.iat)] {
        if v.as_ref().is_some_and(|v| !v.is_number()) {
            return Err(TokenError::ClaimFormat(name.into()));
        }
    }
    let iss = match peek.iss {
        Some(Value::String(s)) => s,
        Some(_) => return Err(TokenError::ClaimFormat("iss".into())),
        None => return Err(TokenError::NoIssuer),
    };
    Ok(Unverified {
        alg,
        alg_name: header.alg,
        typ: header.typ,
        kid: header.kid,
        iss,
    })
}

fn decode_part<T: serde::de::DeserializeOwned>(b64: &str, part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| TokenError::Malformed(format!("{part} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::Malformed(format!("{part} is not a JSON object")))
}

/// Attacker-chosen strings are cut short before they reach a log line.
pub(super) fn truncate(s: &str) -> String {
    const MAX: usize = 128;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
