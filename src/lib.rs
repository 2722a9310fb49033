//! nats-oidc-callout: a NATS auth-callout service that turns OAuth/OIDC
//! bearer tokens into short-lived, policy-scoped NATS user JWTs.

pub mod config;
pub mod duration;
pub mod location;
pub mod policy;
pub mod protocol;
