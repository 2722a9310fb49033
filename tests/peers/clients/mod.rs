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

mod feature;
mod recipes;
mod sidecar;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;
use async_nats::jetstream::{self, consumer, stream};
use nats_oidc_callout::client::{connect_options, ClientCredentials, GitHubActions};
use serde_json::Value;
use sidecar::Sidecar;
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
