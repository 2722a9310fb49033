//! A small local certificate authority (ECDSA P-256) for `bootstrap --tls`
//! and for tests: a CA, server certificates, client certificates.

use std::net::IpAddr;

use chrono::{Datelike, Duration, Utc};
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use x509_cert::der::pem::{encode_string, LineEnding};

/// A subject alternative name for [`LocalCa::issue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    /// A host name.
    Dns(String),
    /// An IP address (e.g. `127.0.0.1` for a loopback server).
    Ip(IpAddr),
    /// A URI, such as a SPIFFE ID.
    Uri(String),
    /// An RFC 822 email address.
    Email(String),
}

/// What a leaf certificate is for: its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS server authentication.
    Server,
    /// TLS client authentication (mTLS).
    Client,
}

/// A certificate and its private key, both PEM.
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its PKCS#8 private key, PEM.
    pub key_pem: String,
    /// The certificate, DER (for digests).
    pub der: Vec<u8>,
}

/// Private keys stay out of `{:?}`.
impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A CA key and certificate that issue leaves on request.
pub struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    cert: Issued,
    days: i64,
}

impl LocalCa {
    /// A new self-signed CA; it and everything it issues is valid from
    /// yesterday (clock skew) for `days` days.
    pub fn generate(common_name: &str, days: i64) -> Result<Self, String> {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = params(common_name, days)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(err)?;
        let cert = Issued {
            cert_pem: pem("CERTIFICATE", cert.der())?,
            key_pem: pem("PRIVATE KEY", key.serialized_der())?,
            der: cert.der().to_vec(),
        };
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert,
            days,
        })
    }

    /// The CA certificate and key.
    pub fn certificate(&self) -> &Issued {
        &self.cert
    }

    /// A leaf certificate with a fresh key.
    pub fn issue(&self, common_name: &str, sans: &[San], usage: Usage) -> Result<Issued, String> {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = params(common_name, self.days)?;
        params.subject_alt_names = sans.iter().map(san).collect::<Result<_, _>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        Ok(Issued {
            cert_pem: pem("CERTIFICATE", cert.der())?,
            key_pem: pem("PRIVATE KEY", key.serialized_der())?,
            der: cert.der().to_vec(),
        })
    }
}

fn params(common_name: &str, days: i64) -> Result<CertificateParams, String> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let now = chrono::DateTime::<Utc>::from_timestamp(crate::clock::now_unix(), 0)
        .ok_or("the clock is out of range")?;
    let start = now - Duration::days(1);
    let end = now + Duration::days(days);
    let (y, m, d) = ymd(start)?;
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(end)?;
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let mut serial = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(params)
}

fn ymd(t: chrono::DateTime<Utc>) -> Result<(i32, u8, u8), String> {
    let month = u8::try_from(t.month()).map_err(err)?;
    let day = u8::try_from(t.day()).map_err(err)?;
    Ok((t.year(), month, day))
}

fn san(s: &San) -> Result<SanType, String> {
    let ia5 = |v: &str| v.to_owned().try_into().map_err(err);
    Ok(match s {
        San::Dns(v) => SanType::DnsName(ia5(v)?),
        San::Ip(ip) => SanType::IpAddress(*ip),
        San::Uri(v) => SanType::URI(ia5(v)?),
        San::Email(v) => SanType::Rfc822Name(ia5(v)?),
    })
}

fn pem(label: &'static str, der: &[u8]) -> Result<String, String> {
    encode_string(label, LineEnding::LF, der).map_err(err)
}

fn err(e: impl std::fmt::Display) -> String {
    format!("cannot create a certificate: {e}")
}
