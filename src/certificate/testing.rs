//! Certificates made at test time, with any subject and SANs.

use std::process::Command;

use rcgen::{CertificateParams, CustomExtension, DistinguishedName, DnType, KeyPair, SanType};
use x509_cert::der::pem::{encode_string, LineEnding};

use crate::protocol::ClientTls;

pub(crate) struct Made {
    pub(crate) der: Vec<u8>,
    pub(crate) pem: String,
}

/// A self-signed certificate; `dn` in DER order (most general first).
pub(crate) fn make(dn: &[(DnType, &str)], sans: Vec<SanType>) -> Made {
    make_with(dn, sans, Vec::new())
}

pub(crate) fn make_with(
    dn: &[(DnType, &str)],
    sans: Vec<SanType>,
    extensions: Vec<CustomExtension>,
) -> Made {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    for (t, v) in dn {
        name.push(t.clone(), *v);
    }
    params.distinguished_name = name;
    params.subject_alt_names = sans;
    params.custom_extensions = extensions;
    let key = KeyPair::generate().unwrap();
    let der = params.self_signed(&key).unwrap().der().to_vec();
    Made {
        pem: pem(&der),
        der,
    }
}

pub(crate) fn pem(der: &[u8]) -> String {
    encode_string("CERTIFICATE", LineEnding::LF, der).unwrap()
}

pub(crate) fn uri(s: &str) -> SanType {
    SanType::URI(s.to_owned().try_into().unwrap())
}

pub(crate) fn dns(s: &str) -> SanType {
    SanType::DnsName(s.to_owned().try_into().unwrap())
}

pub(crate) fn email(s: &str) -> SanType {
    SanType::Rfc822Name(s.to_owned().try_into().unwrap())
}

/// `client_tls` as the server sends it for a verified connection.
pub(crate) fn verified(chains: Vec<Vec<String>>) -> ClientTls {
    ClientTls {
        version: "1.3".into(),
        cipher: "TLS_AES_128_GCM_SHA256".into(),
        certs: Vec::new(),
        verified_chains: chains,
    }
}

/// Runs `openssl` on a PEM certificate; the tests need it (Debian has it).
pub(crate) fn openssl(pem: &str, args: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cert.pem");
    std::fs::write(&file, pem).unwrap();
    let out = Command::new("openssl")
        .arg("x509")
        .arg("-in")
        .arg(&file)
        .args(args)
        .output()
        .expect("openssl is required by these tests (Debian package openssl)");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
    out.stdout
}
