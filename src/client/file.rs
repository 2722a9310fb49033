//! A token that something else keeps fresh in a file: a Kubernetes
//! projected service-account token, a Vault agent sink, or the
//! `nats-oidc-callout token --out FILE --refresh` sidecar. Read again at
//! every connect, so a rotated file is picked up at the next reconnect.

use std::path::{Path, PathBuf};

use super::{TokenError, TokenSource};

/// Reads the file at every connect; its trimmed contents are the token.
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    /// The file need not exist yet: it is first read at a connect.
    pub fn new(path: impl Into<PathBuf>) -> TokenFile {
        TokenFile { path: path.into() }
    }

    /// For messages that say which file failed.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl TokenSource for TokenFile {
    async fn token(&self) -> Result<String, TokenError> {
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| TokenError::Unavailable(format!("{}: {e}", self.path.display())))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Unavailable(format!(
                "{} is empty",
                self.path.display()
            )));
        }
        Ok(token.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_file_is_read_again_at_every_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let source = TokenFile::new(&path);
        let missing = source.token().await.unwrap_err();
        assert!(missing.to_string().contains("token"), "{missing}");
        std::fs::write(&path, "first\n").unwrap();
        assert_eq!(source.token().await.unwrap(), "first");
        std::fs::write(&path, "second").unwrap();
        assert_eq!(source.token().await.unwrap(), "second");
        std::fs::write(&path, " \n").unwrap();
        assert!(matches!(
            source.token().await,
            Err(TokenError::Unavailable(e)) if e.ends_with("is empty")
        ));
    }
}
