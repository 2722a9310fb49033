//! The request side of the callout wire: open (unseal), decode and check an
//! authorization request before anything is decided on it.

use crate::config::TokenSource;
use crate::decision::Reason;
use crate::protocol::{
    decode_request, open_request, AuthorizationRequest, ClaimsData, NatsClaims, Sealer, ServerBox,
    AUTHORIZATION_REQUEST_AUDIENCE,
};

/// Requests are ~1 KB plus the client's token (and certificates with mTLS).
pub(crate) const MAX_REQUEST_BYTES: usize = 512 * 1024;

/// A request's `exp` is the server's own callout deadline (now + its auth
/// timeout), so a later answer is useless to the server and a request that
/// old is a replay. The slack absorbs clock skew between the two hosts.
pub(crate) const REQUEST_EXPIRY_SLACK_SECS: i64 = 10;

/// A request that can be answered: its claims, and the box to seal the
/// answer with when it came sealed. Public for the bench's ceiling
/// responder, which opens requests exactly as the service does.
pub struct Opened {
    /// The decoded, checked request.
    pub request: NatsClaims<AuthorizationRequest>,
    /// The box to seal the answer with, when the request came sealed.
    pub reply_key: Option<ServerBox>,
}

/// Opens, decodes and checks a request. The error is why it cannot be
/// answered with a signed response (it then gets an empty denial).
pub fn open(
    payload: &[u8],
    server_xkey: Option<&str>,
    xkey: Option<&Sealer>,
) -> Result<Opened, String> {
    if payload.len() > MAX_REQUEST_BYTES {
        return Err(format!("request larger than {MAX_REQUEST_BYTES} bytes"));
    }
    let (jwt, reply_key) =
        open_request(payload, server_xkey, xkey).map_err(|e| format!("unreadable request: {e}"))?;
    let request = std::str::from_utf8(&jwt)
        .map_err(|_| "request is not UTF-8".to_owned())
        .and_then(|t| decode_request(t).map_err(|e| e.to_string()))
        .map_err(|e| format!("invalid authorization request: {e}"))?;
    if request.data.aud != AUTHORIZATION_REQUEST_AUDIENCE {
        return Err(format!(
            "request aud is {:?}, expected {AUTHORIZATION_REQUEST_AUDIENCE:?}",
            request.data.aud
        ));
    }
    let req = &request.nats;
    if request.data.iss != req.server_id.id {
        return Err("request issuer is not the sending server".into());
    }
    if reply_key.is_some() && req.server_id.xkey != server_xkey.unwrap_or_default() {
        return Err("request xkey header does not match its server_id.xkey".into());
    }
    if !is_user_key(&req.user_nkey) {
        return Err("request user_nkey is not a user public key".into());
    }
    Ok(Opened { request, reply_key })
}

/// Why a request is too old to decide on, if it is: its `exp` is the
/// server's own deadline, so past it (and the slack) it is a replay or the
/// clocks disagree.
pub(crate) fn stale(claims: &ClaimsData, now: i64) -> Option<Reason> {
    if claims.exp <= 0 {
        return Some(Reason::RequestWithoutExpiry);
    }
    let late_secs = now.saturating_sub(claims.exp);
    (late_secs > REQUEST_EXPIRY_SLACK_SECS).then_some(Reason::StaleRequest { late_secs })
}

/// The bearer token: the first configured CONNECT field that is not empty.
pub(crate) fn token<'a>(req: &'a AuthorizationRequest, sources: &[TokenSource]) -> Option<&'a str> {
    sources
        .iter()
        .map(|s| match s {
            TokenSource::AuthToken => req.connect_opts.auth_token.as_str(),
            TokenSource::Password => req.connect_opts.pass.as_str(),
        })
        .find(|t| !t.is_empty())
}

/// `nats`, `websocket`, `mqtt`, or `leafnode` (whose `type` is empty).
pub(crate) fn connection_type(req: &AuthorizationRequest) -> &str {
    if req.client_info.kind.eq_ignore_ascii_case("leafnode") {
        "leafnode"
    } else {
        req.client_info.conn_type.as_str()
    }
}

/// Prefix and checksum, as nats-io/nkeys' `IsValidPublicUserKey` checks.
/// Not `KeyPair::from_public_key`, which also decompresses the curve point
/// (a field inversion, ~3% of a decision) for a key only the server uses.
pub(crate) fn is_user_key(key: &str) -> bool {
    nkeys::from_public_key(key)
        .is_ok_and(|(prefix, _)| nkeys::KeyPairType::from(prefix) == nkeys::KeyPairType::User)
}
