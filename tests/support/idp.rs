//! The IdPs tests talk to: an in-process OIDC discovery + JWKS server with
//! switches for rotation and faults (`Idp`), and the real, OpenID-certified
//! panva/oidc-provider run by node (`NodeIdp`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use nats_oidc_callout::issuer::{jwks, LocalKey};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::process::{read_log, wait_until, write_secret, Proc};

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

/// panva/oidc-provider (OpenID-certified) on 127.0.0.1, run by node from
/// `tests/idp/`, issuing JWT access tokens by the client-credentials grant,
/// opaque ones for a second resource, and opaque user tokens by CIBA; with
/// its introspection, revocation and userinfo endpoints.
pub(crate) struct NodeIdp {
    proc: Option<Proc>,
    pub(crate) port: u16,
    dir: tempfile::TempDir,
    pub(crate) client_id: String,
    client_secret: String,
    /// A second client (scope `nats` only) whose tokens live `SHORT_TOKEN_TTL`.
    pub(crate) short_client_id: String,
    short_client_secret: String,
    /// The resource indicator: the `aud` of every JWT access token.
    pub(crate) resource: String,
    /// The resource whose access tokens are opaque.
    pub(crate) opaque_resource: String,
    /// Secrets of the introspecting clients (basic, post) and the CIBA client.
    basic_secret: String,
    post_secret: String,
    user_secret: String,
    /// Private keys of the `private_key_jwt` introspecting client.
    assertion_keys: Vec<LocalKey>,
    /// A public client for the authorization code flow with PKCE (client id,
    /// redirect URI), with oidc-provider's development login pages.
    browser_client: Option<(String, String)>,
    starts: usize,
}

/// Lifetime of the short client's access tokens, in seconds.
pub(crate) const SHORT_TOKEN_TTL: u64 = 10;

/// The client-authentication methods the IdP's introspecting clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntrospectionAuth {
    ClientSecretBasic,
    ClientSecretPost,
    /// With the client key of this algorithm (RS256 or ES256).
    PrivateKeyJwt(Algorithm),
}

/// An introspecting client registered at a [`NodeIdp`].
#[derive(Debug, Clone)]
pub(crate) struct IntrospectionClient {
    pub(crate) client_id: String,
    /// The `introspection_auth` value.
    pub(crate) method: &'static str,
    /// The client secret (0600), or the PKCS#8 PEM private key.
    pub(crate) file: PathBuf,
}

impl IntrospectionClient {
    /// The `[[issuer]]` lines that make the service use this client.
    pub(crate) fn config_lines(&self) -> String {
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
pub(crate) struct IdpStats {
    pub(crate) introspection: u64,
    pub(crate) revocation: u64,
    pub(crate) userinfo: u64,
}

const USER_CLIENT: &str = "user-app";

impl NodeIdp {
    pub(crate) fn start() -> NodeIdp {
        Self::start_with(None)
    }

    /// Also serves the public client `client_id` (authorization code + PKCE)
    /// redirecting to `redirect_uri`, and a login form that takes any name
    /// (the token's `sub`) and any password.
    pub(crate) fn start_with_browser_client(client_id: &str, redirect_uri: &str) -> NodeIdp {
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
            short_client_id: "worker".into(),
            short_client_secret: format!("test-secret-{}", nkeys::KeyPair::new_user().public_key()),
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
            .env("IDP_RESOURCE", &self.resource)
            .env("IDP_SHORT_CLIENT_ID", &self.short_client_id)
            .env("IDP_SHORT_CLIENT_SECRET", &self.short_client_secret)
            .env("IDP_SHORT_TTL", SHORT_TOKEN_TTL.to_string())
            .env("IDP_OPAQUE_RESOURCE", &self.opaque_resource)
            .env("IDP_EXTRA_CLIENTS", self.extra_clients().to_string());
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

    pub(crate) fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The client secret in a 0600 file, as `token --client-secret-file` wants.
    pub(crate) fn secret_file(&self) -> PathBuf {
        let path = self.dir.path().join("client-secret");
        write_secret(&path, &self.client_secret);
        path
    }

    /// The short client's secret in a 0600 file.
    pub(crate) fn short_secret_file(&self) -> PathBuf {
        let path = self.dir.path().join("short-client-secret");
        write_secret(&path, &self.short_client_secret);
        path
    }

    /// The `exp` of every access token issued to `client_id` so far, in
    /// order (the provider logs each one).
    pub(crate) fn issued(&self, client_id: &str) -> Vec<i64> {
        (1..=self.starts)
            .flat_map(|i| {
                read_log(&self.dir.path().join(format!("idp.{i}.log")))
                    .lines()
                    .filter_map(|l| {
                        let mut w = l.strip_prefix("issued ")?.split(' ');
                        (w.next()? == client_id).then_some(())?;
                        w.next()?.parse().ok()
                    })
                    .collect::<Vec<i64>>()
            })
            .collect()
    }

    /// A client-credentials access token for `scope`.
    pub(crate) async fn token(&self, scope: &str) -> String {
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
        access_token(resp).await
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
    pub(crate) fn introspection_client(&self, auth: IntrospectionAuth) -> IntrospectionClient {
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
    pub(crate) async fn opaque_token(&self, scope: &str) -> String {
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
    pub(crate) async fn user_token(&self, account: &str, scope: &str) -> String {
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
    pub(crate) async fn revoke(&self, token: &str) {
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
    pub(crate) async fn stats(&self) -> IdpStats {
        reqwest::get(format!("{}/test/stats", self.issuer()))
            .await
            .expect("stats request")
            .json()
            .await
            .expect("stats are JSON")
    }

    /// Stops the IdP (its tokens die with it: they live in memory).
    pub(crate) fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate();
        }
    }

    /// Restarts on the same port and issuer with brand-new key material.
    pub(crate) fn restart_with_new_key(&mut self) {
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
