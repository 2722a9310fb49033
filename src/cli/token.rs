//! `token`: an access token by the client-credentials grant, for CI jobs,
//! scripts and clients without an OAuth SDK. Printed once, or, with `--out
//! FILE --refresh`, kept fresh in FILE by a sidecar until SIGTERM/SIGINT.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use tokio::signal::unix::{signal, SignalKind};

use crate::client::{backoff, refresh_after, ClientCredentials, TokenError};
use crate::secret::read_secret;

#[derive(Args, Debug)]
pub(crate) struct TokenArgs {
    /// The issuer; its discovery document names the token endpoint.
    #[arg(long)]
    issuer_url: String,
    #[arg(long)]
    client_id: String,
    /// File holding the client secret (never pass secrets as arguments).
    #[arg(long)]
    client_secret_file: PathBuf,
    /// Space-separated scopes to request.
    #[arg(long)]
    scope: Option<String>,
    /// The API the token is for: sent as `resource` (RFC 8707) and `audience` (Auth0).
    #[arg(long)]
    audience: Option<String>,
    /// Allow plain http to a non-loopback issuer.
    #[arg(long)]
    allow_insecure_http: bool,
    /// Write the token to FILE (atomically, mode 0600) instead of printing it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// With --out: keep FILE holding a valid token, renewed ahead of its
    /// expiry, until SIGTERM or SIGINT.
    #[arg(long, requires = "out")]
    refresh: bool,
}

pub(crate) fn run(args: TokenArgs) -> ExitCode {
    let source = match source(&args) {
        Ok(s) => s,
        Err(e) => return super::bad(e),
    };
    if let Some(out) = &args.out {
        if let Err(e) = check_out(out) {
            return super::bad(e);
        }
    }
    let rt = super::runtime();
    match (&args.out, args.refresh) {
        (Some(out), true) => rt.block_on(keep_fresh(&source, out)),
        (out, _) => match rt.block_on(source.fetch()) {
            Ok(f) => match out {
                None => {
                    println!("{}", f.token);
                    ExitCode::SUCCESS
                }
                Some(path) => match write_atomic(path, &f.token) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => refused(format!("cannot write {}: {e}", path.display())),
                },
            },
            Err(TokenError::Config(e)) => super::bad(e),
            Err(e) => refused(e),
        },
    }
}

fn refused(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(1)
}

fn source(args: &TokenArgs) -> Result<ClientCredentials, String> {
    let secret = read_secret(&args.client_secret_file).map_err(|e| e.to_string())?;
    let mut builder = ClientCredentials::builder(&args.issuer_url, &args.client_id, secret)
        .allow_insecure_http(args.allow_insecure_http);
    if let Some(s) = &args.scope {
        builder = builder.scope(s);
    }
    if let Some(a) = &args.audience {
        builder = builder.audience(a);
    }
    builder.build().map_err(|e| format!("--issuer-url: {e}"))
}

/// The file's directory must exist: the token is written next to it first.
fn check_out(out: &Path) -> Result<(), String> {
    let dir = parent(out);
    if out.file_name().is_none() || !dir.is_dir() {
        return Err(format!(
            "--out {}: not a file in an existing directory",
            out.display()
        ));
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A temporary file in the same directory, then a rename: readers see the
/// old token or the new one, never a partial write.
fn write_atomic(path: &Path, token: &str) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = parent(path).join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(token.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The sidecar: fetch, write, sleep until renewal is due; errors are
/// retried with backoff. Exits 0 on SIGTERM or SIGINT.
async fn keep_fresh(source: &ClientCredentials, out: &Path) -> ExitCode {
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => return refused("cannot install signal handlers"),
    };
    let file = out.display().to_string();
    let mut failures = 0u32;
    loop {
        let round = async {
            let f = source.fetch().await.map_err(|e| e.to_string())?;
            write_atomic(out, &f.token).map_err(|e| format!("cannot write {file}: {e}"))?;
            Ok::<_, String>(f.lifetime)
        };
        let outcome = tokio::select! {
            r = round => r,
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let wait = match outcome {
            Ok(lifetime) => {
                failures = 0;
                let wait = refresh_after(lifetime, rand::random());
                tracing::info!(file = %file, expires_in = ?lifetime, next_refresh_in = ?wait,
                    "token written");
                wait
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = backoff(failures, rand::random());
                tracing::warn!(error = %e, failures, retry_in = ?wait, "token refresh failed");
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
