//! Client certificates on real connections: what nats-server 2.15.1 puts in
//! an authorization request's `client_tls` for NATS, WebSocket and MQTT
//! clients, that `ClientCertificate` reads the verified leaf out of a real
//! request, and that `bootstrap --tls` writes a setup that works end to end.
//!
//! The setups come from the CLI (`bootstrap --tls`); a test responder on
//! `$SYS.REQ.USER.AUTH` captures each request and denies it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{free_port, run_cli, NatsServer, Service};
use async_nats::rustls;
use futures::StreamExt;
use nats_oidc_callout::certificate::ClientCertificate;
use nats_oidc_callout::protocol::{decode_request, open_request, AuthorizationRequest, Sealer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::sync::mpsc;

/// The SPIFFE ID `bootstrap --tls` puts in the example workload certificate.
const WORKLOAD_ID: &str = "spiffe://nats-oidc-callout.invalid/ns/default/sa/example";
const WAIT: Duration = Duration::from_secs(10);

/// A bootstrapped directory and the ports its server listens on.
struct Setup {
    dir: tempfile::TempDir,
    port: u16,
    ws_port: u16,
    mqtt_port: u16,
}

impl Setup {
    /// Runs `bootstrap --tls` and adds WebSocket and MQTT listeners that
    /// verify client certificates the same way.
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let out = run_cli(&[
            "bootstrap",
            "--tls",
            "--dir",
            dir.path().to_str().unwrap(),
            "--port",
            &port.to_string(),
        ]);
        assert!(out.status.success(), "bootstrap --tls: {out:?}");
        let s = Setup {
            dir,
            port,
            ws_port: free_port(),
            mqtt_port: free_port(),
        };
        let tls = format!(
            "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true }}",
            s.path("tls/server.pem"),
            s.path("tls/server-key.pem"),
            s.path("tls/ca.pem"),
        );
        let extra = format!(
            "server_name: certs-core\njetstream {{ store_dir: {:?} }}\n\
             websocket {{ listen: \"127.0.0.1:{}\", {tls} }}\n\
             mqtt {{ listen: \"127.0.0.1:{}\", {tls} }}\n",
            s.path("js"),
            s.ws_port,
            s.mqtt_port,
        );
        let conf = s.server_config() + &extra;
        std::fs::write(s.dir.path().join("nats-server.conf"), conf).unwrap();
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().canonicalize().unwrap().join(rel)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    fn server_config(&self) -> String {
        self.read("nats-server.conf")
    }

    fn start(&self, config: &str) -> NatsServer {
        NatsServer::start(self.port, config)
    }

    fn client_options(&self) -> async_nats::ConnectOptions {
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(self.path("tls/ca.pem"))
            .add_client_certificate(
                self.path("tls/workload.pem"),
                self.path("tls/workload-key.pem"),
            )
    }
}

/// Connects as the callout user, captures every request into a channel
/// and answers each with an empty payload (deny, no reason).
async fn capture(setup: &Setup, password: bool) -> mpsc::UnboundedReceiver<AuthorizationRequest> {
    let mut opts = async_nats::ConnectOptions::new();
    if password {
        let pw = setup.read("keys/auth.password");
        opts = async_nats::ConnectOptions::with_user_and_password("auth".into(), pw.trim().into());
    }
    let client = opts
        .require_tls(true)
        .add_root_certificates(setup.path("tls/ca.pem"))
        .add_client_certificate(
            setup.path("tls/callout.pem"),
            setup.path("tls/callout-key.pem"),
        )
        .connect(format!("nats://127.0.0.1:{}", setup.port))
        .await
        .expect("callout user connects over mTLS");
    let sealer = Sealer::from_seed(setup.read("keys/xkey.nk").trim()).unwrap();
    let mut sub = client
        .queue_subscribe("$SYS.REQ.USER.AUTH", "capture".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let server_xkey = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Server-Xkey"))
                .map(|v| v.as_str().to_owned());
            let (jwt, _) = open_request(&msg.payload, server_xkey.as_deref(), Some(&sealer))
                .expect("open sealed request");
            let request =
                decode_request(std::str::from_utf8(&jwt).unwrap()).expect("server-signed request");
            let _ = tx.send(request.nats);
            if let Some(reply) = msg.reply {
                client.publish(reply, Default::default()).await.unwrap();
            }
        }
    });
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<AuthorizationRequest>) -> AuthorizationRequest {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an authorization request within 10 s")
        .expect("capture running")
}

