//! A whole deployment for one test: the in-process IdP, nats-server with
//! the callout, and the service, with keys made for the test.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use nats_oidc_callout::config::{ConfigBuilder, IssuerBuilder};
use nats_oidc_callout::issuer::LocalKey;
use serde_json::{json, Map, Value};

use super::client::Client;
use super::idp::Idp;
use super::nats::{callout_server_config_with, NatsServer, PORT};
use super::process::{wait_until_async, write_secret};
use super::service::Service;

/// How to set up an [`Env`].
pub(crate) struct EnvOptions<'a> {
    pub(crate) policy: &'a str,
    pub(crate) xkey: bool,
    /// Extra lines for the `[[issuer]]` table; `{idp}` stands for the IdP's URL.
    pub(crate) issuer_extra: &'a str,
    /// Lines for the `[token]` table (default: both token sources).
    pub(crate) token_extra: &'a str,
    /// The IdP answers 503 until the test calls `idp.set_down(false)`.
    pub(crate) idp_down_at_start: bool,
    /// Extra lines for the `[policy]` table.
    pub(crate) policy_extra: &'a str,
    /// Trust this (issuer URL, audience) instead of the in-process IdP.
    pub(crate) external_issuer: Option<(&'a str, &'a str)>,
    /// More audiences the issuer accepts.
    pub(crate) more_audiences: &'a [&'a str],
    /// Whole tables appended to the service config (`[http]`, `[audit]`).
    pub(crate) config_extra: &'a str,
    /// Lines appended to the nats-server config (`cluster {…}`).
    pub(crate) nats_extra: &'a str,
    /// Lines for the service's own `[nats]` table.
    pub(crate) service_nats_extra: &'a str,
    /// Start the in-process service (off: the test starts the binary).
    pub(crate) start_service: bool,
    /// The `[[issuer]]` name policy rules refer to.
    pub(crate) issuer_name: &'a str,
    /// JetStream for the APP account (the server config must then have a
    /// `jetstream {}` block and a `server_name`, through `nats_extra`).
    pub(crate) app_jetstream: bool,
    /// Revocation on: JetStream for AUTH (the bucket), a system user and
    /// the service's `[system]` and `[revocation]` tables; the server config
    /// needs a `jetstream {}` block through `nats_extra`. The service has
    /// read the bucket when `start` returns.
    pub(crate) revocation: bool,
}

impl Default for EnvOptions<'_> {
    fn default() -> Self {
        Self {
            policy: DEFAULT_POLICY,
            xkey: true,
            issuer_extra: "",
            token_extra: "sources = [\"auth_token\", \"password\"]",
            idp_down_at_start: false,
            policy_extra: "",
            external_issuer: None,
            more_audiences: &[],
            config_extra: "",
            nats_extra: "",
            service_nats_extra: "",
            start_service: true,
            issuer_name: "corp",
            app_jetstream: false,
            revocation: false,
        }
    }
}

/// Alice-style tokens with scope `nats` get `app.<sub>.>`, and replies on
/// their own inbox prefix.
pub(crate) const DEFAULT_POLICY: &str = r#"
[defaults]
account = "APP"
ttl = "15m"

[permissions.own]
pub = { allow = ["app.{claim.sub}.>"] }
sub = { allow = ["app.{claim.sub}.>", "_INBOX.{claim.sub}.>"] }

[[rules]]
name = "nats-users"
issuer = "corp"
scopes = ["nats"]
grant = ["own"]
"#;

pub(crate) const AUDIENCE: &str = "nats";

/// A whole deployment: IdP, nats-server with the callout, and the service.
pub(crate) struct Env {
    pub(crate) idp: Idp,
    pub(crate) key: LocalKey,
    pub(crate) nats: NatsServer,
    /// The nats-server config the callout needs (for more nodes), with
    /// [`PORT`] for its client port.
    pub(crate) nats_config: String,
    service: Option<Service>,
    pub(crate) dir: tempfile::TempDir,
    /// Server-log refusals already attributed to a connect, per reason.
    claimed: Mutex<HashMap<String, usize>>,
    /// Decisions already attributed to a connect.
    decision_cursor: Mutex<usize>,
}

