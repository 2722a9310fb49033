//! Writes service config files: the one place, besides the schema, that
//! knows the file's shape. Tests, benchmarks, the fuzz seeds and
//! `bootstrap` build their configs with it, so a renamed key changes here
//! only, and every config a test uses goes through the real parser.

use std::path::Path;

/// A TOML string literal, quoted and escaped.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// One `[[issuer]]` table.
#[derive(Debug, Clone)]
pub struct IssuerBuilder {
    lines: Vec<String>,
}

impl IssuerBuilder {
    /// The keys every issuer needs; `issuer` is the exact `iss` to accept.
    pub fn new(name: &str, issuer: &str, audience: &[&str]) -> Self {
        Self {
            lines: vec![
                format!("name = {}", quote(name)),
                format!("issuer = {}", quote(issuer)),
                format!("audience = {}", list(audience)),
            ],
        }
    }

    /// Keys from a local JWKS file instead of discovery.
    pub fn jwks_file(self, path: &str) -> Self {
        self.set("jwks_file", &quote(path))
    }

    /// Keys from this URL instead of the one discovery names.
    pub fn jwks_uri(self, url: &str) -> Self {
        self.set("jwks_uri", &quote(url))
    }

    /// The only `alg` values accepted from this issuer.
    pub fn algorithms(self, algs: &[&str]) -> Self {
        self.set("algorithms", &list(algs))
    }

    /// Any other key, its value written as TOML (`"2s"` with the quotes).
    pub fn set(mut self, key: &str, toml_value: &str) -> Self {
        self.lines.push(format!("{key} = {toml_value}"));
        self
    }

    /// Raw lines for the table (several `key = value` lines at once).
    pub fn lines(mut self, raw: &str) -> Self {
        self.lines.push(raw.to_owned());
        self
    }
}

/// A whole service config.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    nats: Vec<String>,
    signing: Vec<String>,
    token: Vec<String>,
    issuers: Vec<IssuerBuilder>,
    accounts: Vec<String>,
    policy: Vec<String>,
    tables: Vec<String>,
}

impl ConfigBuilder {
    /// The least a config holds: where NATS is, the callout's signing seed,
    /// and the policy file (paths relative to the config's directory).
    pub fn new(nats_url: &str, issuer_seed_file: &str, policy_file: &str) -> Self {
        Self {
            nats: vec![format!("url = {}", quote(nats_url))],
            signing: vec![format!("issuer_seed_file = {}", quote(issuer_seed_file))],
            token: Vec::new(),
            issuers: Vec::new(),
            accounts: Vec::new(),
            policy: vec![format!("file = {}", quote(policy_file))],
            tables: Vec::new(),
        }
    }

    /// The service's own NATS login (the auth-callout user).
    pub fn user_password(self, user: &str, password: &str) -> Self {
        self.nats_set("user", &quote(user))
            .nats_set("password", &quote(password))
    }

    /// Any other `[nats]` key, its value written as TOML.
    pub fn nats_set(mut self, key: &str, toml_value: &str) -> Self {
        self.nats.push(format!("{key} = {toml_value}"));
        self
    }

    /// Raw lines for `[nats]`.
    pub fn nats_lines(mut self, raw: &str) -> Self {
        self.nats.push(raw.to_owned());
        self
    }

    /// Encrypt the callout exchange with this curve seed.
    pub fn xkey_seed_file(mut self, path: &str) -> Self {
        self.signing
            .push(format!("xkey_seed_file = {}", quote(path)));
        self
    }

    /// Raw lines for `[token]`.
    pub fn token_lines(mut self, raw: &str) -> Self {
        self.token.push(raw.to_owned());
        self
    }

    /// Adds an `[[issuer]]`; issuers are written in call order.
    pub fn issuer(mut self, issuer: IssuerBuilder) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// An operator-mode `[[account]]`.
    pub fn account(mut self, name: &str, public_key: &str, signing_key_file: &str) -> Self {
        self.accounts.push(format!(
            "[[account]]\nname = {}\npublic_key = {}\nsigning_key_file = {}\n",
            quote(name),
            quote(public_key),
            quote(signing_key_file)
        ));
        self
    }

    /// Raw lines for `[policy]`.
    pub fn policy_lines(mut self, raw: &str) -> Self {
        self.policy.push(raw.to_owned());
        self
    }

    /// Whole tables appended as written (`[http]`, `[audit]`, …).
    pub fn tables(mut self, raw: &str) -> Self {
        self.tables.push(raw.to_owned());
        self
    }

    /// The TOML text, tables in a fixed order.
    pub fn build(&self) -> String {
        let mut out = String::new();
        let mut table = |name: &str, lines: &[String]| {
            if !lines.is_empty() {
                out.push_str(&format!("[{name}]\n{}\n\n", lines.join("\n")));
            }
        };
        table("nats", &self.nats);
        table("signing", &self.signing);
        table("token", &self.token);
        table("policy", &self.policy);
        for i in &self.issuers {
            out.push_str(&format!("[[issuer]]\n{}\n\n", i.lines.join("\n")));
        }
        for a in &self.accounts {
            out.push_str(a);
            out.push('\n');
        }
        for t in &self.tables {
            out.push_str(t);
            out.push('\n');
        }
        out
    }

    /// Writes [`Self::build`] to `path`, replacing it.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.build())
    }
}
