//! The keys that sign the service's answers: the callout account's key
//! (responses, and users in config mode), operator mode's target-account
//! keys (users), and the optional xkey that seals answers.

use std::collections::HashMap;
use std::path::Path;

use crate::config::Config;
use crate::protocol::{AccountSigner, NkeySigner, Sealer};
use crate::secret::{read_secret, SecretError};

/// Why a signing or encryption key cannot be loaded at startup.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The seed file cannot be read or is empty.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The file holds something other than the seed kind expected.
    #[error("{path}: {reason}")]
    NotAKey {
        /// The seed file.
        path: String,
        /// What was expected, and how to make one.
        reason: String,
    },
}

/// Operator mode: the key that signs users of one target account.
struct Target {
    public_key: String,
    signer: AccountSigner,
}

pub(crate) struct Signers {
    /// Signs responses, and users in config mode.
    pub(crate) callout: AccountSigner,
    pub(crate) xkey: Option<Sealer>,
    /// Operator mode's target accounts by name; empty in config mode.
    targets: HashMap<String, Target>,
}

/// Who signs a user JWT for an account, and the account it must name as
/// `issuer_account` when that key is one of the account's signing keys.
pub(crate) struct UserSigner<'a> {
    pub(crate) signer: &'a AccountSigner,
    pub(crate) issuer_account: Option<&'a str>,
}

impl Signers {
    pub(crate) fn from_config(config: &Config) -> Result<Self, KeyError> {
        let callout = account_seed(
            &config.resolve(&config.signing.issuer_seed_file),
            "not an account seed (SA…); create one with `keygen account`".into(),
        )?;
        let xkey = match &config.signing.xkey_seed_file {
            None => None,
            Some(p) => {
                let path = config.resolve(p);
                Some(
                    Sealer::from_seed(&read_secret(&path)?).map_err(|_| KeyError::NotAKey {
                        path: path.display().to_string(),
                        reason: "not a curve seed (SX…); create one with `keygen xkey`".into(),
                    })?,
                )
            }
        };
        let mut targets = HashMap::new();
        for a in &config.accounts {
            let signer = account_seed(
                &config.resolve(&a.signing_key_file),
                format!("not an account seed (SA…) for account {:?}", a.name),
            )?;
            targets.insert(
                a.name.clone(),
                Target {
                    public_key: a.public_key.clone(),
                    signer,
                },
            );
        }
        Ok(Self {
            callout,
            xkey,
            targets,
        })
    }

    /// The key for users of `account`: the callout key in config mode, the
    /// account's own (signing) key in operator mode.
    pub(crate) fn for_user(&self, account: &str) -> Result<UserSigner<'_>, String> {
        if self.targets.is_empty() {
            return Ok(UserSigner {
                signer: &self.callout,
                issuer_account: None,
            });
        }
        let target = self
            .targets
            .get(account)
            .ok_or_else(|| format!("account {account:?} has no [[account]] entry"))?;
        Ok(UserSigner {
            signer: &target.signer,
            issuer_account: (target.signer.public_key() != target.public_key)
                .then_some(target.public_key.as_str()),
        })
    }
}

fn account_seed(path: &Path, reason: String) -> Result<AccountSigner, KeyError> {
    AccountSigner::from_seed(&read_secret(path)?).ok_or_else(|| KeyError::NotAKey {
        path: path.display().to_string(),
        reason,
    })
}
