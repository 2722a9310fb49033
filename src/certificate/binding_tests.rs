//! RFC 8705 binding: a token's `cnf` against the connection's certificate.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

use super::testing::make;
use super::tests::{acme, claims};
use super::*;

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
