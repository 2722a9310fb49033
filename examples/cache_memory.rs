//! Memory held by the verified-token cache, in process: N distinct valid
//! tokens go through the library's `Decider` exactly as `serve` decides
//! them (minus NATS), then VmRSS/VmHWM and the cache's entry count are
//! printed. Tokens are signed one at a time and dropped after their
//! decision, so what grows is the cache, not the load generator.
//!
//! cargo build --release --examples
//! target/release/examples/cache_memory -n 100000 --claims rich

use jsonwebtoken::Algorithm;
use nats_oidc_callout::clock::now_unix;
use nats_oidc_callout::config::{Config, ConfigBuilder, IssuerBuilder};
use nats_oidc_callout::decision::{Decider, Request};
use nats_oidc_callout::issuer::{jwks, LocalKey};

#[path = "common/tokens.rs"]
mod tokens;

use tokens::{claims, memory_kib, Shape};

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
                eprintln!("usage: cache_memory [-n TOKENS] [--claims minimal|rich]");
                std::process::exit(2);
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = LocalKey::generate(Algorithm::ES256).unwrap();
    std::fs::write(d.join("jwks.json"), jwks(&[&key]).to_string()).unwrap();
    std::fs::write(
        d.join("policy.toml"),
        "[defaults]\naccount = \"APP\"\n[permissions.p]\npub = { allow = [\"app.{claim.sub}.>\"] }\n\
         [[rules]]\nname = \"all\"\nscopes = [\"nats\"]\ngrant = [\"p\"]\n",
    )
    .unwrap();
    let config = ConfigBuilder::new("nats://127.0.0.1:4222", "unused.nk", "policy.toml")
        .issuer(
            IssuerBuilder::new("bench", ISS, &["nats"])
                .jwks_file("jwks.json")
                .algorithms(&["ES256"]),
        )
        .build();
    let config = Config::parse(&d.join("c.toml"), &config).unwrap();
    let decider = Decider::from_config(&config).unwrap();
    for (name, loaded) in decider.issuers().load_all().await {
        loaded.unwrap_or_else(|e| panic!("issuer {name}: {e}"));
    }

    let now = now_unix() as u64;
    let request = Request::default();
    let sample = key.sign(&claims(shape, ISS, 0, now));
    let (rss0, hwm0) = memory_kib("self");
    let mut allowed = 0usize;
    for i in 0..n {
        let token = key.sign(&claims(shape, ISS, i, now));
        let outcome = decider.decide(&token, &request, now as i64, false).await;
        allowed += usize::from(outcome.result.is_ok());
    }
    let entries = decider.issuers().cache_entries().await;
    let (rss1, hwm1) = memory_kib("self");
    println!(
        "tokens {n} ({shape:?}, {} bytes each), allowed {allowed}, cache entries {entries}",
        sample.len()
    );
    println!("before: VmRSS {rss0} KiB, VmHWM {hwm0} KiB");
    println!("after:  VmRSS {rss1} KiB, VmHWM {hwm1} KiB");
    println!(
        "growth: {:.1} MiB, {:.0} bytes per cached token",
        (rss1 - rss0) as f64 / 1024.0,
        (rss1 - rss0) as f64 * 1024.0 / entries.max(1) as f64
    );
}
