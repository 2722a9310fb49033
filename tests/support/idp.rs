//! The IdPs tests talk to: an in-process OIDC discovery + JWKS server with
//! switches for rotation and faults (`Idp`), and the real, OpenID-certified
//! panva/oidc-provider run by node (`NodeIdp`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nats_oidc_callout::issuer::{jwks, LocalKey};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::process::{read_log, wait_until, write_secret, Proc};

/// How the in-process IdP misbehaves, for fault-injection tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdpFault {
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

pub const IDP_HANG: Duration = Duration::from_secs(8);

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
pub const ALT_JWKS_PATH: &str = "/alt/jwks";

/// An in-process OIDC provider: discovery and JWKS over plain HTTP/1.1 on
/// 127.0.0.1, with switches for key rotation and outages.
pub struct Idp {
    pub issuer: String,
    state: Arc<Mutex<IdpState>>,
    fetches: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Idp {
    /// Serves `keys` at `<issuer>/jwks`. Runs on the current tokio runtime.
    pub async fn start(keys: &[&LocalKey]) -> Idp {
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
                    let head = String::from_utf8_lossy(&buf[..n]);
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
    pub fn set_keys(&self, keys: &[&LocalKey]) {
        self.state.lock().unwrap().jwks = jwks(keys);
    }

    /// Makes every request fail with 503 (an outage) or serve again.
    pub fn set_down(&self, down: bool) {
        self.set_fault(if down { IdpFault::Down } else { IdpFault::None });
    }

    pub fn set_fault(&self, fault: IdpFault) {
        self.state.lock().unwrap().fault = fault;
    }

    pub fn hung_requests(&self) -> usize {
        self.state.lock().unwrap().hung
    }

    /// JWKS documents served so far (at either JWKS path).
    pub fn jwks_fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Requests for `path` so far.
    pub fn hits(&self, path: &str) -> usize {
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

/// panva/oidc-provider (OpenID-certified) on 127.0.0.1, run by node from
/// `tests/idp/`, issuing JWT access tokens by the client-credentials grant.
pub struct NodeIdp {
    proc: Option<Proc>,
    pub port: u16,
    dir: tempfile::TempDir,
    pub client_id: String,
    client_secret: String,
    /// The resource indicator: the `aud` of every token.
    pub resource: String,
    /// A public client for the authorization code flow with PKCE (client id,
    /// redirect URI), with oidc-provider's development login pages.
    browser_client: Option<(String, String)>,
    starts: usize,
}

impl NodeIdp {
    pub fn start() -> NodeIdp {
        Self::start_with(None)
    }

    /// Also serves the public client `client_id` (authorization code + PKCE)
    /// redirecting to `redirect_uri`, and a login form that takes any name
    /// (the token's `sub`) and any password.
    pub fn start_with_browser_client(client_id: &str, redirect_uri: &str) -> NodeIdp {
        Self::start_with(Some((client_id.to_owned(), redirect_uri.to_owned())))
    }

    fn start_with(browser_client: Option<(String, String)>) -> NodeIdp {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp/provider.mjs");
        let module =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp/node_modules/oidc-provider");
        assert!(
            module.is_dir(),
            "oidc-provider is not installed in tests/idp — run scripts/setup.sh"
        );
        assert!(script.is_file(), "{} missing", script.display());
        let mut idp = NodeIdp {
            proc: None,
            // 0: it binds a free port itself and names it; restarts keep it.
            port: 0,
            dir: tempfile::tempdir().expect("tempdir"),
            client_id: "ci-job".into(),
            client_secret: format!("test-secret-{}", nkeys::KeyPair::new_user().public_key()),
            resource: "https://nats.example.test".into(),
            browser_client,
            starts: 0,
        };
        idp.launch();
        idp
    }

    fn launch(&mut self) {
        let mut cmd = Command::new("node");
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp/provider.mjs"))
            .env("IDP_PORT", self.port.to_string())
            .env("IDP_KEYSTORE", self.dir.path().join("keystore.json"))
            .env("IDP_CLIENT_ID", &self.client_id)
            .env("IDP_CLIENT_SECRET", &self.client_secret)
            .env("IDP_RESOURCE", &self.resource);
        if let Some((client_id, redirect_uri)) = &self.browser_client {
            cmd.env("IDP_BROWSER_CLIENT_ID", client_id)
                .env("IDP_BROWSER_REDIRECT_URI", redirect_uri);
        }
        self.starts += 1;
        let log = self.dir.path().join(format!("idp.{}.log", self.starts));
        self.proc = Some(Proc::spawn(cmd, log.clone()));
        let mut bound = None;
        // Generous: node loads oidc-provider slowly on a loaded machine.
        let ready = wait_until(Duration::from_secs(30), || {
            bound = read_log(&log)
                .lines()
                .find_map(|l| l.strip_prefix("ready "))
                .and_then(|p| p.trim().parse::<u16>().ok());
            bound.is_some()
        });
        assert!(ready, "oidc-provider did not start:\n{}", read_log(&log));
        let bound = bound.expect("ready");
        assert!(
            self.port == 0 || self.port == bound,
            "restarted on {bound}, not {}",
            self.port
        );
        self.port = bound;
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The client secret in a 0600 file, as `token --client-secret-file` wants.
    pub fn secret_file(&self) -> PathBuf {
        let path = self.dir.path().join("client-secret");
        write_secret(&path, &self.client_secret);
        path
    }

    /// A client-credentials access token for `scope`.
    pub async fn token(&self, scope: &str) -> String {
        let resp = reqwest::Client::new()
            .post(format!("{}/token", self.issuer()))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("resource", &self.resource),
            ])
            .send()
            .await
            .expect("token request");
        let status = resp.status();
        let body: Value = resp.json().await.expect("token response is JSON");
        assert!(status.is_success(), "token endpoint said {status}: {body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// Restarts on the same port and issuer with brand-new key material.
    pub fn restart_with_new_key(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate();
        }
        std::fs::remove_file(self.dir.path().join("keystore.json")).expect("remove keystore");
        self.launch();
    }
}
