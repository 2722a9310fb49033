//! xkey (curve25519 + XSalsa20-Poly1305) sealing of callout payloads.

use nkeys::XKey;

/// Header carrying the server's public xkey on a sealed request.
pub const XKEY_HEADER: &str = "Nats-Server-Xkey";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed request has no {XKEY_HEADER} header")]
    MissingServerKey,
    #[error("{XKEY_HEADER} header is not a curve public key")]
    BadServerKey,
    #[error("request is sealed but this service has no xkey configured")]
    NoServiceKey,
    #[error("request is not sealed but this service requires encryption (xkey is configured)")]
    NotSealed,
    #[error("sealed request cannot be opened with this service's xkey")]
    Open,
    #[error("response could not be sealed")]
    Seal,
}

/// Plain requests are JWTs, which always start with `eyJ`.
fn is_sealed(payload: &[u8]) -> bool {
    !payload.starts_with(b"eyJ")
}

/// Returns the request JWT and, when it was sealed, the server key to seal
/// the answer to. A service with an xkey refuses plain requests and vice
/// versa, so a misconfigured pair is found at the first connection.
pub fn open_request(
    payload: &[u8],
    server_xkey: Option<&str>,
    service_key: Option<&XKey>,
) -> Result<(Vec<u8>, Option<XKey>), SealError> {
    match (is_sealed(payload), service_key) {
        (false, None) => Ok((payload.to_vec(), None)),
        (false, Some(_)) => Err(SealError::NotSealed),
        (true, None) => Err(SealError::NoServiceKey),
        (true, Some(ours)) => {
            let header = server_xkey.ok_or(SealError::MissingServerKey)?;
            let server = XKey::from_public_key(header).map_err(|_| SealError::BadServerKey)?;
            let opened = ours.open(payload, &server).map_err(|_| SealError::Open)?;
            Ok((opened, Some(server)))
        }
    }
}

pub fn seal_response(token: &[u8], ours: &XKey, server: &XKey) -> Result<Vec<u8>, SealError> {
    ours.seal(token, server).map_err(|_| SealError::Seal)
}
