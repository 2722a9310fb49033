//! nats-oidc-callout: a NATS auth-callout service that turns OAuth/OIDC
//! bearer tokens into short-lived, policy-scoped NATS user JWTs, and the
//! client side that keeps presenting fresh tokens as those users expire.
//!
//! Features: `service` (default) is the service, its commands and the
//! binary; `client` alone (`--no-default-features --features client`) is
//! the [`client`] module without the service's dependencies.

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "service")]
pub mod audit;
#[cfg(feature = "service")]
pub mod cache;
#[cfg(feature = "service")]
pub mod callout;
#[cfg(feature = "service")]
pub mod certificate;
#[cfg(feature = "service")]
pub mod claims;
#[cfg(feature = "service")]
pub mod cli;
#[cfg(feature = "service")]
pub mod clock;
#[cfg(feature = "service")]
pub mod config;
#[cfg(feature = "service")]
pub mod connect;
#[cfg(feature = "service")]
pub mod decision;
#[cfg(feature = "service")]
pub mod doctor;
#[cfg(feature = "service")]
pub mod duration;
#[cfg(feature = "service")]
pub mod flood;
#[cfg(feature = "service")]
pub mod http;
#[cfg(feature = "service")]
pub mod https;
#[cfg(feature = "service")]
pub mod introspection;
#[cfg(feature = "service")]
pub mod issuer;
#[cfg(feature = "service")]
pub mod live;
#[cfg(feature = "service")]
pub mod location;
#[cfg(feature = "service")]
pub mod metrics;
#[cfg(feature = "service")]
pub mod policy;
#[cfg(feature = "service")]
pub mod protocol;
#[cfg(feature = "service")]
pub mod reason;
#[cfg(feature = "service")]
pub mod revocation;
#[cfg(feature = "service")]
pub mod secret;
#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "service")]
pub mod session;
#[cfg(feature = "service")]
pub mod signing;
#[cfg(feature = "service")]
pub mod subject;
#[cfg(feature = "service")]
pub mod system;
#[cfg(feature = "service")]
pub mod verifier;
