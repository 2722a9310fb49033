//! The opaque-token path: an introspection answered by the cache (warm)
//! and one that goes to an introspection endpoint over loopback HTTP
//! (cold; an in-process endpoint, so the number is this service's cost
//! plus one local round trip, not a real IdP's).
//!
//! cargo bench --bench introspection

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};
use nats_oidc_callout::config::Config;
use nats_oidc_callout::introspection::Introspector;

#[path = "../examples/common/tokens.rs"]
#[allow(dead_code)]
mod tokens;

#[path = "../examples/common/introspection_endpoint.rs"]
mod introspection_endpoint;

const ISS: &str = "https://bench.invalid";

/// An introspector for the endpoint, with a cache of `cache_size`.
fn introspector(dir: &std::path::Path, url: &str, cache_size: u64) -> Introspector {
    std::fs::write(dir.join("secret"), "bench-secret\n").unwrap();
    let config = format!(
        "[nats]\nurl = \"nats://127.0.0.1:4222\"\n[signing]\nissuer_seed_file = \"unused.nk\"\n\
         [token]\ncache_size = {cache_size}\n\
         [[issuer]]\nname = \"bench\"\nissuer = \"{ISS}\"\naudience = \"nats\"\n\
         token_types = [\"opaque\"]\nintrospection_endpoint = \"{url}\"\n\
         introspection_client_id = \"bench\"\nintrospection_client_secret_file = \"secret\"\n\
         introspection_rate_limit = 4000000000\n[policy]\nfile = \"policy.toml\"\n"
    );
    let config = Config::parse(&dir.join("c.toml"), &config).unwrap();
    Introspector::from_config(&config, &config.issuers[0]).unwrap()
}

fn introspection(c: &mut Criterion) {
    // The endpoint answers on its own thread; the introspector runs on a
    // current-thread runtime, as in benches/stages.rs.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let endpoint = server.block_on(introspection_endpoint::start(tokens::Shape::Rich, ISS));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // As a decision asks: keeping only what a one-rule policy reads.
    let keep: std::sync::Arc<[String]> = vec!["sub".to_owned()].into();
    let keep = Some(&keep);

    let warm = introspector(dir.path(), &endpoint.url, 1000);
    rt.block_on(warm.introspect("opaque-1", keep)).unwrap();
    c.bench_function("introspection warm (cache hit)", |b| {
        b.iter(|| {
            rt.block_on(warm.introspect(black_box("opaque-1"), keep))
                .unwrap()
        })
    });

    // Cold: no cache, so every iteration calls the endpoint.
    let cold = introspector(dir.path(), &endpoint.url, 0);
    let next = AtomicUsize::new(0);
    c.bench_function("introspection cold (loopback HTTP endpoint)", |b| {
        b.iter(|| {
            let token = format!("opaque-{}", next.fetch_add(1, Ordering::Relaxed));
            rt.block_on(cold.introspect(&token, keep)).unwrap()
        })
    });
    // Every cold iteration reached the endpoint (plus the warm one's first).
    assert_eq!(
        endpoint.calls.load(Ordering::Relaxed),
        next.load(Ordering::Relaxed) as u64 + 1
    );
}

criterion_group!(benches, introspection);
criterion_main!(benches);
