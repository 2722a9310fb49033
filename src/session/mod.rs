//! Live sessions: the identity the service writes into the user JWTs it
//! issues, and how a server's CONNZ entry is read back into who it is.
//!
//! Found by experiment on nats-server 2.15.1 in config mode
//! (tests/revocation_core.rs,
//! `connz_shows_the_issued_name_and_nothing_else_of_the_user_jwt`): for a
//! callout-issued user, CONNZ with `"auth": true` shows
//! - `authorized_user` = the user JWT's `name`, byte for byte (slashes,
//!   spaces, unicode, 300+ bytes), and the `user` filter matches it exactly
//!   (the server replaces the CONNECT user/nkey/token with the name);
//! - `account` = the target account's name;
//! - **not** the JWT's `tags` (the server copies tags only for users who
//!   present a JWT themselves), not `jwt` (cleared), not the user nkey;
//!   `issuer_key` and `name_tag` are the target account's, not the user's.
//!
//! So the `name` is the only identity CONNZ carries: `<issuer name>/<subject>`.
//! The jti, client ids, user nkey, rules and expiry of a session are known
//! only to the instance that authorized it (from the request: `server_id.id`,
//! `client_info.id`, `user_nkey`).
//!
//! The name must never be empty: without it the server keeps what the client
//! sent at CONNECT (per the server source: its user name, or `[REDACTED]`
//! for a token).

pub mod enforcer;
pub mod registry;

pub use enforcer::{Cause, Closed};
pub(crate) use enforcer::{Enforcer, Target};
pub use registry::{Registry, Session, SessionSummary};

use crate::revocation::Presented;
use crate::system::ConnInfo;

/// Instances answer here with their sessions (`sessions` gathers them). In
/// the callout account, where only the service's own users connect.
pub const SESSIONS_SUBJECT: &str = "nats_oidc_callout.sessions";

/// Instances close the sessions a revocation (the request body) covers and
/// answer with a [`Closed`] count (`revoke` sums them).
pub const ENFORCE_SUBJECT: &str = "nats_oidc_callout.enforce";

/// The user JWT `name` for a subject of an issuer (config name).
pub fn user_name(issuer: &str, subject: &str) -> String {
    format!("{issuer}/{subject}")
}

/// Splits a user JWT `name` into (issuer, subject) for one of `issuers`
/// (config names); the longest matching issuer wins, so issuer names may
/// contain `/` too. The subject may contain anything.
pub fn split_user_name<'a>(name: &'a str, issuers: &[&str]) -> Option<(&'a str, &'a str)> {
    issuers
        .iter()
        .filter_map(|i| {
            let subject = name.strip_prefix(i)?.strip_prefix('/')?;
            Some((&name[..i.len()], subject))
        })
        .max_by_key(|(issuer, _)| issuer.len())
}

/// What is known about one live connection this service authorized.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionFacts {
    /// The server holding the connection (KICK goes there).
    pub server_id: String,
    /// Its configured name, for people.
    pub server_name: String,
    /// The connection's id on that server.
    pub cid: u64,
    /// Issuer config name.
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
    /// The NATS account it was placed in.
    pub account: String,
    /// Unix seconds the connection started.
    pub start: Option<i64>,
    /// The fields below are not in CONNZ; the authorizing instance fills them.
    pub user_nkey: Option<String>,
    /// The token's `jti`.
    pub jti: Option<String>,
    /// The token's `client_id`, `azp`, `cid` (those present).
    pub client_ids: Vec<String>,
    /// Names of the policy rules that granted it.
    pub rules: Option<Vec<String>>,
    /// Unix seconds the user JWT expires.
    pub expires: Option<i64>,
}

impl SessionFacts {
    /// Reads a CONNZ entry; None when it is not a user this service issued
    /// (its `authorized_user` is not `<one of issuers>/<subject>`).
    pub fn from_connz(conn: &ConnInfo, issuers: &[&str]) -> Option<Self> {
        let (issuer, subject) = split_user_name(&conn.authorized_user, issuers)?;
        Some(Self {
            server_id: conn.server_id.clone(),
            server_name: conn.server_name.clone(),
            cid: conn.cid,
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            account: conn.account.clone(),
            start: chrono::DateTime::parse_from_rfc3339(&conn.start)
                .ok()
                .map(|t| t.timestamp()),
            ..Self::default()
        })
    }

    /// For matching against revocations.
    pub fn presented(&self) -> Presented<'_> {
        Presented {
            issuer: &self.issuer,
            subject: &self.subject,
            jti: self.jti.as_deref(),
            client_ids: self.client_ids.iter().map(String::as_str).collect(),
            user_nkey: self.user_nkey.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn awkward() -> Vec<String> {
        vec![
            "alice".into(),
            "a/b/c".into(),
            "/leading and trailing/".into(),
            "with spaces and\ttabs".into(),
            "ünï/cödé 名前 🚀".into(),
            "x".repeat(300),
            "é".repeat(200),
            "".into(),
        ]
    }

    #[test]
    fn names_split_back_into_issuer_and_subject_whatever_the_subject() {
        let issuers = ["corp", "corp/eu", "github"];
        for subject in awkward() {
            for issuer in issuers {
                let name = user_name(issuer, &subject);
                assert_eq!(
                    split_user_name(&name, &issuers),
                    Some((issuer, subject.as_str())),
                    "{name:?}"
                );
            }
        }
    }

    #[test]
    fn names_of_unknown_issuers_and_plain_users_are_not_sessions() {
        let issuers = ["corp"];
        for name in [
            "auth",
            "other/alice",
            "corpx/alice",
            "corp",
            "",
            "[REDACTED]",
        ] {
            assert_eq!(split_user_name(name, &issuers), None, "{name:?}");
        }
    }

    #[test]
    fn connz_entries_become_session_facts() {
        let conn = ConnInfo {
            cid: 42,
            authorized_user: "corp/ü ber/x".into(),
            account: "APP".into(),
            start: "2026-11-30T10:00:00.123456789Z".into(),
            server_id: "NSRV".into(),
            server_name: "n1".into(),
            ..ConnInfo::default()
        };
        let facts = SessionFacts::from_connz(&conn, &["corp"]).unwrap();
        assert_eq!(facts.issuer, "corp");
        assert_eq!(facts.subject, "ü ber/x");
        assert_eq!((facts.server_id.as_str(), facts.cid), ("NSRV", 42));
        assert_eq!(facts.start, Some(1_796_032_800));
        assert_eq!(facts.jti, None);
        let who = facts.presented();
        assert_eq!((who.issuer, who.subject), ("corp", "ü ber/x"));
        assert!(SessionFacts::from_connz(&conn, &["github"]).is_none());
    }
}
