//! Revocations: identities whose new connects are denied and whose live
//! connections are closed, shared by every instance through a JetStream KV
//! bucket (`[revocation] bucket`).
//!
//! A revocation names one [`Selector`]. Its KV key is
//! `rev.<kind>.<base64url(sha256(selector JSON))>`: any value (slashes,
//! spaces, unicode, kilobytes) fits the KV key alphabet `[-/_=.a-zA-Z0-9]`
//! in a fixed 60-odd bytes, and the record itself carries the selector.

mod set;
mod store;

pub use set::{Health, RevocationSet, Watcher};
pub use store::{RevocationStore, StoreError, MARKER_TTL};

pub use crate::config::{OnPolicyChange, DEFAULT_REVOCATION_BUCKET as DEFAULT_BUCKET};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Every revocation key starts with this (other key spaces may share the bucket).
pub const KEY_PREFIX: &str = "rev.";

/// Longest selector value accepted (a subject, jti, client id).
pub const MAX_VALUE_BYTES: usize = 4096;

/// Longest reason accepted.
pub const MAX_REASON_BYTES: usize = 1024;

/// Which identities a revocation covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "SelectorFields", into = "SelectorFields")]
pub enum Selector {
    /// A token `sub`, from one issuer (by config name) or from any.
    Subject {
        /// The `sub` claim, exactly.
        subject: String,
        /// The issuer's config name; none matches every issuer.
        issuer: Option<String>,
    },
    /// A token `jti`.
    Jti(String),
    /// A token's `client_id`, `azp` or `cid`.
    ClientId(String),
    /// The NATS user nkey of one connection.
    UserNkey(String),
}

/// The JSON form of a selector: exactly the CLI's flags.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectorFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_nkey: Option<String>,
}

impl TryFrom<SelectorFields> for Selector {
    type Error = String;

    fn try_from(f: SelectorFields) -> Result<Self, String> {
        let selector = match (f.subject, f.jti, f.client_id, f.user_nkey) {
            (Some(subject), None, None, None) => Selector::Subject {
                subject,
                issuer: f.issuer,
            },
            (None, Some(j), None, None) if f.issuer.is_none() => Selector::Jti(j),
            (None, None, Some(c), None) if f.issuer.is_none() => Selector::ClientId(c),
            (None, None, None, Some(u)) if f.issuer.is_none() => Selector::UserNkey(u),
            _ => {
                return Err("a selector is exactly one of subject (+ issuer), jti, \
                            client_id, user_nkey"
                    .into())
            }
        };
        selector.validate()?;
        Ok(selector)
    }
}

impl From<Selector> for SelectorFields {
    fn from(s: Selector) -> Self {
        match s {
            Selector::Subject { subject, issuer } => SelectorFields {
                subject: Some(subject),
                issuer,
                ..Default::default()
            },
            Selector::Jti(j) => SelectorFields {
                jti: Some(j),
                ..Default::default()
            },
            Selector::ClientId(c) => SelectorFields {
                client_id: Some(c),
                ..Default::default()
            },
            Selector::UserNkey(u) => SelectorFields {
                user_nkey: Some(u),
                ..Default::default()
            },
        }
    }
}

impl Selector {
    /// Empty or oversized values, and user nkeys that are not user public keys.
    pub fn validate(&self) -> Result<(), String> {
        let check = |what: &str, v: &str| {
            if v.is_empty() {
                Err(format!("{what} is empty"))
            } else if v.len() > MAX_VALUE_BYTES {
                Err(format!("{what} is longer than {MAX_VALUE_BYTES} bytes"))
            } else {
                Ok(())
            }
        };
        match self {
            Selector::Subject { subject, issuer } => {
                check("subject", subject)?;
                if let Some(i) = issuer {
                    check("issuer", i)?;
                }
                Ok(())
            }
            Selector::Jti(j) => check("jti", j),
            Selector::ClientId(c) => check("client id", c),
            Selector::UserNkey(u) => {
                let user = nkeys::from_public_key(u).is_ok_and(|(prefix, _)| {
                    nkeys::KeyPairType::from(prefix) == nkeys::KeyPairType::User
                });
                if user {
                    Ok(())
                } else {
                    Err(format!("user nkey {u:?} is not a user public key (U…)"))
                }
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Selector::Subject { .. } => "subject",
            Selector::Jti(_) => "jti",
            Selector::ClientId(_) => "client_id",
            Selector::UserNkey(_) => "user_nkey",
        }
    }

    /// The KV key: `rev.<kind>.<base64url(sha256(JSON))>`.
    pub fn key(&self) -> String {
        let json = serde_json::to_vec(self).expect("a selector serializes");
        format!(
            "{KEY_PREFIX}{}.{}",
            self.kind(),
            URL_SAFE_NO_PAD.encode(Sha256::digest(&json))
        )
    }

    /// Does this selector cover `who`?
    pub fn covers(&self, who: &Presented<'_>) -> bool {
        match self {
            Selector::Subject { subject, issuer } => {
                subject == who.subject && issuer.as_deref().is_none_or(|i| i == who.issuer)
            }
            Selector::Jti(j) => who.jti == Some(j.as_str()),
            Selector::ClientId(c) => who.client_ids.iter().any(|id| id == c),
            Selector::UserNkey(u) => who.user_nkey == Some(u.as_str()),
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Subject {
                subject,
                issuer: Some(i),
            } => write!(f, "subject {subject:?} of issuer {i:?}"),
            Selector::Subject {
                subject,
                issuer: None,
            } => write!(f, "subject {subject:?} of any issuer"),
            Selector::Jti(j) => write!(f, "jti {j:?}"),
            Selector::ClientId(c) => write!(f, "client id {c:?}"),
            Selector::UserNkey(u) => write!(f, "user nkey {u}"),
        }
    }
}

/// One revocation as stored (JSON) in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Who is revoked.
    pub selector: Selector,
    /// The operator's words; the denied client's server log shows them.
    pub reason: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; none means until `unrevoke`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Who revoked, e.g. `alice@ops-host` or `service@host`.
    #[serde(default)]
    pub by: String,
}

impl Revocation {
    /// Still in force at `now` (unix seconds).
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }

    /// The denial text for a new connect: `revoked: <reason>`.
    pub fn denial(&self) -> String {
        format!("revoked: {}", self.reason)
    }
}

/// What a connection (or a live session) presents, for matching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presented<'a> {
    /// The issuer's config name.
    pub issuer: &'a str,
    /// The token's `sub`.
    pub subject: &'a str,
    /// The token's `jti`, if it has one.
    pub jti: Option<&'a str>,
    /// The token's `client_id`, `azp` and `cid`, those present.
    pub client_ids: Vec<&'a str>,
    /// The connection's NATS user key (none for `check`).
    pub user_nkey: Option<&'a str>,
}

/// Token claims that name the client, any of which a client-id revocation matches.
pub const CLIENT_ID_CLAIMS: [&str; 3] = ["client_id", "azp", "cid"];

impl<'a> Presented<'a> {
    /// From a verified token's claims (`sub`, `jti`, `client_id`, `azp`, `cid`).
    pub fn from_claims(
        issuer: &'a str,
        claims: &'a Map<String, Value>,
        user_nkey: Option<&'a str>,
    ) -> Self {
        let text = |k: &str| claims.get(k).and_then(Value::as_str);
        Self {
            issuer,
            subject: text("sub").unwrap_or_default(),
            jti: text("jti"),
            client_ids: CLIENT_ID_CLAIMS.iter().filter_map(|k| text(k)).collect(),
            user_nkey,
        }
    }
}

#[cfg(test)]
mod tests;
