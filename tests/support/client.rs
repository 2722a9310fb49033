//! NATS clients as tests use them: connected with a token, user and
//! password, or nothing, with the server's asynchronous errors collected.

use std::time::Duration;

/// A connected client plus the asynchronous errors the server sent it
/// (permission violations, expiry).
pub(crate) struct Client {
    pub(crate) nats: async_nats::Client,
    errors: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every error received so far, also those `expect_error` passed over.
    seen: Vec<String>,
}

impl Client {
    /// Waits up to `limit` for a server error containing `needle`.
    pub(crate) async fn expect_error(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.errors.recv()).await {
                Ok(Some(e)) => {
                    self.seen.push(e.clone());
                    if e.contains(needle) {
                        return e;
                    }
                }
                _ => panic!(
                    "no server error containing {needle:?} within {limit:?}; got {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Every error received so far, without waiting: also those an
    /// `expect_error` passed over on its way to the one it waited for.
    pub(crate) fn errors_so_far(&mut self) -> Vec<String> {
        while let Ok(e) = self.errors.try_recv() {
            self.seen.push(e);
        }
        self.seen.clone()
    }
}

/// Connects with `opts` (plus the harness's timeout, no reconnects, and the
/// error collection).
pub(crate) async fn connect_with_options(
    opts: async_nats::ConnectOptions,
    url: &str,
) -> Result<Client, async_nats::ConnectError> {
    let (tx, errors) = tokio::sync::mpsc::unbounded_channel();
    let nats = opts
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(Some(0))
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                let text = match event {
                    async_nats::Event::ServerError(e) => e.to_string(),
                    async_nats::Event::Disconnected => "disconnected".to_owned(),
                    _ => return,
                };
                let _ = tx.send(text);
            }
        })
        .connect(url)
        .await?;
    Ok(Client {
        nats,
        errors,
        seen: Vec::new(),
    })
}

/// Publishes on a fresh subject and waits (bounded) for it to come back.
pub(crate) async fn round_trip(client: &async_nats::Client, subject: &str) {
    let mut sub = client
        .subscribe(subject.to_owned())
        .await
        .expect("subscribe");
    client.flush().await.expect("flush subscription");
    client
        .publish(subject.to_owned(), "ping".into())
        .await
        .expect("publish");
    let msg = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut sub))
        .await
        .expect("message within 5 s")
        .expect("subscription open");
    assert_eq!(msg.payload.as_ref(), b"ping");
}

/// Connects presenting `token` as the CONNECT `auth_token`.
pub(crate) async fn connect_token(
    url: &str,
    token: &str,
) -> Result<Client, async_nats::ConnectError> {
    connect_with_options(
        async_nats::ConnectOptions::with_token(token.to_owned()),
        url,
    )
    .await
}

/// Connects presenting user and password (a token may travel as the password).
pub(crate) async fn connect_user_pass(
    url: &str,
    user: &str,
    pass: &str,
) -> Result<Client, async_nats::ConnectError> {
    connect_with_options(
        async_nats::ConnectOptions::with_user_and_password(user.to_owned(), pass.to_owned()),
        url,
    )
    .await
}

/// Retries `connect_token` every 250 ms for up to 20 s: for a service or
/// server that is (re)starting or recovering.
pub(crate) async fn connect_token_eventually(url: &str, token: &str) -> Option<Client> {
    for _ in 0..80 {
        if let Ok(c) = connect_token(url, token).await {
            return Some(c);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// Connects with no credentials at all.
pub(crate) async fn connect_anonymous(url: &str) -> Result<Client, async_nats::ConnectError> {
    connect_with_options(async_nats::ConnectOptions::new(), url).await
}

/// Connects `tokens` at concurrency 32; returns how many were accepted.
pub(crate) async fn storm(url: &str, tokens: Vec<String>) -> usize {
    use futures::StreamExt;
    futures::stream::iter(tokens)
        .map(|t| {
            let url = url.to_owned();
            async move { connect_token(&url, &t).await.is_ok() }
        })
        .buffer_unordered(32)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await
}

/// GET on loopback: status and body.
pub(crate) async fn http_get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("http get");
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Asserts `text` holds no part of `token` that identifies it: of a JWT its
/// payload and its signature (every RS256 token starts with the same header
/// text), of an opaque token all of it; whole or any 24 consecutive
/// characters, at any offset: a truncated or sliced copy is a leak too.
pub(crate) fn assert_no_token_in(text: &str, token: &str) {
    const SLICE: usize = 24;
    let parts: Vec<&str> = token.split('.').collect();
    let secret: Vec<(&str, &str)> = match parts[..] {
        [_, payload, signature] => vec![("payload", payload), ("signature", signature)],
        _ => vec![("opaque value", token)],
    };
    assert!(
        secret.iter().all(|(_, p)| p.len() >= 24),
        "token too short to check for leaks"
    );
    for (name, part) in secret {
        assert!(
            part.len() >= SLICE,
            "the token's {name} is too short to look for"
        );
        for start in 0..=part.len() - SLICE {
            let slice = &part[start..start + SLICE];
            assert!(
                !text.contains(slice),
                "the token's {name} leaked into the text (its characters {start}..{})",
                start + SLICE
            );
        }
    }
}
