//! Connecting to NATS with the credentials and TLS settings of a config
//! table: the service's own connection (`[nats]`).

use crate::config::{Config, NatsConfig};
use crate::secret::read_secret;

#[derive(Debug, thiserror::Error)]
#[error("cannot connect to NATS at {urls}: {reason}")]
pub struct ConnectError {
    pub urls: String,
    pub reason: String,
}

/// Connects (retrying until the server is up) and keeps reconnecting for
/// ever; `name` is what the servers' CONNZ shows.
pub async fn connect(
    config: &Config,
    nats: &NatsConfig,
    urls: &[String],
    name: &str,
) -> Result<async_nats::Client, ConnectError> {
    let fail = |reason: String| ConnectError {
        urls: urls.join(","),
        reason,
    };
    let secret =
        |p: &std::path::Path| read_secret(&config.resolve(p)).map_err(|e| fail(e.to_string()));
    let mut opts = if let Some(creds) = &nats.creds_file {
        async_nats::ConnectOptions::with_credentials_file(config.resolve(creds))
            .await
            .map_err(|e| fail(format!("creds_file: {e}")))?
    } else if let Some(seed) = &nats.nkey_seed_file {
        async_nats::ConnectOptions::with_nkey(secret(seed)?)
    } else if let Some(token) = &nats.token {
        async_nats::ConnectOptions::with_token(token.clone())
    } else if let (Some(user), Some(pw)) = (&nats.user, &nats.password) {
        async_nats::ConnectOptions::with_user_and_password(user.clone(), pw.clone())
    } else if let (Some(user), Some(pw_file)) = (&nats.user, &nats.password_file) {
        async_nats::ConnectOptions::with_user_and_password(user.clone(), secret(pw_file)?)
    } else {
        async_nats::ConnectOptions::new()
    };
    if let Some(tls) = &nats.tls {
        opts = opts.require_tls(true);
        if let Some(ca) = &tls.ca_file {
            opts = opts.add_root_certificates(config.resolve(ca));
        }
        if let (Some(c), Some(k)) = (&tls.cert_file, &tls.key_file) {
            opts = opts.add_client_certificate(config.resolve(c), config.resolve(k));
        }
    }
    let opts = opts
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .event_callback(|event| async move {
            tracing::info!(event = %event, "nats connection event");
        });
    let addrs: Vec<async_nats::ServerAddr> = urls
        .iter()
        .map(|u| u.parse().map_err(|e| fail(format!("{u}: {e}"))))
        .collect::<Result<_, _>>()?;
    opts.connect(addrs).await.map_err(|e| fail(e.to_string()))
}
