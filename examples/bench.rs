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
#[path = "bench/phases.rs"]
mod phases;
#[path = "bench/processes.rs"]
mod processes;
#[path = "bench/storm.rs"]
mod storm;
#[path = "common/tokens.rs"]
mod tokens;

use phases::{fill, flood_bench};
use processes::*;
use storm::{storm, Line, Stats};
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
