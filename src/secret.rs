//! Secret files (nkey seeds, passwords, client secrets): read once, never
//! printed. Errors name the file, not its content.

use std::path::{Path, PathBuf};

/// Why a secret file gives no secret; never contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Missing, unreadable or not UTF-8.
    #[error("cannot read {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// Nothing but blank or comment lines.
    #[error("{}: the file holds no secret (only blank or comment lines)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// The first non-empty line that is not a comment (`#`, or the `--` lines
/// of a `.creds` file), trimmed.
pub fn read_secret(path: &Path) -> Result<String, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|e| SecretError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("--"))
        .map(str::to_owned)
        .ok_or_else(|| SecretError::Empty {
            path: path.to_path_buf(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_meaningful_line_is_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "# comment\n\n  SAABC  \nnext\n").unwrap();
        assert_eq!(read_secret(&p).unwrap(), "SAABC");
        std::fs::write(&p, "# only\n\n").unwrap();
        assert!(matches!(read_secret(&p), Err(SecretError::Empty { .. })));
        let err = read_secret(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
