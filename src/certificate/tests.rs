use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rcgen::{CustomExtension, DnType, SanType};
use serde_json::{json, Map, Value};

use super::testing::{dns, email, make, make_with, openssl, pem, uri, verified};
use super::*;

fn acme() -> testing::Made {
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

fn cert_with_uri(u: &str) -> ClientCertificate {
    ClientCertificate::from_pem(&make(&[(DnType::CommonName, "w")], vec![uri(u)]).pem).unwrap()
}

fn claims(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn condition(table: &str) -> CertificateCondition {
    CertificateCondition::from_toml(table).unwrap()
}

// --- parsing ---------------------------------------------------------------

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

// --- conditions --------------------------------------------------------------

#[test]
fn conditions_reject_unknown_fields_and_empty_tables() {
    let e = CertificateCondition::from_toml("san_url = \"x\"").unwrap_err();
    assert!(e.contains("san_url"), "{e}");
    let e = CertificateCondition::from_toml("").unwrap_err();
    assert!(e.contains("names no field"), "{e}");
    let e = CertificateCondition::from_toml("san_uri = []").unwrap_err();
    assert!(e.contains("empty list"), "{e}");
    let e = CertificateCondition::from_toml("subject = \"\"").unwrap_err();
    assert!(e.contains("empty pattern"), "{e}");
    for bad in ["abc", "*", &"g".repeat(64), &"a".repeat(63)] {
        let e = CertificateCondition::from_toml(&format!("sha256 = {bad:?}")).unwrap_err();
        assert!(e.contains("not a SHA-256 fingerprint"), "{e}");
    }
    assert!(CertificateCondition::from_toml("san_uri = 3").is_err());
}

#[test]
fn conditions_deserialize_inside_a_rule_table() {
    #[derive(serde::Deserialize)]
    struct Rule {
        certificate: CertificateCondition,
    }
    let r: Rule =
        toml::from_str("certificate = { san_uri = \"spiffe://acme.example/ns/prod/*\" }").unwrap();
    assert!(r
        .certificate
        .matches(&ClientCertificate::from_pem(&acme().pem).unwrap())
        .is_ok());
    let e = toml::from_str::<Rule>("certificate = { sha256 = \"zz\" }")
        .err()
        .unwrap();
    assert!(e.to_string().contains("sha256"), "{e}");
    assert!(e.span().is_some());
}

#[test]
fn every_listed_field_must_match() {
    let c = ClientCertificate::from_pem(&acme().pem).unwrap();
    let all = condition(&format!(
        "subject = \"CN=orders*\"\nissuer = \"*O=Acme*\"\nsan_dns = \"*.prod.svc\"\n\
         san_uri = \"spiffe://acme.example/ns/prod/*\"\nsan_email = \"*@acme.example\"\n\
         sha256 = {:?}",
        c.sha256
    ));
    assert_eq!(all.matches(&c), Ok(()));
    for (field, bad) in [
        ("subject", "subject = \"CN=billing*\""),
        ("issuer", "issuer = \"CN=Other CA\""),
        ("san_dns", "san_dns = \"*.dev.svc\""),
        ("san_uri", "san_uri = \"spiffe://acme.example/ns/dev/*\""),
        ("san_email", "san_email = \"*@evil.example\""),
        ("sha256", &format!("sha256 = {:?}", "0".repeat(64))),
    ] {
        let matching = if field == "san_dns" {
            "san_uri = \"spiffe://acme.example/*\""
        } else {
            "san_dns = \"*.prod.svc\""
        };
        let table = format!("{matching}\n{bad}");
        let reason = condition(&table).matches(&c).unwrap_err();
        assert!(
            reason.starts_with(&format!("client certificate {field} ")),
            "{reason}"
        );
    }
}

#[test]
fn dns_names_ignore_case_other_fields_do_not() {
    let c = ClientCertificate::from_pem(
        &make(
            &[(DnType::CommonName, "Orders")],
            vec![dns("Orders.PROD.svc"), uri("spiffe://acme.example/Ns/x")],
        )
        .pem,
    )
    .unwrap();
    assert_eq!(condition("san_dns = \"*.prod.SVC\"").matches(&c), Ok(()));
    assert!(condition("san_uri = \"spiffe://acme.example/ns/*\"")
        .matches(&c)
        .is_err());
    assert!(condition("subject = \"CN=orders\"").matches(&c).is_err());
}

#[test]
fn a_list_is_any_of_its_patterns() {
    let c = ClientCertificate::from_pem(&acme().pem).unwrap();
    let any = condition("san_uri = [\"spiffe://other/*\", \"spiffe://acme.example/ns/prod/*\"]");
    assert_eq!(any.matches(&c), Ok(()));
    let none = condition("san_uri = [\"spiffe://other/*\", \"spiffe://acme.example/ns/dev/*\"]");
    let reason = none.matches(&c).unwrap_err();
    assert!(
        reason.contains("spiffe://acme.example/ns/prod/sa/orders"),
        "{reason}"
    );
    assert!(reason.contains("spiffe://other/*"), "{reason}");
}

#[test]
fn sha256_accepts_openssl_form_in_any_case() {
    let made = acme();
    let c = ClientCertificate::from_pem(&made.pem).unwrap();
    let out =
        String::from_utf8(openssl(&made.pem, &["-noout", "-fingerprint", "-sha256"])).unwrap();
    let colon_upper = out.trim().rsplit('=').next().unwrap().to_owned();
    assert!(colon_upper.contains(':'));
    assert_eq!(
        condition(&format!("sha256 = {colon_upper:?}")).matches(&c),
        Ok(())
    );
    assert_eq!(
        condition(&format!("sha256 = {:?}", c.sha256.to_uppercase())).matches(&c),
        Ok(())
    );
    let other = ClientCertificate::from_pem(&make(&[], vec![]).pem).unwrap();
    assert!(condition(&format!("sha256 = {:?}", c.sha256))
        .matches(&other)
        .is_err());
}

#[test]
fn refusals_list_at_most_three_values() {
    let many: Vec<SanType> = (0..10).map(|i| dns(&format!("h{i}.example"))).collect();
    let c = ClientCertificate::from_pem(&make(&[], many).pem).unwrap();
    let reason = condition("san_dns = \"x\"").matches(&c).unwrap_err();
    assert!(
        reason.contains("h2.example") && !reason.contains("h3.example"),
        "{reason}"
    );
    assert!(reason.contains("and 7 more"), "{reason}");
    let none = ClientCertificate::from_pem(&make(&[], vec![]).pem).unwrap();
    let reason = condition("san_uri = \"*\"").matches(&none).unwrap_err();
    assert!(reason.contains("san_uri none"), "{reason}");
}

#[test]
fn open_ended_host_patterns_warn() {
    let w = condition("san_uri = [\"spiffe://acme*\", \"spiffe://acme.example/*\"]");
    assert_eq!(w.warnings().len(), 1);
    assert!(w.warnings()[0].contains("spiffe://acme*"));
    assert_eq!(condition("san_dns = \"acme.example*\"").warnings().len(), 1);
    assert_eq!(condition("san_email = \"*@acme*\"").warnings().len(), 1);
    let fine = condition(
        "san_dns = \"*.acme.example\"\nsan_email = \"*@acme.example\"\nsan_uri = \"spiffe://acme.example/ns/*\"",
    );
    assert!(fine.warnings().is_empty(), "{:?}", fine.warnings());
}

// --- adversarial cases (certificate corpus) ---------------------------------

#[test]
fn dot_segments_cannot_escape_a_uri_prefix() {
    let prod = condition("san_uri = \"spiffe://acme.example/ns/prod/*\"");
    for tricky in [
        "spiffe://acme.example/ns/prod/../admin/sa/x",
        "spiffe://acme.example/ns/prod/%2e%2e/admin/sa/x",
        "spiffe://acme.example/ns/prod/%2E%2E/admin",
        "spiffe://acme.example/ns/prod/x%2F..%2Fadmin",
        "spiffe://acme.example/ns/prod/./x",
        "spiffe://acme.example/ns/prod/..",
        "spiffe://acme.example/ns/prod/x%5c..%5cadmin",
    ] {
        assert!(prod.matches(&cert_with_uri(tricky)).is_err(), "{tricky}");
    }
    assert_eq!(
        prod.matches(&cert_with_uri("spiffe://acme.example/ns/prod/sa/x")),
        Ok(())
    );
}

#[test]
fn lookalike_trust_domains_and_namespaces_do_not_match() {
    let prod = condition("san_uri = \"spiffe://acme.example/ns/prod/*\"");
    for other in [
        "spiffe://acme.example.evil/ns/prod/sa/x",
        "spiffe://evil.example/spiffe://acme.example/ns/prod/x",
        "spiffe://acme.example/ns/production/sa/x",
        "spiffe://acme.example/ns/prod",
        "SPIFFE://acme.example/ns/prod/sa/x",
    ] {
        assert!(prod.matches(&cert_with_uri(other)).is_err(), "{other}");
    }
}

#[test]
fn dn_values_cannot_inject_attributes() {
    // A CN that spells another RDN is escaped, so it cannot satisfy a
    // pattern that expects a real OU.
    let c =
        ClientCertificate::from_pem(&make(&[(DnType::CommonName, "svc,OU=admins")], vec![]).pem)
            .unwrap();
    assert_eq!(c.subject, r"CN=svc\,OU=admins");
    assert!(condition("subject = \"CN=svc,OU=admins\"")
        .matches(&c)
        .is_err());
    // Only the subject is matched by `subject`, not the issuer.
    let issued_by_admins = make(
        &[
            (DnType::OrganizationalUnitName, "admins"),
            (DnType::CommonName, "x"),
        ],
        vec![],
    );
    let c = ClientCertificate::from_pem(&issued_by_admins.pem).unwrap();
    assert_eq!(condition("issuer = \"*OU=admins\"").matches(&c), Ok(()));
    assert!(condition("subject = \"OU=admins*\"").matches(&c).is_err());
}

#[test]
fn a_cert_listed_only_in_unverified_certs_never_matches() {
    let leaf = acme().pem;
    let offered = ClientTls {
        certs: vec![leaf],
        ..verified(vec![])
    };
    let cert = ClientCertificate::from_client_tls(Some(&offered)).unwrap();
    assert!(cert.is_none());
    let bound = claims(json!({"cnf": {"x5t#S256": "A".repeat(43)}}));
    assert_eq!(
        check_binding(&bound, cert.as_ref(), CertificateBound::Optional),
        Err(BindingError::NoCertificate)
    );
}

// --- binding (RFC 8705) -----------------------------------------------------

#[test]
fn binding_every_branch() {
    let mine = ClientCertificate::from_pem(&acme().pem).unwrap();
    let theirs = ClientCertificate::from_pem(&make(&[], vec![]).pem).unwrap();
    let bound = claims(json!({"sub": "a", "cnf": {"x5t#S256": mine.x5t_s256}}));
    let unbound = claims(json!({"sub": "a"}));
    use CertificateBound::{Optional, Required};

    for mode in [Optional, Required] {
        assert_eq!(check_binding(&bound, Some(&mine), mode), Ok(()));
        assert_eq!(
            check_binding(&bound, Some(&theirs), mode),
            Err(BindingError::Mismatch {
                token: mine.x5t_s256.clone(),
                connection: theirs.x5t_s256.clone()
            })
        );
        assert_eq!(
            check_binding(&bound, None, mode),
            Err(BindingError::NoCertificate)
        );
    }
    assert_eq!(check_binding(&unbound, Some(&mine), Optional), Ok(()));
    assert_eq!(check_binding(&unbound, None, Optional), Ok(()));
    assert_eq!(
        check_binding(&unbound, Some(&mine), Required),
        Err(BindingError::Required)
    );
    assert_eq!(
        check_binding(&unbound, None, Required),
        Err(BindingError::Required)
    );
}

#[test]
fn malformed_cnf_is_denied() {
    let mine = ClientCertificate::from_pem(&acme().pem).unwrap();
    let padded = format!("{}=", mine.x5t_s256);
    let standard_b64 = base64::engine::general_purpose::STANDARD.encode(mine.digest());
    let cases = [
        json!("x"),
        json!(null),
        json!([mine.x5t_s256]),
        json!({}),
        json!({"x5t#S256": 42}),
        json!({"x5t#S256": null}),
        json!({"x5t#S256": [mine.x5t_s256]}),
        json!({"x5t#S256": ""}),
        json!({"x5t#S256": "!!!"}),
        json!({"x5t#S256": padded}),
        json!({"x5t#S256": mine.sha256}),
        json!({"x5t#S256": &mine.x5t_s256[..42]}),
        json!({"x5t#S256": URL_SAFE_NO_PAD.encode([0u8; 31])}),
    ];
    for cnf in cases {
        let c = claims(json!({ "cnf": cnf }));
        for mode in [CertificateBound::Optional, CertificateBound::Required] {
            let e = check_binding(&c, Some(&mine), mode).unwrap_err();
            assert!(matches!(e, BindingError::Malformed(_)), "{cnf}: {e:?}");
        }
    }
    // Standard base64 differs from base64url only where '+' or '/' occur.
    if standard_b64.trim_end_matches('=') != mine.x5t_s256 {
        let c = claims(json!({ "cnf": { "x5t#S256": standard_b64 } }));
        assert!(check_binding(&c, Some(&mine), CertificateBound::Optional).is_err());
    }
}

#[test]
fn other_confirmation_methods_are_denied_even_next_to_x5t() {
    let mine = ClientCertificate::from_pem(&acme().pem).unwrap();
    let dpop = claims(json!({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}));
    let e = check_binding(&dpop, Some(&mine), CertificateBound::Optional).unwrap_err();
    assert_eq!(e, BindingError::UnsupportedMethod("jkt".into()));
    assert!(e.to_string().contains("jkt"));
    let both = claims(json!({"cnf": {"x5t#S256": mine.x5t_s256, "jwk": {}}}));
    assert_eq!(
        check_binding(&both, Some(&mine), CertificateBound::Optional),
        Err(BindingError::UnsupportedMethod("jwk".into()))
    );
}

#[test]
fn certificate_bound_reads_from_toml() {
    #[derive(serde::Deserialize)]
    struct Issuer {
        #[serde(default)]
        certificate_bound: CertificateBound,
    }
    let read = |s: &str| toml::from_str::<Issuer>(s).map(|i| i.certificate_bound);
    assert_eq!(read("").unwrap(), CertificateBound::Optional);
    assert_eq!(
        read("certificate_bound = \"required\"").unwrap(),
        CertificateBound::Required
    );
    assert_eq!(
        read("certificate_bound = \"optional\"").unwrap(),
        CertificateBound::Optional
    );
    assert!(read("certificate_bound = \"always\"").is_err());
    assert!(read("certificate_bound = true").is_err());
}

#[test]
fn binding_errors_say_what_failed() {
    for (e, needle) in [
        (
            BindingError::NoCertificate,
            "no verified client certificate",
        ),
        (BindingError::Required, "requires certificate-bound tokens"),
        (
            BindingError::Mismatch {
                token: "a".into(),
                connection: "b".into(),
            },
            "another client certificate",
        ),
        (
            BindingError::Malformed("x".into()),
            "cnf claim is malformed",
        ),
    ] {
        assert!(e.to_string().contains(needle), "{e}");
    }
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
