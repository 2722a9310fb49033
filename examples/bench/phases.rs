//! The flood phase (legitimate connects quiet, then beside raw clients
//! failing from 127.0.0.2) and the cache fill.

use super::*;

/// Legitimate connects quiet, then under a flood from 127.0.0.2, for each
/// round; the flood runs only during its phase.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn flood_bench(
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
pub(crate) async fn fill(
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
