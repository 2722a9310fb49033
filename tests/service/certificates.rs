//! Certificate identities end to end, with certificates made here: a
//! nats-server that verifies client certificates (`tls { verify: true }`),
//! the service in process presenting its own. A SPIFFE workload without a
//! token is granted by a `certificate` rule; one outside the rule's SAN glob
//! is denied; an RFC 8705 bound token works only with its certificate; an
//! issuer that requires binding refuses unbound tokens; a bound token over
//! a connection without a client certificate is refused.

use std::path::{Path, PathBuf};

use crate::support::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use nats_oidc_callout::certificate::issue::{LocalCa, San, Usage};
use nats_oidc_callout::config::{ConfigBuilder, IssuerBuilder};
use nats_oidc_callout::issuer::LocalKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const POLICY: &str = r#"
[defaults]
account = "APP"
ttl = "15m"

[permissions.orders]
pub = { allow = ["orders.{cert.spiffe_path}.>"] }
sub = { allow = ["orders.{cert.spiffe_path}.>"] }

[permissions.own]
pub = { allow = ["app.{claim.sub}.>"] }
sub = { allow = ["app.{claim.sub}.>", "_INBOX.{claim.sub}.>"] }

[[rules]]
name = "spiffe-prod"
issuer = "certificate"
certificate = { san_uri = "spiffe://acme.example/ns/prod/*" }
grant = ["orders"]

[[rules]]
name = "users"
issuer = "corp"
scopes = ["nats"]
grant = ["own"]

[[rules]]
name = "bound-users"
issuer = "bound"
scopes = ["nats"]
grant = ["own"]
"#;