impl Env {
    pub(crate) async fn start(opts: EnvOptions<'_>) -> Env {
        let key = LocalKey::generate(Algorithm::RS256).expect("rsa key");
        let idp = Idp::start(&[&key]).await;
        idp.set_down(opts.idp_down_at_start);
        let dir = tempfile::tempdir().expect("tempdir");
        let account = nkeys::KeyPair::new_account();
        write_secret(&dir.path().join("issuer.nk"), &account.seed().unwrap());
        let xkey = nkeys::XKey::new();
        if opts.xkey {
            write_secret(&dir.path().join("xkey.nk"), &xkey.seed().unwrap());
        }
        std::fs::write(dir.path().join("policy.toml"), opts.policy).unwrap();
        let xkey_pub = xkey.public_key();
        let nats_config = callout_server_config_with(
            PORT,
            &account.public_key(),
            opts.xkey.then_some(xkey_pub.as_str()),
            opts.app_jetstream,
            opts.revocation,
        );
        let nats = NatsServer::start_any_port(&format!("{nats_config}\n{}", opts.nats_extra));

        let (issuer, audience) = opts
            .external_issuer
            .unwrap_or((idp.issuer.as_str(), AUDIENCE));
        let mut config = ConfigBuilder::new(&nats.url(), "issuer.nk", "policy.toml")
            .user_password("auth", "authpw")
            .nats_lines(opts.service_nats_extra)
            .token_lines(opts.token_extra)
            .issuer(
                IssuerBuilder::new(
                    opts.issuer_name,
                    issuer,
                    &[&[audience], opts.more_audiences].concat(),
                )
                .algorithms(&["RS256", "ES256"])
                .set("leeway", "\"2s\"")
                .lines(&opts.issuer_extra.replace("{idp}", &idp.issuer)),
            )
            .policy_lines(opts.policy_extra)
            .tables(opts.config_extra);
        if opts.revocation {
            write_secret(&dir.path().join("sys.password"), "syspw");
            config = config.tables(
                "[system]\nuser = \"sys\"\npassword_file = \"sys.password\"\n\n\
                 [revocation]\nbucket = \"revocations\"\n",
            );
        }
        if opts.xkey {
            config = config.xkey_seed_file("xkey.nk");
        }
        let config_path = dir.path().join("callout.toml");
        config.write(&config_path).unwrap();
        let service = opts.start_service.then(|| Service::start(&config_path));
        if let Some(service) = service.as_ref().filter(|_| opts.revocation) {
            let loaded = wait_until_async(Duration::from_secs(30), || async {
                service.log().contains("revocations loaded")
            })
            .await;
            assert!(loaded, "revocations never loaded:\n{}", service.log());
        }
        Env {
            idp,
            key,
            nats,
            nats_config,
            service,
            dir,
            claimed: Mutex::new(HashMap::new()),
            decision_cursor: Mutex::new(0),
        }
    }

    /// The in-process service.
    pub(crate) fn service(&self) -> &Service {
        self.service
            .as_ref()
            .expect("this Env was started without its service")
    }

    pub(crate) fn service_mut(&mut self) -> &mut Service {
        self.service
            .as_mut()
            .expect("this Env was started without its service")
    }

    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join("callout.toml")
    }

    /// Claims of a valid token for `sub` with `scope`, expiring in 5 min.
    pub(crate) fn claims(&self, sub: &str, scope: &str) -> Value {
        let now = super::now();
        json!({"iss": self.idp.issuer, "aud": AUDIENCE, "sub": sub, "scope": scope,
               "iat": now, "exp": now + 300})
    }

    pub(crate) fn token(&self, sub: &str, scope: &str) -> String {
        self.key.sign(&self.claims(sub, scope))
    }

    /// Asserts the connection was refused *by the service, with `reason`*:
    /// the server logs the service's error text, which a timeout never has.
    /// Each call claims one more such line than the calls before it, so a
    /// second refusal with the same reason is never proven by the first
    /// one's line; with the in-process service it also claims the decision
    /// and finds the server's refusal of the connection that decision names.
    pub(crate) async fn assert_refused(
        &self,
        result: Result<Client, async_nats::ConnectError>,
        reason: &str,
    ) {
        match result {
            Ok(_) => panic!("connection was accepted; expected refusal with {reason:?}"),
            Err(e) => assert_eq!(
                e.kind(),
                async_nats::ConnectErrorKind::AuthorizationViolation,
                "unexpected connect error: {e}"
            ),
        }
        let needle = format!("Auth callout service returned an error: {reason}");
        let want = {
            let mut claimed = self.claimed.lock().unwrap();
            let n = claimed.entry(needle.clone()).or_default();
            *n += 1;
            *n
        };
        let seen = wait_until_async(Duration::from_secs(5), || async {
            self.nats.count(&needle) >= want
        })
        .await;
        assert!(
            seen,
            "server log has {} of {want} lines {needle:?}:\n{}\nservice log:\n{}",
            self.nats.count(&needle),
            self.nats.log(),
            self.service.as_ref().map(Service::log).unwrap_or_default()
        );
        if self.service.is_some() {
            // The decision names the server's connection id: the server
            // refused that very connection.
            let d = self.claim_decision("deny", reason).await;
            let cid = d["client_id"]
                .as_u64()
                .expect("the decision has a client_id");
            let line = format!(" - cid:{cid} - authentication error");
            let refused = wait_until_async(Duration::from_secs(5), || async {
                self.nats.log().contains(&line)
            })
            .await;
            assert!(
                refused,
                "the server did not refuse connection {cid}:\n{}",
                self.nats.log()
            );
        }
    }

    /// The next decision (after those already claimed) with this result
    /// whose reason contains `reason` (an allow has none: pass ""); it is
    /// claimed, so the next call looks past it.
    pub(crate) async fn claim_decision(&self, decision: &str, reason: &str) -> Map<String, Value> {
        let matches = |d: &Map<String, Value>| {
            d["decision"] == decision
                && d.get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .contains(reason)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let found = loop {
            let cursor = *self.decision_cursor.lock().unwrap();
            let hit = self
                .service()
                .decisions()
                .into_iter()
                .enumerate()
                .skip(cursor)
                .find(|(_, d)| matches(d));
            if hit.is_some() || std::time::Instant::now() >= deadline {
                break hit;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            found.is_some(),
            "no new {decision} decision with {reason:?}; decisions: {:#?}",
            self.service().decisions()
        );
        let (i, d) = found.expect("found");
        *self.decision_cursor.lock().unwrap() = i + 1;
        d
    }
}
