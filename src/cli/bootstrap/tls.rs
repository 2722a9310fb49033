//! `bootstrap --tls`: a local CA and the certificates a nats-server with
//! `tls { verify: true }` needs: its own, one for the service's connection,
//! and one example workload certificate carrying a SPIFFE ID.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::certificate::issue::{Issued, LocalCa, San, Usage};
use crate::cli::keygen::{write_new, write_secret};

/// SPIFFE ID of the example workload certificate.
pub(crate) const WORKLOAD_SPIFFE_ID: &str =
    "spiffe://nats-oidc-callout.invalid/ns/default/sa/example";
/// Lifetime of the CA and of every certificate it issues here.
const VALID_DAYS: i64 = 365;

/// Where the files went, relative to the bootstrap directory.
pub(crate) struct TlsSetup {
    dir: PathBuf,
}

const CA: &str = "tls/ca.pem";
const CA_KEY: &str = "tls/ca-key.pem";
const SERVER: &str = "tls/server.pem";
const SERVER_KEY: &str = "tls/server-key.pem";
const CALLOUT: &str = "tls/callout.pem";
const CALLOUT_KEY: &str = "tls/callout-key.pem";
const WORKLOAD: &str = "tls/workload.pem";
const WORKLOAD_KEY: &str = "tls/workload-key.pem";

/// Every file [`write`] creates.
pub(crate) const FILES: [&str; 8] = [
    CA,
    CA_KEY,
    SERVER,
    SERVER_KEY,
    CALLOUT,
    CALLOUT_KEY,
    WORKLOAD,
    WORKLOAD_KEY,
];

/// Creates the CA and the three certificates under `dir/tls/`; private keys
/// get mode 0600 and no existing file is overwritten.
pub(crate) fn write(dir: &Path) -> Result<TlsSetup, String> {
    let ca = LocalCa::generate("nats-oidc-callout local CA", VALID_DAYS)?;
    let loopback = [
        San::Dns("localhost".into()),
        San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    let server = ca.issue("localhost", &loopback, Usage::Server)?;
    let callout = ca.issue("nats-oidc-callout", &[], Usage::Client)?;
    let workload = ca.issue(
        "example-workload",
        &[San::Uri(WORKLOAD_SPIFFE_ID.into())],
        Usage::Client,
    )?;
    let pairs: [(&str, &str, &Issued); 4] = [
        (CA, CA_KEY, ca.certificate()),
        (SERVER, SERVER_KEY, &server),
        (CALLOUT, CALLOUT_KEY, &callout),
        (WORKLOAD, WORKLOAD_KEY, &workload),
    ];
    for (cert, key, issued) in pairs {
        write_new(&dir.join(cert), issued.cert_pem.as_bytes(), 0o644)?;
        write_secret(&dir.join(key), issued.key_pem.as_bytes())?;
    }
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", dir.display()))?;
    Ok(TlsSetup { dir })
}

impl TlsSetup {
    /// The nats-server `tls` block. nats-server reads relative paths from
    /// its working directory, so these are absolute.
    pub(crate) fn server_block(&self) -> String {
        let path = |p: &str| format!("{:?}", self.dir.join(p).display().to_string());
        format!(
            "# Every client, the callout service too, must present a certificate\n\
             # issued by the local CA (tls/ca.pem).\n\
             tls {{\n  cert_file: {cert}\n  key_file: {key}\n  ca_file: {ca}\n  verify: true\n}}\n",
            cert = path(SERVER),
            key = path(SERVER_KEY),
            ca = path(CA),
        )
    }

    /// The `tls` value of the service's `[nats]` and `[system]` tables
    /// (paths relative to the config file).
    pub(crate) fn client_entry(&self) -> String {
        format!("{{ ca_file = \"{CA}\", cert_file = \"{CALLOUT}\", key_file = \"{CALLOUT_KEY}\" }}")
    }

    /// How a workload connects, for the bootstrap summary.
    pub(crate) fn summary(&self, port: u16) -> String {
        format!(
            "\n  TLS with client certificates (verify: true): every client needs one from {ca}\n  \
             example workload ({WORKLOAD_SPIFFE_ID}):\n    \
             nats --server tls://127.0.0.1:{port} --tlsca {ca} --tlscert {cert} --tlskey {key} ...",
            ca = self.dir.join(CA).display(),
            cert = self.dir.join(WORKLOAD).display(),
            key = self.dir.join(WORKLOAD_KEY).display(),
        )
    }
}
