//! A flood of bad connects from another loopback address: raw NATS clients
//! (INFO, CONNECT with a bad token, PING) bound to their own source
//! address, so the server's `client_info.host` tells them apart from the
//! legitimate clients on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// How one bad connect ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The server refused it (`-ERR 'Authorization Violation'`).
    Refused,
    /// It got a PONG: a bad token was let in (never expected).
    Accepted,
    /// No answer in time, or the connection failed.
    Failed,
}

/// Counts of the flood's connects.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) refused: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl Tally {
    pub(crate) fn total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
            + self.accepted.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
    }
}

/// `concurrency` workers connecting from `source` to `server` with tokens
/// from `token(i)` until `stop` is set.
pub(crate) fn start(
    server: SocketAddr,
    source: std::net::IpAddr,
    concurrency: usize,
    token: impl Fn(u64) -> String + Send + Sync + 'static,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let token = Arc::new(token);
    let next = Arc::new(AtomicU64::new(0));
    (0..concurrency)
        .map(|_| {
            let (token, next, stop, tally) =
                (token.clone(), next.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let t = token(next.fetch_add(1, Ordering::Relaxed));
                    let counter = match connect(server, source, &t).await {
                        Ending::Refused => &tally.refused,
                        Ending::Accepted => &tally.accepted,
                        Ending::Failed => &tally.failed,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

/// One raw connect; 5 s bound (the server's authorization timeout is 2 s).
pub(crate) async fn connect(server: SocketAddr, source: std::net::IpAddr, token: &str) -> Ending {
    tokio::time::timeout(Duration::from_secs(5), attempt(server, source, token))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(Ending::Failed)
}

async fn attempt(
    server: SocketAddr,
    source: std::net::IpAddr,
    token: &str,
) -> std::io::Result<Ending> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let mut stream = socket.connect(server).await?;
    let connect = serde_json::json!({
        "verbose": false, "pedantic": false, "protocol": 1,
        "lang": "bench-flood", "version": "0", "auth_token": token,
    });
    stream
        .write_all(format!("CONNECT {connect}\r\nPING\r\n").as_bytes())
        .await?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(Ending::Failed);
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if text.contains("-ERR") {
            return Ok(Ending::Refused);
        }
        if text.contains("PONG") {
            return Ok(Ending::Accepted);
        }
    }
}
