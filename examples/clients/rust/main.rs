//! An async-nats client that outlives its tokens, with this crate's
//! `client` module (feature `client`, no service dependencies): the
//! client-credentials source fetches, caches and renews the access token;
//! `connect_options` asks it at every connect and reconnect and sets the
//! per-identity inbox prefix `_INBOX.<sub>`.
//!
//! The demo publishes MESSAGES numbered messages into the ORDERS stream, one
//! every INTERVAL_MS, while a durable pull consumer acks them; it stops once
//! it has them all and has reconnected MIN_RECONNECTS times, and prints a
//! JSON summary.
//!
//! `cargo run --example client` with the environment of README "Clients".

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use nats_oidc_callout::client::{connect_options, ClientCredentials};

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn env_num(name: &str) -> Result<usize, Box<dyn Error>> {
    Ok(env(name)?.parse()?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let connects = Arc::new(AtomicUsize::new(0));
    let counter = connects.clone();
    // snippet:start
    let issuer = env("OIDC_ISSUER")?;
    let secret = std::fs::read_to_string(env("OIDC_CLIENT_SECRET_FILE")?)?;
    let source = ClientCredentials::builder(issuer, env("OIDC_CLIENT_ID")?, secret.trim())
        .scope(env("OIDC_SCOPE")?)
        .audience(env("OIDC_AUDIENCE")?)
        .build()?;
    // A fresh token at every connect and reconnect, and the inbox _INBOX.<sub>
    // that the policy grants (`sub _INBOX.{claim.sub}.>`).
    let nats = connect_options(source)
        .await?
        .name(env("NATS_NAME")?)
        .event_callback(move |event| {
            let counter = counter.clone();
            async move {
                if matches!(event, async_nats::Event::Connected) {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
        .connect(env("NATS_URL")?)
        .await?;
    // snippet:end

    let js = jetstream::new(nats.clone());
    let total = env_num("MESSAGES")?;
    let subject = env("SUBJECT")?;
    // Deliveries per message, and the messages whose ack the server confirmed.
    let seen = Arc::new(Mutex::new((
        BTreeMap::<usize, usize>::new(),
        BTreeSet::<usize>::new(),
    )));
    let consumer: PullConsumer = js
        .get_consumer_from_stream(env("CONSUMER")?, "ORDERS")
        .await?;
    let mut messages = consumer.messages().await?;
    let consuming = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(m) = messages.next().await {
                let Ok(m) = m else { continue };
                let Ok(n) = std::str::from_utf8(&m.payload)
                    .unwrap_or("")
                    .parse::<usize>()
                else {
                    continue;
                };
                // A confirmed ack: an unconfirmed one may be lost in a reconnect.
                let acked = m.double_ack().await;
                let mut seen = seen.lock().unwrap();
                *seen.0.entry(n).or_default() += 1;
                match acked {
                    Ok(()) => {
                        seen.1.insert(n);
                    }
                    Err(e) => eprintln!("ack {n}: {e} (it will be redelivered)"),
                }
            }
        })
    };

    let interval = Duration::from_millis(env_num("INTERVAL_MS")? as u64);
    for i in 1..=total {
        // The message id makes a retried publish land once.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{subject}-{i}").as_str());
        loop {
            let acked = match js
                .publish_with_headers(subject.clone(), headers.clone(), i.to_string().into())
                .await
            {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match acked {
                Ok(()) => break,
                Err(e) => {
                    eprintln!("publish {i}: {e} (retrying)");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        tokio::time::sleep(interval).await;
    }

    let min_reconnects = env_num("MIN_RECONNECTS")?;
    let reconnects = || connects.load(Ordering::SeqCst).saturating_sub(1);
    for _ in 0..1200 {
        if seen.lock().unwrap().1.len() == total && reconnects() >= min_reconnects {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consuming.abort();

    let (deliveries, acked) = seen.lock().unwrap().clone();
    let missing: Vec<usize> = (1..=total).filter(|i| !acked.contains(i)).collect();
    let duplicates: usize = deliveries.values().map(|n| n - 1).sum();
    println!(
        "{}",
        serde_json::json!({"published": total, "received": acked.len(), "duplicates": duplicates,
                           "missing": missing, "reconnects": reconnects()})
    );
    nats.flush().await?;
    std::process::exit(if missing.is_empty() { 0 } else { 1 });
}
