//! The audit event: one per decision, logged and optionally published on
//! NATS. It carries no token and no secret.

use std::time::Duration;

use crate::callout::Reply;
use crate::reason::ALLOWED;

/// One decision, as logged and as published on the audit subject (the
/// field names are the JSON keys).
#[derive(serde::Serialize)]
pub(crate) struct AuditEvent<'a> {
    /// `allow` or `deny`.
    decision: &'static str,
    /// Why it was denied, as the client is told.
    reason: Option<String>,
    /// The stable class of the reason; `ok` when allowed.
    reason_class: &'static str,
    /// The configured issuer name, once the token got that far.
    issuer: Option<&'a str>,
    /// The token's `sub`.
    subject: Option<&'a str>,
    /// The client's address.
    client_host: &'a str,
    /// The CONNECT `name` the client chose (not trustworthy).
    client_name: &'a str,
    /// The server the client connected to.
    server_id: &'a str,
    /// The connection's id on that server (`cid`).
    client_id: u64,
    /// The connection's NATS user key (for `revoke --user-nkey`).
    user_nkey: &'a str,
    /// The rules that matched (empty when denied).
    rules: &'a [String],
    /// The account the user was placed in.
    account: Option<&'a str>,
    /// Unix seconds the issued user JWT expires.
    expires_at: Option<i64>,
    /// Time to decide, in microseconds.
    duration_us: u64,
    /// A failing source's denial, sent this much later (`[flood]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    held_ms: Option<u64>,
}

impl<'a> AuditEvent<'a> {
    /// The event for one answered request that took `took`.
    pub(crate) fn of(reply: &'a Reply, took: Duration) -> Self {
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

    /// The same event for a denial the tarpit held for `held`.
    pub(crate) fn held(self, held: Option<Duration>) -> Self {
        AuditEvent {
            held_ms: held.map(|h| h.as_millis().min(u128::from(u64::MAX)) as u64),
            ..self
        }
    }

    /// Logs it on the `audit` target.
    pub(crate) fn log(&self) {
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
