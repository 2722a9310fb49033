//! Distinguished names as RFC 4514 strings (`CN=orders,OU=prod,O=Acme\, Inc.,C=US`),
//! the form `openssl x509 -nameopt RFC2253` prints. Written here with a
//! fixed table of short names: the generic OID-database lookup cost more
//! than the rest of reading a certificate.

use std::fmt::Write;

use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Encode, Tag, Tagged};
use x509_cert::name::Name;

pub(crate) const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// RFC 4514 section 3, plus the two names Go's `pkix` adds.
const SHORT_NAMES: [(ObjectIdentifier, &str); 11] = [
    (COMMON_NAME, "CN"),
    (ObjectIdentifier::new_unwrap("2.5.4.6"), "C"),
    (ObjectIdentifier::new_unwrap("2.5.4.7"), "L"),
    (ObjectIdentifier::new_unwrap("2.5.4.8"), "ST"),
    (ObjectIdentifier::new_unwrap("2.5.4.9"), "STREET"),
    (ObjectIdentifier::new_unwrap("2.5.4.10"), "O"),
    (ObjectIdentifier::new_unwrap("2.5.4.11"), "OU"),
    (
        ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.25"),
        "DC",
    ),
    (
        ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.1"),
        "UID",
    ),
    (ObjectIdentifier::new_unwrap("2.5.4.5"), "SERIALNUMBER"),
    (ObjectIdentifier::new_unwrap("2.5.4.17"), "POSTALCODE"),
];

/// Most specific RDN first, `,` between RDNs, `+` inside one. Attributes
/// without a short name, or whose value is not a string, are written as
/// `OID=#hex` of their DER value (RFC 4514 section 2.4).
pub(crate) fn rfc4514(name: &Name) -> String {
    let mut out = String::new();
    for (i, rdn) in name.0.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.0.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            write_attribute(&mut out, atv);
        }
    }
    out
}

fn write_attribute(out: &mut String, atv: &AttributeTypeAndValue) {
    let short = SHORT_NAMES
        .iter()
        .find(|(oid, _)| *oid == atv.oid)
        .map(|(_, n)| *n);
    match (short, text(atv)) {
        (Some(key), Some(value)) => {
            out.push_str(key);
            out.push('=');
            escape(out, &value);
        }
        _ => {
            let _ = write!(out, "{}=#", atv.oid);
            for b in atv.value.to_der().unwrap_or_default() {
                let _ = write!(out, "{b:02x}");
            }
        }
    }
}

/// The value of a string attribute.
pub(crate) fn text(atv: &AttributeTypeAndValue) -> Option<String> {
    let v = &atv.value;
    match v.tag() {
        Tag::Utf8String => Utf8StringRef::try_from(v).ok().map(|s| s.to_string()),
        Tag::PrintableString => PrintableStringRef::try_from(v).ok().map(|s| s.to_string()),
        Tag::Ia5String => Ia5StringRef::try_from(v).ok().map(|s| s.to_string()),
        Tag::TeletexString => TeletexStringRef::try_from(v).ok().map(|s| s.to_string()),
        _ => None,
    }
}

/// RFC 4514 section 2.4 escapes; control characters become `\xx` so a
/// name can never break a log line.
fn escape(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\x00'..='\x1f' | '\x7f' => {
                let _ = write!(out, "\\{:02x}", c as u8);
            }
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::testing::make;
    use rcgen::{DnType, DnValue};
    use x509_cert::der::Decode;

    fn subject(dn: &[(DnType, &str)]) -> String {
        let made = make(dn, vec![]);
        let cert = x509_cert::Certificate::from_der(&made.der).unwrap();
        rfc4514(&cert.tbs_certificate.subject)
    }

    #[test]
    fn escapes_what_rfc4514_escapes() {
        assert_eq!(subject(&[(DnType::CommonName, "#a b ")]), r"CN=\#a b\ ");
        assert_eq!(subject(&[(DnType::CommonName, " x")]), r"CN=\ x");
        assert_eq!(
            subject(&[(DnType::CommonName, r#"a"+,;<>\b"#)]),
            r#"CN=a\"\+\,\;\<\>\\b"#
        );
        assert_eq!(subject(&[(DnType::CommonName, "a\nb\x7f")]), r"CN=a\0ab\7f");
        assert_eq!(subject(&[(DnType::CommonName, "ünï")]), "CN=ünï");
    }

    #[test]
    fn unknown_types_are_oid_and_hex() {
        let email = DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]);
        let s = subject(&[
            (DnType::CountryName, "US"),
            (email, "a@b"),
            (DnType::CommonName, "x"),
        ]);
        // rcgen writes UTF8String "a@b": 0c 03 61 40 62.
        assert_eq!(s, "CN=x,1.2.840.113549.1.9.1=#0c03614062,C=US");
    }

    #[test]
    fn non_string_values_are_hex_even_for_known_types() {
        let made = make(&[(DnType::CommonName, "x")], vec![]);
        let cert = x509_cert::Certificate::from_der(&made.der).unwrap();
        assert_eq!(rfc4514(&cert.tbs_certificate.subject), "CN=x");
        let bmp = {
            let mut params = rcgen::CertificateParams::default();
            let mut dn = rcgen::DistinguishedName::new();
            dn.push(
                DnType::CommonName,
                DnValue::BmpString(rcgen::string::BmpString::try_from("hi").unwrap()),
            );
            params.distinguished_name = dn;
            let key = rcgen::KeyPair::generate().unwrap();
            params.self_signed(&key).unwrap().der().to_vec()
        };
        let cert = x509_cert::Certificate::from_der(&bmp).unwrap();
        assert_eq!(
            rfc4514(&cert.tbs_certificate.subject),
            "2.5.4.3=#1e0400680069"
        );
    }
}
