//! A tiny NATS client for the demo: connects with a bearer token, then
//! publishes to each subject given and reports what the server said.
//!
//! cargo run --example connect -- nats://127.0.0.1:4222 "$TOKEN" app.alice.hello admin.x

use std::time::Duration;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(token)) = (args.next(), args.next()) else {
        eprintln!("usage: connect URL TOKEN [SUBJECT...]");
        return std::process::ExitCode::from(2);
    };
    let subjects: Vec<String> = args.collect();
    let (err_tx, mut err_rx) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_token(token)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(Some(0))
        .event_callback(move |e| {
            let err_tx = err_tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = e {
                    let _ = err_tx.send(e.to_string());
                }
            }
        })
        .connect(url.as_str())
        .await;
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            println!("connect refused: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    println!("connected");
    let mut ok = true;
    for subject in subjects {
        let _ = client.publish(subject.clone(), "hello".into()).await;
        let _ = client.flush().await;
        // A refused publish comes back as an asynchronous -ERR from the server.
        match tokio::time::timeout(Duration::from_millis(300), err_rx.recv()).await {
            Ok(Some(server_error)) => {
                ok = false;
                println!("publish {subject}: refused ({server_error})");
            }
            _ => println!("publish {subject}: accepted"),
        }
    }
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}
