//! `keygen`: new nkey seeds, written so that only the owner can read them.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum KeyKind {
    /// Account nkey (seed `SA…`, public `A…`): signs user JWTs and responses.
    Account,
    /// Curve key (seed `SX…`, public `X…`): encrypts callout traffic.
    Xkey,
}

pub(crate) fn run(kind: KeyKind, out: &Path) -> ExitCode {
    let (seed, public) = match kind {
        KeyKind::Account => {
            let k = nkeys::KeyPair::new_account();
            (k.seed().expect("fresh key has a seed"), k.public_key())
        }
        KeyKind::Xkey => {
            let k = nkeys::XKey::new();
            (k.seed().expect("fresh key has a seed"), k.public_key())
        }
    };
    match write_secret(out, format!("{seed}\n").as_bytes()) {
        Ok(()) => {
            eprintln!("wrote seed to {} (mode 0600)", out.display());
            println!("{public}");
            ExitCode::SUCCESS
        }
        Err(e) => super::bad(e),
    }
}

/// Creates `path` with mode 0600; refuses to overwrite an existing file.
pub(crate) fn write_secret(path: &Path, contents: &[u8]) -> Result<(), String> {
    write_new(path, contents, 0o600)
}

/// Creates `path` with `mode`; refuses to overwrite an existing file.
pub(crate) fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => format!(
                "{} already exists; refusing to overwrite it",
                path.display()
            ),
            _ => format!("cannot create {}: {e}", path.display()),
        })?;
    file.write_all(contents)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
