//! Keycloak, the real server distribution in dev mode (`start-dev`, its
//! embedded H2 database), installed by `scripts/setup/keycloak.sh`; missing
//! is a failure, never a skip. Starting it takes seconds to tens of seconds,
//! so a test binary run shares one ([`Keycloak::shared`]), stopped by PID
//! when the test process ends, and its tests import realms into it
//! ([`Keycloak::import_realm`]); a [`Realm`] gets tokens (client
//! credentials, password), revokes them, manages clients and rotates keys
//! through the admin API. Everything listens on 127.0.0.1, on ports Keycloak
//! picks and logs.

mod realm;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::process::{read_log, wait_until};

/// The version `scripts/setup/keycloak.sh` installs.
pub(crate) use realm::{jwt_claims, jwt_kid, Realm, SigningKey};

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
