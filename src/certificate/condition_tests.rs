//! Certificate conditions in rules: what they accept at load and match.

use rcgen::{DnType, SanType};
use serde_json::json;

use super::testing::{dns, make, openssl, uri, verified};
use super::tests::{acme, cert_with_uri, claims, condition};
use super::*;

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
