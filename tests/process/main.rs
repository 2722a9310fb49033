//! Integration tests of the real binary as a process: the CLI, signals,
//! crashes (SIGKILL), memory, and the deploy/ configs as shipped.

#[path = "../support/mod.rs"]
mod support;

mod certificates_core;
mod cli;
mod deploy;
mod ha;
mod kubernetes;
mod memory;
mod revocation;
mod signals;
