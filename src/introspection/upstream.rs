//! The calls to the IdP: introspection (RFC 7662) and userinfo (OpenID
//! Connect Core §5.3) over HTTPS, with the endpoints from config or from
//! the discovery document. Behind a trait so the cache rules can be tested
//! against an IdP that misbehaves on cue.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::answer;
use super::client_auth::ClientAuth;
use crate::config::{Introspection, IssuerConfig};
use crate::issuer::check_url;

/// Largest introspection or userinfo response read.
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// After a failed discovery, new tokens fail at once for this long rather
/// than each waiting on another attempt.
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);

/// Why a call gave no answer. Never cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No answer within `introspection_timeout`.
    Timeout,
    /// No usable HTTP answer: connection refused, HTTP error status, no
    /// endpoint. The text says which.
    Unavailable(String),
    /// An answer that breaks the protocol.
    BadResponse(String),
}

/// The IdP as the introspector sees it.
pub(crate) trait Upstream: Send + Sync {
    /// The introspection response for `token`, as a JSON object.
    fn introspect<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Map<String, Value>, Failure>>;
    /// The userinfo response for `token` used as a bearer token.
    fn userinfo<'a>(&'a self, token: &'a str)
        -> BoxFuture<'a, Result<Map<String, Value>, Failure>>;
}

/// The endpoints in use.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The RFC 7662 introspection endpoint.
    pub introspection: String,
    /// The userinfo endpoint, when the issuer asks for userinfo.
    pub userinfo: Option<String>,
}

/// The real IdP over HTTP.
pub(crate) struct HttpUpstream {
    issuer: String,
    allow_insecure_http: bool,
    http: reqwest::Client,
    auth: ClientAuth,
    /// From config; a `None` is looked up in discovery.
    introspection_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    wants_userinfo: bool,
    resolved: OnceCell<Endpoints>,
    last_discovery_failure: Mutex<Option<(Instant, Failure)>>,
}

impl HttpUpstream {
    /// Calls `iss`'s endpoints with `auth`; discovery, if needed, waits for the first call.
    pub(crate) fn new(iss: &IssuerConfig, settings: &Introspection, auth: ClientAuth) -> Self {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(settings.max_in_flight)
            .build()
            .expect("static reqwest client config");
        Self {
            issuer: iss.issuer.clone(),
            allow_insecure_http: iss.allow_insecure_http,
            http,
            auth,
            introspection_endpoint: settings.endpoint.clone(),
            userinfo_endpoint: settings.userinfo_endpoint.clone(),
            wants_userinfo: settings.userinfo,
            resolved: OnceCell::new(),
            last_discovery_failure: Mutex::new(None),
        }
    }

    /// Whether the endpoints are known (configured, or found in discovery).
    pub(crate) fn endpoints_known(&self) -> bool {
        self.resolved.get().is_some()
    }

    /// The endpoints, looking up the missing ones in discovery once. A
    /// failure is retried, but not sooner than `DISCOVERY_RETRY`.
    pub(crate) async fn endpoints(&self) -> Result<&Endpoints, Failure> {
        self.resolved
            .get_or_try_init(|| async {
                if let Some((at, failure)) = &*self.last_discovery_failure.lock().expect("lock") {
                    if at.elapsed() < DISCOVERY_RETRY {
                        return Err(failure.clone());
                    }
                }
                self.resolve().await.inspect_err(|f| {
                    *self.last_discovery_failure.lock().expect("lock") =
                        Some((Instant::now(), f.clone()));
                })
            })
            .await
    }

    async fn resolve(&self) -> Result<Endpoints, Failure> {
        let needs_discovery = self.introspection_endpoint.is_none()
            || (self.wants_userinfo && self.userinfo_endpoint.is_none());
        let doc = if needs_discovery {
            let url = format!(
                "{}/.well-known/openid-configuration",
                self.issuer.trim_end_matches('/')
            );
            let body = self.read(self.http.get(&url)).await.map_err(|f| match f {
                Failure::Unavailable(r) => Failure::Unavailable(format!("discovery: {r}")),
                other => other,
            })?;
            let doc = answer::parse(&body)
                .map_err(|r| Failure::Unavailable(format!("discovery document is {r}")))?;
            if doc.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
                return Err(Failure::Unavailable(
                    "discovery document names another issuer".into(),
                ));
            }
            doc
        } else {
            Map::new()
        };
        let pick = |explicit: &Option<String>, member: &str| -> Result<String, Failure> {
            let url = match explicit {
                Some(u) => u.clone(),
                None => doc
                    .get(member)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        Failure::Unavailable(format!("discovery document has no {member}"))
                    })?,
            };
            check_url(&url, self.allow_insecure_http)
                .map_err(|e| Failure::Unavailable(e.to_string()))?;
            Ok(url)
        };
        Ok(Endpoints {
            introspection: pick(&self.introspection_endpoint, "introspection_endpoint")?,
            userinfo: if self.wants_userinfo {
                Some(pick(&self.userinfo_endpoint, "userinfo_endpoint")?)
            } else {
                None
            },
        })
    }

    /// Sends, requires 200 and reads at most [`MAX_RESPONSE_BYTES`].
    async fn read(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, Failure> {
        let mut resp = req
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport_failure)?;
        let status = resp.status();
        if status != reqwest::StatusCode::OK {
            let code = error_code(resp).await;
            return Err(Failure::Unavailable(format!(
                "HTTP {}{code}",
                status.as_u16()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport_failure)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(Failure::BadResponse(format!(
                    "response larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn introspect_now(&self, token: &str) -> Result<Map<String, Value>, Failure> {
        let endpoint = &self.endpoints().await?.introspection;
        let creds = self.auth.credentials(endpoint);
        let mut form = vec![
            ("token", token.to_owned()),
            ("token_type_hint", "access_token".into()),
        ];
        form.extend(creds.form);
        let mut req = self.http.post(endpoint).form(&form);
        if let Some(h) = creds.authorization {
            req = req.header(reqwest::header::AUTHORIZATION, h);
        }
        answer::parse(&self.read(req).await?).map_err(Failure::BadResponse)
    }

    async fn userinfo_now(&self, token: &str) -> Result<Map<String, Value>, Failure> {
        let Some(endpoint) = &self.endpoints().await?.userinfo else {
            return Err(Failure::Unavailable("no userinfo endpoint".into()));
        };
        let req = self.http.get(endpoint).bearer_auth(token);
        answer::parse(&self.read(req).await?)
            .map_err(|r| Failure::BadResponse(format!("userinfo {r}")))
    }
}

impl Upstream for HttpUpstream {
    fn introspect<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Map<String, Value>, Failure>> {
        Box::pin(self.introspect_now(token))
    }

    fn userinfo<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Map<String, Value>, Failure>> {
        Box::pin(self.userinfo_now(token))
    }
}

/// A transport error as a reason: a timeout is its own kind; otherwise the
/// innermost cause (e.g. "Connection refused"), which names no token.
fn transport_failure(e: reqwest::Error) -> Failure {
    if e.is_timeout() {
        return Failure::Timeout;
    }
    let mut cause: &dyn std::error::Error = &e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    Failure::Unavailable(format!("{what}: {cause}"))
}

/// The OAuth `error` code of an error response (e.g. ` invalid_client`),
/// when it is a plain short word; the rest of the body is not repeated.
async fn error_code(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > 4096 {
            return String::new();
        }
    }
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(|c| format!(" {c}"))
        .unwrap_or_default()
}
