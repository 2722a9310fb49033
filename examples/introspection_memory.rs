//! Memory held by the introspection cache, in process: N distinct opaque
//! tokens are introspected (against an in-process endpoint that answers
//! each with the claims of `cache_memory`'s tokens) keeping only what the
//! bench policy reads, as a decision does; then VmRSS/VmHWM and the cache's
//! entry count are printed.
//!
//! cargo build --release --examples
//! target/release/examples/introspection_memory -n 100000 --claims rich

use std::sync::atomic::Ordering;

use nats_oidc_callout::config::Config;
use nats_oidc_callout::introspection::Introspector;
use nats_oidc_callout::policy::{Known, Policy};

#[path = "common/tokens.rs"]
mod tokens;

#[path = "common/introspection_endpoint.rs"]
mod introspection_endpoint;

use tokens::{memory_kib, Shape};

const ISS: &str = "https://bench.invalid";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut n = 100_000usize;
    let mut shape = Shape::Rich;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("-n", Some(v)) if v.parse::<usize>().is_ok() => n = v.parse().unwrap(),
            ("--claims", Some(v)) if v.parse::<Shape>().is_ok() => shape = v.parse().unwrap(),
            _ => {
                eprintln!("usage: introspection_memory [-n TOKENS] [--claims minimal|rich]");
                std::process::exit(2);
            }
        }
    }
    let endpoint = introspection_endpoint::start(shape, ISS).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("secret"), "bench-secret\n").unwrap();
    std::fs::write(
        d.join("policy.toml"),
        "[defaults]\naccount = \"APP\"\n[permissions.p]\npub = { allow = [\"app.{claim.sub}.>\"] }\n\
         [[rules]]\nname = \"all\"\nscopes = [\"nats\"]\ngrant = [\"p\"]\n",
    )
    .unwrap();
    let config = format!(
        "[nats]\nurl = \"nats://127.0.0.1:4222\"\n[signing]\nissuer_seed_file = \"unused.nk\"\n\
         [token]\ncache_size = {}\n\
         [[issuer]]\nname = \"bench\"\nissuer = \"{ISS}\"\naudience = \"nats\"\n\
         token_types = [\"opaque\"]\nintrospection_endpoint = \"{}\"\n\
         introspection_client_id = \"bench\"\nintrospection_client_secret_file = \"secret\"\n\
         introspection_rate_limit = 1000000\nintrospection_cache = \"1h\"\n[policy]\nfile = \"policy.toml\"\n",
        n.max(100_000),
        endpoint.url
    );
    let config = Config::parse(&d.join("c.toml"), &config).unwrap();
    let iss = &config.issuers[0];
    let introspector = Introspector::from_config(&config, iss).unwrap();
    let issuers = ["bench".to_owned()];
    let known = Known {
        issuers: Some(&issuers),
        ..Known::default()
    };
    let policy = Policy::load(&d.join("policy.toml"), &known).unwrap();
    let keep = Some(policy.claims_read());

    let (rss0, hwm0) = memory_kib("self");
    let mut active = 0usize;
    for i in 0..n {
        let token = format!("opaque-{i}");
        active += usize::from(introspector.introspect(&token, keep).await.is_ok());
    }
    let entries = introspector.cache_entries();
    let (rss1, hwm1) = memory_kib("self");
    println!(
        "tokens {n} ({shape:?} answers), active {active}, calls {}, cache entries {entries}",
        endpoint.calls.load(Ordering::Relaxed)
    );
    println!("before: VmRSS {rss0} KiB, VmHWM {hwm0} KiB");
    println!("after:  VmRSS {rss1} KiB, VmHWM {hwm1} KiB");
    println!(
        "growth: {:.1} MiB, {:.0} bytes per cached answer",
        (rss1 - rss0) as f64 / 1024.0,
        (rss1 - rss0) as f64 * 1024.0 / entries.max(1) as f64
    );
}
