//! Client certificates (mTLS): the verified leaf certificate of a
//! connection, conditions on it, and RFC 8705 certificate-bound tokens.
//!
//! What nats-server 2.15.1 sends, observed with real clients (see
//! `tests/certificates_core.rs`, which re-checks it on every run):
//!
//! - `client_tls` is present whenever the client connection is TLS; it holds
//!   `version` (`"1.3"`) and `cipher` (`"TLS_AES_128_GCM_SHA256"`).
//! - With `tls { verify: true }` or `verify_and_map: true` the handshake fails
//!   unless the client presents a certificate the server's `ca_file` verifies,
//!   so every request carries `verified_chains`: a list of chains, each a list
//!   of PEM strings (Go's `pem.EncodeToMemory`: 64-column base64, `\n` line
//!   ends, a trailing `\n`). `[i][0]` is always the client's leaf, followed by
//!   intermediates and the trust anchor from `ca_file`. There can be several
//!   chains (e.g. the `ca_file` holds both a root and its intermediate: one
//!   chain ends at the intermediate, one at the root); they share the leaf.
//! - The same holds for WebSocket (`websocket { tls { verify: true } }`,
//!   `client_info.type` `websocket`) and MQTT (`mqtt { tls { verify: true } }`,
//!   `client_info.type` `mqtt`) clients.
//! - With `verify_and_map`, a client whose certificate maps to no configured
//!   user still reaches the callout, with the same `verified_chains`.
//! - With `verify: false` the server does not ask for a client certificate:
//!   `client_tls` has only `version` and `cipher`, even if the client has one.
//! - `certs` (unverified peer certificates) is filled by the server only when
//!   there are no verified chains; no client listener configuration produced
//!   it. It is never trusted here: a certificate counts only when the server
//!   verified it, i.e. when it is the leaf of `verified_chains`.
//!
//! Subject templates (`{cert.NAME}`, names in [`TEMPLATE_FIELDS`]): a value
//! must be exactly one subject token, and `.` separates tokens (`/` and `:`
//! are fine). So:
//! - `san_uri` rarely qualifies: trust domains and hosts have dots
//!   (`spiffe://acme.example/…`).
//! - `spiffe_path`, the SPIFFE ID's path without its leading `/`
//!   (`ns/prod/sa/orders`), usually is one token. It does not say which
//!   trust domain issued it: pin that with a `san_uri` condition on the rule.
//! - `cn` suits device certificates (`device-0042`); DNS-style CNs have dots.
//! - `sha256` always is one token, but changes with every renewal.
//! - `san_dns`, `san_email`, `subject` and `issuer` almost always contain
//!   dots or spaces.

mod binding;
#[cfg(test)]
mod binding_tests;
mod condition;
#[cfg(test)]
mod condition_tests;
mod dn;
pub mod issue;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use sha2::{Digest, Sha256};
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

pub use binding::{check_binding, BindingError, CertificateBound, CNF_THUMBPRINT};
pub use condition::{CertificateCondition, CONDITION_FIELDS};

use crate::protocol::ClientTls;

/// The pseudo-issuer of connections that present a verified client
/// certificate and no bearer token; policy rules name it like an issuer.
pub const CERTIFICATE_ISSUER: &str = "certificate";

/// More verified chains than this is not a real handshake.
pub const MAX_CHAINS: usize = 16;
/// Longest chain read; real chains have two to four certificates.
pub const MAX_CHAIN_LEN: usize = 16;
/// Largest leaf certificate read, in PEM bytes.
pub const MAX_PEM_BYTES: usize = 64 * 1024;

/// Field names a subject template may use as `{cert.NAME}`.
pub const TEMPLATE_FIELDS: [&str; 9] = [
    "subject",
    "issuer",
    "cn",
    "san_dns",
    "san_uri",
    "san_email",
    "sha256",
    "x5t_s256",
    "spiffe_path",
];

/// The verified leaf certificate of a connection, reduced to what policies
/// can match on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// Subject DN as an RFC 4514 string, most specific first
    /// (`CN=orders,OU=prod,O=Acme\, Inc.,C=US`), as `openssl x509 -nameopt
    /// RFC2253` prints it; for such common attributes nats-server logs the
    /// same string.
    pub subject: String,
    /// Issuer DN, in the same RFC 4514 form as `subject`.
    pub issuer: String,
    /// The subject's common name (the last CN in DER order, as Go reads it).
    pub cn: Option<String>,
    /// DNS names from the subjectAltName extension.
    pub san_dns: Vec<String>,
    /// URIs from the subjectAltName extension (SPIFFE IDs among them).
    pub san_uri: Vec<String>,
    /// RFC 822 email addresses from the subjectAltName extension.
    pub san_email: Vec<String>,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub sha256: String,
    /// The same digest as RFC 8705's `x5t#S256`: base64url, no padding.
    pub x5t_s256: String,
    digest: [u8; 32],
}

