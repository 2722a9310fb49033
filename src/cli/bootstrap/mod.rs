//! `bootstrap` writes a complete local setup; `dev-token` mints tokens from
//! the development issuer it creates, so a first try needs no external IdP.

use std::path::PathBuf;
use std::process::ExitCode;

mod dev;
mod servers;
mod tls;

use clap::{Args, ValueEnum};
use rand::Rng;
use serde_json::Value;

pub(crate) use dev::dev_token;

use super::keygen::{write_new, write_secret};
use crate::config::{ConfigBuilder, IssuerBuilder};

/// Name of the development issuer in a bootstrapped config.
const DEV_ISSUER_NAME: &str = "dev";
const DEV_ISSUER_URL: &str = "https://dev-issuer.nats-oidc-callout.invalid";
const DEV_KEY_FILE: &str = "keys/dev-issuer.pem";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    Config,
    Operator,
}

#[derive(Args, Debug)]
pub(crate) struct BootstrapArgs {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, value_enum, default_value_t = Mode::Config)]
    mode: Mode,
    /// Target accounts, comma-separated; the first is the policy default.
    #[arg(long, value_delimiter = ',', default_value = "APP")]
    accounts: Vec<String>,
    /// Client port of the local nats-server (on 127.0.0.1).
    #[arg(long, default_value_t = 4222)]
    port: u16,
    /// A real OIDC issuer to trust instead of the development issuer.
    #[arg(long, requires = "audience")]
    issuer: Option<String>,
    #[arg(long, requires = "issuer")]
    audience: Option<String>,
    /// Also write a local CA and certificates, and require client
    /// certificates (`tls { verify: true }`) on the server.
    #[arg(long)]
    tls: bool,
}

#[derive(Args, Debug)]
pub(crate) struct DevTokenArgs {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value = "dev-user")]
    sub: String,
    /// Space-separated scopes, put in the `scope` claim.
    #[arg(long)]
    scope: Option<String>,
    /// Extra claim `key=value`; a value that parses as JSON is used as JSON.
    #[arg(long = "claim", value_parser = parse_claim)]
    claims: Vec<(String, Value)>,
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    ttl: std::time::Duration,
}

fn parse_claim(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("claim {s:?} must be key=value"))?;
    if k.is_empty() {
        return Err(format!("claim {s:?} has an empty name"));
    }
    let value = match serde_json::from_str::<Value>(v) {
        Ok(j @ (Value::Array(_) | Value::Object(_) | Value::Bool(_) | Value::Number(_))) => j,
        _ => Value::String(v.to_owned()),
    };
    Ok((k.to_owned(), value))
}

pub(crate) fn run(args: BootstrapArgs) -> ExitCode {
    if let Some(bad) = args.accounts.iter().find(|a| !is_account_name(a)) {
        return super::bad(format!("--accounts: {bad:?} is not a valid account name"));
    }
    match write_setup(&args) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => super::bad(e),
    }
}

fn is_account_name(a: &str) -> bool {
    !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !["AUTH", "SYS"].contains(&a)
}

pub(super) fn seed(k: &nkeys::KeyPair) -> Result<String, String> {
    k.seed().map_err(|e| e.to_string())
}

fn random_secret() -> String {
    let bytes: [u8; 24] = rand::thread_rng().gen();
    data_encoding::BASE32_NOPAD.encode(&bytes)
}

