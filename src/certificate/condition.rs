//! `certificate = { … }` in a policy rule: every listed field must match the
//! verified client certificate.

use serde::Deserialize;

use super::ClientCertificate;
use crate::claims::glob_match;

/// The keys `certificate = { … }` accepts.
pub const CONDITION_FIELDS: [&str; 6] = [
    "subject",
    "issuer",
    "san_dns",
    "san_uri",
    "san_email",
    "sha256",
];

/// Values of a field listed in a refusal, at most.
const SHOWN_VALUES: usize = 3;

#[derive(Deserialize)]
#[serde(untagged)]
enum Patterns {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionFile {
    subject: Option<Patterns>,
    issuer: Option<Patterns>,
    san_dns: Option<Patterns>,
    san_uri: Option<Patterns>,
    san_email: Option<Patterns>,
    sha256: Option<Patterns>,
}

/// A compiled `certificate = { … }` table. Text fields are globs (`*`
/// matches any run of characters, `/` and `.` included); a list means any
/// of its patterns. A SAN field holds when any of the certificate's names of
/// that kind matches; `san_dns` ignores ASCII case, the rest is exact. `sha256` is exact: 64 hex digits, any case, `:`
/// separators allowed (as `openssl x509 -fingerprint -sha256` prints it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "ConditionFile")]
pub struct CertificateCondition {
    subject: Vec<String>,
    issuer: Vec<String>,
    san_dns: Vec<String>,
    san_uri: Vec<String>,
    san_email: Vec<String>,
    /// Lowercase hex without separators.
    sha256: Vec<String>,
    warnings: Vec<String>,
}

impl TryFrom<ConditionFile> for CertificateCondition {
    type Error = String;

    fn try_from(f: ConditionFile) -> Result<Self, String> {
        let globs = |field: &str, p: Option<Patterns>| -> Result<Vec<String>, String> {
            let list = match p {
                None => return Ok(Vec::new()),
                Some(Patterns::One(s)) => vec![s],
                Some(Patterns::Many(v)) => v,
            };
            if list.is_empty() {
                return Err(format!("certificate.{field} is an empty list"));
            }
            if list.iter().any(String::is_empty) {
                return Err(format!("certificate.{field} has an empty pattern"));
            }
            Ok(list)
        };
        let sha256 = globs("sha256", f.sha256)?
            .iter()
            .map(|p| normalize_sha256(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut c = Self {
            subject: globs("subject", f.subject)?,
            issuer: globs("issuer", f.issuer)?,
            san_dns: globs("san_dns", f.san_dns)?,
            san_uri: globs("san_uri", f.san_uri)?,
            san_email: globs("san_email", f.san_email)?,
            sha256,
            warnings: Vec::new(),
        };
        if c.fields().all(|(_, patterns)| patterns.is_empty()) {
            return Err(format!(
                "certificate = {{}} names no field; use one or more of {}",
                CONDITION_FIELDS.join(", ")
            ));
        }
        c.warnings = c.open_ended_hosts();
        Ok(c)
    }
}

/// `ab:CD:…` or `abcd…` to lowercase hex, or an error naming the pattern.
fn normalize_sha256(p: &str) -> Result<String, String> {
    let hex: String = p.chars().filter(|c| *c != ':').collect();
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(format!(
            "certificate.sha256 {p:?} is not a SHA-256 fingerprint (64 hex digits, \
             optionally ':'-separated; globs are not allowed)"
        ))
    }
}

impl CertificateCondition {
    /// Parses a `certificate = { … }` table on its own (the policy parser
    /// deserializes the type directly).
    pub fn from_toml(table: &str) -> Result<Self, String> {
        toml::from_str(table).map_err(|e| e.message().to_owned())
    }

    fn fields(&self) -> impl Iterator<Item = (&'static str, &[String])> {
        [
            ("subject", self.subject.as_slice()),
            ("issuer", &self.issuer),
            ("san_dns", &self.san_dns),
            ("san_uri", &self.san_uri),
            ("san_email", &self.san_email),
            ("sha256", &self.sha256),
        ]
        .into_iter()
    }