/// Why the verified client certificate cannot be read; the connection is denied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// More verified chains than we are willing to parse.
    #[error("client_tls has {0} verified chains; at most {MAX_CHAINS} are accepted")]
    TooManyChains(usize),
    /// A chain without even a leaf.
    #[error("verified chain {0} is empty")]
    EmptyChain(usize),
    /// A chain over the length limit.
    #[error("verified chain {chain} has {len} certificates; at most {MAX_CHAIN_LEN} are accepted")]
    ChainTooLong {
        /// Index of the chain in `verified_chains`.
        chain: usize,
        /// Certificates in it.
        len: usize,
    },
    /// A PEM string over the size limit, refused before decoding.
    #[error("client certificate is {0} bytes of PEM; at most {MAX_PEM_BYTES} are accepted")]
    TooLarge(usize),
    /// The server sent something that does not decode as PEM.
    #[error("client certificate is not PEM: {0}")]
    NotPem(String),
    /// PEM of another kind (a key, a CSR).
    #[error("client certificate PEM is labelled {0:?}, not CERTIFICATE")]
    NotACertificate(String),
    /// The DER inside does not parse as a certificate.
    #[error("client certificate is not valid X.509: {0}")]
    BadX509(String),
    /// The subjectAltName extension does not parse.
    #[error("client certificate has a bad subjectAltName: {0}")]
    BadSubjectAltName(String),
    /// Two chains start with different leaves: which one is the client?
    #[error("verified chains disagree on the client certificate (chain {0})")]
    InconsistentLeaf(usize),
}

/// Why a `{cert.NAME}` placeholder has no single value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// A placeholder name that is not in [`TEMPLATE_FIELDS`].
    #[error("cert.{0} is not a certificate field")]
    Unknown(String),
    /// The certificate lacks the field (no CN, no SAN of that kind).
    #[error("the client certificate has no {0}")]
    Missing(String),
    /// Several values (e.g. SANs) where one subject token is needed.
    #[error("the client certificate has {count} {field} values; a subject needs exactly one")]
    Ambiguous {
        /// The placeholder's field name.
        field: String,
        /// How many values the certificate has for it.
        count: usize,
    },
}

impl ClientCertificate {
    /// The certificate the server verified for this connection, if any.
    /// `Ok(None)`: no TLS, or TLS without a verified client certificate
    /// (unverified `certs` never count). An `Err` is a certificate that
    /// cannot be read; the connection must be denied, not treated as having
    /// no certificate.
    pub fn from_client_tls(tls: Option<&ClientTls>) -> Result<Option<Self>, CertificateError> {
        let Some(tls) = tls else { return Ok(None) };
        let chains = &tls.verified_chains;
        if chains.is_empty() {
            return Ok(None);
        }
        if chains.len() > MAX_CHAINS {
            return Err(CertificateError::TooManyChains(chains.len()));
        }
        let mut leaf: Option<Vec<u8>> = None;
        for (i, chain) in chains.iter().enumerate() {
            let Some(first) = chain.first() else {
                return Err(CertificateError::EmptyChain(i));
            };
            if chain.len() > MAX_CHAIN_LEN {
                return Err(CertificateError::ChainTooLong {
                    chain: i,
                    len: chain.len(),
                });
            }
            let der = pem_to_der(first)?;
            match &leaf {
                None => leaf = Some(der),
                Some(l) if *l == der => {}
                Some(_) => return Err(CertificateError::InconsistentLeaf(i)),
            }
        }
        leaf.map(|der| Self::from_der(&der)).transpose()
    }

    /// True when the client offered certificates the server did not verify.
    pub fn offered_unverified(tls: Option<&ClientTls>) -> bool {
        tls.is_some_and(|t| t.verified_chains.is_empty() && !t.certs.is_empty())
    }

    /// Reads one PEM certificate, as nats-server sends it in a chain.
    pub fn from_pem(pem: &str) -> Result<Self, CertificateError> {
        Self::from_der(&pem_to_der(pem)?)
    }

