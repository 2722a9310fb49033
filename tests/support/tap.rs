//! A tap on the authorization requests themselves, for tests that must see
//! what the server sends (client_info, connect_opts) next to the service.

use std::time::Duration;

use serde_json::Value;

use super::client::connect_user_pass;

/// Copies of the authorization requests the server sends, read by the
/// callout account's own user beside the service: a plain subscription
/// outside the service's queue group that never answers. Requests must not
/// be sealed (`xkey: false`).
pub(crate) struct RequestTap {
    _client: async_nats::Client,
    requests: async_nats::Subscriber,
}

impl RequestTap {
    pub(crate) async fn start(url: &str) -> RequestTap {
        let client = connect_user_pass(url, "auth", "authpw")
            .await
            .expect("the callout account's own user connects")
            .nats;
        let requests = client
            .subscribe("$SYS.REQ.USER.AUTH")
            .await
            .expect("subscribe to the requests");
        client.flush().await.expect("flush the tap");
        RequestTap {
            _client: client,
            requests,
        }
    }

    /// The `nats` body of the next request for which `wanted` holds, within
    /// `limit`. The caller must not print `connect_opts`: it holds the token.
    pub(crate) async fn next_where(
        &mut self,
        limit: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        use base64::Engine;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let msg =
                tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut self.requests))
                    .await
                    .unwrap_or_else(|_| {
                        panic!("no matching authorization request within {limit:?}")
                    })
                    .expect("tap subscription open");
            let jwt = std::str::from_utf8(&msg.payload).expect("an unsealed request is text");
            let payload = jwt.split('.').nth(1).expect("a JWT has a payload");
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .expect("base64url payload");
            let claims: Value = serde_json::from_slice(&bytes).expect("JSON payload");
            if wanted(&claims["nats"]) {
                return claims["nats"].clone();
            }
        }
    }

    /// A request body safe to print: credentials replaced by their length.
    pub(crate) fn redacted(request: &Value) -> Value {
        let mut out = request.clone();
        if let Some(opts) = out["connect_opts"].as_object_mut() {
            for key in ["auth_token", "pass", "jwt", "sig"] {
                if let Some(v) = opts.get_mut(key) {
                    let len = v.as_str().map_or(0, str::len);
                    *v = Value::String(format!("<{len} bytes>"));
                }
            }
        }
        out
    }
}
