//! One authorization request in, one answer out: open and check the request
//! ([`request`]), decide ([`crate::decision`]), sign and seal the answer
//! (`answer`). Everything that goes wrong becomes a [`Reason`] here and is
//! turned into the text the server logs only at the wire.

mod answer;
pub mod request;

use std::sync::Arc;

use crate::certificate::ClientCertificate;
use crate::clock::now_unix;
use crate::config::{Config, TokenSource};
use crate::decision::{Decider, LoadError, Outcome, Reason, Request};
use crate::issuer::TokenError;
use crate::policy::Connection;
use crate::revocation::RevocationSet;
use crate::signing::{KeyError, Signers};

/// Why the callout cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The issuers or the policy cannot be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A signing or sealing key cannot be read.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// One answered request: the bytes to publish and the audit facts.
pub struct Reply {
    /// Empty means "deny without reason", used only when the request is too
    /// broken to address a response to.
    pub payload: Vec<u8>,
    /// The decision, for the audit event and the metrics.
    pub outcome: Outcome,
    /// Who asked, for the audit event and session tracking.
    pub client: ClientFacts,
}

/// Who asked, from the request (empty when it could not be read).
#[derive(Debug, Clone, Default)]
pub struct ClientFacts {
    /// The client's address as the server saw it.
    pub host: String,
    /// The client's connection name, if it set one.
    pub name: String,
    /// The id of the server the client connected to.
    pub server_id: String,
    /// The server's connection id (`cid`), for closing it later.
    pub cid: u64,
    /// The user key the server will give the connection (the JWT's `sub`).
    pub user_nkey: String,
    /// `nats`, `websocket`, `mqtt` or `leafnode`.
    pub conn_type: String,
    /// The verified client certificate, if the connection has one.
    pub certificate: Option<Arc<ClientCertificate>>,
}

/// A [`Decider`] plus the keys that sign and seal the server's answers.
pub struct Callout {
    decider: Decider,
    signers: Signers,
    sources: Vec<TokenSource>,
}

impl Callout {
    /// Builds the callout from config: signing keys, issuers, policy.
    pub fn from_config(config: &Config) -> Result<Self, SetupError> {
        Ok(Self {
            signers: Signers::from_config(config)?,
            decider: Decider::from_config(config)?,
            sources: config.token.sources.clone(),
        })
    }

    /// Checks every decision against `set` from now on.
    pub fn with_revocations(self, set: RevocationSet) -> Self {
        Self {
            decider: self.decider.with_revocations(set),
            ..self
        }
    }

    /// The decider, for its issuers and policy.
    pub fn decider(&self) -> &Decider {
        &self.decider
    }

    /// The public key answers are signed with (the server's `auth_callout.issuer`).
    pub(crate) fn signer_public_key(&self) -> String {
        crate::protocol::NkeySigner::public_key(&self.signers.callout)
    }

    /// The public xkey that answers are sealed with, when encryption is on.
    pub(crate) fn xkey_public_key(&self) -> Option<String> {
        self.signers
            .xkey
            .as_ref()
            .map(|x| x.public_key().to_owned())
    }

    /// Answers one raw request from `$SYS.REQ.USER.AUTH`.
    pub async fn respond(&self, payload: &[u8], server_xkey: Option<&str>) -> Reply {
        let opened = match request::open(payload, server_xkey, self.signers.xkey.as_ref()) {
            Ok(x) => x,
            Err(reason) => return unaddressable(reason),
        };
        let req = &opened.request.nats;
        let now = now_unix();
        // Only a certificate the server verified counts; one that cannot be
        // read denies the connection rather than passing as "none".
        let certificate = match ClientCertificate::from_client_tls(req.client_tls.as_ref()) {
            Ok(c) => c.map(Arc::new),
            Err(e) => {
                return self.answer(opened, Outcome::denied(Reason::Certificate(e)), None, now)
            }
        };
        let facts = Request {
            conn: Connection {
                conn_type: Some(request::connection_type(req)),
                host: Some(req.client_info.host.as_str()),
                certificate: certificate.as_deref(),
            },
            user_nkey: Some(req.user_nkey.as_str()),
        };
        // A stale request is still the server's: it gets a signed denial with
        // the reason, so clock skew shows in the server's log, not as "no
        // reason supplied". A denial is all a replay can get.
        let outcome = match (
            request::stale(&opened.request.data, now),
            request::token(req, &self.sources),
        ) {
            (Some(reason), _) => Outcome::denied(reason),
            (None, Some(t)) => self.decider.decide(t, &facts, now, false).await,
            // No bearer token: a verified client certificate is the identity.
            (None, None) if certificate.is_some() => {
                self.decider.decide_certificate(&facts, now, false)
            }
            (None, None) => Outcome::denied(TokenError::Missing),
        };
        self.answer(opened, outcome, certificate, now)
    }

    /// Denies a request without deciding (overload, deadline), still with a
    /// reason the server logs.
    pub fn refuse(&self, payload: &[u8], server_xkey: Option<&str>, reason: Reason) -> Reply {
        match request::open(payload, server_xkey, self.signers.xkey.as_ref()) {
            Ok(opened) => self.answer(opened, Outcome::denied(reason), None, now_unix()),
            Err(reason) => unaddressable(reason),
        }
    }

    fn answer(
        &self,
        opened: request::Opened,
        outcome: Outcome,
        certificate: Option<Arc<ClientCertificate>>,
        now: i64,
    ) -> Reply {
        let req = &opened.request.nats;
        let name = format!(
            "{}/{}",
            outcome.issuer.as_deref().unwrap_or_default(),
            outcome.subject.as_deref().unwrap_or_default()
        );
        let result = match &outcome.result {
            Ok(approval) => Ok((approval, name.as_str())),
            Err(reason) => Err(reason.to_string()),
        };
        let answered = answer::respond(&self.signers, req, opened.reply_key.as_ref(), result, now);
        let conn_type = request::connection_type(req).to_owned();
        // The request is done with: its facts move into the reply.
        let req = opened.request.nats;
        let client = ClientFacts {
            host: req.client_info.host,
            name: req.client_info.name,
            server_id: req.server_id.id,
            cid: req.client_info.id,
            user_nkey: req.user_nkey,
            conn_type,
            certificate,
        };
        match answered {
            Ok(payload) => Reply {
                payload,
                outcome,
                client,
            },
            Err(e) => Reply {
                payload: Vec::new(),
                outcome: Outcome::denied(Reason::Internal(e)),
                client,
            },
        }
    }
}

/// A denial for a request too broken to answer with a signed response.
fn unaddressable(reason: String) -> Reply {
    Reply {
        payload: Vec::new(),
        outcome: Outcome::denied(Reason::BadRequest(reason)),
        client: ClientFacts::default(),
    }
}

#[cfg(test)]
mod tests;
