//! The one integration-test harness, shared by the three test binaries and
//! split by concern: processes and waits, nats-server, the IdPs, the
//! service (in process or as the real binary), a whole deployment (`Env`),
//! the deploy/ files run as shipped, Keycloak, and NATS clients. Everything
//! listens on 127.0.0.1, every wait is bounded, and every process started
//! here is stopped by PID when its guard drops.
#![allow(dead_code, unused_imports)]

pub(crate) mod client;
pub(crate) mod cluster;
pub(crate) mod deploy;
pub(crate) mod env;
pub(crate) mod idp;
pub(crate) mod keycloak;
pub(crate) mod nats;
pub(crate) mod process;
pub(crate) mod service;
pub(crate) mod tap;

pub(crate) use client::*;
pub(crate) use cluster::*;
pub(crate) use env::*;
pub(crate) use idp::*;
pub(crate) use nats::*;
pub(crate) use process::*;
pub(crate) use service::*;
pub(crate) use tap::*;

/// Now, in Unix seconds.
pub(crate) fn now() -> i64 {
    nats_oidc_callout::clock::now_unix()
}
