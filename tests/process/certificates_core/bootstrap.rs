//! `bootstrap --tls`: the CA, server, service and workload certificates it
//! writes, in both modes, and a setup that admits a certificate client.

use super::*;

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
