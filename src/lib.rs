//! nats-oidc-callout: a NATS auth-callout service that turns OAuth/OIDC
//! bearer tokens into short-lived, policy-scoped NATS user JWTs.

pub mod audit;
pub mod callout;
pub mod claims;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connect;
pub mod decision;
pub mod doctor;
pub mod duration;
pub mod flood;
pub mod http;
pub mod issuer;
pub mod location;
pub mod metrics;
pub mod policy;
pub mod protocol;
pub mod reason;
pub mod secret;
pub mod service;
pub mod signing;
pub mod subject;
