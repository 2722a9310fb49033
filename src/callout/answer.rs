//! The answer side of the callout wire: the user JWT for an approval, the
//! signed response around it (or around a denial), sealed when the request
//! was.

use crate::decision::Approval;
use crate::protocol::{
    encode, seal_response, AuthorizationRequest, AuthorizationResponse, ClaimsData, NatsClaims,
    ServerBox, User,
};
use crate::signing::Signers;

/// The response payload for `req`: the signed JWT, sealed with `reply_key`
/// when the request came sealed.
pub(crate) fn respond(
    signers: &Signers,
    req: &AuthorizationRequest,
    reply_key: Option<&ServerBox>,
    result: Result<(&Approval, &str), String>,
    now: i64,
) -> Result<Vec<u8>, String> {
    let response = match result {
        Ok((approval, name)) => {
            AuthorizationResponse::allow(user_jwt(signers, req, approval, name, now)?)
        }
        Err(reason) => AuthorizationResponse::deny(reason),
    };
    let mut claims = NatsClaims {
        data: ClaimsData {
            aud: req.server_id.id.clone(),
            iat: now,
            sub: req.user_nkey.clone(),
            ..ClaimsData::default()
        },
        nats: response,
    };
    let jwt = encode(&mut claims, &signers.callout).map_err(|e| e.to_string())?;
    Ok(match reply_key {
        Some(server) => seal_response(jwt.as_bytes(), server),
        None => jwt.into_bytes(),
    })
}

/// The user JWT for an approved connection: the request's user key, the
/// grant's account as audience, its permissions, its expiry.
fn user_jwt(
    signers: &Signers,
    req: &AuthorizationRequest,
    approval: &Approval,
    name: &str,
    now: i64,
) -> Result<String, String> {
    let p = &approval.grant.permissions;
    let key = signers.for_user(&approval.grant.account)?;
    let mut claims = NatsClaims {
        data: ClaimsData {
            aud: approval.grant.account.clone(),
            exp: approval.expires_at,
            iat: now,
            name: name.to_owned(),
            sub: req.user_nkey.clone(),
            ..ClaimsData::default()
        },
        nats: User::new(p.publish.clone(), p.subscribe.clone(), p.resp),
    };
    claims.nats.issuer_account = key.issuer_account.map(str::to_owned);
    encode(&mut claims, key.signer).map_err(|e| e.to_string())
}
