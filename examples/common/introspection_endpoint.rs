//! An in-process introspection endpoint (RFC 7662) for the load examples
//! and benches: `token=opaque-<i>` is active with the i-th token's claims
//! (`tokens::claims`), anything else inactive. It counts the calls it gets.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::tokens::{claims, Shape};

pub(crate) struct Endpoint {
    /// The introspection endpoint's URL (http on 127.0.0.1).
    pub(crate) url: String,
    pub(crate) calls: Arc<AtomicU64>,
}

/// Binds 127.0.0.1 and serves on the current runtime.
pub(crate) async fn start(shape: Shape, iss: &str) -> Endpoint {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicU64::new(0));
    let (iss, counter) = (iss.to_owned(), calls.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (iss, counter) = (iss.clone(), counter.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    answer(req, shape, iss.clone())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Endpoint { url, calls }
}

async fn answer(
    req: Request<Incoming>,
    shape: Shape,
    iss: String,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let index = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .and_then(|(_, v)| v.strip_prefix("opaque-")?.parse::<usize>().ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let json = match index {
        Some(i) => {
            let mut c = claims(shape, &iss, i, now);
            c["active"] = true.into();
            c
        }
        None => serde_json::json!({"active": false}),
    };
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap())
}
