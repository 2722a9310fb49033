//! Token claims shared by the load examples (`bench`, `cache_memory`).

use serde_json::{json, Value};

/// The claims of the i-th distinct token. `minimal` carries only what the
/// bench policy reads; `rich` is shaped like a Keycloak access token (about
/// 900 bytes of JSON), which is what a cache entry holds in practice.
pub(crate) fn claims(shape: Shape, iss: &str, i: usize, now: u64) -> Value {
    match shape {
        Shape::Minimal => json!({"iss": iss, "aud": "nats", "sub": format!("client-{i}"),
            "scope": "nats", "iat": now, "exp": now + 600}),
        Shape::Rich => json!({
            "exp": now + 600, "iat": now, "auth_time": now,
            "jti": format!("5b1f3c2e-8d4a-4f7b-9c1e-{i:012}"),
            "iss": iss, "aud": ["nats", "account"],
            "sub": format!("f0a1b2c3-d4e5-4f60-8a7b-{i:012}"),
            "typ": "Bearer", "azp": "nats-client",
            "session_state": format!("0c9d8e7f-6a5b-4c3d-2e1f-{i:012}"),
            "acr": "1", "allowed-origins": ["https://app.example.com"],
            "realm_access": {"roles": ["offline_access", "uma_authorization", "default-roles-corp"]},
            "resource_access": {"account": {"roles": ["manage-account", "manage-account-links", "view-profile"]}},
            "scope": "openid nats profile email",
            "sid": format!("0c9d8e7f-6a5b-4c3d-2e1f-{i:012}"),
            "email_verified": true, "name": format!("Client Number {i}"),
            "preferred_username": format!("client-{i}"), "given_name": "Client",
            "family_name": format!("Number {i}"), "email": format!("client-{i}@example.com"),
            "groups": [format!("/corp/team-{}", i % 50)],
        }),
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Shape {
    Minimal,
    Rich,
}

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "minimal" => Ok(Shape::Minimal),
            "rich" => Ok(Shape::Rich),
            _ => Err(format!("unknown claims shape {s:?} (minimal, rich)")),
        }
    }
}

/// VmRSS and VmHWM of a process (`self` or a pid), in KiB.
pub(crate) fn memory_kib(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