/// Certificates the CA really issued, made to stretch the `spiffe-prod`
/// rule and its `orders.{cert.spiffe_path}.>` subjects, with the reason
/// class each must be denied with.
fn hostile() -> Vec<(&'static str, Vec<San>, &'static str)> {
    vec![
        // A path that leaves ns/prod once resolved.
        (
            "dot-segments",
            vec![San::Uri(
                "spiffe://acme.example/ns/prod/../admin/sa/x".into(),
            )],
            "no_rule",
        ),
        // NATS wildcards in the ID would widen the grant: the rule's glob
        // matches, but no such SPIFFE ID names a subject.
        (
            "star",
            vec![San::Uri("spiffe://acme.example/ns/prod/sa/*".into())],
            "claim_not_a_token",
        ),
        (
            "gt",
            vec![San::Uri("spiffe://acme.example/ns/prod/sa/>".into())],
            "claim_not_a_token",
        ),
        // A dot makes the ID two subject tokens: orders.ns/prod/sa/a.b.> lies
        // inside workload "a"'s orders.ns/prod/sa/a.>.
        (
            "dotted",
            vec![San::Uri("spiffe://acme.example/ns/prod/sa/a.b".into())],
            "claim_not_a_token",
        ),
        // Two SPIFFE IDs: which one names the subjects would be a guess.
        (
            "two-ids",
            vec![
                San::Uri("spiffe://acme.example/ns/prod/sa/a".into()),
                San::Uri("spiffe://acme.example/ns/prod/sa/b".into()),
            ],
            "claim_not_a_token",
        ),
        (
            "lookalike-domain",
            vec![San::Uri("spiffe://acme.example.evil/ns/prod/sa/x".into())],
            "no_rule",
        ),
    ]
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, the server's certificate, the service's, and client
    /// certificates by name.
    fn new(clients: &[(&str, Vec<San>)]) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::generate("test CA", 2).unwrap();
        let write = |name: &str, cert: &str, key: &str| {
            std::fs::write(dir.path().join(format!("{name}.pem")), cert).unwrap();
            write_secret(&dir.path().join(format!("{name}-key.pem")), key);
        };
        std::fs::write(dir.path().join("ca.pem"), &ca.certificate().cert_pem).unwrap();
        let server = ca
            .issue(
                "localhost",
                &[
                    San::Dns("localhost".into()),
                    San::Ip("127.0.0.1".parse().unwrap()),
                ],
                Usage::Server,
            )
            .unwrap();
        write("server", &server.cert_pem, &server.key_pem);
        let service = ca.issue("nats-oidc-callout", &[], Usage::Client).unwrap();
        write("service", &service.cert_pem, &service.key_pem);
        for (name, sans) in clients {
            let c = ca.issue(name, sans, Usage::Client).unwrap();
            write(name, &c.cert_pem, &c.key_pem);
            // RFC 8705's thumbprint of the DER certificate.
            std::fs::write(
                dir.path().join(format!("{name}.x5t")),
                URL_SAFE_NO_PAD.encode(Sha256::digest(&c.der)),
            )
            .unwrap();
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn x5t(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.x5t"))).unwrap()
    }

    /// Client options over TLS, with `cert`'s certificate when given.
    fn options(
        &self,
        opts: async_nats::ConnectOptions,
        cert: Option<&str>,
    ) -> async_nats::ConnectOptions {
        let opts = opts
            .require_tls(true)
            .add_root_certificates(self.path("ca.pem"));
        match cert {
            Some(c) => opts.add_client_certificate(
                self.path(&format!("{c}.pem")),
                self.path(&format!("{c}-key.pem")),
            ),
            None => opts,
        }
    }
}

struct World {
    pki: Pki,
    corp: (Idp, LocalKey),
    bound: (Idp, LocalKey),
    nats: NatsServer,
    ws_port: u16,
    service: Service,
    _dir: tempfile::TempDir,
}

fn quoted(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

impl World {
    async fn start() -> World {
        let pki = Pki::new(
            &[
                (
                    "orders-prod",
                    &[San::Uri("spiffe://acme.example/ns/prod/sa/orders".into())],
                ),
                (
                    "orders-dev",
                    &[San::Uri("spiffe://acme.example/ns/dev/sa/orders".into())],
                ),
                ("laptop-a", &[San::Email("a@acme.example".into())]),
                ("laptop-b", &[San::Email("b@acme.example".into())]),
            ]
            .into_iter()
            .map(|(name, sans)| (name, sans.to_vec()))
            .chain(hostile().into_iter().map(|(name, sans, _)| (name, sans)))
            .collect::<Vec<_>>(),
        );
        let idp = |alg| async move {
            let key = LocalKey::generate(alg).unwrap();
            (Idp::start(&[&key]).await, key)
        };
        let corp = idp(Algorithm::RS256).await;
        let bound = idp(Algorithm::ES256).await;
        let account = nkeys::KeyPair::new_account();
        let dir = tempfile::tempdir().unwrap();
        write_secret(&dir.path().join("issuer.nk"), &account.seed().unwrap());
        std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
        let ws_port = free_port();
        let template = format!(
            r#"listen: 127.0.0.1:{PORT}
tls {{ cert_file: {cert}, key_file: {key}, ca_file: {ca}, verify: true }}
# Plain WebSocket: connections without any client certificate.
websocket {{ listen: "127.0.0.1:{ws_port}", no_tls: true }}
accounts {{
  AUTH {{ users: [ {{ user: auth, password: authpw }} ] }}
  APP {{}}
  SYS {{}}
}}
system_account: SYS
authorization {{
  timeout: 2
  auth_callout {{ issuer: {issuer}, auth_users: [ auth ], account: AUTH }}
}}
"#,
            cert = quoted(&pki.path("server.pem")),
            key = quoted(&pki.path("server-key.pem")),
            ca = quoted(&pki.path("ca.pem")),
            issuer = account.public_key(),
        );
        let nats = NatsServer::start_any_port(&template);
        let tls = format!(
            "{{ ca_file = {}, cert_file = {}, key_file = {} }}",
            quoted(&pki.path("ca.pem")),
            quoted(&pki.path("service.pem")),
            quoted(&pki.path("service-key.pem"))
        );
        let config = ConfigBuilder::new(&nats.url(), "issuer.nk", "policy.toml")
            .user_password("auth", "authpw")
            .nats_set("tls", &tls)
            .issuer(
                IssuerBuilder::new("corp", &corp.0.issuer, &["nats"])
                    .algorithms(&["RS256"])
                    .set("leeway", "\"2s\""),
            )
            .issuer(
                IssuerBuilder::new("bound", &bound.0.issuer, &["nats"])
                    .algorithms(&["ES256"])
                    .set("certificate_bound", "\"required\""),
            );
        let path = dir.path().join("callout.toml");
        config.write(&path).unwrap();
        let service = Service::start(&path);
        World {
            pki,
            corp,
            bound,
            nats,
            ws_port,
            service,
            _dir: dir,
        }
    }

    fn token(&self, (idp, key): &(Idp, LocalKey), sub: &str, cnf: Option<Value>) -> String {
        let now = now();
        let mut claims = json!({"iss": idp.issuer, "aud": "nats", "sub": sub, "scope": "nats",
                                "iat": now, "exp": now + 300});
        if let Some(cnf) = cnf {
            claims["cnf"] = cnf;
        }
        key.sign(&claims)
    }

    async fn connect(
        &self,
        token: Option<&str>,
        cert: Option<&str>,
    ) -> Result<async_nats::Client, async_nats::ConnectError> {
        let opts = match token {
            Some(t) => async_nats::ConnectOptions::with_token(t.to_owned()),
            None => async_nats::ConnectOptions::new(),
        };
        self.pki
            .options(opts, cert)
            .max_reconnects(Some(0))
            .connect(self.nats.url())
            .await
    }

    /// The latest decision's reason for `subject`.
    fn reason_for(&self, subject: &str) -> String {
        let d = self
            .service
            .decisions()
            .into_iter()
            .rev()
            .find(|d| d.get("subject").and_then(Value::as_str) == Some(subject))
            .unwrap_or_else(|| {
                panic!("no decision for {subject}: {:#?}", self.service.decisions())
            });
        d.get("reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spiffe_workload_without_a_token_is_granted_by_a_certificate_rule() {
    let w = World::start().await;
    let prod = w
        .connect(None, Some("orders-prod"))
        .await
        .expect("prod workload");
    round_trip(&prod, "orders.ns/prod/sa/orders.created").await;
    let d = w.service.decisions().pop().unwrap();
    assert_eq!(d["issuer"], "certificate");
    assert_eq!(d["subject"], "spiffe://acme.example/ns/prod/sa/orders");
    assert_eq!(d["rules"], "spiffe-prod");
    // Outside the rule's SAN glob: no rule grants it.
    assert!(w.connect(None, Some("orders-dev")).await.is_err());
    assert_eq!(
        w.reason_for("spiffe://acme.example/ns/dev/sa/orders"),
        "no rule grants access"
    );
    // A certificate without a SPIFFE ID is known by its subject DN.
    assert!(w.connect(None, Some("laptop-a")).await.is_err());
    assert_eq!(w.reason_for("CN=laptop-a"), "no rule grants access");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_token_works_only_with_its_certificate() {
    let w = World::start().await;
    let bound_to_a = w.token(
        &w.corp,
        "alice",
        Some(json!({"x5t#S256": w.pki.x5t("laptop-a")})),
    );
    let alice = w
        .connect(Some(&bound_to_a), Some("laptop-a"))
        .await
        .expect("bound token with its certificate");
    round_trip(&alice, "app.alice.x").await;
    // The same token from another client's certificate: a stolen token.
    assert!(w
        .connect(Some(&bound_to_a), Some("laptop-b"))
        .await
        .is_err());
    let reason = w.reason_for("alice");
    assert!(
        reason.contains("bound to another client certificate"),
        "{reason}"
    );
    // An unbound token from the optional issuer is fine over mTLS.
    let plain = w.token(&w.corp, "bob", None);
    assert!(w.connect(Some(&plain), Some("laptop-b")).await.is_ok());
    // Over a connection with no client certificate at all (plain
    // WebSocket), the bound token is refused.
    let ws = async_nats::ConnectOptions::with_token(bound_to_a.clone())
        .max_reconnects(Some(0))
        .connect(format!("ws://127.0.0.1:{}", w.ws_port))
        .await;
    assert!(ws.is_err(), "a bound token without its certificate got in");
    let reason = w.reason_for("alice");
    assert!(
        reason.contains("no verified client certificate"),
        "{reason}"
    );
    let denied = w
        .service
        .decisions()
        .into_iter()
        .filter(|d| d.get("reason_class").and_then(Value::as_str) == Some("certificate_binding"))
        .count();
    assert_eq!(denied, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_that_requires_binding_refuses_unbound_tokens() {
    let w = World::start().await;
    let unbound = w.token(&w.bound, "carol", None);
    assert!(w.connect(Some(&unbound), Some("laptop-a")).await.is_err());
    assert!(w
        .reason_for("carol")
        .contains("requires certificate-bound tokens"));
    let bound = w.token(
        &w.bound,
        "carol",
        Some(json!({"x5t#S256": w.pki.x5t("laptop-a")})),
    );
    let carol = w
        .connect(Some(&bound), Some("laptop-a"))
        .await
        .expect("bound token with its certificate");
    round_trip(&carol, "app.carol.x").await;
}

/// The adversarial certificate corpus through a real TLS server: each
/// hostile certificate is denied with its reason class and never granted
/// a subject; a certificate from a CA the server does not trust never
/// reaches the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_certificates_are_denied_with_reasons() {
    let w = World::start().await;
    for (name, _, class) in hostile() {
        let before = w.service.decision_count();
        assert!(
            w.connect(None, Some(name)).await.is_err(),
            "{name}: a hostile certificate got in"
        );
        let decided = wait_until(std::time::Duration::from_secs(5), || {
            w.service.decision_count() > before
        });
        assert!(decided, "{name}: no decision");
        let d = w.service.decisions().pop().unwrap();
        assert_eq!(d["decision"], "deny", "{name}: {d:?}");
        assert_eq!(d["reason_class"], class, "{name}: {d:?}");
    }

    // Issued by another CA: the server refuses the handshake itself.
    let rogue = LocalCa::generate("rogue CA", 2).unwrap();
    let c = rogue
        .issue(
            "orders",
            &[San::Uri("spiffe://acme.example/ns/prod/sa/orders".into())],
            Usage::Client,
        )
        .unwrap();
    std::fs::write(w.pki.path("rogue.pem"), &c.cert_pem).unwrap();
    write_secret(&w.pki.path("rogue-key.pem"), &c.key_pem);
    let before = w.service.decision_count();
    assert!(w.connect(None, Some("rogue")).await.is_err());
    assert_eq!(w.service.decision_count(), before, "the service saw it");
    assert!(
        w.service
            .decisions()
            .iter()
            .all(|d| d["decision"] == "deny"),
        "{:#?}",
        w.service.decisions()
    );
}
