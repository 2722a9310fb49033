//! The commands as users run them: exit codes, files, and output.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::support::*;
use serde_json::Value;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn keygen_writes_private_seeds_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, seed_prefix, pub_prefix) in [("account", "SA", 'A'), ("xkey", "SX", 'X')] {
        let out = dir.path().join(format!("{kind}.nk"));
        let o = run_cli(&["keygen", kind, "--out", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let public = stdout(&o).lines().last().unwrap().to_owned();
        assert!(
            public.starts_with(pub_prefix) && public.len() == 56,
            "{public}"
        );
        let seed = std::fs::read_to_string(&out).unwrap();
        assert!(seed.trim().starts_with(seed_prefix));
        assert_eq!(mode(&out), 0o600);
        assert!(!stdout(&o).contains(seed.trim()), "seed printed");

        let again = run_cli(&["keygen", kind, "--out", out.to_str().unwrap()]);
        assert_eq!(again.status.code(), Some(2));
        assert!(
            stderr(&again).contains("refusing to overwrite"),
            "{}",
            stderr(&again)
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), seed, "file changed");
    }
}

#[test]
fn bad_arguments_exit_2_and_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never-written.nk");
    let o = run_cli(&["keygen", "operator", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid value 'operator'"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "a refused keygen wrote a file");
    let o = run_cli(&["no-such-command"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no-such-command"), "{}", stderr(&o));
    let o = run_cli(&["check", "--config", "x.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--token"), "{}", stderr(&o));
}

/// `dev-token` with these arguments; it must succeed.
fn dev_token(args: &[&str]) -> String {
    let mut all = vec!["dev-token"];
    all.extend_from_slice(args);
    let o = run_cli(&all);
    assert_eq!(
        o.status.code(),
        Some(0),
        "dev-token {args:?}: {}",
        stderr(&o)
    );
    stdout(&o).trim().to_owned()
}

fn bootstrap(dir: &Path, port: u16) {
    let o = run_cli(&[
        "bootstrap",
        "--dir",
        dir.to_str().unwrap(),
        "--port",
        &port.to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn validate_reports_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap(dir.path(), 4222);
    let cfg = dir.path().join("callout.toml");
    let ok = run_cli(&["validate", "--config", cfg.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", stderr(&ok));

    let policy = dir.path().join("policy.toml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        text.replace(
            "grant = [\"own-namespace\"]",
            "grant = [\"own-namespace\", \"nope\"]",
        ),
    )
    .unwrap();
    let bad = run_cli(&["validate", "--config", cfg.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
    let line = text.lines().position(|l| l.starts_with("grant")).unwrap() + 1;
    let expected = format!("{}:{line}:", policy.display());
    assert!(
        stderr(&bad).contains(&expected),
        "want {expected} in {}",
        stderr(&bad)
    );
    assert!(
        stderr(&bad).contains("undefined permission set \"nope\""),
        "{}",
        stderr(&bad)
    );

    let config_text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        config_text.replace("[token]", "[token]\nmax_tll = \"1h\""),
    )
    .unwrap();
    let bad = run_cli(&["validate", "--config", cfg.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("max_tll"), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains(&format!("{}:", cfg.display())),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn check_prints_the_decision_and_exits_accordingly() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap(dir.path(), 4222);
    let d = dir.path().to_str().unwrap();
    let cfg = dir.path().join("callout.toml");
    let cfg = cfg.to_str().unwrap();

    let token = dev_token(&["--dir", d, "--sub", "svc-42", "--scope", "nats"]);
    let o = run_cli(&["check", "--config", cfg, "--token", &token]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["allowed"], true);
    assert_eq!(v["issuer"], "dev");
    assert_eq!(v["subject"], "svc-42");
    assert_eq!(v["account"], "APP");
    assert_eq!(v["rules"], serde_json::json!(["nats-users"]));
    assert_eq!(
        v["permissions"]["pub"]["allow"],
        serde_json::json!(["app.svc-42.>"])
    );
    assert_eq!(
        v["permissions"]["sub"]["allow"],
        serde_json::json!(["app.svc-42.>", "_INBOX.svc-42.>"])
    );
    assert!(v["expires_at"].as_i64().unwrap() > now());
    assert_eq!(v["error"], Value::Null);

    let file = dir.path().join("token.jwt");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let from_file = run_cli(&[
        "check",
        "--config",
        cfg,
        "--token",
        &format!("@{}", file.display()),
    ]);
    assert_eq!(from_file.status.code(), Some(0));

    let unscoped = dev_token(&["--dir", d, "--sub", "x"]);
    let o = run_cli(&["check", "--config", cfg, "--token", &unscoped]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["error"], "no rule grants access");

    let expired = dev_token(&["--dir", d, "--scope", "nats", "--ttl", "0s"]);
    let o = run_cli(&["check", "--config", cfg, "--token", &expired]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["error"].as_str().unwrap().contains("expire"), "{v}");

    let claims = dir.path().join("claims.json");
    std::fs::write(
        &claims,
        r#"{"iss": "https://dev-issuer.nats-oidc-callout.invalid", "sub": "tenant-a", "scope": "nats"}"#,
    )
    .unwrap();
    let o = run_cli(&[
        "check",
        "--config",
        cfg,
        "--claims",
        claims.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["permissions"]["pub"]["allow"],
        serde_json::json!(["app.tenant-a.>"])
    );

    std::fs::write(
        &claims,
        r#"{"iss": "https://dev-issuer.nats-oidc-callout.invalid", "sub": "a.>", "scope": "nats"}"#,
    )
    .unwrap();
    let check_claims = || {
        run_cli(&[
            "check",
            "--config",
            cfg,
            "--claims",
            claims.to_str().unwrap(),
        ])
    };
    let o = check_claims();
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["error"], "claim \"sub\" is not a valid subject token");

    std::fs::write(&claims, "{not json").unwrap();
    assert_eq!(check_claims().status.code(), Some(2));
}

#[test]
fn server_config_matches_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap(dir.path(), 4222);
    let o = run_cli(&[
        "server-config",
        "--config",
        dir.path().join("callout.toml").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let text = stdout(&o);
    let conf = std::fs::read_to_string(dir.path().join("nats-server.conf")).unwrap();
    let issuer = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("issuer: "))
        .unwrap();
    let xkey = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("xkey: "))
        .unwrap();
    assert!(text.contains(&format!("issuer: {issuer}")), "{text}");
    assert!(text.contains(&format!("xkey: {xkey}")), "{text}");
    assert!(text.contains("auth_users: [ auth ]"), "{text}");
}

#[test]
fn bootstrap_refuses_to_overwrite_and_keeps_secrets_private() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap(dir.path(), 4222);
    for f in [
        "keys/issuer.nk",
        "keys/xkey.nk",
        "keys/auth.password",
        "keys/dev-issuer.pem",
        "nats-server.conf",
    ] {
        assert_eq!(mode(&dir.path().join(f)), 0o600, "{f}");
    }
    let o = run_cli(&["bootstrap", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );
}

/// The demo's path, as a test: bootstrap output runs as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrapped_setup_serves_dev_tokens() {
    // Bootstrap's port is the demo's choice, so it is picked here; should
    // another process take it before nats-server binds it, the whole setup
    // starts again on another port.
    let mut attempts = 0;
    let (dir, nats) = loop {
        attempts += 1;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        bootstrap(dir.path(), port);
        let conf = std::fs::read_to_string(dir.path().join("nats-server.conf")).unwrap();
        let check = std::process::Command::new(nats_server_bin())
            .args(["-t", "-c"])
            .arg(dir.path().join("nats-server.conf"))
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "nats-server -t: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        match NatsServer::try_start(port, &conf) {
            Ok(nats) => break (dir, nats),
            Err(log) if port_taken(&log) && attempts < 3 => continue,
            Err(log) => panic!("nats-server did not start:\n{log}"),
        }
    };
    let _service = ServiceProcess::start(&dir.path().join("callout.toml"));
    let d = dir.path().to_str().unwrap();
    let token = dev_token(&["--dir", d, "--sub", "alice", "--scope", "nats"]);
    let client = connect_token(&nats.url(), &token)
        .await
        .expect("dev token connects");
    round_trip(&client.nats, "app.alice.hi").await;
    let unscoped = dev_token(&["--dir", d]);
    match connect_token(&nats.url(), &unscoped).await {
        Ok(_) => panic!("a token without the nats scope connected"),
        Err(e) => assert_eq!(
            e.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation
        ),
    }
    let reason = "Auth callout service returned an error: no rule grants access";
    assert!(
        wait_until(Duration::from_secs(5), || nats.log().contains(reason)),
        "server log lacks {reason:?}:\n{}",
        nats.log()
    );
}

/// Every shipped `policies/*.callout.toml` validates from a fresh clone,
/// given as a path relative to the repository (paths inside it are taken
/// from its own folder, once); the signing seed it names is not in the
/// repository, which offline validation only warns about.
#[test]
fn every_shipped_config_validates_from_the_repository_root() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut configs: Vec<_> = std::fs::read_dir(root.join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".callout.toml"))
        .collect();
    configs.sort();
    assert!(configs.len() >= 10, "{configs:?}");
    for config in configs {
        let relative = config.strip_prefix(root).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nats-oidc-callout"))
            .current_dir(root)
            .args(["validate", "--config", relative.to_str().unwrap()])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {stderr}",
            relative.display()
        );
        assert!(
            stderr.contains("`serve` needs it"),
            "{}: {stderr}",
            relative.display()
        );
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));
    }
}