fn openssl(args: &[&str], file: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .arg("-in")
        .arg(file)
        .output()
        .expect("openssl is required by these tests (Debian package openssl)");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `ab:CD:…` from `openssl x509 -fingerprint -sha256` as lowercase hex.
fn openssl_sha256(file: &Path) -> String {
    let out = openssl(&["x509", "-noout", "-fingerprint", "-sha256"], file);
    out.trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_ascii_lowercase()
}

/// What every request from the workload certificate must carry.
fn assert_workload_request(setup: &Setup, req: &AuthorizationRequest, conn_type: &str) {
    assert_eq!(req.client_info.conn_type, conn_type);
    let tls = req
        .client_tls
        .as_ref()
        .expect("client_tls on a TLS connection");
    assert_eq!(tls.version, "1.3");
    assert!(!tls.cipher.is_empty());
    assert!(
        tls.certs.is_empty(),
        "unverified certs next to verified chains"
    );
    assert_eq!(tls.verified_chains.len(), 1, "{:?}", tls.verified_chains);
    let chain = &tls.verified_chains[0];
    assert_eq!(chain.len(), 2, "leaf, then the CA from ca_file");
    assert!(chain[0].starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(chain[0].ends_with("-----END CERTIFICATE-----\n"));

    let cert = ClientCertificate::from_client_tls(Some(tls))
        .expect("readable")
        .expect("a verified certificate");
    assert_eq!(cert.san_uri, vec![WORKLOAD_ID]);
    assert_eq!(cert.subject, "CN=example-workload");
    assert_eq!(cert.issuer, "CN=nats-oidc-callout local CA");
    assert_eq!(cert.sha256, openssl_sha256(&setup.path("tls/workload.pem")));
    let ca = ClientCertificate::from_pem(&chain[1]).unwrap();
    assert_eq!(ca.sha256, openssl_sha256(&setup.path("tls/ca.pem")));
}

/// MQTT 3.1.1 CONNECT over TLS with the workload certificate; returns the
/// CONNACK return code.
fn mqtt_connect(setup: &Setup, port: u16, password: &str) -> u8 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(setup.path("tls/ca.pem")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let certs: Vec<_> = CertificateDer::pem_file_iter(setup.path("tls/workload.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(setup.path("tls/workload-key.pem")).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);

    let field = |s: &str| {
        let mut v = (s.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    };
    let mut body = field("MQTT");
    body.extend_from_slice(&[4, 0b1100_0010, 0, 30]); // 3.1.1, user+pass+clean, keepalive
    body.extend(field("certs-core"));
    body.extend(field("workload"));
    body.extend(field(password));
    assert!(body.len() < 128, "one-byte remaining length");
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    tls.write_all(&packet).unwrap();
    let mut connack = [0u8; 4];
    tls.read_exact(&mut connack).expect("CONNACK");
    assert_eq!(connack[..3], [0x20, 0x02, 0x00], "{connack:?}");
    connack[3]
}

#[test]
fn bootstrap_tls_writes_a_ca_and_certificates_with_private_keys_0600() {
    let setup = Setup::new();
    for (file, mode) in [
        ("tls/ca.pem", 0o644),
        ("tls/ca-key.pem", 0o600),
        ("tls/server.pem", 0o644),
        ("tls/server-key.pem", 0o600),
        ("tls/callout.pem", 0o644),
        ("tls/callout-key.pem", 0o600),
        ("tls/workload.pem", 0o644),
        ("tls/workload-key.pem", 0o600),
    ] {
        let meta = std::fs::metadata(setup.path(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
    }
    // The server certificate names only loopback.
    let sans = openssl(
        &["x509", "-noout", "-ext", "subjectAltName"],
        &setup.path("tls/server.pem"),
    );
    let mut names: Vec<&str> = sans
        .lines()
        .nth(1)
        .unwrap()
        .split(", ")
        .map(str::trim)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "DNS:localhost",
            "IP Address:0:0:0:0:0:0:0:1",
            "IP Address:127.0.0.1"
        ]
    );
    // Everything chains to the CA, for the purpose it is meant for.
    for (leaf, purpose) in [
        ("tls/server.pem", "sslserver"),
        ("tls/callout.pem", "sslclient"),
        ("tls/workload.pem", "sslclient"),
    ] {
        let out = Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(setup.path("tls/ca.pem"))
            .arg(setup.path(leaf))
            .output()
            .unwrap();
        assert!(out.status.success(), "{leaf}: {out:?}");
    }
    let conf = setup.server_config();
    assert!(conf.contains("verify: true"), "{conf}");
    let callout = setup.read("callout.toml");
    assert!(
        callout.contains("tls = { ca_file = \"tls/ca.pem\", cert_file = \"tls/callout.pem\", key_file = \"tls/callout-key.pem\" }"),
        "{callout}"
    );
    let check = run_cli(&[
        "validate",
        "--config",
        setup.path("callout.toml").to_str().unwrap(),
    ]);
    assert!(check.status.success(), "{check:?}");
    // A second run never overwrites a key, and stops before writing any.
    let again = run_cli(&[
        "bootstrap",
        "--tls",
        "--dir",
        setup.path("").to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    let fresh = tempfile::tempdir().unwrap();
    std::fs::create_dir(fresh.path().join("tls")).unwrap();
    std::fs::write(fresh.path().join("tls/ca-key.pem"), "keep").unwrap();
    let out = run_cli(&[
        "bootstrap",
        "--tls",
        "--dir",
        fresh.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls/ca-key.pem") && err.contains("refusing to overwrite"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(fresh.path().join("tls/ca-key.pem")).unwrap(),
        "keep"
    );
    assert!(
        !fresh.path().join("keys").exists(),
        "nothing written before the refusal"
    );
}

#[test]
fn bootstrap_tls_in_operator_mode_puts_tls_in_the_nats_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(&[
        "bootstrap",
        "--tls",
        "--mode",
        "operator",
        "--accounts",
        "APP,OPS",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let callout: toml::Value =
        toml::from_str(&std::fs::read_to_string(dir.path().join("callout.toml")).unwrap()).unwrap();
    assert_eq!(
        callout["nats"]["tls"]["cert_file"].as_str(),
        Some("tls/callout.pem")
    );
    assert_eq!(callout["account"].as_array().unwrap().len(), 2);
    let conf = std::fs::read_to_string(dir.path().join("nats-server.conf")).unwrap();
    assert!(conf.contains("verify: true"));
}

#[tokio::test]
async fn bootstrap_tls_setup_admits_a_certificate_client_with_a_dev_token() {
    let setup = Setup::new();
    let server = setup.start(&setup.server_config());
    let _service = Service::start(&setup.path("callout.toml"));
    let token = run_cli(&[
        "dev-token",
        "--dir",
        setup.path("").to_str().unwrap(),
        "--sub",
        "alice",
        "--scope",
        "nats",
    ]);
    assert!(token.status.success(), "{token:?}");
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();

    let client = setup
        .client_options()
        .token(token.clone())
        .connect(server.url())
        .await
        .expect("a client with the workload certificate and a dev token connects");
    crate::support::round_trip(&client, "app.alice.hello").await;

    // The same token without a client certificate never gets past TLS.
    let refused = async_nats::ConnectOptions::with_token(token)
        .require_tls(true)
        .add_root_certificates(setup.path("tls/ca.pem"))
        .connect(server.url())
        .await;
    assert!(refused.is_err());
    let seen = crate::support::wait_until(WAIT, || {
        server.log().contains("client didn't provide a certificate")
    });
    assert!(seen, "{}", server.log());
}

#[tokio::test]
async fn verified_certificates_reach_the_callout_over_nats_websocket_and_mqtt() {
    let setup = Setup::new();
    let server = setup.start(&setup.server_config());
    let mut requests = capture(&setup, true).await;

    let nats = setup
        .client_options()
        .token("tok".into())
        .connect(server.url())
        .await;
    assert!(nats.is_err(), "the capture denies every request");
    assert_workload_request(&setup, &next(&mut requests).await, "nats");

    let ws = setup
        .client_options()
        .token("tok".into())
        .connect(format!("wss://127.0.0.1:{}", setup.ws_port))
        .await;
    assert!(ws.is_err());
    assert_workload_request(&setup, &next(&mut requests).await, "websocket");

    let (port, setup) = (setup.mqtt_port, Arc::new(setup));
    let s = setup.clone();
    let rc = tokio::task::spawn_blocking(move || mqtt_connect(&s, port, "tok"))
        .await
        .unwrap();
    assert_eq!(rc, 5, "MQTT CONNACK: not authorized");
    let req = next(&mut requests).await;
    assert_eq!(req.connect_opts.pass, "tok");
    assert_workload_request(&setup, &req, "mqtt");
    drop(server);
}

#[tokio::test]
async fn without_verify_the_server_asks_for_no_certificate() {
    let setup = Setup::new();
    let conf = setup
        .server_config()
        .replace("verify: true", "verify: false");
    let server = setup.start(&conf);
    let mut requests = capture(&setup, true).await;
    let offered = setup
        .client_options()
        .token("tok".into())
        .connect(server.url())
        .await;
    assert!(offered.is_err());
    let req = next(&mut requests).await;
    let tls = req.client_tls.as_ref().expect("still a TLS connection");
    assert_eq!(tls.version, "1.3");
    assert!(
        tls.verified_chains.is_empty() && tls.certs.is_empty(),
        "{tls:?}"
    );
    assert_eq!(ClientCertificate::from_client_tls(Some(tls)), Ok(None));
    assert!(!ClientCertificate::offered_unverified(Some(tls)));
}

#[tokio::test]
async fn verify_and_map_sends_the_verified_chain_of_unmapped_clients() {
    let setup = Setup::new();
    // The callout user is now identified by its certificate's DN.
    let conf = setup.server_config();
    let users_line = conf
        .lines()
        .find(|l| l.contains("users: [ { user: auth"))
        .unwrap()
        .to_owned();
    let conf = conf
        .replace(
            &users_line,
            "  AUTH { users: [ { user: \"CN=nats-oidc-callout\" } ] }",
        )
        .replace(
            "auth_users: [ auth,",
            "auth_users: [ \"CN=nats-oidc-callout\",",
        )
        .replace("verify: true", "verify_and_map: true");
    let server = setup.start(&conf);
    let mut requests = capture(&setup, false).await;
    let client = setup
        .client_options()
        .token("tok".into())
        .connect(server.url())
        .await;
    assert!(client.is_err());
    assert_workload_request(&setup, &next(&mut requests).await, "nats");
}
