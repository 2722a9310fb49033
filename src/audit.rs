//! The audit event: one per decision, logged and optionally published on
//! NATS. It carries no token and no secret.

use std::time::Duration;

use crate::callout::Reply;
use crate::reason::ALLOWED;

/// One decision, as logged and as published on the audit subject.
#[derive(serde::Serialize)]
pub struct AuditEvent<'a> {
    pub decision: &'static str,
    pub reason: Option<String>,
    pub reason_class: &'static str,
    pub issuer: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub client_host: &'a str,
    pub client_name: &'a str,
    pub server_id: &'a str,
    pub client_id: u64,
    /// The connection's NATS user key (for `revoke --user-nkey`).
    pub user_nkey: &'a str,
    pub rules: &'a [String],
    pub account: Option<&'a str>,
    pub expires_at: Option<i64>,
    pub duration_us: u64,
    /// A failing source's denial, sent this much later (`[flood]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_ms: Option<u64>,
}

impl<'a> AuditEvent<'a> {
    pub fn of(reply: &'a Reply, took: Duration) -> Self {
        let o = &reply.outcome;
        let approval = o.result.as_ref().ok();
        AuditEvent {
            decision: if approval.is_some() { "allow" } else { "deny" },
            reason: o.result.as_ref().err().map(ToString::to_string),
            reason_class: o.class().map_or(ALLOWED, |c| c.as_str()),
            issuer: o.issuer.as_deref(),
            subject: o.subject.as_deref(),
            client_host: &reply.client.host,
            client_name: &reply.client.name,
            server_id: &reply.client.server_id,
            client_id: reply.client.cid,
            user_nkey: &reply.client.user_nkey,
            rules: approval.map_or(&[], |a| a.grant.rules.as_slice()),
            account: approval.map(|a| a.grant.account.as_str()),
            expires_at: approval.map(|a| a.expires_at),
            duration_us: took.as_micros().min(u64::MAX as u128) as u64,
            held_ms: None,
        }
    }

    pub fn log(&self) {
        tracing::info!(
            target: "audit",
            decision = self.decision,
            reason = self.reason,
            reason_class = self.reason_class,
            issuer = self.issuer,
            subject = self.subject,
            client_host = self.client_host,
            client_name = self.client_name,
            server_id = self.server_id,
            client_id = self.client_id,
            user_nkey = self.user_nkey,
            rules = %self.rules.join(","),
            account = self.account,
            expires_at = self.expires_at,
            duration_us = self.duration_us,
            held_ms = self.held_ms,
            "authorization decision"
        );
    }
}
