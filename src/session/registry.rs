//! The live sessions this instance authorized: what it needs to close one
//! (server id, cid), to match it against a revocation (issuer, subject, jti,
//! client ids, user nkey), and to re-evaluate it (the kept claims, the
//! connection facts, the grant it got). Bounded: expired sessions are swept,
//! and past the cap the sessions expiring soonest make room.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::certificate::ClientCertificate;
use crate::issuer::VerifiedToken;
use crate::policy::{Connection, Grant};
use crate::revocation::Presented;

/// One connection this instance authorized.
#[derive(Debug, Clone)]
pub struct Session {
    /// The server holding the connection.
    pub server_id: String,
    /// The connection's id on that server.
    pub cid: u64,
    /// The NATS user key from the request (revocable by `--user-nkey`).
    pub user_nkey: String,
    /// The token it was granted for, cut to the claims the policy reads.
    pub token: Arc<VerifiedToken>,
    /// What it was granted; re-checked when the policy reloads.
    pub grant: Grant,
    /// Unix seconds its user JWT expires.
    pub expires_at: i64,
    /// Unix seconds it was authorized.
    pub started: i64,
    /// `nats`, `websocket`, `mqtt` or `leafnode`.
    pub conn_type: String,
    /// The client's address as the server saw it.
    pub host: String,
    /// Its verified client certificate, for rules and templates that read it.
    pub certificate: Option<Arc<ClientCertificate>>,
}

impl Session {
    /// For matching against revocations.
    pub fn presented(&self) -> Presented<'_> {
        Presented::from_claims(
            &self.token.issuer,
            &self.token.claims,
            Some(&self.user_nkey),
        )
    }

    /// The connection facts the policy's conditions read.
    pub fn connection(&self) -> Connection<'_> {
        Connection {
            conn_type: Some(&self.conn_type),
            host: Some(&self.host),
            certificate: self.certificate.as_deref(),
        }
    }

    /// What `sessions` lists.
    pub fn summary(&self) -> SessionSummary {
        SessionSummary {
            server_id: self.server_id.clone(),
            cid: self.cid,
            issuer: self.token.issuer.clone(),
            subject: self.token.subject.clone(),
            account: self.grant.account.clone(),
            rules: self.grant.rules.clone(),
            connected_since: self.started,
            expires_at: self.expires_at,
        }
    }
}

/// A session as `sessions` shows it (no claims, no keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SessionSummary {
    /// The server holding the connection.
    pub server_id: String,
    /// The connection's id on that server.
    pub cid: u64,
    /// Issuer config name.
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
    /// The NATS account it was placed in.
    pub account: String,
    /// Names of the policy rules that granted it.
    pub rules: Vec<String>,
    /// Unix seconds it was authorized.
    pub connected_since: i64,
    /// Unix seconds its user JWT expires.
    pub expires_at: i64,
}

type Key = (String, u64);

/// The sessions this instance authorized, by (server id, cid).
pub struct Registry {
    sessions: Mutex<HashMap<Key, Arc<Session>>>,
    cap: usize,
}

impl Registry {
    /// At most `cap` sessions; beyond, the soonest to expire are dropped.
    pub fn new(cap: usize) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            cap: cap.max(1),
        }
    }

    /// Records a session (replacing one with the same server and cid: the
    /// server reuses a cid only after that connection ended).
    pub fn insert(&self, session: Session, now: i64) {
        let mut map = self.sessions.lock().expect("session lock");
        if map.len() >= self.cap {
            map.retain(|_, s| s.expires_at > now);
        }
        while map.len() >= self.cap {
            let soonest = map
                .iter()
                .min_by_key(|(_, s)| s.expires_at)
                .map(|(k, _)| k.clone());
            match soonest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert((session.server_id.clone(), session.cid), Arc::new(session));
    }

    /// Forgets a connection the server reported closed.
    pub fn remove(&self, server_id: &str, cid: u64) -> Option<Arc<Session>> {
        self.sessions
            .lock()
            .expect("session lock")
            .remove(&(server_id.to_owned(), cid))
    }

    /// Drops sessions whose user JWT has expired (the server closed them).
    pub fn sweep(&self, now: i64) {
        self.sessions
            .lock()
            .expect("session lock")
            .retain(|_, s| s.expires_at > now);
    }

    /// Keeps only the sessions `live` says are still connected.
    pub fn retain(&self, live: impl Fn(&Session) -> bool) {
        self.sessions
            .lock()
            .expect("session lock")
            .retain(|_, s| live(s));
    }

    /// The live sessions, soonest-started first.
    pub fn snapshot(&self, now: i64) -> Vec<Arc<Session>> {
        let mut out: Vec<Arc<Session>> = self
            .sessions
            .lock()
            .expect("session lock")
            .values()
            .filter(|s| s.expires_at > now)
            .cloned()
            .collect();
        out.sort_by_key(|s| (s.started, s.cid));
        out
    }

    /// Sessions held, expired ones included until the next sweep.
    pub fn len(&self) -> usize {
        self.sessions.lock().expect("session lock").len()
    }

    /// No sessions held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Permissions;
    use std::time::Duration;

    fn session(server: &str, cid: u64, sub: &str, expires_at: i64) -> Session {
        let claims = serde_json::json!({"sub": sub, "jti": format!("j-{cid}")});
        Session {
            server_id: server.into(),
            cid,
            user_nkey: format!("U{cid}"),
            token: Arc::new(VerifiedToken::new(
                "corp".into(),
                "scope",
                claims.as_object().unwrap().clone(),
            )),
            grant: Grant {
                account: "APP".into(),
                rules: vec!["r".into()],
                permissions: Permissions::default(),
                ttl: Duration::from_secs(60),
            },
            expires_at,
            started: cid as i64,
            conn_type: "nats".into(),
            host: "127.0.0.1".into(),
            certificate: None,
        }
    }

    #[test]
    fn sessions_are_kept_by_server_and_cid_and_expire() {
        let r = Registry::new(10);
        r.insert(session("A", 1, "alice", 100), 0);
        r.insert(session("B", 1, "bob", 200), 0);
        r.insert(session("A", 1, "carol", 300), 0);
        assert_eq!(r.len(), 2, "one per (server, cid)");
        let a = r
            .snapshot(0)
            .into_iter()
            .find(|s| s.server_id == "A")
            .unwrap();
        assert_eq!(a.token.subject, "carol");
        r.sweep(250);
        assert_eq!(r.len(), 1);
        assert!(r.remove("A", 1).is_some());
        assert!(r.is_empty());
    }

    #[test]
    fn past_the_cap_the_soonest_expiring_make_room() {
        let r = Registry::new(3);
        for (cid, exp) in [(1, 50), (2, 10), (3, 40), (4, 30)] {
            r.insert(session("A", cid, "s", exp), 0);
        }
        let mut cids: Vec<u64> = r.snapshot(0).iter().map(|s| s.cid).collect();
        cids.sort();
        assert_eq!(cids, vec![1, 3, 4]);
        // Expired ones go first, before any live one is dropped.
        r.insert(session("A", 5, "s", 100), 45);
        let mut cids: Vec<u64> = r.snapshot(45).iter().map(|s| s.cid).collect();
        cids.sort();
        assert_eq!(cids, vec![1, 5]);
    }

    #[test]
    fn a_session_presents_its_identity_for_revocations() {
        let s = session("A", 7, "alice", 100);
        let who = s.presented();
        assert_eq!((who.issuer, who.subject), ("corp", "alice"));
        assert_eq!(who.jti, Some("j-7"));
        assert_eq!(who.user_nkey, Some("U7"));
    }
}
