//! Floods of distinct tokens and made-up key ids against the real binary:
//! the token cache stays at its bound and so does the process's memory.

use std::time::Duration;

use crate::support::*;
use jsonwebtoken::{Algorithm, Header};

const SHORT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_distinct_tokens_and_unknown_kids_keep_memory_bounded() {
    const CACHE: u64 = 200;
    let env = Env::start(EnvOptions {
        token_extra: &format!("sources = [\"auth_token\"]\ncache_size = {CACHE}"),
        // The cache's bound is what is measured, not the tarpit, which
        // would hold the forged kids' denials for a second each.
        config_extra: "[http]\nlisten = \"127.0.0.1:0\"\n[flood]\nenabled = false\n",
        start_service: false,
        ..Default::default()
    })
    .await;
    let service = ServiceProcess::start(&env.config_path());
    let url = env.nats.url();
    let distinct = |n: usize, tag: &str| -> Vec<String> {
        (0..n)
            .map(|i| env.token(&format!("{tag}{i}"), "nats"))
            .collect()
    };
    assert_eq!(storm(&url, distinct(300, "warm")).await, 300);
    let rss_before = service.rss_kib().expect("service running");

    assert_eq!(storm(&url, distinct(3000, "flood")).await, 3000);
    let forged: Vec<String> = (0..3000)
        .map(|i| {
            let mut h = Header::new(Algorithm::RS256);
            h.kid = Some(format!("made-up-{i}"));
            env.key.sign_with_header(&h, &env.claims("mallory", "nats"))
        })
        .collect();
    assert_eq!(storm(&url, forged).await, 0, "no forged kid may connect");

    let metrics = format!("http://{}/metrics", service.http_addr());
    let entries = || async {
        let (_, text) = http_get(&metrics).await;
        text.lines()
            .find_map(|l| l.strip_prefix("nats_oidc_callout_token_cache_entries "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("cache gauge") as u64
    };
    // Eviction runs with cache activity; a few more connects drive it.
    let token = env.token("after", "nats");
    let bounded = wait_until_async(SHORT, || async {
        let _ = connect_token(&url, &token).await;
        entries().await <= CACHE
    })
    .await;
    assert!(bounded, "cache holds {} > {CACHE}", entries().await);
    let rss_after = service.rss_kib().expect("service running");
    eprintln!(
        "service RSS: {rss_before} KiB after 300 tokens, {rss_after} KiB after 3000 distinct \
         tokens and 3000 unknown kids (cache_size {CACHE})"
    );
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}