    /// Patterns whose `*` lets the host part run on, so that one trust
    /// domain or DNS zone matches others (`spiffe://acme*` matches
    /// `spiffe://acme.evil.example/…`). Legal, but worth a `validate` warning.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn open_ended_hosts(&self) -> Vec<String> {
        let uri = self.san_uri.iter().filter(|p| {
            let after_scheme = p.split_once("://").map_or(p.as_str(), |(_, r)| r);
            after_scheme.split('/').next().unwrap_or("").contains('*')
        });
        let dns = self.san_dns.iter().filter(|p| p.ends_with('*'));
        let email = self
            .san_email
            .iter()
            .filter(|p| p.rsplit('@').next().unwrap_or("").ends_with('*'));
        uri.map(|p| ("san_uri", p))
            .chain(dns.map(|p| ("san_dns", p)))
            .chain(email.map(|p| ("san_email", p)))
            .map(|(field, p)| {
                format!(
                    "certificate.{field} {p:?}: '*' in the host part also matches other domains"
                )
            })
            .collect()
    }

    /// `Ok` when every listed field matches; otherwise the first field that
    /// does not, with the certificate's values, as the denial reason.
    pub fn matches(&self, cert: &ClientCertificate) -> Result<(), String> {
        let single = |v: &String| std::slice::from_ref(v).to_vec();
        let uris: Vec<String> = cert
            .san_uri
            .iter()
            .filter(|u| !has_dot_segment(u))
            .cloned()
            .collect();
        let checks: [(&str, &[String], Vec<String>); 5] = [
            ("subject", &self.subject, single(&cert.subject)),
            ("issuer", &self.issuer, single(&cert.issuer)),
            ("san_dns", &self.san_dns, cert.san_dns.clone()),
            ("san_uri", &self.san_uri, uris),
            ("san_email", &self.san_email, cert.san_email.clone()),
        ];
        for (field, patterns, values) in checks.iter() {
            if patterns.is_empty() {
                continue;
            }
            // DNS names compare case-insensitively (RFC 4343).
            let fold = |s: &str| match *field {
                "san_dns" => s.to_ascii_lowercase(),
                _ => s.to_owned(),
            };
            let hit = values
                .iter()
                .any(|v| patterns.iter().any(|p| glob_match(&fold(p), &fold(v))));
            if !hit {
                return Err(refusal(field, patterns, values));
            }
        }
        if !self.sha256.is_empty() && !self.sha256.contains(&cert.sha256) {
            return Err(refusal(
                "sha256",
                &self.sha256,
                std::slice::from_ref(&cert.sha256),
            ));
        }
        Ok(())
    }
}

fn refusal(field: &str, patterns: &[String], values: &[String]) -> String {
    let shown: Vec<&String> = values.iter().take(SHOWN_VALUES).collect();
    let more = values.len().saturating_sub(SHOWN_VALUES);
    let values = match (values.is_empty(), more) {
        (true, _) => "none".to_owned(),
        (false, 0) => format!("{shown:?}"),
        (false, n) => format!("{shown:?} and {n} more"),
    };
    format!("client certificate {field} {values} matches none of {patterns:?}")
}

/// A URI whose path has `.` or `..` segments (also percent-encoded) names
/// something other than it spells; it never matches a pattern, so that
/// `…/ns/prod/*` cannot match `…/ns/prod/../admin`.
fn has_dot_segment(uri: &str) -> bool {
    let path = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let path = path.split(['?', '#']).next().unwrap_or("");
    let lower = path.to_ascii_lowercase().replace("%2e", ".");
    lower.contains("%2f")
        || lower.contains("%5c")
        || lower
            .split(['/', '\\'])
            .skip(1)
            .any(|seg| seg == "." || seg == "..")
}