    /// Reads a DER certificate; the digests are over exactly these bytes.
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateError> {
        let cert =
            Certificate::from_der(der).map_err(|e| CertificateError::BadX509(e.to_string()))?;
        let tbs = &cert.tbs_certificate;
        let digest: [u8; 32] = Sha256::digest(der).into();
        let mut out = Self {
            subject: dn::rfc4514(&tbs.subject),
            issuer: dn::rfc4514(&tbs.issuer),
            cn: common_name(&tbs.subject),
            san_dns: Vec::new(),
            san_uri: Vec::new(),
            san_email: Vec::new(),
            sha256: HEXLOWER.encode(&digest),
            x5t_s256: BASE64URL_NOPAD.encode(&digest),
            digest,
        };
        let sans: Vec<_> = tbs
            .extensions
            .iter()
            .flatten()
            .filter(|e| e.extn_id == SubjectAltName::OID)
            .collect();
        if sans.len() > 1 {
            return Err(CertificateError::BadSubjectAltName(format!(
                "{} subjectAltName extensions (RFC 5280 allows one)",
                sans.len()
            )));
        }
        for ext in sans {
            let names = SubjectAltName::from_der(ext.extn_value.as_bytes())
                .map_err(|e| CertificateError::BadSubjectAltName(e.to_string()))?;
            for name in names.0 {
                match name {
                    GeneralName::DnsName(s) => out.san_dns.push(s.to_string()),
                    GeneralName::UniformResourceIdentifier(s) => out.san_uri.push(s.to_string()),
                    GeneralName::Rfc822Name(s) => out.san_email.push(s.to_string()),
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// The SHA-256 digest of the DER certificate.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The value of a `{cert.NAME}` placeholder. Multi-valued fields give
    /// a value only when the certificate has exactly one, so a subject never
    /// depends on which of several names was picked. The caller still checks
    /// that the value is one subject token (many are not: see the module doc).
    pub fn field(&self, name: &str) -> Result<String, FieldError> {
        let one = |values: &[String]| match values {
            [v] => Ok(v.clone()),
            [] => Err(FieldError::Missing(name.to_owned())),
            many => Err(FieldError::Ambiguous {
                field: name.to_owned(),
                count: many.len(),
            }),
        };
        match name {
            "subject" => Ok(self.subject.clone()),
            "issuer" => Ok(self.issuer.clone()),
            "cn" => self
                .cn
                .clone()
                .ok_or_else(|| FieldError::Missing(name.to_owned())),
            "san_dns" => one(&self.san_dns),
            "san_uri" => one(&self.san_uri),
            "san_email" => one(&self.san_email),
            "sha256" => Ok(self.sha256.clone()),
            "x5t_s256" => Ok(self.x5t_s256.clone()),
            "spiffe_path" => {
                let uri = one(&self.san_uri)?;
                spiffe_path(&uri)
                    .map(str::to_owned)
                    .ok_or_else(|| FieldError::Missing("SPIFFE ID".to_owned()))
            }
            other => Err(FieldError::Unknown(other.to_owned())),
        }
    }
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, CertificateError> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(CertificateError::TooLarge(pem.len()));
    }
    let (label, der) = x509_cert::der::pem::decode_vec(pem.as_bytes())
        .map_err(|e| CertificateError::NotPem(e.to_string()))?;
    if label != "CERTIFICATE" {
        return Err(CertificateError::NotACertificate(label.to_owned()));
    }
    Ok(der)
}

/// The last CN attribute in DER order that is a string.
fn common_name(name: &x509_cert::name::Name) -> Option<String> {
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == dn::COMMON_NAME)
        .filter_map(dn::text)
        .next_back()
}

/// The path of a SPIFFE ID without its leading `/`
/// (`spiffe://acme.example/ns/prod/sa/orders` gives `ns/prod/sa/orders`),
/// or `None` when `uri` is not a well-formed SPIFFE ID: lowercase trust
/// domain of `[a-z0-9.-_]`, segments of `[A-Za-z0-9.-_]`, no empty, `.` or
/// `..` segment, no query, fragment, port or user info.
pub fn spiffe_path(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("spiffe://")?;
    let (domain, path) = rest.split_once('/')?;
    let domain_ok = !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    let path_ok = path.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    });
    (domain_ok && path_ok).then_some(path)
}
