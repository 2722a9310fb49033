//! Client recipes in every language against the real service and IdP,
//! through token and user-JWT expiries; and one that is revoked mid-run.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_async_nats_client_outlives_its_tokens() {
    let _slot = SLOTS.acquire().await.unwrap();
    let exe = rust_client().await;
    let bench = Bench::start().await;
    let mut cmd = Command::new(exe);
    bench.client_credentials_env(&mut cmd);
    let report = bench.run("rust", cmd).await;
    report.assert_outlived_its_tokens(true);
    bench.assert_stream_fully_acked("rust").await;
}

/// A client whose access was revoked stays out: revoking the running
/// recipe's subject closes its connection, every reconnect is denied with
/// the reason (its token is still valid and refreshed), and it publishes
/// nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_access_was_revoked_stays_out() {
    let _slot = SLOTS.acquire().await.unwrap();
    let exe = rust_client().await;
    let bench = Bench::start_with(true).await;
    let mut cmd = Command::new(exe);
    bench.client_credentials_env(&mut cmd);
    let stack = "rust-revoked";
    let mut running = bench.spawn(stack, cmd);
    let stored = || async {
        let mut stream = bench.js.get_stream(STREAM).await.unwrap();
        stream.info().await.unwrap().state.messages
    };
    let working = wait_until_async(Duration::from_secs(60), || async { stored().await >= 3 }).await;
    assert!(
        working,
        "the recipe never published:\n{}",
        bench.env.service().log()
    );

    let config = bench.env.config_path();
    let o = run_cli(&[
        "revoke",
        "--config",
        config.to_str().unwrap(),
        "--subject",
        WORKER,
        "--reason",
        "contract ended",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let answer: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(answer["closed"].as_u64() >= Some(1), "{answer} {stderr}");

    let name = client_name(stack);
    let revoked = |n: usize| {
        let log = bench.env.service().log();
        decisions(&log, &name)
            .iter()
            .filter(|d| !d.allowed && d.reason.as_deref() == Some("revoked: contract ended"))
            .count()
            >= n
    };
    let denied = wait_until_async(Duration::from_secs(30), || async { revoked(1) }).await;
    assert!(
        denied,
        "no reconnect was denied:\n{}",
        bench.env.service().log()
    );
    let after_first_denial = stored().await;
    let denied_again = wait_until_async(Duration::from_secs(30), || async { revoked(3) }).await;
    assert!(
        denied_again,
        "the client stopped trying:\n{}",
        bench.env.service().log()
    );
    let log = bench.env.service().log();
    let mine = decisions(&log, &name);
    let first_denial = mine.iter().position(|d| !d.allowed).unwrap();
    assert!(
        mine[first_denial..].iter().all(|d| !d.allowed),
        "a connect was allowed after the revocation: {mine:?}"
    );
    assert_eq!(
        stored().await,
        after_first_denial,
        "published after the revocation"
    );
    assert!(
        bench.env.nats.log().contains("revoked: contract ended"),
        "{}",
        bench.env.nats.log()
    );
    let _ = running.child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_nats_go_client_outlives_its_tokens() {
    let _slot = SLOTS.acquire().await.unwrap();
    let bench = Bench::start().await;
    let exe = bench.dir.path().join("recipe-go");
    build(
        "go build",
        Command::new("go")
            .current_dir(examples().join("go"))
            .env("GOFLAGS", "-mod=readonly -modcacherw")
            .arg("build")
            .arg("-o")
            .arg(&exe)
            .arg("."),
    )
    .await;
    let (_sidecar, file) = bench.sidecar();
    let mut cmd = Command::new(exe);
    cmd.env("NATS_TOKEN_FILE", &file);
    let report = bench.run("go", cmd).await;
    report.assert_outlived_its_tokens(true);
    bench.assert_stream_fully_acked("go").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_nats_py_client_outlives_its_tokens() {
    let _slot = SLOTS.acquire().await.unwrap();
    let python = tool(".tools/clients-venv/bin/python");
    let bench = Bench::start().await;
    let (_sidecar, file) = bench.sidecar();
    let mut cmd = Command::new(python);
    cmd.arg(examples().join("python/recipe.py"))
        .env("NATS_TOKEN_FILE", &file);
    let report = bench.run("python", cmd).await;
    report.assert_outlived_its_tokens(true);
    bench.assert_stream_fully_acked("python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_nats_js_client_outlives_its_tokens() {
    let _slot = SLOTS.acquire().await.unwrap();
    tool("examples/clients/js/node_modules/@nats-io/transport-node");
    let bench = Bench::start().await;
    let mut cmd = Command::new("node");
    cmd.arg(examples().join("js/recipe.mjs"));
    bench.client_credentials_env(&mut cmd);
    let report = bench.run("js", cmd).await;
    report.assert_outlived_its_tokens(true);
    bench.assert_stream_fully_acked("js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_jnats_client_outlives_its_tokens() {
    let _slot = SLOTS.acquire().await.unwrap();
    let repo = tool(".tools/m2");
    let project = examples().join("java");
    build(
        "mvn compile",
        Command::new("mvn")
            .current_dir(&project)
            .arg("-B")
            .arg("-o")
            .arg("-q")
            .arg(format!("-Dmaven.repo.local={}", repo.display()))
            .args([
                "compile",
                "dependency:build-classpath",
                "-Dmdep.outputFile=target/classpath.txt",
            ]),
    )
    .await;
    let deps = std::fs::read_to_string(project.join("target/classpath.txt")).unwrap();
    let bench = Bench::start().await;
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(format!(
            "{}:{}",
            project.join("target/classes").display(),
            deps.trim()
        ))
        .arg("example.Recipe");
    bench.client_credentials_env(&mut cmd);
    let report = bench.run("java", cmd).await;
    report.assert_outlived_its_tokens(true);
    bench.assert_stream_fully_acked("java").await;
}

/// Short `nats` invocations that each read the sidecar's file keep working;
/// a long-running `nats sub` keeps the token it started with, and once that
/// token has expired its reconnects are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cli_invocations_outlive_their_tokens_but_a_long_running_one_does_not() {
    let _slot = SLOTS.acquire().await.unwrap();
    let bin = tool(".tools/bin/nats");
    let bench = Bench::start().await;
    let (_sidecar, file) = bench.sidecar();
    let long_running = client_name("cli-long-running");
    let mut sub = Command::new(&bin)
        .args(["--server", &bench.env.nats.url(), "--connection-name"])
        .arg(&long_running)
        .args(["--inbox-prefix", &format!("_INBOX.{WORKER}")])
        .args(["sub", &format!("_INBOX.{WORKER}.cli-long-running")])
        .env("NATS_TOKEN", std::fs::read_to_string(&file).unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("nats sub");

    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg(examples().join("cli/recipe.sh"))
        .env("PATH", path)
        .env("NATS_TOKEN_FILE", &file);
    let report = bench.run("cli", cmd).await;
    report.assert_outlived_its_tokens(false);
    bench.assert_stream_fully_acked("cli").await;

    let limit = decisions(&bench.env.service().log(), &long_running);
    let _ = sub.kill().await;
    assert!(
        limit.first().is_some_and(|d| d.allowed),
        "nats sub never connected: {limit:?}"
    );
    // Refused as expired, or (inside the validation leeway) as expiring too
    // soon to issue a user.
    assert!(
        limit.iter().any(|d| !d.allowed
            && d.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("token expire"))),
        "the long-running nats sub was never refused its expired token: {limit:?}"
    );
    eprintln!(
        "[cli-long-running] {} allowed, then refused: {:?}",
        limit.iter().filter(|d| d.allowed).count(),
        limit.iter().find(|d| !d.allowed)
    );
}
