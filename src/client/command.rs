//! A command whose standard output is the token (`gcloud auth
//! print-identity-token`, `vault read -field=token …`, a site script), run
//! again at every connect. Its standard error passes through to ours; its
//! output is never logged.

use std::process::Stdio;
use std::time::Duration;

use super::{TokenError, TokenSource};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a command at every connect; its trimmed stdout is the token.
#[derive(Debug, Clone)]
pub struct TokenCommand {
    program: String,
    args: Vec<String>,
}

impl TokenCommand {
    /// Run directly, not through a shell: `args` are passed as they are.
    pub fn new<I, A>(program: impl Into<String>, args: I) -> TokenCommand
    where
        I: IntoIterator<Item = A>,
        A: Into<String>,
    {
        TokenCommand {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

impl TokenSource for TokenCommand {
    async fn token(&self) -> Result<String, TokenError> {
        let child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TokenError::Config(format!("cannot run {:?}: {e}", self.program)))?;
        let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                TokenError::Unavailable(format!("{:?} took longer than {TIMEOUT:?}", self.program))
            })?
            .map_err(|e| TokenError::Unavailable(format!("{:?}: {e}", self.program)))?;
        if !out.status.success() {
            return Err(TokenError::Unavailable(format!(
                "{:?} failed ({})",
                self.program, out.status
            )));
        }
        let token = String::from_utf8(out.stdout).map_err(|_| {
            TokenError::Unavailable(format!("{:?} printed non-UTF-8", self.program))
        })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Unavailable(format!(
                "{:?} printed no token",
                self.program
            )));
        }
        Ok(token.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stdout_is_the_token_and_failures_do_not_show_it() {
        let ok = TokenCommand::new("sh", ["-c", "echo tok-$((40 + 2))"]);
        assert_eq!(ok.token().await.unwrap(), "tok-42");
        let failed = TokenCommand::new("sh", ["-c", "echo leaked; exit 3"]);
        let e = failed.token().await.unwrap_err().to_string();
        assert!(e.contains("exit status: 3") && !e.contains("leaked"), "{e}");
        let empty = TokenCommand::new("true", Vec::<String>::new());
        assert!(empty
            .token()
            .await
            .unwrap_err()
            .to_string()
            .contains("no token"));
        let missing = TokenCommand::new("/nonexistent/token-helper", Vec::<String>::new());
        assert!(matches!(missing.token().await, Err(TokenError::Config(_))));
    }
}