fn write_setup(args: &BootstrapArgs) -> Result<String, String> {
    let dir = &args.dir;
    let tls_files = if args.tls { &tls::FILES[..] } else { &[] };
    for f in ["nats-server.conf", "callout.toml", "policy.toml"]
        .iter()
        .chain(tls_files)
    {
        if dir.join(f).exists() {
            return Err(format!(
                "{} already exists; refusing to overwrite it",
                dir.join(f).display()
            ));
        }
    }
    let issuer = nkeys::KeyPair::new_account();
    let xkey = nkeys::XKey::new();
    write_secret(
        &dir.join("keys/issuer.nk"),
        format!("{}\n", seed(&issuer)?).as_bytes(),
    )?;
    write_secret(
        &dir.join("keys/xkey.nk"),
        format!("{}\n", xkey.seed().map_err(|e| e.to_string())?).as_bytes(),
    )?;
    let mut setup = match args.mode {
        Mode::Config => servers::config_mode(args, &issuer, &xkey)?,
        Mode::Operator => servers::operator_mode(args, &issuer, &xkey)?,
    };
    let tls = args.tls.then(|| tls::write(dir)).transpose()?;
    if let Some(tls) = &tls {
        setup.conf += &tls.server_block();
    }
    write_secret(&dir.join("nats-server.conf"), setup.conf.as_bytes())?;

    let quote = |v: &str| toml::Value::String(v.to_owned()).to_string();
    let mut config = ConfigBuilder::new(
        &format!("nats://127.0.0.1:{}", args.port),
        "keys/issuer.nk",
        "policy.toml",
    )
    .nats_set("account", &quote("AUTH"))
    .xkey_seed_file("keys/xkey.nk")
    .token_lines("sources = [\"auth_token\", \"password\"]\nmax_ttl = \"1h\"");
    for (key, value) in &setup.nats {
        config = config.nats_set(key, &quote(value));
    }
    let mut system: Vec<String> = setup
        .system
        .iter()
        .map(|(k, v)| format!("{k} = {}", quote(v)))
        .collect();
    if let Some(tls) = &tls {
        // With verify: true every connection needs a client certificate.
        config = config.nats_set("tls", &tls.client_entry());
        system.push(format!("tls = {}", tls.client_entry()));
    }
    config = config.tables(&format!(
        "# The system-account user that closes and lists live connections.\n\
         [system]\n{}\n\n\
         # Revocations live in this JetStream KV bucket (created if missing).\n\
         [revocation]\nbucket = \"nats_oidc_callout_revocations\"\non_policy_change = \"kick-changed\"\n",
        system.join("\n")
    ));
    for (name, public_key, file) in &setup.accounts {
        config = config.account(name, public_key, file);
    }
    let rule_issuer = match (&args.issuer, &args.audience) {
        (Some(url), Some(aud)) => {
            config = config
                .issuer(IssuerBuilder::new("idp", url, &[aud]).algorithms(&["RS256", "ES256"]));
            "idp"
        }
        _ => {
            dev::write_dev_issuer(dir)?;
            config = config.issuer(
                IssuerBuilder::new(DEV_ISSUER_NAME, DEV_ISSUER_URL, &["nats"])
                    .lines("# Development issuer: for demos and first tries only, never for production.")
                    .jwks_file("dev-jwks.json")
                    .algorithms(&["ES256"]),
            );
            DEV_ISSUER_NAME
        }
    };
    let callout = format!(
        "# Written by nats-oidc-callout bootstrap.\n{}",
        config.build()
    );
    write_new(&dir.join("callout.toml"), callout.as_bytes(), 0o644)?;

    let policy = format!(
        "# Starter policy written by nats-oidc-callout bootstrap.\n\
         # Tokens with the scope \"nats\" may use subjects under app.<their sub>,\n\
         # and get replies on their own inbox prefix _INBOX.<their sub> (set the\n\
         # client's custom inbox prefix to it; never grant _INBOX.>).\n\
         [defaults]\naccount = \"{account}\"\nttl = \"15m\"\n\n\
         [permissions.own-namespace]\n\
         pub = {{ allow = [\"app.{{claim.sub}}.>\"] }}\n\
         sub = {{ allow = [\"app.{{claim.sub}}.>\", \"_INBOX.{{claim.sub}}.>\"] }}\n\n\
         [[rules]]\nname = \"nats-users\"\nissuer = \"{rule_issuer}\"\nscopes = [\"nats\"]\ngrant = [\"own-namespace\"]\n",
        account = args.accounts[0],
    );
    write_new(&dir.join("policy.toml"), policy.as_bytes(), 0o644)?;

    Ok(format!(
        "wrote a local setup to {dir}\n  nats-server -c {conf}\n  nats-oidc-callout serve --config {callout}{dev}{tls}",
        dir = dir.display(),
        conf = dir.join("nats-server.conf").display(),
        callout = dir.join("callout.toml").display(),
        dev = if args.issuer.is_none() {
            format!("\n  nats-oidc-callout dev-token --dir {} --sub alice --scope nats", dir.display())
        } else {
            String::new()
        },
        tls = tls.map(|t| t.summary(args.port)).unwrap_or_default(),
    ))
}
