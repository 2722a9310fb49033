//! Keycloak, the real server distribution in dev mode (`start-dev`, its
//! embedded H2 database), installed by `scripts/setup/keycloak.sh`; missing
//! is a failure, never a skip. Starting it takes seconds to tens of seconds,
//! so a test binary run shares one ([`Keycloak::shared`]), stopped by PID
//! when the test process ends, and its tests import realms into it
//! ([`Keycloak::import_realm`]); a [`Realm`] gets tokens (client
//! credentials, password), revokes them, manages clients and rotates keys
//! through the admin API. Everything listens on 127.0.0.1, on ports Keycloak
//! picks and logs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::process::{read_log, wait_until};

/// The version `scripts/setup/keycloak.sh` installs.
pub(crate) const KEYCLOAK_VERSION: &str = "26.7.3";
/// Must equal BUILD_OPTIONS in `scripts/setup/keycloak.sh`, which built the
/// dev-mode image with them; any other build option makes Keycloak rebuild.
const KEYCLOAK_BUILD_OPTIONS: &[&str] = &["--health-enabled=true"];
const START_LIMIT: Duration = Duration::from_secs(300);
const ADMIN_USER: &str = "admin";
/// Bound on one request to Keycloak (a realm import takes seconds, more on
/// a loaded machine).
const REQUEST_LIMIT: Duration = Duration::from_secs(120);

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_LIMIT)
        .build()
        .expect("http client")
}

/// Runs Keycloak and, once its stdin (a pipe from this test binary) closes,
/// stops it by PID and removes its home: a static instance is never dropped,
/// so the end of the test process is what stops it, however it ends.
const WRAPPER: &str = r#"home="$1"; shift
"$home/bin/kc.sh" "$@" &
kc=$!
read -r _ || true
kill -TERM "$kc" 2>/dev/null
for _ in $(seq 1 40); do kill -0 "$kc" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$kc" 2>/dev/null; then pkill -KILL -P "$kc"; kill -KILL "$kc"; fi
wait "$kc" 2>/dev/null
rm -rf "$home"
"#;

/// One Keycloak server on 127.0.0.1 with its data in a temp dir.
pub(crate) struct Keycloak {
    wrapper: Child,
    stdin: Option<ChildStdin>,
    pub(crate) port: u16,
    home: PathBuf,
    admin_password: String,
}

fn install_dirs() -> (PathBuf, PathBuf) {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools");
    (
        tools.join(format!("keycloak-{KEYCLOAK_VERSION}")),
        tools.join(format!("keycloak-{KEYCLOAK_VERSION}-template")),
    )
}

