//! NATS connections built from a config table's credentials (`[nats]`,
//! `[system]`): one place that turns `user`/`password_file`/`token`/
//! `nkey_seed_file`/`creds_file`/`tls` into client options. Paths in the
//! config are already resolved.

use std::path::Path;
use std::time::Duration;

use crate::config::{NatsConfig, SystemConfig, TlsConfig};
use crate::secret::read_secret;

/// The credential fields `[nats]` and `[system]` share.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Credentials<'a> {
    pub(crate) user: Option<&'a str>,
    pub(crate) password: Option<&'a str>,
    pub(crate) password_file: Option<&'a Path>,
    pub(crate) token: Option<&'a str>,
    pub(crate) nkey_seed_file: Option<&'a Path>,
    pub(crate) creds_file: Option<&'a Path>,
    pub(crate) tls: Option<&'a TlsConfig>,
}

impl<'a> Credentials<'a> {
    pub(crate) fn of_nats(n: &'a NatsConfig) -> Self {
        Self {
            user: n.user.as_deref(),
            password: n.password.as_deref(),
            password_file: n.password_file.as_deref(),
            token: n.token.as_deref(),
            nkey_seed_file: n.nkey_seed_file.as_deref(),
            creds_file: n.creds_file.as_deref(),
            tls: n.tls.as_ref(),
        }
    }

    pub(crate) fn of_system(s: &'a SystemConfig) -> Self {
        Self {
            user: s.user.as_deref(),
            password: s.password.as_deref(),
            password_file: s.password_file.as_deref(),
            token: s.token.as_deref(),
            nkey_seed_file: s.nkey_seed_file.as_deref(),
            creds_file: s.creds_file.as_deref(),
            tls: s.tls.as_ref(),
        }
    }
}

/// How a connection behaves when the servers are away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// A command: fail fast at connect, give up after a few reconnects.
    Command,
    /// The service: keep trying forever, also at start.
    Service,
}

/// The servers could not be reached or refused us; says which connection.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to NATS at {urls} ({what}): {reason}")]
pub struct ConnectError {
    /// The server URLs tried, comma-separated.
    pub urls: String,
    /// Which config table the connection came from (`[nats]`, `[system]`).
    pub what: &'static str,
    /// The secret file, URL or client library error.
    pub reason: String,
}

/// Connects with `creds` to `urls`; `what` names the connection in errors
/// ("[nats]", "[system]"), `inbox_prefix` narrows the reply subjects the
/// user must be allowed to subscribe to.
pub(crate) async fn connect(
    urls: &[String],
    creds: Credentials<'_>,
    what: &'static str,
    inbox_prefix: Option<&str>,
    persistence: Persistence,
) -> Result<async_nats::Client, ConnectError> {
    let fail = |reason: String| ConnectError {
        urls: urls.join(","),
        what,
        reason,
    };
    let secret = |p: &Path| read_secret(p).map_err(|e| fail(e.to_string()));
    let mut opts = if let Some(creds) = creds.creds_file {
        async_nats::ConnectOptions::with_credentials_file(creds)
            .await
            .map_err(|e| fail(format!("creds_file: {e}")))?
    } else if let Some(seed) = creds.nkey_seed_file {
        async_nats::ConnectOptions::with_nkey(secret(seed)?)
    } else if let Some(token) = creds.token {
        async_nats::ConnectOptions::with_token(token.to_owned())
    } else if let (Some(user), Some(pw)) = (creds.user, creds.password) {
        async_nats::ConnectOptions::with_user_and_password(user.to_owned(), pw.to_owned())
    } else if let (Some(user), Some(pw_file)) = (creds.user, creds.password_file) {
        async_nats::ConnectOptions::with_user_and_password(user.to_owned(), secret(pw_file)?)
    } else {
        async_nats::ConnectOptions::new()
    };
    if let Some(tls) = creds.tls {
        opts = opts.require_tls(true);
        if let Some(ca) = &tls.ca_file {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let (Some(c), Some(k)) = (&tls.cert_file, &tls.key_file) {
            opts = opts.add_client_certificate(c.clone(), k.clone());
        }
    }
    if let Some(prefix) = inbox_prefix {
        opts = opts.custom_inbox_prefix(prefix);
    }
    // The service's own connection keeps the plain name operators know
    // from CONNZ and `doctor`.
    opts = opts.name(match what {
        "[nats]" => "nats-oidc-callout".to_owned(),
        other => format!("nats-oidc-callout {other}"),
    });
    opts = match persistence {
        Persistence::Command => opts
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(Some(3)),
        Persistence::Service => opts.retry_on_initial_connect().max_reconnects(None),
    };
    let opts = opts.event_callback(move |event| async move {
        tracing::debug!(connection = what, event = %event, "nats connection event");
    });
    let addrs: Vec<async_nats::ServerAddr> = urls
        .iter()
        .map(|u| u.parse().map_err(|e| fail(format!("{u}: {e}"))))
        .collect::<Result<_, _>>()?;
    if addrs.is_empty() {
        return Err(fail("no server URL".into()));
    }
    opts.connect(addrs).await.map_err(|e| fail(e.to_string()))
}
