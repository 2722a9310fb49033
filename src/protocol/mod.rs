//! The NATS side of the wire: nats-io/jwt v2 claims, their Ed25519 (nkey)
//! signatures, and xkey sealing of callout messages.
//!
//! Nothing here knows about OIDC, policies or the service loop.

mod claims;
mod jwt;
mod xkey;

pub use claims::{
    creds, Account, AccountLimits, AuthorizationRequest, AuthorizationResponse, ClientInfo,
    ClientTls, ConnectOpts, ExternalAuthorization, JetStreamLimits, Operator, Permission,
    ResponsePermission, ServerId, User, AUTHORIZATION_REQUEST_AUDIENCE, AUTH_SUBJECT,
};
pub use jwt::{
    decode, decode_request, encode, jti, AccountSigner, ClaimsData, JwtError, NatsClaims, NatsType,
    NkeySigner, NKEY_HEADER,
};
pub use xkey::{open_request, seal_response, SealError, Sealer, ServerBox, XKEY_HEADER};

#[cfg(test)]
mod tests;
