//! Integration tests with the service in this process (`support::Service`):
//! real nats-server processes over TCP, real clients, the in-process and the
//! real IdP. One binary, so the harness compiles once.

#[path = "../support/mod.rs"]
mod support;

mod adversarial;
mod callout;
mod certificates;
mod doctor;
mod faults;
mod flood;
mod harness_smoke;
mod idp_keys;
mod operations;
mod operator;
mod policies;
mod policy_props;
mod revocation;
mod revocation_outage;
mod tenants;
