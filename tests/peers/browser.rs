//! Browsers over WebSocket: the example page `examples/browser/` signs in at
//! the real oidc-provider (authorization code + PKCE, its development login
//! form filled in by headless Debian chromium under playwright-core) and uses
//! NATS over WebSocket with the access token, within the grant of
//! `examples/browser/policy.toml`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(15);
/// The whole browser run: start, sign-in, four connections.
const DRIVER_LIMIT: Duration = Duration::from_secs(60);
const TOKEN_COOKIE: &str = "nats_token";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Bundles the page's module (esbuild, from `npm run build`) once per run.
fn bundle() -> Vec<u8> {
    static BUNDLE: OnceLock<Vec<u8>> = OnceLock::new();
    BUNDLE
        .get_or_init(|| {
            let dir = root().join("examples/browser");
            assert!(
                dir.join("node_modules/@nats-io/nats-core").is_dir(),
                "examples/browser/node_modules missing — run scripts/setup/browser.sh"
            );
            let out = Command::new("npm")
                .args(["run", "--silent", "build"])
                .current_dir(&dir)
                .stdin(Stdio::null())
                .output()
                .expect("run npm");
            assert!(
                out.status.success(),
                "npm run build failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::read(dir.join("dist/app.js")).expect("dist/app.js")
        })
        .clone()
}

/// The page on 127.0.0.1: index.html, the bundle and a config.json made
/// for this test, over plain HTTP/1.1.
struct Site {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Site {
    async fn bind() -> (tokio::net::TcpListener, u16) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind site");
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    fn serve(listener: tokio::net::TcpListener, config: Value) -> Site {
        let port = listener.local_addr().unwrap().port();
        let files: Arc<Vec<(&str, &str, Vec<u8>)>> = Arc::new(vec![
            (
                "/index.html",
                "text/html; charset=utf-8",
                std::fs::read(root().join("examples/browser/index.html")).expect("index.html"),
            ),
            ("/dist/app.js", "text/javascript", bundle()),
            (
                "/config.json",
                "application/json",
                config.to_string().into_bytes(),
            ),
        ]);
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let files = files.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
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
                    let target = head.split_whitespace().nth(1).unwrap_or("/");
                    let path = target.split('?').next().unwrap_or("/");
                    let found = files.iter().find(|(p, _, _)| *p == path);
                    let (status, kind, body): (_, _, &[u8]) = match found {
                        Some((_, kind, body)) => ("200 OK", *kind, body),
                        None => ("404 Not Found", "text/plain", b"not found"),
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Site { port, task }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/index.html", self.port)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs the playwright-core driver (bounded); returns its JSON report.
async fn drive(page_url: &str, login: &str) -> Value {
    let driver = root().join("tests/browser/drive.mjs");
    assert!(
        root()
            .join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "tests/browser/node_modules missing — run scripts/setup/browser.sh"
    );
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium missing — run scripts/setup/browser.sh"
    );
    let mut child = tokio::process::Command::new("node")
        .arg(&driver)
        .args([page_url, login])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let run = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        a.and(b).expect("read driver output");
        (child.wait().await.expect("wait for node"), out, err)
    };
    let started = Instant::now();
    let (status, out, err) = tokio::time::timeout(DRIVER_LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("browser driver still running after {DRIVER_LIMIT:?}"));
    eprintln!("browser driver took {:?}", started.elapsed());
    assert!(
        status.success(),
        "browser driver failed: {}",
        String::from_utf8_lossy(&err)
    );
    serde_json::from_slice(&out).expect("driver prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_page_uses_nats_over_websocket_within_its_grant() {
    let (listener, page_port) = Site::bind().await;
    let redirect_uri = format!("http://127.0.0.1:{page_port}/index.html");
    let idp = NodeIdp::start_with_browser_client("nats-browser", &redirect_uri);
    let issuer = idp.issuer();
    let policy = std::fs::read_to_string(root().join("examples/browser/policy.toml")).unwrap();
    let nats_extra =
        format!("websocket {{ listen: 127.0.0.1:-1, no_tls: true, token_cookie: {TOKEN_COOKIE} }}");
    let env = Env::start(EnvOptions {
        policy: &policy,
        issuer_name: "web",
        external_issuer: Some((&issuer, &idp.resource)),
        issuer_extra: "require_typ = \"at+jwt\"",
        // Unsealed requests, so the test can read what the server sends.
        xkey: false,
        nats_extra: &nats_extra,
        ..Default::default()
    })
    .await;
    // The server picked the port (-1) and says which.
    let ws_port = env
        .nats
        .logged_port("Listening for websocket clients on ws://");
    let site = Site::serve(
        listener,
        serde_json::json!({
            "issuer": issuer,
            "client_id": "nats-browser",
            "scope": "nats",
            "resource": idp.resource,
            "nats_url": format!("ws://127.0.0.1:{ws_port}"),
            "subject": "app.{sub}.greetings",
            "forbidden_subject": "app.nobody.greetings",
            "token_cookie": TOKEN_COOKIE,
        }),
    );
    let mut tap = RequestTap::start(&env.nats.url()).await;

    let report = drive(&site.url(), "alice").await;
    let result = &report["result"];
    assert!(
        result["error"].is_null(),
        "the page failed: {}\n{}\n{}",
        result["error"],
        report["log"],
        report["problems"]
    );

    // Inside the grant: published and received on its own subject.
    assert_eq!(result["sub"], "alice");
    assert_eq!(result["received"], "hello from alice");
    // Outside it: the server refuses, nats.js reports the violation.
    let refused = |key: &str, op: &str| {
        let text = result[key].as_str().unwrap_or_default();
        let want = format!("Permissions Violation for {op} to \"app.nobody.greetings\"");
        assert!(text.contains(&want), "{key}: {text:?} lacks {want:?}");
    };
    refused("publish_refused", "Publish");
    refused("subscribe_refused", "Subscription");

    // The server read the token from the cookie when CONNECT carried none.
    let cookie = &result["cookie"];
    assert_eq!(cookie["received"], "hello via the cookie");
    let without = cookie["without_cookie"].as_str().unwrap_or_default();
    assert!(
        without.contains("Authorization Violation"),
        "a connection with neither token nor cookie: {without:?}"
    );
    assert!(env
        .nats
        .log()
        .contains("Auth callout service returned an error: no token presented"));

    // What the server told the service about each WebSocket connection.
    let request = |name: &'static str| {
        move |r: &Value| r["client_info"]["name"] == name && r["client_info"]["type"] == "websocket"
    };
    let first = tap.next_where(LIMIT, request("browser-example")).await;
    eprintln!(
        "request for a browser (WebSocket) client: {}",
        RequestTap::redacted(&first)
    );
    assert_eq!(first["client_info"]["host"], "127.0.0.1");
    assert_eq!(first["client_info"]["kind"], "Client");
    assert!(first["connect_opts"]["auth_token"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    let bare = tap
        .next_where(LIMIT, request("browser-example-no-token"))
        .await;
    assert_eq!(
        bare["connect_opts"]["auth_token"].as_str().unwrap_or(""),
        ""
    );
    let via_cookie = tap
        .next_where(LIMIT, request("browser-example-cookie"))
        .await;
    eprintln!(
        "request for a browser client with the token in the cookie: {}",
        RequestTap::redacted(&via_cookie)
    );
    assert_eq!(
        via_cookie["connect_opts"]["auth_token"], first["connect_opts"]["auth_token"],
        "the server put the cookie's token into auth_token"
    );

    // The service's decisions, one audit line each.
    let log = env.service().log();
    let decision = |name: &str| {
        log.lines()
            .find(|l| l.contains("authorization decision") && l.contains(name))
            .unwrap_or_else(|| panic!("no decision for {name}:\n{log}"))
    };
    let allowed = decision("client_name=\"browser-example\"");
    for part in ["decision=\"allow\"", "subject=\"alice\"", "rules=browsers"] {
        assert!(allowed.contains(part), "{allowed}");
    }
    let denied = decision("client_name=\"browser-example-no-token\"");
    assert!(
        denied.contains("decision=\"deny\"") && denied.contains("no token presented"),
        "{denied}"
    );

    // The same access token over plain NATS: the rule is WebSocket-only.
    let token = report["token"].as_str().expect("the driver saw the token");
    env.assert_refused(
        connect_token(&env.nats.url(), token).await,
        "no rule grants access",
    )
    .await;
}
