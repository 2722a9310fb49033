use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rcgen::{CustomExtension, DnType, SanType};
use serde_json::{Map, Value};

use super::testing::{dns, email, make, make_with, openssl, pem, uri, verified};
use super::*;

pub(super) fn acme() -> testing::Made {
    make(
        &[
            (DnType::CountryName, "US"),
            (DnType::OrganizationName, "Acme, Inc."),
            (DnType::OrganizationalUnitName, "prod"),
            (DnType::CommonName, "orders+1"),
        ],
        vec![
            uri("spiffe://acme.example/ns/prod/sa/orders"),
            dns("orders.prod.svc"),
            dns("orders.prod.svc.cluster.local"),
            email("ops@acme.example"),
            SanType::IpAddress("127.0.0.1".parse().unwrap()),
        ],
    )
}

pub(super) fn cert_with_uri(u: &str) -> ClientCertificate {
    ClientCertificate::from_pem(&make(&[(DnType::CommonName, "w")], vec![uri(u)]).pem).unwrap()
}

pub(super) fn claims(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

pub(super) fn condition(table: &str) -> CertificateCondition {
    CertificateCondition::from_toml(table).unwrap()
}

#[test]
fn reads_every_san_kind_and_ignores_ip_addresses() {
    let c = ClientCertificate::from_pem(&acme().pem).unwrap();
    assert_eq!(c.san_uri, vec!["spiffe://acme.example/ns/prod/sa/orders"]);
    assert_eq!(
        c.san_dns,
        vec!["orders.prod.svc", "orders.prod.svc.cluster.local"]
    );
    assert_eq!(c.san_email, vec!["ops@acme.example"]);
    assert_eq!(c.cn.as_deref(), Some("orders+1"));
}

#[test]
fn subject_and_issuer_are_rfc4514_like_openssl_prints_them() {
    let made = acme();
    let c = ClientCertificate::from_pem(&made.pem).unwrap();
    assert_eq!(c.subject, r"CN=orders\+1,OU=prod,O=Acme\, Inc.,C=US");
    let expect = |what: &str| {
        let out = openssl(&made.pem, &["-noout", what, "-nameopt", "RFC2253"]);
        let text = String::from_utf8(out).unwrap();
        let prefix = format!("{}=", &what[1..]);
        text.trim().strip_prefix(&prefix).unwrap().to_owned()
    };
    assert_eq!(c.subject, expect("-subject"));
    assert_eq!(c.issuer, expect("-issuer"));
}

#[test]
fn fingerprints_equal_openssl_and_rfc8705_encoding() {
    let made = acme();
    let c = ClientCertificate::from_pem(&made.pem).unwrap();
    let out =
        String::from_utf8(openssl(&made.pem, &["-noout", "-fingerprint", "-sha256"])).unwrap();
    let hex = out.trim().rsplit('=').next().unwrap().replace(':', "");
    assert_eq!(c.sha256, hex.to_ascii_lowercase());
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert_eq!(c.x5t_s256, URL_SAFE_NO_PAD.encode(&bytes));
    assert_eq!(c.x5t_s256.len(), 43);
    assert_eq!(c.digest().as_slice(), bytes.as_slice());
}

#[test]
fn only_verified_chains_count() {
    let leaf = acme().pem;
    assert_eq!(ClientCertificate::from_client_tls(None), Ok(None));
    let plain = verified(vec![]);
    assert_eq!(ClientCertificate::from_client_tls(Some(&plain)), Ok(None));
    assert!(!ClientCertificate::offered_unverified(Some(&plain)));
    let offered = ClientTls {
        certs: vec![leaf.clone()],
        ..verified(vec![])
    };
    assert_eq!(ClientCertificate::from_client_tls(Some(&offered)), Ok(None));
    assert!(ClientCertificate::offered_unverified(Some(&offered)));
    let ok = verified(vec![vec![leaf.clone(), make(&[], vec![]).pem]]);
    let c = ClientCertificate::from_client_tls(Some(&ok))
        .unwrap()
        .unwrap();
    assert_eq!(c.cn.as_deref(), Some("orders+1"));
}

#[test]
fn several_chains_must_share_the_leaf() {
    let leaf = acme().pem;
    let root = make(&[(DnType::CommonName, "root")], vec![]).pem;
    let int = make(&[(DnType::CommonName, "int")], vec![]).pem;
    let two = verified(vec![
        vec![leaf.clone(), int.clone()],
        vec![leaf.clone(), int.clone(), root.clone()],
    ]);
    assert!(ClientCertificate::from_client_tls(Some(&two))
        .unwrap()
        .is_some());
    let other = make(&[(DnType::CommonName, "other")], vec![]).pem;
    let split = verified(vec![vec![leaf], vec![other, root]]);
    assert_eq!(
        ClientCertificate::from_client_tls(Some(&split)),
        Err(CertificateError::InconsistentLeaf(1))
    );
}

#[test]
fn awkward_chains_are_clear_errors() {
    let leaf = acme().pem;
    let err = |tls: ClientTls| ClientCertificate::from_client_tls(Some(&tls)).unwrap_err();
    assert_eq!(err(verified(vec![vec![]])), CertificateError::EmptyChain(0));
    assert_eq!(
        err(verified(vec![vec![leaf.clone()]; MAX_CHAINS + 1])),
        CertificateError::TooManyChains(MAX_CHAINS + 1)
    );
    assert_eq!(
        err(verified(vec![vec![leaf.clone(); 10_000]])),
        CertificateError::ChainTooLong {
            chain: 0,
            len: 10_000
        }
    );
    let huge = format!("{leaf}{}", "A".repeat(MAX_PEM_BYTES));
    assert!(matches!(
        err(verified(vec![vec![huge]])),
        CertificateError::TooLarge(_)
    ));
}

#[test]
fn garbage_is_a_clear_error_never_a_panic() {
    let cases = [
        "",
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\n",
    ];
    for case in cases {
        let e = ClientCertificate::from_pem(case).unwrap_err();
        assert!(
            matches!(
                e,
                CertificateError::NotPem(_) | CertificateError::BadX509(_)
            ),
            "{case:?}: {e:?}"
        );
        assert!(e.to_string().starts_with("client certificate"), "{e}");
    }
    let key = x509_cert::der::pem::encode_string(
        "PRIVATE KEY",
        x509_cert::der::pem::LineEnding::LF,
        b"0123",
    )
    .unwrap();
    assert_eq!(
        ClientCertificate::from_pem(&key),
        Err(CertificateError::NotACertificate("PRIVATE KEY".into()))
    );
    // Valid PEM around DER that is not a certificate.
    let not_x509 = pem(&[0x30, 0x03, 0x02, 0x01, 0x05]);
    assert!(matches!(
        ClientCertificate::from_pem(&not_x509),
        Err(CertificateError::BadX509(_))
    ));
    // A certificate with bytes after it is not the certificate that was verified.
    let mut trailing = acme().der;
    trailing.push(0);
    assert!(matches!(
        ClientCertificate::from_der(&trailing),
        Err(CertificateError::BadX509(_))
    ));
    // Truncations of a real certificate at every length.
    let der = acme().der;
    for n in 0..der.len() {
        assert!(ClientCertificate::from_der(&der[..n]).is_err(), "len {n}");
    }
}

#[test]
fn two_san_extensions_are_refused() {
    // GeneralNames { dNSName "x.example" }
    let mut content = vec![0x30, 0x0b, 0x82, 0x09];
    content.extend_from_slice(b"x.example");
    let second = CustomExtension::from_oid_content(&[2, 5, 29, 17], content);
    let made = make_with(
        &[(DnType::CommonName, "dup")],
        vec![dns("a.example")],
        vec![second],
    );
    assert!(matches!(
        ClientCertificate::from_pem(&made.pem),
        Err(CertificateError::BadSubjectAltName(_))
    ));
}

#[test]
fn template_fields() {
    let c = ClientCertificate::from_pem(&acme().pem).unwrap();
    assert_eq!(c.field("cn").unwrap(), "orders+1");
    assert_eq!(
        c.field("san_uri").unwrap(),
        "spiffe://acme.example/ns/prod/sa/orders"
    );
    assert_eq!(c.field("spiffe_path").unwrap(), "ns/prod/sa/orders");
    assert_eq!(c.field("san_email").unwrap(), "ops@acme.example");
    assert_eq!(c.field("sha256").unwrap(), c.sha256);
    assert_eq!(c.field("x5t_s256").unwrap(), c.x5t_s256);
    assert_eq!(c.field("subject").unwrap(), c.subject);
    assert_eq!(c.field("issuer").unwrap(), c.issuer);
    assert_eq!(
        c.field("san_dns"),
        Err(FieldError::Ambiguous {
            field: "san_dns".into(),
            count: 2
        })
    );
    assert_eq!(c.field("nope"), Err(FieldError::Unknown("nope".into())));
    for f in TEMPLATE_FIELDS {
        assert_ne!(c.field(f), Err(FieldError::Unknown(f.into())), "{f}");
    }
    let bare = ClientCertificate::from_pem(&make(&[], vec![]).pem).unwrap();
    assert_eq!(bare.subject, "");
    assert_eq!(bare.field("cn"), Err(FieldError::Missing("cn".into())));
    assert_eq!(
        bare.field("san_uri"),
        Err(FieldError::Missing("san_uri".into()))
    );
}

#[test]
fn spiffe_ids_are_checked_before_their_path_is_used() {
    assert_eq!(
        spiffe_path("spiffe://acme.example/ns/a/sa/b"),
        Some("ns/a/sa/b")
    );
    for bad in [
        "spiffe://acme.example",
        "spiffe://acme.example/",
        "spiffe://Acme.example/x",
        "spiffe://acme.example:443/x",
        "spiffe://user@acme.example/x",
        "spiffe://acme.example/ns//x",
        "spiffe://acme.example/ns/../admin",
        "spiffe://acme.example/./x",
        "spiffe://acme.example/x?y=1",
        "spiffe://acme.example/x#f",
        "spiffe://acme.example/x%2Fy",
        "https://acme.example/x",
    ] {
        assert_eq!(spiffe_path(bad), None, "{bad}");
    }
    let c = cert_with_uri("spiffe://acme.example/ns/../admin");
    assert_eq!(
        c.field("spiffe_path"),
        Err(FieldError::Missing("SPIFFE ID".into()))
    );
}

#[test]
fn issued_certificates_parse_back() {
    use issue::{LocalCa, San, Usage};
    let ca = LocalCa::generate("Test CA", 30).unwrap();
    let leaf = ca
        .issue(
            "workload",
            &[
                San::Uri("spiffe://t.example/w".into()),
                San::Dns("localhost".into()),
                San::Ip("::1".parse().unwrap()),
                San::Email("w@t.example".into()),
            ],
            Usage::Client,
        )
        .unwrap();
    let c = ClientCertificate::from_pem(&leaf.cert_pem).unwrap();
    assert_eq!(c.subject, "CN=workload");
    assert_eq!(c.issuer, "CN=Test CA");
    assert_eq!(c.san_uri, vec!["spiffe://t.example/w"]);
    assert_eq!(c.san_dns, vec!["localhost"]);
    assert_eq!(c.san_email, vec!["w@t.example"]);
    assert!(leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(!format!("{leaf:?}").contains("PRIVATE KEY"));
    // openssl agrees that the CA issued it.
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    let leaf_file = dir.path().join("leaf.pem");
    std::fs::write(&ca_file, &ca.certificate().cert_pem).unwrap();
    std::fs::write(&leaf_file, &leaf.cert_pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(&ca_file)
        .arg(&leaf_file)
        .output()
        .expect("openssl is required by these tests");
    assert!(out.status.success(), "{out:?}");
    let out = std::process::Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(&ca_file)
        .arg(&leaf_file)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a client certificate is not a server certificate"
    );
}
