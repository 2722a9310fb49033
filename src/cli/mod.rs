//! Command-line interface. Every command returns an exit code: 0 success,
//! 1 a negative answer (denied, critical finding), 2 bad usage or config.

mod bootstrap;
mod check;
mod doctor;

pub use check::decision_json;
mod keygen;
mod revoke;
mod sessions;
mod token;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::decision::Decider;
use crate::secret::{read_secret, SecretError};
use crate::signing::{KeyError, Signers};

#[derive(Parser, Debug)]
#[command(
    name = "nats-oidc-callout",
    version,
    about = "NATS auth callout for OAuth/OIDC bearer tokens"
)]
pub(crate) struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the service until SIGINT/SIGTERM; SIGHUP reloads the policy.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Create a key: an account nkey (the callout issuer) or a curve xkey.
    Keygen {
        #[arg(value_enum)]
        kind: keygen::KeyKind,
        /// File for the seed (created with mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the nats-server `authorization { auth_callout {...} }` block.
    ServerConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Check config and policy without connecting anywhere.
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Decide one token (or claims) exactly as `serve` would; print JSON.
    Check(check::CheckArgs),
    /// Write a complete local setup (keys, nats-server.conf, config, policy).
    Bootstrap(bootstrap::BootstrapArgs),
    /// Mint a token from the development issuer that `bootstrap` created.
    DevToken(bootstrap::DevTokenArgs),
    /// Fetch an access token by the client-credentials grant and print it.
    Token(token::TokenArgs),
    /// Audit a running nats-server through its monitoring endpoint.
    Doctor(doctor::DoctorArgs),
    /// Deny new connects matching SELECTOR and close live ones on every server.
    Revoke(revoke::RevokeArgs),
    /// Lift a revocation (exit 1 if none was in force).
    Unrevoke(revoke::UnrevokeArgs),
    /// List the revocations in force.
    Revocations(sessions::ListArgs),
    /// List live connections this service authorized, on every server.
    Sessions(sessions::ListArgs),
}

/// Parses arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    init_logging(cli.log_format);
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Keygen { kind, out } => keygen::run(kind, &out),
        Command::ServerConfig { config } => server_config(&config),
        Command::Validate { config } => validate(&config),
        Command::Check(args) => check::run(args),
        Command::Bootstrap(args) => bootstrap::run(args),
        Command::DevToken(args) => bootstrap::dev_token(args),
        Command::Token(args) => token::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Revoke(args) => revoke::revoke(args),
        Command::Unrevoke(args) => revoke::unrevoke(args),
        Command::Revocations(args) => revoke::revocations(args),
        Command::Sessions(args) => sessions::sessions(args),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Prints a usage/config error and returns exit code 2.
fn bad(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(bad)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn serve(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = runtime().block_on(async {
        let (shutdown, reload) = match signals() {
            Ok(s) => s,
            Err(e) => return Err(format!("cannot install signal handlers: {e}")),
        };
        crate::service::run(config, shutdown, reload)
            .wait()
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => bad(e),
    }
}

/// SIGTERM or SIGINT stops the service; SIGHUP reloads the policy.
fn signals() -> std::io::Result<(
    impl std::future::Future<Output = ()>,
    tokio::sync::mpsc::Receiver<()>,
)> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the policy");
            // A reload already queued covers this one too.
            let _ = tx.try_send(());
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
    };
    Ok((shutdown, rx))
}

/// Checks config, policy and keys without connecting anywhere. A signing
/// seed file that does not exist here is only a warning: the config may be
/// validated away from the secrets it will be served with.
fn validate(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let decider = match Decider::from_config(&config) {
        Ok(d) => d,
        Err(e) => return bad(e),
    };
    match Signers::from_config(&config) {
        Ok(_) => {}
        Err(KeyError::Secret(SecretError::Read { path, reason })) if !path.exists() => {
            eprintln!(
                "warning: signing key {} not found ({reason}); `serve` needs it",
                path.display()
            );
        }
        Err(e) => return bad(e),
    }
    for w in decider.policy().warnings() {
        eprintln!("warning: {w}");
    }
    println!(
        "ok: {} issuer(s), {} rule(s)",
        decider.issuers().names().len(),
        decider.policy().rule_count()
    );
    ExitCode::SUCCESS
}

fn server_config(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let issuer = match read_secret(&config.resolve(&config.signing.issuer_seed_file))
        .ok()
        .and_then(|s| nkeys::KeyPair::from_seed(&s).ok())
    {
        Some(k) => k.public_key(),
        None => return bad("signing.issuer_seed_file does not hold an account seed"),
    };
    let xkey = match &config.signing.xkey_seed_file {
        None => None,
        Some(p) => match read_secret(&config.resolve(p))
            .ok()
            .and_then(|s| nkeys::XKey::from_seed(&s).ok())
        {
            Some(x) => Some(x.public_key()),
            None => return bad("signing.xkey_seed_file does not hold a curve seed"),
        },
    };
    print!(
        "{}",
        render_server_config(&config, &issuer, xkey.as_deref())
    );
    ExitCode::SUCCESS
}

/// The `authorization` block nats-server needs for this service config.
pub fn render_server_config(config: &Config, issuer: &str, xkey: Option<&str>) -> String {
    let user = config.nats.user.as_deref().unwrap_or("auth");
    let mut out = String::new();
    out.push_str("# Generated by nats-oidc-callout server-config.\n");
    out.push_str(&format!(
        "# The callout account {acc:?} must define the user {user:?}; a system account must exist.\n",
        acc = config.nats.account
    ));
    out.push_str("authorization {\n  timeout: 2\n  auth_callout {\n");
    out.push_str(&format!("    issuer: {issuer}\n"));
    out.push_str(&format!("    auth_users: [ {user} ]\n"));
    out.push_str(&format!("    account: {}\n", config.nats.account));
    if let Some(x) = xkey {
        out.push_str(&format!("    xkey: {x}\n"));
    }
    out.push_str("  }\n}\n");
    out
}
