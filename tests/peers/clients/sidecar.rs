//! Token sources outside the recipes: the `token --out FILE --refresh`
//! sidecar and the GitHub Actions ID-token source.

use super::*;

/// `nats-oidc-callout token --out FILE --refresh`, stopped by PID on drop.
pub(super) struct Sidecar {
    child: std::process::Child,
    log: PathBuf,
}

impl Sidecar {
    pub(super) fn start(idp: &NodeIdp, file: &Path, extra: &[&str]) -> Sidecar {
        Sidecar::with_secret(idp, &idp.short_secret_file(), file, extra)
    }

    fn with_secret(idp: &NodeIdp, secret: &Path, file: &Path, extra: &[&str]) -> Sidecar {
        let log = file.with_extension("sidecar.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_nats-oidc-callout"))
            .args(["token", "--issuer-url", &idp.issuer(), "--client-id"])
            .arg(&idp.short_client_id)
            .arg("--client-secret-file")
            .arg(secret)
            .args(["--scope", "nats", "--audience", &idp.resource, "--out"])
            .arg(file)
            .arg("--refresh")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start the sidecar");
        Sidecar { child, log }
    }

    pub(super) fn wait_for_file(&self, file: &Path) {
        assert!(
            wait_until(Duration::from_secs(15), || file.exists()),
            "the sidecar wrote no token:\n{}",
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; the exit status, waited for up to 10 s.
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let mut status = None;
        wait_until(Duration::from_secs(10), || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fake of the runner's ID-token endpoint on 127.0.0.1: checks the
/// request token and the `audience` parameter, answers with `token`.
async fn fake_actions_endpoint(
    request_token: &'static str,
    token: String,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/_apis/idtoken?api-version=2.0",
        listener.local_addr().unwrap()
    );
    let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let target = head.split_whitespace().nth(1).unwrap_or("").to_owned();
            let authorized = head
                .lines()
                .any(|l| l.eq_ignore_ascii_case(&format!("authorization: bearer {request_token}")));
            let _ = seen.send(target);
            let (status, body) = if authorized {
                ("200 OK", serde_json::json!({"value": token}).to_string())
            } else {
                ("401 Unauthorized", "{}".to_owned())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    (url, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_actions_id_token_source_connects_with_the_requested_audience() {
    let bench = Bench::start().await;
    let secret = std::fs::read_to_string(bench.idp.short_secret_file()).unwrap();
    let minted = ClientCredentials::builder(bench.idp.issuer(), WORKER, secret)
        .scope("nats")
        .audience(&bench.idp.resource)
        .build()
        .unwrap();
    let token = nats_oidc_callout::client::TokenSource::token(&minted)
        .await
        .unwrap();
    let (url, mut requests) = fake_actions_endpoint("runner-request-token", token).await;

    let source = GitHubActions::new(&url, "runner-request-token", &bench.idp.resource).unwrap();
    let nats = connect_options(source)
        .await
        .expect("ID token")
        .connect(bench.env.nats.url())
        .await
        .expect("connects with the ID token");
    let js = jetstream::new(nats);
    js.publish(format!("orders.{WORKER}.actions"), "1".into())
        .await
        .unwrap()
        .await
        .expect("published into the stream, ack on the per-identity inbox");
    let target = requests.recv().await.unwrap();
    assert_eq!(
        target,
        format!(
            "/_apis/idtoken?api-version=2.0&audience={}",
            url::form_urlencoded::byte_serialize(bench.idp.resource.as_bytes()).collect::<String>()
        )
    );

    let wrong = GitHubActions::new(&url, "not-the-request-token", "nats").unwrap();
    let err = connect_options(wrong).await.unwrap_err().to_string();
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(!err.contains("not-the-request-token"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_keeps_a_0600_file_fresh_and_stops_on_sigterm() {
    use std::os::unix::fs::PermissionsExt;
    let idp = NodeIdp::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let mut sidecar = Sidecar::start(&idp, &file, &[]);
    sidecar.wait_for_file(&file);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let first = std::fs::read_to_string(&file).unwrap();
    assert_eq!(first.split('.').count(), 3, "a JWT: {first}");

    let renewed = wait_until(Duration::from_secs(SHORT_TOKEN_TTL * 2), || {
        std::fs::read_to_string(&file).is_ok_and(|t| t != first)
    });
    assert!(renewed, "the token was never renewed:\n{}", sidecar.log());
    // Renewed ahead of expiry, by the IdP's own clock: the second token was
    // issued (exp - TTL) before the first one's exp.
    let issued = idp.issued(&idp.short_client_id);
    assert!(
        issued[1] - (SHORT_TOKEN_TTL as i64) < issued[0],
        "renewed only after the old token expired: {issued:?}\n{}",
        sidecar.log()
    );
    assert_eq!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count(),
        0,
        "temporary files left behind"
    );

    let status = sidecar.terminate().expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", sidecar.log());
    let log = sidecar.log();
    assert!(log.contains("token written"), "{log}");
    let last = std::fs::read_to_string(&file).unwrap();
    let secret = std::fs::read_to_string(idp.short_secret_file()).unwrap();
    for (what, value) in [
        ("first token", &first),
        ("token", &last),
        ("secret", &secret),
    ] {
        assert!(
            !log.contains(value.trim()),
            "the {what} leaked into the log:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_retries_a_refusing_idp_with_backoff_and_logs_no_secret() {
    let idp = NodeIdp::start();
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-secret");
    write_secret(&wrong, "not-the-secret");
    let file = dir.path().join("token");
    let mut sidecar = Sidecar::with_secret(&idp, &wrong, &file, &[]);
    let retried = wait_until(Duration::from_secs(15), || {
        sidecar.log().matches("token refresh failed").count() >= 3
    });
    let log = sidecar.log();
    assert!(retried, "fewer than 3 attempts:\n{log}");
    assert!(log.contains("invalid_client"), "{log}");
    assert!(!log.contains("not-the-secret"), "the secret leaked:\n{log}");
    let failures: Vec<u32> = log
        .lines()
        .filter(|l| l.contains("token refresh failed"))
        .filter_map(|l| field(l, "failures")?.parse().ok())
        .collect();
    assert_eq!(&failures[..3], [1, 2, 3], "{log}");
    assert!(!file.exists(), "a refused fetch wrote a file");
    assert_eq!(sidecar.terminate().and_then(|s| s.code()), Some(0), "{log}");
}

#[test]
fn sidecar_bad_arguments_exit_2() {
    let common = [
        "token",
        "--issuer-url",
        "http://127.0.0.1:9",
        "--client-id",
        "x",
        "--client-secret-file",
    ];
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    write_secret(&secret, "s");
    let secret = secret.to_str().unwrap();
    let run = |extra: &[&str]| {
        let args: Vec<&str> = common
            .iter()
            .copied()
            .chain([secret])
            .chain(extra.iter().copied())
            .collect();
        run_cli(&args)
    };
    // --refresh needs --out.
    assert_eq!(run(&["--refresh"]).status.code(), Some(2));
    // The file's directory must exist.
    let o = run(&["--out", "/nonexistent/dir/token", "--refresh"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--out"));
    // Plain http off loopback is refused before any request.
    let o = run_cli(&[
        "token",
        "--issuer-url",
        "http://idp.example.com",
        "--client-id",
        "x",
        "--client-secret-file",
        secret,
        "--out",
        dir.path().join("t").to_str().unwrap(),
        "--refresh",
    ]);
    assert_eq!(o.status.code(), Some(2));
}