/// Status code of a plain HTTP/1.0 GET on 127.0.0.1 (None if unreachable).
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The ports of Keycloak's start line: "… started in 12.057s. Listening on:
/// http://127.0.0.1:N. Management interface listening on http://127.0.0.1:M."
fn logged_ports(log: &str) -> Option<(u16, u16)> {
    let line = log.lines().find(|l| l.contains(" started in "))?;
    let port_after = |marker: &str| -> Option<u16> {
        let rest = &line[line.find(marker)? + marker.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    Some((
        port_after("Listening on: http://127.0.0.1:")?,
        port_after("Management interface listening on http://127.0.0.1:")?,
    ))
}

impl Keycloak {
    /// The instance this test binary shares; started on first use.
    pub(crate) fn shared() -> &'static Keycloak {
        static SHARED: OnceLock<Keycloak> = OnceLock::new();
        SHARED.get_or_init(Keycloak::start)
    }

    /// Starts a Keycloak of its own: its home is a temp dir whose lib/,
    /// conf/, themes/ and providers/ are the installation's, and whose data/
    /// starts as a copy of the database the setup script initialised.
    pub(crate) fn start() -> Keycloak {
        let (install, template) = install_dirs();
        assert!(
            install.join("bin/kc.sh").is_file() && template.join("h2").is_dir(),
            "Keycloak {KEYCLOAK_VERSION} is not installed in {} — run scripts/setup.sh",
            install.display()
        );
        let admin_password = std::fs::read_to_string(template.join("admin.password"))
            .expect("keycloak admin.password from scripts/setup/keycloak.sh")
            .trim()
            .to_owned();
        let home = tempfile::Builder::new()
            .prefix("keycloak.")
            .tempdir()
            .expect("tempdir")
            .keep();
        std::fs::create_dir_all(home.join("bin")).unwrap();
        std::fs::create_dir_all(home.join("data")).unwrap();
        std::fs::create_dir_all(home.join("tmp")).unwrap();
        std::fs::copy(install.join("bin/kc.sh"), home.join("bin/kc.sh")).unwrap();
        for d in ["lib", "conf", "themes", "providers"] {
            std::os::unix::fs::symlink(install.join(d), home.join(d)).unwrap();
        }
        let copied = Command::new("cp")
            .arg("-a")
            .arg(template.join("h2"))
            .arg(home.join("data/h2"))
            .status()
            .expect("cp");
        assert!(copied.success(), "cannot copy the Keycloak database");

        let log = home.join("keycloak.log");
        let out = std::fs::File::create(&log).expect("create log");
        let err = out.try_clone().expect("clone log handle");
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("sh")
            .arg(&home)
            .arg("start-dev")
            .args(KEYCLOAK_BUILD_OPTIONS)
            .arg("--http-host=127.0.0.1")
            // It picks free ports itself and names them when it is up.
            .arg("--http-port=0")
            .arg("--http-management-port=0")
            // C1 only: on 2 cores Keycloak starts in about half the time
            // (20-28 s against 48-54 s, measured here) and these tests
            // are too short for C2 to pay off.
            .env(
                "JAVA_OPTS_APPEND",
                format!(
                    "-XX:TieredStopAtLevel=1 -Djava.io.tmpdir={}",
                    home.join("tmp").display()
                ),
            )
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start keycloak");
        let stdin = wrapper.stdin.take();
        let mut kc = Keycloak {
            wrapper,
            stdin,
            port: 0,
            home,
            admin_password,
        };
        let started = Instant::now();
        let mut ports = None;
        let up = wait_until(START_LIMIT, || {
            let text = kc.log();
            assert!(
                !text.contains("Updating the configuration"),
                "Keycloak is rebuilding its dev-mode image: the build options in \
                 tests/support/keycloak.rs differ from scripts/setup/keycloak.sh\n{text}"
            );
            assert!(
                matches!(kc.wrapper.try_wait(), Ok(None)),
                "Keycloak exited:\n{text}"
            );
            ports = logged_ports(&text);
            ports.is_some()
        });
        assert!(
            up,
            "Keycloak did not start within {START_LIMIT:?}:\n{}",
            kc.log()
        );
        let (port, management) = ports.expect("logged");
        kc.port = port;
        let ready = wait_until(Duration::from_secs(30), || {
            http_status(management, "/health/ready") == Some(200)
        });
        assert!(ready, "Keycloak on {port} is not ready:\n{}", kc.log());
        eprintln!(
            "keycloak {KEYCLOAK_VERSION} ready on 127.0.0.1:{port} after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        kc
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        read_log(&self.home.join("keycloak.log"))
    }

    /// Imports the realm file `file` under the name `name` through the
    /// admin API (the representation `--import-realm` reads, too).
    pub(crate) async fn import_realm(&self, file: &Path, name: &str) -> Realm {
        let mut rep: Value =
            serde_json::from_str(&std::fs::read_to_string(file).expect("read realm file"))
                .expect("realm file is JSON");
        rep["realm"] = json!(name);
        let realm = Realm {
            keycloak: self.url(),
            name: name.to_owned(),
            admin_password: self.admin_password.clone(),
            admin_token: Mutex::new(None),
        };
        let started = Instant::now();
        let resp = realm
            .admin(reqwest::Method::POST, "/admin/realms")
            .await
            .json(&rep)
            .send()
            .await
            .expect("import realm");
        let status = resp.status();
        assert!(
            status.is_success(),
            "Keycloak refused {} as realm {name}: {status} {}",
            file.display(),
            resp.text().await.unwrap_or_default()
        );
        eprintln!(
            "keycloak realm {name} imported in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        realm
    }
}

impl Drop for Keycloak {
    fn drop(&mut self) {
        // Closing the pipe makes the wrapper stop Keycloak and remove its home.
        drop(self.stdin.take());
        let stopped = wait_until(Duration::from_secs(30), || {
            matches!(self.wrapper.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.wrapper.kill();
            let _ = self.wrapper.wait();
        }
    }
}

async fn fetch_admin_token(keycloak: &str, password: &str) -> String {
    form_post(
        &format!("{keycloak}/realms/master/protocol/openid-connect/token"),
        &[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", ADMIN_USER),
            ("password", password),
        ],
        None,
    )
    .await["access_token"]
        .as_str()
        .expect("admin access_token")
        .to_owned()
}

/// POSTs a form; asserts success and returns the JSON body.
async fn form_post(url: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Value {
    let mut req = http().post(url).form(form);
    if let Some((user, pass)) = basic {
        req = req.basic_auth(user, Some(pass));
    }
    let resp = req.send().await.expect("keycloak request");
    let status = resp.status();
    let body: Value = resp.json().await.expect("keycloak answers JSON");
    assert!(status.is_success(), "{url} said {status}: {body}");
    body
}

/// One realm of a [`Keycloak`], with the admin operations the tests need.
pub(crate) struct Realm {
    keycloak: String,
    pub(crate) name: String,
    admin_password: String,
    /// Reused for 30 s (Keycloak's admin tokens live 60 s): each password
    /// grant costs Keycloak a password hash.
    admin_token: Mutex<Option<(String, Instant)>>,
}

/// An RSA signing key as Keycloak reports it.
#[derive(Debug, Clone)]
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    /// The id of the key-provider component that holds it.
    pub(crate) provider: String,
    pub(crate) priority: i64,
}

impl Realm {
    /// The `iss` of this realm's tokens (requested on 127.0.0.1).
    pub(crate) fn issuer(&self) -> String {
        format!("{}/realms/{}", self.keycloak, self.name)
    }

    fn token_endpoint(&self) -> String {
        format!("{}/protocol/openid-connect/token", self.issuer())
    }

    async fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let cached = self
            .admin_token
            .lock()
            .unwrap()
            .clone()
            .filter(|(_, at)| at.elapsed() < Duration::from_secs(30));
        let token = match cached {
            Some((token, _)) => token,
            None => {
                let token = fetch_admin_token(&self.keycloak, &self.admin_password).await;
                *self.admin_token.lock().unwrap() = Some((token.clone(), Instant::now()));
                token
            }
        };
        http()
            .request(method, format!("{}{path}", self.keycloak))
            .bearer_auth(token)
    }

    /// GET on the realm's admin API (`path` after `/admin/realms/<realm>`).
    pub(crate) async fn admin_get(&self, path: &str) -> Value {
        let path = format!("/admin/realms/{}{path}", self.name);
        let resp = self
            .admin(reqwest::Method::GET, &path)
            .await
            .send()
            .await
            .expect("admin GET");
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }

    async fn admin_send(&self, method: reqwest::Method, path: &str, body: &Value) {
        let path = format!("/admin/realms/{}{path}", self.name);
        let resp = self
            .admin(method.clone(), &path)
            .await
            .json(body)
            .send()
            .await
            .expect("admin request");
        let status = resp.status();
        assert!(
            status.is_success(),
            "{method} {path}: {status} {}",
            resp.text().await.unwrap_or_default()
        );
    }

    async fn client_uuid(&self, client_id: &str) -> String {
        let list = self
            .admin_get(&format!("/clients?clientId={client_id}"))
            .await;
        list[0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no client {client_id} in realm {}", self.name))
            .to_owned()
    }

    /// A new secret for `client_id` (Keycloak makes it; the old one ends).
    pub(crate) async fn new_client_secret(&self, client_id: &str) -> String {
        let id = self.client_uuid(client_id).await;
        let path = format!("/admin/realms/{}/clients/{id}/client-secret", self.name);
        let resp = self
            .admin(reqwest::Method::POST, &path)
            .await
            .send()
            .await
            .expect("new client secret");
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body["value"].as_str().expect("secret value").to_owned()
    }

    /// Adds a confidential client with no grant of its own (it only
    /// authenticates, e.g. to the introspection endpoint); returns the
    /// secret Keycloak generated for it.
    pub(crate) async fn add_confidential_client(&self, client_id: &str) -> String {
        self.admin_send(
            reqwest::Method::POST,
            "/clients",
            &json!({
                "clientId": client_id,
                "enabled": true,
                "publicClient": false,
                "clientAuthenticatorType": "client-secret",
                "standardFlowEnabled": false,
                "directAccessGrantsEnabled": false,
                "serviceAccountsEnabled": false
            }),
        )
        .await;
        self.client_secret(client_id).await
    }

    /// Revokes an access token at Keycloak's revocation endpoint (RFC
    /// 7009), as the public client `client_id` it was issued to.
    pub(crate) async fn revoke(&self, client_id: &str, token: &str) {
        let url = format!("{}/protocol/openid-connect/revoke", self.issuer());
        let resp = http()
            .post(&url)
            .form(&[
                ("client_id", client_id),
                ("token", token),
                ("token_type_hint", "access_token"),
            ])
            .send()
            .await
            .expect("revoke");
        let status = resp.status();
        assert!(
            status.is_success(),
            "{url} said {status}: {}",
            resp.text().await.unwrap_or_default()
        );
    }

    /// The secret Keycloak generated for a confidential client.
    pub(crate) async fn client_secret(&self, client_id: &str) -> String {
        let id = self.client_uuid(client_id).await;
        self.admin_get(&format!("/clients/{id}/client-secret"))
            .await["value"]
            .as_str()
            .expect("client secret")
            .to_owned()
    }

    /// An access token by the client-credentials grant.
    pub(crate) async fn token_by_client_credentials(
        &self,
        client_id: &str,
        secret: &str,
    ) -> String {
        form_post(
            &self.token_endpoint(),
            &[("grant_type", "client_credentials")],
            Some((client_id, secret)),
        )
        .await["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// Sets a user's password (not temporary) through the admin API.
    pub(crate) async fn set_password(&self, username: &str, password: &str) {
        let users = self
            .admin_get(&format!("/users?username={username}&exact=true"))
            .await;
        let id = users[0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no user {username} in realm {}", self.name))
            .to_owned();
        self.admin_send(
            reqwest::Method::PUT,
            &format!("/users/{id}/reset-password"),
            &json!({"type": "password", "value": password, "temporary": false}),
        )
        .await;
    }

    /// An access token by the password grant (direct access grant).
    pub(crate) async fn token_by_password(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> String {
        form_post(
            &self.token_endpoint(),
            &[
                ("grant_type", "password"),
                ("client_id", client_id),
                ("username", username),
                ("password", password),
            ],
            None,
        )
        .await["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// The realm's RSA signing keys that are enabled, highest priority first.
    pub(crate) async fn rsa_signing_keys(&self) -> Vec<SigningKey> {
        let keys = self.admin_get("/keys").await;
        let mut out: Vec<SigningKey> = keys["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter(|k| k["type"] == "RSA" && k["use"] == "SIG" && k["status"] != "DISABLED")
            .map(|k| SigningKey {
                kid: k["kid"].as_str().unwrap().to_owned(),
                provider: k["providerId"].as_str().unwrap().to_owned(),
                priority: k["providerPriority"].as_i64().unwrap_or_default(),
            })
            .collect();
        out.sort_by_key(|k| -k.priority);
        out
    }

    /// Key rotation: adds a generated RSA key provider, active, with a
    /// priority above every existing key, so Keycloak signs with it from
    /// now on. Returns the new key.
    pub(crate) async fn rotate_key(&self, name: &str) -> SigningKey {
        let before = self.rsa_signing_keys().await;
        let priority = before.iter().map(|k| k.priority).max().unwrap_or(0) + 100;
        let realm_id = self.admin_get("").await["id"]
            .as_str()
            .expect("realm id")
            .to_owned();
        let component = json!({
            "name": name,
            "providerId": "rsa-generated",
            "providerType": "org.keycloak.keys.KeyProvider",
            "parentId": realm_id,
            "config": {"priority": [priority.to_string()], "active": ["true"],
                       "enabled": ["true"], "algorithm": ["RS256"]},
        });
        let path = format!("/admin/realms/{}/components", self.name);
        let resp = self
            .admin(reqwest::Method::POST, &path)
            .await
            .json(&component)
            .send()
            .await
            .expect("add key provider");
        assert!(resp.status().is_success(), "POST {path}: {}", resp.status());
        self.rsa_signing_keys()
            .await
            .into_iter()
            .find(|k| !before.iter().any(|b| b.kid == k.kid))
            .expect("the new key is listed")
    }

    /// Disables a key provider: its keys leave the realm's JWKS.
    pub(crate) async fn disable_key_provider(&self, provider: &str) {
        let mut component = self.admin_get(&format!("/components/{provider}")).await;
        component["config"]["enabled"] = json!(["false"]);
        self.admin_send(
            reqwest::Method::PUT,
            &format!("/components/{provider}"),
            &component,
        )
        .await;
    }

    /// The `kid`s of the signing keys the realm publishes in its JWKS.
    pub(crate) async fn jwks_signing_kids(&self) -> Vec<String> {
        let jwks: Value = http()
            .get(format!("{}/protocol/openid-connect/certs", self.issuer()))
            .send()
            .await
            .expect("jwks")
            .json()
            .await
            .expect("jwks is JSON");
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter(|k| k["use"] == "sig")
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The `kid` in a JWT's header.
pub(crate) fn jwt_kid(token: &str) -> String {
    jwt_part(token, 0)["kid"].as_str().expect("kid").to_owned()
}

/// A JWT's claims, decoded without any check (for assertions only).
pub(crate) fn jwt_claims(token: &str) -> Value {
    jwt_part(token, 1)
}

fn jwt_part(token: &str, i: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(i).expect("JWT part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}
