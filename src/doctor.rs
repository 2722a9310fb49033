//! `doctor`: findings about a running nats-server from its monitoring
//! endpoint. Pure: monitoring JSON in, findings out; the CLI fetches.
//!
//! nats-server 2.15.1's `/varz` does not show the auth callout settings or
//! `no_auth_user`, so the callout is inferred from a connection subscribed to
//! `$SYS.REQ.USER.AUTH` (`/connz`), and anonymous access from a probe.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

// The service refuses requests this long past their `exp`, so a clock
// ahead of the server's by more than that plus the server's auth timeout
// refuses every connection.
use crate::callout::request::REQUEST_EXPIRY_SLACK_SECS;
use crate::protocol::AUTH_SUBJECT;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Finding {
    pub(crate) id: &'static str,
    pub(crate) severity: Severity,
    pub(crate) message: String,
}

fn finding(id: &'static str, severity: Severity, message: impl Into<String>) -> Finding {
    Finding {
        id,
        severity,
        message: message.into(),
    }
}

/// What the audit looks at.
pub(crate) struct Inputs<'a> {
    pub(crate) varz: &'a Value,
    /// `/connz?subs=detail&auth=true`, if it could be fetched.
    pub(crate) connz: Option<&'a Value>,
    /// Whether a client with no credentials got in (None: not probed).
    pub(crate) anonymous_accepted: Option<bool>,
    /// The callout account this service's config names, with `--config`.
    pub(crate) expected_account: Option<&'a str>,
    /// The service's `request_timeout`, with `--config`.
    pub(crate) request_timeout: Option<Duration>,
    /// This host's clock (Unix ms) when `/varz` was read.
    pub(crate) local_now_ms: Option<i64>,
    /// With `--config`: why this service needs verified client certificates
    /// (an issuer requires bound tokens, or the policy has certificate
    /// rules), if it does.
    pub(crate) needs_client_certificates: Option<String>,
    /// With `--config`: whether `[system]` is configured (revocation and
    /// live sessions on).
    pub(crate) revocation_configured: Option<bool>,
}

