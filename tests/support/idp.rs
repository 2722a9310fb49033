//! The in-process IdP: OIDC discovery, JWKS and an introspection endpoint,
//! with switches for rotation and faults. The real oidc-provider is in
//! `node_idp.rs`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nats_oidc_callout::issuer::{jwks, LocalKey};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the in-process IdP misbehaves, for fault-injection tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum IdpFault {
    #[default]
    None,
    /// Every request gets 503.
    Down,
    /// Requests are read, then left unanswered for `IDP_HANG` (longer than
    /// the service's fetch timeout).
    Hang,
    /// The JWKS is HTML instead of JSON.
    Garbage,
    /// The JWKS is a 2 MiB JSON document (over the service's 1 MiB cap).
    Oversized,
}

pub(crate) const IDP_HANG: Duration = Duration::from_secs(8);

#[derive(Default)]
struct IdpState {
    jwks: Value,
    fault: IdpFault,
    /// Requests held unanswered by `IdpFault::Hang` so far.
    hung: usize,
    /// Requests per path.
    hits: std::collections::HashMap<String, usize>,
}

/// A path that serves the same JWKS as `/jwks` but that discovery does not
/// name: only a service configured with `jwks_uri` fetches it.
pub(crate) const ALT_JWKS_PATH: &str = "/alt/jwks";

/// An introspection endpoint (not in discovery) that answers every token
/// `active: false`.
pub(crate) const INTROSPECTION_PATH: &str = "/introspect";

/// An in-process OIDC provider: discovery and JWKS over plain HTTP/1.1 on
/// 127.0.0.1, with switches for key rotation and outages.
pub(crate) struct Idp {
    pub(crate) issuer: String,
    state: Arc<Mutex<IdpState>>,
    fetches: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Idp {
    /// Serves `keys` at `<issuer>/jwks`. Runs on the current tokio runtime.
    pub(crate) async fn start(keys: &[&LocalKey]) -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind idp");
        let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Arc::new(Mutex::new(IdpState {
            jwks: jwks(keys),
            fault: IdpFault::None,
            hung: 0,
            hits: Default::default(),
        }));
        let fetches = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, fe, iss) = (state.clone(), fetches.clone(), issuer.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    break;
                };
                let (st, fe, iss) = (st.clone(), fe.clone(), iss.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut n = 0;
                    while n < buf.len() {
                        match sock.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => n += k,
                        }
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                    // Read a request body (introspection's form) to its end,
                    // so closing the socket does not reset the connection.
                    let body_len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0)
                        .min(buf.len());
                    let header_end = head.find("\r\n\r\n").map_or(n, |i| i + 4);
                    let mut have = n.saturating_sub(header_end);
                    while have < body_len {
                        match sock.read(&mut buf[..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(k) => have += k,
                        }
                    }
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let (fault, status, body) = {
                        let mut s = st.lock().unwrap();
                        *s.hits.entry(path.clone()).or_default() += 1;
                        if s.fault == IdpFault::Hang {
                            s.hung += 1;
                        }
                        let jwks = || match s.fault {
                            IdpFault::Garbage => "<html>maintenance</html>".to_owned(),
                            IdpFault::Oversized => {
                                format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(2 << 20))
                            }
                            _ => s.jwks.to_string(),
                        };
                        let (status, body) = if s.fault == IdpFault::Down {
                            ("503 Service Unavailable", "{}".to_owned())
                        } else if path == "/.well-known/openid-configuration" {
                            let doc = json!({"issuer": iss, "jwks_uri": format!("{iss}/jwks"),
                                "token_endpoint": format!("{iss}/token"),
                                "id_token_signing_alg_values_supported": ["RS256", "ES256"]});
                            ("200 OK", doc.to_string())
                        } else if path == INTROSPECTION_PATH {
                            // Knows no token: every one is inactive.
                            ("200 OK", json!({"active": false}).to_string())
                        } else if path == "/jwks" || path == ALT_JWKS_PATH {
                            fe.fetch_add(1, Ordering::SeqCst);
                            ("200 OK", jwks())
                        } else {
                            ("404 Not Found", "{}".to_owned())
                        };
                        (s.fault, status, body)
                    };
                    if fault == IdpFault::Hang {
                        tokio::time::sleep(IDP_HANG).await;
                    }
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Idp {
            issuer,
            state,
            fetches,
            stop,
            task,
        }
    }

    /// Publishes a new key set (rotation).
    pub(crate) fn set_keys(&self, keys: &[&LocalKey]) {
        self.state.lock().unwrap().jwks = jwks(keys);
    }

    /// Makes every request fail with 503 (an outage) or serve again.
    pub(crate) fn set_down(&self, down: bool) {
        self.set_fault(if down { IdpFault::Down } else { IdpFault::None });
    }

    pub(crate) fn set_fault(&self, fault: IdpFault) {
        self.state.lock().unwrap().fault = fault;
    }

    pub(crate) fn hung_requests(&self) -> usize {
        self.state.lock().unwrap().hung
    }

    /// JWKS documents served so far (at either JWKS path).
    pub(crate) fn jwks_fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Requests for `path` so far.
    pub(crate) fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.abort();
    }
}
