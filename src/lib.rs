//! nats-oidc-callout: a NATS auth-callout service that turns OAuth/OIDC
//! bearer tokens into short-lived, policy-scoped NATS user JWTs.

pub mod authorize;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod duration;
pub mod http;
pub mod introspection;
pub mod issuer;
pub mod location;
pub mod metrics;
pub mod policy;
pub mod protocol;
pub mod service;
