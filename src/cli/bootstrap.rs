//! `bootstrap` writes a complete local setup; `dev-token` mints tokens from
//! the development issuer it creates, so a first try needs no external IdP.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use jsonwebtoken::Algorithm;
use rand::Rng;
use serde_json::{Map, Value};

use super::bootstrap_tls;
use super::keygen::{write_new, write_secret};
use crate::authorize::now_unix;
use crate::config::{Config, KeySourceKind};
use crate::issuer::{jwks, LocalKey};
use crate::protocol::{
    creds, encode, Account, ClaimsData, ExternalAuthorization, NatsClaims, Operator, Permission,
    User,
};

/// Name of the development issuer in a bootstrapped config.
const DEV_ISSUER_NAME: &str = "dev";
const DEV_ISSUER_URL: &str = "https://dev-issuer.nats-oidc-callout.invalid";
const DEV_KEY_FILE: &str = "keys/dev-issuer.pem";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Config,
    Operator,
}

#[derive(Args, Debug)]
pub struct BootstrapArgs {
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
pub struct DevTokenArgs {
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

pub fn run(args: BootstrapArgs) -> ExitCode {
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

fn random_secret() -> String {
    let bytes: [u8; 24] = rand::thread_rng().gen();
    data_encoding::BASE32_NOPAD.encode(&bytes)
}

fn write_setup(args: &BootstrapArgs) -> Result<String, String> {
    let dir = &args.dir;
    let tls_files = if args.tls {
        &bootstrap_tls::FILES[..]
    } else {
        &[]
    };
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
    let (mut server_conf, mut nats_section) = match args.mode {
        Mode::Config => config_mode_server(args, &issuer, &xkey)?,
        Mode::Operator => operator_mode_server(args, &issuer, &xkey)?,
    };
    let tls = args.tls.then(|| bootstrap_tls::write(dir)).transpose()?;
    if let Some(tls) = &tls {
        server_conf += &tls.server_block();
        // Into the [nats] table, ahead of any [[account]] tables.
        nats_section =
            nats_section.replacen("[nats]\n", &format!("[nats]\n{}", tls.nats_entry()), 1);
    }
    write_secret(&dir.join("nats-server.conf"), server_conf.as_bytes())?;

    let (issuer_block, rule_issuer) = match (&args.issuer, &args.audience) {
        (Some(url), Some(aud)) => (
            format!(
                "[[issuer]]\nname = \"idp\"\nissuer = {url:?}\naudience = [{aud:?}]\nalgorithms = [\"RS256\", \"ES256\"]\n"
            ),
            "idp",
        ),
        _ => {
            write_dev_issuer(dir)?;
            (
                format!(
                    "# Development issuer: for demos and first tries only, never for production.\n\
                     [[issuer]]\nname = \"{DEV_ISSUER_NAME}\"\nissuer = \"{DEV_ISSUER_URL}\"\naudience = [\"nats\"]\n\
                     jwks_file = \"dev-jwks.json\"\nalgorithms = [\"ES256\"]\n"
                ),
                DEV_ISSUER_NAME,
            )
        }
    };

    let callout = format!(
        "# Written by nats-oidc-callout bootstrap.\n\
         {nats_section}\n\
         [signing]\nissuer_seed_file = \"keys/issuer.nk\"\nxkey_seed_file = \"keys/xkey.nk\"\n\n\
         [token]\nsources = [\"auth_token\", \"password\"]\nmax_ttl = \"1h\"\n\n\
         {issuer_block}\n\
         [policy]\nfile = \"policy.toml\"\n"
    );
    write_new(&dir.join("callout.toml"), callout.as_bytes(), 0o644)?;

    let policy = format!(
        "# Starter policy written by nats-oidc-callout bootstrap.\n\
         # Tokens with the scope \"nats\" may use subjects under app.<their sub>.\n\
         [defaults]\naccount = \"{account}\"\nttl = \"15m\"\n\n\
         [permissions.own-namespace]\n\
         pub = {{ allow = [\"app.{{claim.sub}}.>\"] }}\n\
         sub = {{ allow = [\"app.{{claim.sub}}.>\", \"_INBOX.>\"] }}\n\n\
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

fn seed(k: &nkeys::KeyPair) -> Result<String, String> {
    k.seed().map_err(|e| e.to_string())
}

/// Config mode: accounts in the server config, the service logs in with a
/// password. Returns the server config and the service's `[nats]` table.
fn config_mode_server(
    args: &BootstrapArgs,
    issuer: &nkeys::KeyPair,
    xkey: &nkeys::XKey,
) -> Result<(String, String), String> {
    let password = random_secret();
    write_secret(
        &args.dir.join("keys/auth.password"),
        format!("{password}\n").as_bytes(),
    )?;
    let accounts: String = args
        .accounts
        .iter()
        .map(|a| format!("  {a} {{}}\n"))
        .collect();
    let server = format!(
        "# Written by nats-oidc-callout bootstrap: a local nats-server that delegates\n\
         # every client authentication to the callout service.\n\
         listen: 127.0.0.1:{port}\n\
         accounts {{\n  AUTH {{ users: [ {{ user: auth, password: \"{password}\" }} ] }}\n{accounts}  SYS {{}}\n}}\n\
         system_account: SYS\n\
         authorization {{\n  timeout: 2\n  auth_callout {{\n    issuer: {issuer_pub}\n    auth_users: [ auth ]\n    account: AUTH\n    xkey: {xkey_pub}\n  }}\n}}\n",
        port = args.port,
        issuer_pub = issuer.public_key(),
        xkey_pub = xkey.public_key(),
    );
    let nats = format!(
        "[nats]\nurl = \"nats://127.0.0.1:{}\"\nuser = \"auth\"\npassword_file = \"keys/auth.password\"\naccount = \"AUTH\"\n",
        args.port
    );
    Ok((server, nats))
}

/// Signs a JWT body for `sub` with `signer`.
fn jwt<T: serde::Serialize>(
    sub: &str,
    name: &str,
    nats: T,
    signer: &nkeys::KeyPair,
) -> Result<String, String> {
    let mut claims = NatsClaims {
        data: ClaimsData {
            sub: sub.to_owned(),
            name: name.to_owned(),
            iat: now_unix(),
            ..ClaimsData::default()
        },
        nats,
    };
    encode(&mut claims, signer).map_err(|e| e.to_string())
}

/// Operator mode: an operator, a system account, the callout account
/// (`issuer` is its key) with `authorization` naming the service user, and
/// one account per `--accounts` entry, all in a memory resolver. Clients
/// need no JWT of their own: a bearer `default_sentinel` carries them to
/// the callout. Returns the server config and the service's `[nats]` and
/// `[[account]]` tables.
fn operator_mode_server(
    args: &BootstrapArgs,
    issuer: &nkeys::KeyPair,
    xkey: &nkeys::XKey,
) -> Result<(String, String), String> {
    let dir = &args.dir;
    let operator = nkeys::KeyPair::new_operator();
    let system = nkeys::KeyPair::new_account();
    write_secret(
        &dir.join("keys/operator.nk"),
        format!("{}\n", seed(&operator)?).as_bytes(),
    )?;
    write_secret(
        &dir.join("keys/SYS.nk"),
        format!("{}\n", seed(&system)?).as_bytes(),
    )?;
    let mut preload = Vec::new();
    let mut account_tables = String::new();
    let mut targets = Vec::new();
    for name in &args.accounts {
        // The account key only signs its JWT; users are signed by a signing
        // key the JWT lists, so the identity key can be kept offline.
        let key = nkeys::KeyPair::new_account();
        let signing = nkeys::KeyPair::new_account();
        let key_file = format!("keys/accounts/{name}.nk");
        let signing_file = format!("keys/accounts/{name}.signing.nk");
        write_secret(
            &dir.join(&key_file),
            format!("{}\n", seed(&key)?).as_bytes(),
        )?;
        write_secret(
            &dir.join(&signing_file),
            format!("{}\n", seed(&signing)?).as_bytes(),
        )?;
        let account = Account::new(vec![signing.public_key()], None);
        preload.push((
            key.public_key(),
            jwt(&key.public_key(), name, account, &operator)?,
        ));
        account_tables += &format!(
            "[[account]]\nname = \"{name}\"\npublic_key = \"{}\"\nsigning_key_file = \"{signing_file}\"\n\n",
            key.public_key()
        );
        targets.push(key.public_key());
    }
    let service_user = nkeys::KeyPair::new_user();
    let authorization = ExternalAuthorization {
        auth_users: vec![service_user.public_key()],
        allowed_accounts: targets,
        xkey: Some(xkey.public_key()),
    };
    preload.push((
        issuer.public_key(),
        jwt(
            &issuer.public_key(),
            "AUTH",
            Account::new(vec![], Some(authorization)),
            &operator,
        )?,
    ));
    preload.push((
        system.public_key(),
        jwt(
            &system.public_key(),
            "SYS",
            Account::new(vec![], None),
            &operator,
        )?,
    ));
    let operator_jwt = jwt(
        &operator.public_key(),
        "local",
        Operator::new(system.public_key()),
        &operator,
    )?;

    let service_jwt = jwt(
        &service_user.public_key(),
        "nats-oidc-callout",
        User::new(Permission::default(), Permission::default(), None),
        issuer,
    )?;
    write_secret(
        &dir.join("keys/auth.creds"),
        creds(&service_jwt, &seed(&service_user)?).as_bytes(),
    )?;
    let deny_all = Permission {
        allow: vec![],
        deny: vec![">".into()],
    };
    let mut sentinel = User::new(deny_all.clone(), deny_all, None);
    sentinel.bearer_token = true;
    let sentinel_jwt = jwt(
        &nkeys::KeyPair::new_user().public_key(),
        "sentinel",
        sentinel,
        issuer,
    )?;

    let preload: String = preload
        .iter()
        .map(|(k, j)| format!("  {k}: {j}\n"))
        .collect();
    let server = format!(
        "# Written by nats-oidc-callout bootstrap (operator mode): a local nats-server\n\
         # whose callout account delegates every client authentication to the service.\n\
         listen: 127.0.0.1:{port}\n\
         operator: {operator_jwt}\n\
         system_account: {sys}\n\
         resolver: MEMORY\n\
         resolver_preload: {{\n{preload}}}\n\
         # Clients present only their token; this bearer sentinel (no permissions)\n\
         # brings them to the callout account.\n\
         default_sentinel: {sentinel_jwt}\n",
        port = args.port,
        sys = system.public_key(),
    );
    let nats = format!(
        "[nats]\nurl = \"nats://127.0.0.1:{}\"\ncreds_file = \"keys/auth.creds\"\naccount = \"AUTH\"\n\n{account_tables}",
        args.port
    );
    Ok((server, nats))
}

/// Creates the development issuer: an ES256 key and its public JWKS.
fn write_dev_issuer(dir: &Path) -> Result<(), String> {
    let key = LocalKey::generate(Algorithm::ES256).map_err(|e| e.to_string())?;
    let jwks = serde_json::to_string_pretty(&jwks(&[&key])).map_err(|e| e.to_string())?;
    write_secret(&dir.join(DEV_KEY_FILE), key.pem().as_bytes())?;
    write_new(&dir.join("dev-jwks.json"), jwks.as_bytes(), 0o644)
}

pub fn dev_token(args: DevTokenArgs) -> ExitCode {
    match mint(&args) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => super::bad(e),
    }
}

fn mint(args: &DevTokenArgs) -> Result<String, String> {
    let config = Config::load(&args.dir.join("callout.toml")).map_err(|e| e.to_string())?;
    let issuer = config
        .issuers
        .iter()
        .find(|i| i.name == DEV_ISSUER_NAME && i.key_source() == KeySourceKind::File)
        .ok_or_else(|| {
            format!(
                "{} has no development issuer; was it made by `bootstrap` without --issuer?",
                config.path.display()
            )
        })?;
    let pem = std::fs::read_to_string(args.dir.join(DEV_KEY_FILE))
        .map_err(|e| format!("cannot read {DEV_KEY_FILE}: {e}"))?;
    let key =
        LocalKey::from_pem(Algorithm::ES256, &pem).map_err(|e| format!("{DEV_KEY_FILE}: {e}"))?;

    let now = now_unix();
    let mut claims = Map::new();
    claims.insert("iss".into(), issuer.issuer.clone().into());
    claims.insert("aud".into(), issuer.audience.to_vec()[0].clone().into());
    claims.insert("sub".into(), args.sub.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + args.ttl.as_secs() as i64).into());
    claims.insert("jti".into(), random_secret().into());
    if let Some(scope) = &args.scope {
        claims.insert("scope".into(), scope.clone().into());
    }
    for (k, v) in &args.claims {
        claims.insert(k.clone(), v.clone());
    }
    Ok(key.sign(&Value::Object(claims)))
}