pub(crate) fn audit(i: &Inputs) -> Vec<Finding> {
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
    if let Some(why) = &i.needs_client_certificates {
        if v["tls_verify"].as_bool() != Some(true) {
            out.push(finding(
                "client_certificates_not_verified",
                Severity::Warning,
                format!("{why}, but the server does not verify client certificates: the callout never sees one; set tls {{ verify: true }} (or verify_and_map)"),
            ));
        }
    }
    if i.revocation_configured == Some(false) {
        out.push(finding(
            "revocation_off",
            Severity::Info,
            "the config has no [system] user: revocations and live-session closing are off; a connection is judged once, at connect".to_owned(),
        ));
    }
    match callout_connections(i.connz) {
        None => {}
        Some(responders) if responders.is_empty() => out.push(finding(
            "auth_callout_absent",
            if i.expected_account.is_some() { Severity::Critical } else { Severity::Warning },
            format!("no connection is subscribed to {AUTH_SUBJECT}: no callout service is serving this server"),
        )),
        Some(responders) => {
            if let Some(expected) = i.expected_account {
                if !responders.iter().any(|r| r.account == expected) {
                    let accounts: Vec<&str> = responders.iter().map(|r| r.account.as_str()).collect();
                    out.push(finding(
                        "auth_callout_account_mismatch",
                        Severity::Critical,
                        format!("the callout service is connected in {accounts:?}, but this config names the account {expected:?}"),
                    ));
                }
            }
            for r in responders.iter().filter(|r| r.in_queue_group == Some(false)) {
                out.push(finding(
                    "auth_callout_without_queue_group",
                    Severity::Warning,
                    format!("connection {} ({:?}, account {}) answers {AUTH_SUBJECT} outside any queue group: every request also goes to it and the first answer wins; run every instance in one queue_group and stop stray subscribers", r.cid, r.name, r.account),
                ));
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
    let auth_timeout = v["auth_timeout"].as_f64();
    if let Some(t) = auth_timeout {
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
    if let (Some(ours), Some(t)) = (i.request_timeout, auth_timeout) {
        if ours.as_secs_f64() >= t {
            out.push(finding(
                "request_timeout_not_below_auth_timeout",
                Severity::Warning,
                format!(
                    "the service's request_timeout ({} ms) is not below the server's authorization timeout ({t} s): a slow decision is dropped by the server instead of denied with a reason; lower request_timeout",
                    ours.as_millis()
                ),
            ));
        }
    }
    if let Some(skew) = clock_skew_secs(v, i.local_now_ms) {
        let limit = auth_timeout.unwrap_or(2.0) + REQUEST_EXPIRY_SLACK_SECS as f64;
        let (ahead, behind) = if skew > 0.0 {
            ("this host", "the server")
        } else {
            ("the server", "this host")
        };
        if skew > limit {
            out.push(finding(
                "clock_skew",
                Severity::Critical,
                format!("this host's clock is {skew:.1} s ahead of the server's: a service here refuses every request as expired; synchronise the clocks (NTP)"),
            ));
        } else if skew.abs() > 2.0 {
            out.push(finding(
                "clock_skew",
                Severity::Warning,
                format!("{ahead}'s clock is {:.1} s ahead of {behind}'s: token times (exp, nbf) and request expiry are judged on different clocks; synchronise them (NTP)", skew.abs()),
            ));
        }
    }
    out
}

/// Seconds this host's clock is ahead of the server's (`/varz` `now`).
fn clock_skew_secs(varz: &Value, local_now_ms: Option<i64>) -> Option<f64> {
    let server = chrono::DateTime::parse_from_rfc3339(varz["now"].as_str()?).ok()?;
    Some((local_now_ms? - server.timestamp_millis()) as f64 / 1000.0)
}

/// A connection subscribed to the callout subject.
struct Responder {
    cid: i64,
    name: String,
    account: String,
    /// Whether it subscribed in a queue group; None when `/connz` was read
    /// without `subs=detail`, which does not say.
    in_queue_group: Option<bool>,
}

/// Connections subscribed to the callout subject, or None when `/connz`
/// was not available. Reads `subs=detail` (with queue groups) and plain
/// `subs=1` lists alike.
fn callout_connections(connz: Option<&Value>) -> Option<Vec<Responder>> {
    let conns = connz?.get("connections")?.as_array()?;
    let mut out = Vec::new();
    for c in conns {
        let plain = c["subscriptions_list"].as_array().into_iter().flatten();
        let detail = c["subscriptions_list_detail"]
            .as_array()
            .into_iter()
            .flatten();
        let subs = plain
            .filter(|x| x.as_str() == Some(AUTH_SUBJECT))
            .map(|_| None)
            .chain(
                detail
                    .filter(|x| x["subject"].as_str() == Some(AUTH_SUBJECT))
                    .map(|x| Some(x["qgroup"].as_str().is_some_and(|q| !q.is_empty()))),
            );
        for in_queue_group in subs {
            out.push(Responder {
                cid: c["cid"].as_i64().unwrap_or_default(),
                name: c["name"].as_str().unwrap_or_default().to_owned(),
                account: c["account"].as_str().unwrap_or_default().to_owned(),
                in_queue_group,
            });
        }
    }
    Some(out)
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
            request_timeout: None,
            local_now_ms: None,
            needs_client_certificates: None,
            revocation_configured: None,
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
        let varz = json!({"host": "127.0.0.1", "auth_required": true, "system_account": "SYS", "max_control_line": 16384, "auth_timeout": 2, "now": "2026-11-23T10:34:30.123456789Z"});
        let connz = json!({"connections": [{"account": "AUTH", "subscriptions_list": ["$SYS.REQ.USER.AUTH"]}]});
        let f = audit(&Inputs {
            varz: &varz,
            connz: Some(&connz),
            anonymous_accepted: Some(false),
            expected_account: Some("AUTH"),
            request_timeout: Some(Duration::from_millis(1500)),
            local_now_ms: Some(1_795_430_070_500),
            needs_client_certificates: None,
            revocation_configured: None,
        });
        assert_eq!(ids(&f), vec!["client_port_without_tls"]);
        assert_eq!(f[0].severity, Severity::Info);
        let f = audit(&Inputs {
            varz: &varz,
            connz: Some(&connz),
            anonymous_accepted: Some(false),
            expected_account: Some("CALLOUT"),
            request_timeout: None,
            local_now_ms: None,
            needs_client_certificates: None,
            revocation_configured: None,
        });
        assert!(ids(&f).contains(&"auth_callout_account_mismatch"));
    }

    #[test]
    fn clock_skew_and_a_late_request_timeout_are_reported() {
        let server_now = "2026-11-23T11:34:30.000+01:00";
        let server_ms = 1_795_430_070_000;
        let varz = json!({"host": "127.0.0.1", "auth_required": true, "system_account": "SYS",
            "max_control_line": 16384, "auth_timeout": 2, "now": server_now, "tls_required": true});
        let check = |skew_ms: i64, timeout_ms: u64| {
            audit(&Inputs {
                varz: &varz,
                connz: None,
                anonymous_accepted: None,
                expected_account: None,
                request_timeout: Some(Duration::from_millis(timeout_ms)),
                local_now_ms: Some(server_ms + skew_ms),
                needs_client_certificates: None,
                revocation_configured: None,
            })
        };
        assert!(check(500, 1500).is_empty());
        let f = check(-5_000, 1500);
        assert_eq!(ids(&f), vec!["clock_skew"]);
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(
            f[0].message
                .starts_with("the server's clock is 5.0 s ahead"),
            "{}",
            f[0].message
        );
        let f = check(15_000, 1500);
        assert_eq!(f[0].severity, Severity::Critical);
        assert!(f[0].message.contains("15.0 s ahead"), "{}", f[0].message);
        assert_eq!(
            ids(&check(0, 2000)),
            vec!["request_timeout_not_below_auth_timeout"]
        );
    }

    #[test]
    fn a_responder_outside_a_queue_group_is_a_warning() {
        let varz = json!({"host": "127.0.0.1", "auth_required": true, "system_account": "SYS",
            "max_control_line": 16384, "auth_timeout": 2, "tls_required": true});
        let sub = |qgroup: Option<&str>| {
            let mut d = json!({"subject": AUTH_SUBJECT, "sid": "1"});
            if let Some(q) = qgroup {
                d["qgroup"] = q.into();
            }
            d
        };
        let connz = json!({"connections": [
            {"cid": 7, "name": "nats-oidc-callout", "account": "AUTH", "subscriptions_list_detail": [sub(Some("nats-oidc-callout"))]},
            {"cid": 9, "account": "AUTH", "subscriptions_list_detail": [sub(None), {"subject": "other"}]},
            {"cid": 11, "account": "AUTH", "subscriptions_list": [AUTH_SUBJECT]},
        ]});
        let f = audit(&Inputs {
            varz: &varz,
            connz: Some(&connz),
            anonymous_accepted: Some(false),
            expected_account: Some("AUTH"),
            request_timeout: None,
            local_now_ms: None,
            needs_client_certificates: None,
            revocation_configured: None,
        });
        assert_eq!(ids(&f), vec!["auth_callout_without_queue_group"]);
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(
            f[0].message.starts_with("connection 9 "),
            "{}",
            f[0].message
        );
    }
}

#[cfg(test)]
mod certificate_and_revocation_findings {
    use super::*;
    use serde_json::json;

    fn findings(varz: Value, needs: Option<&str>, revocation: Option<bool>) -> Vec<&'static str> {
        audit(&Inputs {
            varz: &varz,
            connz: None,
            anonymous_accepted: None,
            expected_account: None,
            request_timeout: None,
            local_now_ms: None,
            needs_client_certificates: needs.map(str::to_owned),
            revocation_configured: revocation,
        })
        .iter()
        .map(|f| f.id)
        .collect()
    }

    #[test]
    fn certificate_rules_without_verification_and_revocation_off_are_reported() {
        let base = json!({"host": "127.0.0.1", "auth_required": true, "tls_required": true,
            "max_control_line": 16384, "auth_timeout": 2});
        let mut verified = base.clone();
        verified["tls_verify"] = json!(true);
        let needs = Some("the policy has certificate rules");
        assert!(findings(base.clone(), needs, None).contains(&"client_certificates_not_verified"));
        assert!(
            !findings(verified.clone(), needs, None).contains(&"client_certificates_not_verified")
        );
        assert!(!findings(base.clone(), None, None).contains(&"client_certificates_not_verified"));
        assert!(findings(verified.clone(), None, Some(false)).contains(&"revocation_off"));
        assert!(!findings(verified.clone(), None, Some(true)).contains(&"revocation_off"));
        assert!(!findings(verified, None, None).contains(&"revocation_off"));
    }
}
