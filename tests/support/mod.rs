//! The one integration-test harness, shared by the three test binaries and
//! split by concern: processes and waits, nats-server, the IdPs, the
//! service (in process or as the real binary), a whole deployment (`Env`),
//! and NATS clients. Everything listens on 127.0.0.1, every wait is bounded,
//! and every process started here is stopped by PID when its guard drops.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod cluster;
pub mod env;
pub mod idp;
pub mod nats;
pub mod process;
pub mod service;
pub mod tap;

pub use client::*;
pub use cluster::*;
pub use env::*;
pub use idp::*;
pub use nats::*;
pub use process::*;
pub use service::*;
pub use tap::*;

/// Now, in Unix seconds.
pub fn now() -> i64 {
    nats_oidc_callout::clock::now_unix()
}
