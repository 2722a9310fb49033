//! `doctor`: findings about a running nats-server from its monitoring
//! endpoint. Pure: monitoring JSON in, findings out; the CLI fetches.
//!
//! nats-server 2.15.1's `/varz` does not show the auth callout settings or
//! `no_auth_user`, so the callout is inferred from a connection subscribed to
//! `$SYS.REQ.USER.AUTH` (`/connz`), and anonymous access from a probe.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub severity: Severity,
    pub message: String,
}

fn finding(id: &'static str, severity: Severity, message: impl Into<String>) -> Finding {
    Finding {
        id,
        severity,
        message: message.into(),
    }
}

/// What the audit looks at.
pub struct Inputs<'a> {
    pub varz: &'a Value,
    /// `/connz?subs=1&auth=true`, if it could be fetched.
    pub connz: Option<&'a Value>,
    /// Whether a client with no credentials got in (None: not probed).
    pub anonymous_accepted: Option<bool>,
    /// The callout account this service's config names, with `--config`.
    pub expected_account: Option<&'a str>,
}

const AUTH_SUBJECT: &str = "$SYS.REQ.USER.AUTH";

pub fn audit(i: &Inputs) -> Vec<Finding> {
    let v = i.varz;
    let mut out = Vec::new();
    let host = v["host"].as_str().unwrap_or_default();
    let loopback = host.starts_with("127.") || host == "::1" || host == "localhost";

    if v["auth_required"].as_bool() != Some(true) {
        out.push(finding(
            "auth_not_required",
            Severity::Critical,
            "clients need no credentials: the server is open to anyone who can reach it; configure auth_callout",
        ));
    }
    if i.anonymous_accepted == Some(true) {
        out.push(finding(
            "anonymous_accepted",
            Severity::Critical,
            "a client with no credentials was let in (no auth, or no_auth_user): remove no_auth_user so every client goes through the callout",
        ));
    }
    if v["system_account"].as_str().unwrap_or_default().is_empty() {
        out.push(finding(
            "no_system_account",
            Severity::Critical,
            "no system account: nats-server crashes on the first auth callout without one; set system_account",
        ));
    }
    if v["tls_required"].as_bool() != Some(true) {
        let (severity, where_) = if loopback {
            (Severity::Info, "on loopback only")
        } else {
            (Severity::Warning, "reachable from the network")
        };
        out.push(finding(
            "client_port_without_tls",
            severity,
            format!("the client port ({host}) has no TLS, {where_}: bearer tokens travel in clear text; configure tls"),
        ));
    }
    match callout_connections(i.connz) {
        None => {}
        Some(accounts) if accounts.is_empty() => out.push(finding(
            "auth_callout_absent",
            if i.expected_account.is_some() { Severity::Critical } else { Severity::Warning },
            format!("no connection is subscribed to {AUTH_SUBJECT}: no callout service is serving this server"),
        )),
        Some(accounts) => {
            if let Some(expected) = i.expected_account {
                if !accounts.iter().any(|a| a == expected) {
                    out.push(finding(
                        "auth_callout_account_mismatch",
                        Severity::Critical,
                        format!("the callout service is connected in {accounts:?}, but this config names the account {expected:?}"),
                    ));
                }
            }
        }
    }
    if v["max_control_line"].as_i64() == Some(4096) {
        out.push(finding(
            "max_control_line_default",
            Severity::Warning,
            "max_control_line is the 4 KB default: large IdP tokens (Entra ID with groups) do not fit in CONNECT; raise it (e.g. 16KB)",
        ));
    }
    if let Some(t) = v["auth_timeout"].as_f64() {
        if t < 1.0 {
            out.push(finding(
                "auth_timeout_short",
                Severity::Warning,
                format!(
                    "authorization timeout is {t} s: the callout has less than a second to answer"
                ),
            ));
        }
    }
    out
}

/// Accounts of connections subscribed to the callout subject, or None
/// when `/connz` was not available.
fn callout_connections(connz: Option<&Value>) -> Option<Vec<String>> {
    let conns = connz?.get("connections")?.as_array()?;
    Some(
        conns
            .iter()
            .filter(|c| {
                c["subscriptions_list"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x.as_str() == Some(AUTH_SUBJECT)))
            })
            .map(|c| c["account"].as_str().unwrap_or_default().to_owned())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(f: &[Finding]) -> Vec<&str> {
        f.iter().map(|x| x.id).collect()
    }

    #[test]
    fn open_server_is_critical() {
        let varz = json!({"host": "0.0.0.0", "auth_required": false, "max_control_line": 4096, "auth_timeout": 2});
        let connz = json!({"connections": []});
        let f = audit(&Inputs {
            varz: &varz,
            connz: Some(&connz),
            anonymous_accepted: Some(true),
            expected_account: None,
        });
        assert_eq!(
            ids(&f),
            vec![
                "auth_not_required",
                "anonymous_accepted",
                "no_system_account",
                "client_port_without_tls",
                "auth_callout_absent",
                "max_control_line_default"
            ]
        );
        assert_eq!(f[3].severity, Severity::Warning);
        assert_eq!(f[4].severity, Severity::Warning);
    }

    #[test]
    fn well_configured_loopback_server_has_only_info() {
        let varz = json!({"host": "127.0.0.1", "auth_required": true, "system_account": "SYS", "max_control_line": 16384, "auth_timeout": 2});
        let connz = json!({"connections": [{"account": "AUTH", "subscriptions_list": ["$SYS.REQ.USER.AUTH"]}]});
        let f = audit(&Inputs {
            varz: &varz,
            connz: Some(&connz),
            anonymous_accepted: Some(false),
            expected_account: Some("AUTH"),
        });
        assert_eq!(ids(&f), vec!["client_port_without_tls"]);
        assert_eq!(f[0].severity, Severity::Info);
        let f = audit(&Inputs {
            varz: &varz,
            connz: Some(&connz),
            anonymous_accepted: Some(false),
            expected_account: Some("CALLOUT"),
        });
        assert!(ids(&f).contains(&"auth_callout_account_mismatch"));
    }
}
