//! Integration tests against real outside peers: the OpenID-certified
//! oidc-provider, Keycloak, clients in other languages, browsers, MQTT
//! devices and Prometheus.

#[path = "../support/mod.rs"]
mod support;

mod browser;
mod clients;
mod introspection;
mod keycloak;
mod mqtt;
mod oidc_provider;
mod opaque_tokens;
mod prometheus;
