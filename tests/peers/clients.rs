//! Clients that outlive their tokens. Every recipe in `examples/clients/`
//! runs as a subprocess against the real service, the real IdP
//! (oidc-provider, whose `worker` client gets access tokens that live
//! `SHORT_TOKEN_TTL` seconds) and a real nats-server with JetStream, under a
//! policy whose user JWTs live `USER_TTL` seconds. Each recipe must keep
//! working through several user-JWT expiries and at least one access-token
//! expiry, with a durable consumer that loses no message. Also here: the
//! `token --out FILE --refresh` sidecar, the GitHub Actions source, the
//! `client` feature's dependency tree, and the README's copies of the
//! recipes.
//! And a recipe whose subject is revoked while it runs stays out.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;
use async_nats::jetstream::{self, consumer, stream};
use nats_oidc_callout::client::{connect_options, ClientCredentials, GitHubActions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// The policy's user JWT lifetime in these tests.
const USER_TTL: i64 = 3;
const MESSAGES: usize = 30;
const INTERVAL_MS: u64 = 500;
/// Reconnects each client must report: user JWTs expire every `USER_TTL`.
const MIN_RECONNECTS: usize = 5;
/// A recipe that has not finished by then has failed.
const RECIPE_LIMIT: Duration = Duration::from_secs(150);
const STREAM: &str = "ORDERS";
/// The short client's token subject, consumer name and inbox.
const WORKER: &str = "worker";

/// At most two recipes at a time: the machine has two cores.
static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn examples() -> PathBuf {
    root().join("examples/clients")
}

/// A tool the setup scripts install; missing fails the test, never skips it.
fn tool(rel: &str) -> PathBuf {
    let path = root().join(rel);
    assert!(
        path.exists(),
        "{} missing — run scripts/setup.sh (scripts/setup/clients.sh)",
        path.display()
    );
    path
}

/// `examples/clients/policy.toml` with the short test `ttl`, plus a rule
/// for the test's own operator (the `ci-job` client with `nats:admin`), who
/// creates the stream and the consumer and reads their state.
fn recipe_policy() -> String {
    let shipped = std::fs::read_to_string(examples().join("policy.toml")).unwrap();
    let line = "ttl = \"15m\"";
    assert_eq!(shipped.matches(line).count(), 1, "policy.toml has one ttl");
    format!(
        "{}\n{}",
        shipped.replace(line, &format!("ttl = \"{USER_TTL}s\"")),
        r#"
[permissions.jetstream-admin]
pub = { allow = ["$JS.API.>"] }
sub = { allow = ["_INBOX.{claim.sub}.>"] }

[[rules]]
name = "test-admin"
issuer = "corp"
scopes = ["nats:admin"]
grant = ["jetstream-admin"]
ttl = "10m"
"#
    )
}

/// The IdP, nats-server (APP with JetStream), the service, the ORDERS
/// stream and the `worker` durable pull consumer.
struct Bench {
    idp: NodeIdp,
    env: Env,
    js: jetstream::Context,
    dir: tempfile::TempDir,
    _store: tempfile::TempDir,
}

impl Bench {
    async fn start() -> Bench {
        Self::start_with(false).await
    }

    /// With `revocation`, the service watches a revocation bucket and may
    /// close live connections (`[system]`).
    async fn start_with(revocation: bool) -> Bench {
        let idp = NodeIdp::start();
        let store = tempfile::tempdir().unwrap();
        let issuer = idp.issuer();
        let policy = recipe_policy();
        let nats_extra = format!("jetstream {{ store_dir: {:?} }}", store.path());
        let env = Env::start(EnvOptions {
            policy: &policy,
            external_issuer: Some((&issuer, &idp.resource)),
            issuer_extra: "require_typ = \"at+jwt\"",
            app_jetstream: true,
            revocation,
            nats_extra: &nats_extra,
            ..Default::default()
        })
        .await;
        let secret = std::fs::read_to_string(idp.secret_file()).unwrap();
        let admin = ClientCredentials::builder(&issuer, &idp.client_id, secret)
            .scope("nats:admin")
            .audience(&idp.resource)
            .build()
            .unwrap();
        let nats = connect_options(admin)
            .await
            .expect("admin token")
            .connect(env.nats.url())
            .await
            .expect("admin connects");
        let js = jetstream::new(nats);
        js.create_stream(stream::Config {
            name: STREAM.into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .expect("create stream");
        js.create_consumer_on_stream(
            consumer::pull::Config {
                durable_name: Some(WORKER.into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(3),
                ..Default::default()
            },
            STREAM,
        )
        .await
        .expect("create consumer");
        Bench {
            idp,
            env,
            js,
            dir: tempfile::tempdir().unwrap(),
            _store: store,
        }
    }

    /// The environment every recipe reads.
    fn recipe_env(&self, cmd: &mut Command, stack: &str) {
        cmd.env("NATS_URL", self.env.nats.url())
            .env("NATS_NAME", client_name(stack))
            .env("NATS_INBOX_PREFIX", format!("_INBOX.{WORKER}"))
            .env("CONSUMER", WORKER)
            .env("SUBJECT", format!("orders.{WORKER}.{stack}"))
            .env("MESSAGES", MESSAGES.to_string())
            .env("INTERVAL_MS", INTERVAL_MS.to_string())
            .env("MIN_RECONNECTS", MIN_RECONNECTS.to_string());
    }

    /// In-language client credentials: the recipe asks the IdP itself.
    fn client_credentials_env(&self, cmd: &mut Command) {
        cmd.env("OIDC_ISSUER", self.idp.issuer())
            .env("OIDC_CLIENT_ID", &self.idp.short_client_id)
            .env("OIDC_CLIENT_SECRET_FILE", self.idp.short_secret_file())
            .env("OIDC_SCOPE", "nats")
            .env("OIDC_AUDIENCE", &self.idp.resource);
    }

    /// `token --out FILE --refresh` for the short client, once FILE exists.
    fn sidecar(&self) -> (Sidecar, PathBuf) {
        let file = self.dir.path().join("token");
        let sidecar = Sidecar::start(&self.idp, &file, &[]);
        sidecar.wait_for_file(&file);
        (sidecar, file)
    }

    /// Runs a recipe to its end and gathers what the client, the service
    /// and the IdP saw.
    async fn run(&self, stack: &str, cmd: Command) -> Report {
        self.spawn(stack, cmd).finish(self).await
    }

    /// Starts a recipe; a test may act on the running client (revoke it,
    /// restart a server) before [`Running::finish`].
    fn spawn(&self, stack: &str, mut cmd: Command) -> Running {
        self.recipe_env(&mut cmd, stack);
        let stdout = self.dir.path().join(format!("{stack}.stdout"));
        let stderr = self.dir.path().join(format!("{stack}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true);
        Running {
            stack: stack.to_owned(),
            child: cmd.spawn().unwrap_or_else(|e| panic!("{stack}: {e}")),
            started: Instant::now(),
            stdout,
            stderr,
        }
    }

    /// The server's own account of the consumer: every message stored
    /// once (the message ids deduplicate retried publishes) and acked.
    async fn assert_stream_fully_acked(&self, stack: &str) {
        let mut stream = self.js.get_stream(STREAM).await.unwrap();
        let messages = stream.info().await.unwrap().state.messages;
        assert_eq!(
            messages, MESSAGES as u64,
            "{stack}: stream holds each message once"
        );
        let mut consumer: jetstream::consumer::PullConsumer =
            stream.get_consumer(WORKER).await.unwrap();
        let mut last = None;
        for _ in 0..100 {
            let i = consumer.info().await.unwrap();
            last = Some((
                i.num_pending,
                i.num_ack_pending,
                i.ack_floor.stream_sequence,
            ));
            if last == Some((0, 0, MESSAGES as u64)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            last,
            Some((0, 0, MESSAGES as u64)),
            "{stack}: consumer (pending, ack pending, ack floor)"
        );
    }
}

/// A recipe process, killed if dropped before it ends.
struct Running {
    stack: String,
    child: tokio::process::Child,
    started: Instant,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    /// Waits (bounded) for the recipe to end; what the client, the service
    /// and the IdP saw.
    async fn finish(mut self, bench: &Bench) -> Report {
        let stack = &self.stack;
        let status = tokio::time::timeout(RECIPE_LIMIT, self.child.wait()).await;
        let seconds = self.started.elapsed().as_secs_f64();
        let stdout = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let Ok(status) = status else {
            let _ = self.child.kill().await;
            panic!("{stack}: no end within {RECIPE_LIMIT:?}\n{stdout}\n{stderr}");
        };
        let summary: Value = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("{stack}: no JSON summary\n{stdout}\n{stderr}"));
        let report = Report {
            stack: stack.clone(),
            ok: status.is_ok_and(|s| s.success()),
            summary,
            decisions: decisions(&bench.env.service().log(), &client_name(stack)),
            issued: bench.idp.issued(&bench.idp.short_client_id),
            violations: bench
                .env
                .nats
                .log()
                .lines()
                .filter(|l| l.contains("Permissions Violation"))
                .map(str::to_owned)
                .collect(),
            seconds,
            stderr,
        };
        eprintln!("{}", report.line());
        report
    }
}

fn client_name(stack: &str) -> String {
    format!("clients-{stack}")
}

/// One authorization decision of the service's audit log.
#[derive(Debug)]
struct Decision {
    allowed: bool,
    reason: Option<String>,
    expires_at: Option<i64>,
}

/// `key=value` of a human-format tracing line; string values are quoted.
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        let end = quoted.find('"')?;
        Some(quoted[..end].to_owned())
    } else {
        Some(rest.split_whitespace().next()?.to_owned())
    }
}

fn decisions(log: &str, client: &str) -> Vec<Decision> {
    log.lines()
        .filter(|l| l.contains("authorization decision"))
        .filter(|l| field(l, "client_name").as_deref() == Some(client))
        .map(|l| Decision {
            allowed: field(l, "decision").as_deref() == Some("allow"),
            reason: field(l, "reason"),
            expires_at: field(l, "expires_at").and_then(|v| v.parse().ok()),
        })
        .collect()
}

/// What one recipe run showed.
struct Report {
    stack: String,
    ok: bool,
    summary: Value,
    decisions: Vec<Decision>,
    /// `exp` of each access token the IdP issued to the short client.
    issued: Vec<i64>,
    /// The server's log of anything the policy did not grant.
    violations: Vec<String>,
    seconds: f64,
    stderr: String,
}

impl Report {
    fn allows(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| d.allowed)
    }

    fn line(&self) -> String {
        format!(
            "[{}] {:.1} s, summary {}, service allowed {} connects and denied {}, IdP issued {} tokens",
            self.stack,
            self.seconds,
            self.summary,
            self.allows().count(),
            self.decisions.len() - self.allows().count(),
            self.issued.len()
        )
    }

    /// Every message acked, at least `MIN_RECONNECTS` reconnects, no
    /// denial, and a connect allowed *after the first access token had
    /// expired*: a user JWT lives at most `USER_TTL` and never past its
    /// token's `exp`, so an allow that expires later than `first exp +
    /// USER_TTL` was granted after that exp, for a newer token.
    fn assert_outlived_its_tokens(&self, client_reconnects: bool) {
        let ctx = format!("{}\nstderr:\n{}", self.line(), self.stderr);
        assert!(self.ok, "recipe failed: {ctx}");
        assert_eq!(self.summary["published"], MESSAGES, "{ctx}");
        assert_eq!(self.summary["received"], MESSAGES, "{ctx}");
        assert_eq!(self.summary["missing"], serde_json::json!([]), "{ctx}");
        if client_reconnects {
            let r = self.summary["reconnects"].as_u64().unwrap_or(0);
            assert!(r >= MIN_RECONNECTS as u64, "{r} reconnects: {ctx}");
        }
        // The policy grants everything the client uses.
        assert!(self.violations.is_empty(), "{:#?}\n{ctx}", self.violations);
        let denied: Vec<_> = self.decisions.iter().filter(|d| !d.allowed).collect();
        assert!(denied.is_empty(), "denied {denied:?}: {ctx}");
        assert!(
            self.allows().count() > MIN_RECONNECTS,
            "the service allowed too few connects: {ctx}"
        );
        assert!(self.issued.len() >= 2, "no second access token: {ctx}");
        let first_exp = self.issued[0];
        assert!(
            self.allows()
                .any(|d| d.expires_at.is_some_and(|e| e > first_exp + USER_TTL)),
            "no connect after the first token expired at {first_exp}: {:?}\n{ctx}",
            self.decisions
        );
    }
}

/// `nats-oidc-callout token --out FILE --refresh`, stopped by PID on drop.
struct Sidecar {
    child: std::process::Child,
    log: PathBuf,
}

impl Sidecar {
    fn start(idp: &NodeIdp, file: &Path, extra: &[&str]) -> Sidecar {
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

    fn wait_for_file(&self, file: &Path) {
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

/// Runs a build step to completion; its failure fails the test.
async fn build(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds `examples/clients/rust` (the `client` example) and returns its
/// executable.
async fn rust_client() -> PathBuf {
    let mut cargo = Command::new(env!("CARGO"));
    // What `cargo test` sets for the test itself; build scripts (ring's)
    // rerun when these change, so the nested build must not see them.
    for (name, _) in std::env::vars() {
        if ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_"]
            .iter()
            .any(|p| name.starts_with(p))
            || [
                "CARGO_CRATE_NAME",
                "CARGO_TARGET_TMPDIR",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&name.as_str())
        {
            cargo.env_remove(name);
        }
    }
    cargo
        .current_dir(root())
        .args(["build", "--example", "client", "--message-format=json"]);
    let built = build("cargo build --example client", &mut cargo).await;
    built
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|m| m["target"]["name"] == "client" && m["executable"].is_string())
        .map(|m| PathBuf::from(m["executable"].as_str().unwrap()))
        .expect("the example's executable")
}

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

/// `--no-default-features --features client` leaves the service's heavy
/// dependencies out of the build.
#[test]
fn the_client_feature_builds_without_the_service_dependencies() {
    let out = std::process::Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "tree",
            "--locked",
            "--offline",
            "--no-default-features",
            "--features",
            "client",
            "--edges",
            "normal",
            "--prefix",
            "none",
        ])
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"async-nats") && crates.contains(&"reqwest"),
        "{tree}"
    );
    for heavy in [
        "aws-lc-rs",
        "aws-lc-sys",
        "jsonwebtoken",
        "chrono",
        "clap",
        "tracing-subscriber",
        "toml",
        "crypto_box",
        "openidconnect",
    ] {
        assert!(
            !crates.contains(&heavy),
            "{heavy} in the client build:\n{tree}"
        );
    }
}

/// The README's snippet of each recipe is the tested file's, line for line.
#[test]
fn readme_shows_each_recipe_as_tested() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for file in [
        "rust/main.rs",
        "go/main.go",
        "python/recipe.py",
        "js/recipe.mjs",
        "java/src/main/java/example/Recipe.java",
        "cli/recipe.sh",
    ] {
        let text = std::fs::read_to_string(examples().join(file)).unwrap();
        let mut lines = text.lines();
        let mut snippets = 0;
        while lines.any(|l| l.contains("snippet:start")) {
            let snippet: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.contains("snippet:end"))
                .collect();
            let indent = snippet
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start().len())
                .min()
                .unwrap_or(0);
            let block = snippet
                .iter()
                .map(|l| l.get(indent..).unwrap_or("").trim_end())
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                readme.contains(&block),
                "README lacks a snippet of examples/clients/{file}:\n{block}"
            );
            snippets += 1;
        }
        assert!(snippets > 0, "{file} marks no snippet");
    }
    let policy = std::fs::read_to_string(examples().join("policy.toml")).unwrap();
    assert!(
        readme.contains(policy.trim_end()),
        "README lacks examples/clients/policy.toml"
    );
}
