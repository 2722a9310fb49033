//! Opaque tokens for one issuer: `token_types`, the `introspection_*` keys
//! and `userinfo`, compiled into [`Introspection`] with every bad
//! combination reported at its key, so it fails at load rather than at the
//! first connection.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_spanned::Spanned;

use super::compile::Compiler;
use super::file::IssuerFile;

/// Which kinds of bearer token an issuer accepts (`token_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    /// Signed JWTs, checked against the issuer's keys.
    Jwt,
    /// Anything else, asked about at the introspection endpoint.
    Opaque,
}

/// `introspection_auth` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ClientAuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
}

/// How the service authenticates to the introspection endpoint, with the
/// file that holds its secret or key (resolved against the config's
/// directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntrospectionAuth {
    /// HTTP Basic with the form-encoded id and secret (RFC 6749 §2.3.1).
    ClientSecretBasic {
        /// Holds the client secret.
        secret_file: PathBuf,
    },
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost {
        /// Holds the client secret.
        secret_file: PathBuf,
    },
    /// A client assertion signed with a private key (RFC 7523); the
    /// algorithm defaults to the key's own.
    PrivateKeyJwt {
        /// Holds the PEM private key that signs the assertions.
        key_file: PathBuf,
        /// Overrides the key's default algorithm.
        alg: Option<Algorithm>,
    },
}

/// Introspection at one issuer (RFC 7662), present when the issuer accepts
/// opaque tokens or sets `introspect_jwt`.
#[derive(Debug, Clone)]
pub struct Introspection {
    /// None: from the issuer's discovery document.
    pub endpoint: Option<String>,
    /// The service's client id at the IdP.
    pub client_id: String,
    /// How the service proves that id.
    pub auth: IntrospectionAuth,
    /// Positive answers are kept this long at most (never past `exp`): the
    /// longest a token revoked at the IdP is still accepted.
    pub cache: Duration,
    /// `active: false` answers are kept this long.
    pub negative_cache: Duration,
    /// One call; below the default `request_timeout` so a slow IdP gives a
    /// reason, not a timeout.
    pub timeout: Duration,
    /// Calls at once; beyond it a token not in the cache is denied at once.
    pub max_in_flight: usize,
    /// Calls per second (with a burst of as many): what a flood of made-up
    /// tokens can cost the IdP.
    pub rate_limit: u32,
    /// Also ask about JWTs that verified, so a revocation at the IdP counts.
    pub introspect_jwt: bool,
    /// Merge the userinfo answer under the `userinfo` claim.
    pub userinfo: bool,
    /// None: from the issuer's discovery document.
    pub userinfo_endpoint: Option<String>,
}

const DEFAULT_CACHE: Duration = Duration::from_secs(60);
const DEFAULT_NEGATIVE_CACHE: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_MAX_IN_FLIGHT: usize = 16;
const DEFAULT_RATE_LIMIT: u32 = 100;

impl Compiler<'_> {
    /// `token_types` and, when anything is introspected, the introspection
    /// settings.
    pub(super) fn introspection(
        &mut self,
        spanned: &Spanned<IssuerFile>,
        allow_insecure_http: bool,
    ) -> (Vec<TokenType>, Option<Introspection>) {
        let i = spanned.get_ref();
        let name = i.name.get_ref();
        let token_types = match &i.token_types {
            None => vec![TokenType::Jwt],
            Some(t) => {
                let list = t.get_ref();
                if list.is_empty() {
                    self.error(t, format!("issuer {name:?}: token_types is empty"));
                }
                if list.iter().collect::<HashSet<_>>().len() != list.len() {
                    self.error(
                        t,
                        format!("issuer {name:?}: token_types names a type twice"),
                    );
                }
                list.clone()
            }
        };
        let introspect_jwt = i.introspect_jwt.as_ref().is_some_and(|v| *v.get_ref());
        if introspect_jwt && !token_types.contains(&TokenType::Jwt) {
            self.error(
                i.introspect_jwt.as_ref().expect("set"),
                format!("issuer {name:?}: introspect_jwt needs \"jwt\" in token_types"),
            );
        }
        if !token_types.contains(&TokenType::Opaque) && !introspect_jwt {
            let set = [
                ("introspection_endpoint", i.introspection_endpoint.is_some()),
                (
                    "introspection_client_id",
                    i.introspection_client_id.is_some(),
                ),
                ("introspection_auth", i.introspection_auth.is_some()),
                (
                    "introspection_client_secret_file",
                    i.introspection_client_secret_file.is_some(),
                ),
                (
                    "introspection_private_key_file",
                    i.introspection_private_key_file.is_some(),
                ),
                ("userinfo", i.userinfo.is_some()),
                ("userinfo_endpoint", i.userinfo_endpoint.is_some()),
            ];
            if let Some((key, _)) = set.iter().find(|(_, s)| *s) {
                self.error(
                    spanned,
                    format!(
                        "issuer {name:?}: {key} is set but nothing is introspected; add \
                         \"opaque\" to token_types or set introspect_jwt"
                    ),
                );
            }
            return (token_types, None);
        }
        let Some(client_id) = &i.introspection_client_id else {
            self.error(
                spanned,
                format!("issuer {name:?}: introspection needs introspection_client_id"),
            );
            return (token_types, None);
        };
        let Some(auth) = self.introspection_auth(spanned) else {
            return (token_types, None);
        };
        let userinfo = i.userinfo.as_ref().is_some_and(|v| *v.get_ref());
        if i.userinfo_endpoint.is_some() && !userinfo {
            self.error(
                spanned,
                format!("issuer {name:?}: userinfo_endpoint is set but userinfo = false"),
            );
        }
        for url in [&i.introspection_endpoint, &i.userinfo_endpoint]
            .into_iter()
            .flatten()
        {
            if let Err(e) = crate::https::check_url(url.get_ref(), allow_insecure_http) {
                self.error(url, format!("issuer {name:?}: {e}"));
            }
        }
        let timeout = self.duration(&i.introspection_timeout, DEFAULT_TIMEOUT, |d| {
            (d < Duration::from_millis(10) || d > Duration::from_secs(10)).then(|| {
                format!(
                    "issuer {name:?}: introspection_timeout {} is outside 10ms..10s",
                    humantime::format_duration(d)
                )
            })
        });
        let cache = self.duration(&i.introspection_cache, DEFAULT_CACHE, |_| None);
        let negative_cache = self.duration(
            &i.introspection_negative_cache,
            DEFAULT_NEGATIVE_CACHE,
            |_| None,
        );
        let max_in_flight = match &i.introspection_max_in_flight {
            None => DEFAULT_MAX_IN_FLIGHT,
            Some(m) => {
                if !(1..=1024).contains(m.get_ref()) {
                    self.error(
                        m,
                        format!(
                            "issuer {name:?}: introspection_max_in_flight {} is outside 1..1024",
                            m.get_ref()
                        ),
                    );
                }
                *m.get_ref()
            }
        };
        let rate_limit = match &i.introspection_rate_limit {
            None => DEFAULT_RATE_LIMIT,
            Some(r) => {
                if *r.get_ref() == 0 {
                    self.error(
                        r,
                        format!(
                            "issuer {name:?}: introspection_rate_limit must be at least 1 (calls per second)"
                        ),
                    );
                }
                *r.get_ref()
            }
        };
        let introspection = Introspection {
            endpoint: i
                .introspection_endpoint
                .as_ref()
                .map(|u| u.get_ref().clone()),
            client_id: client_id.clone(),
            auth,
            cache,
            negative_cache,
            timeout,
            max_in_flight,
            rate_limit,
            introspect_jwt,
            userinfo,
            userinfo_endpoint: i.userinfo_endpoint.as_ref().map(|u| u.get_ref().clone()),
        };
        (token_types, Some(introspection))
    }

    /// The method and its file; the other method's keys are refused, so a
    /// leftover secret file is not silently ignored.
    fn introspection_auth(&mut self, spanned: &Spanned<IssuerFile>) -> Option<IntrospectionAuth> {
        let i = spanned.get_ref();
        let name = i.name.get_ref();
        let method = i
            .introspection_auth
            .as_ref()
            .map(|m| *m.get_ref())
            .unwrap_or_default();
        let secret = i.introspection_client_secret_file.as_deref();
        let key = i.introspection_private_key_file.as_deref();
        let fail = |c: &mut Self, message: &str| {
            c.error(spanned, format!("issuer {name:?}: {message}"));
            None
        };
        match method {
            ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost => {
                if key.is_some() || i.introspection_private_key_alg.is_some() {
                    return fail(self, "introspection_private_key_file/_alg are only for introspection_auth = \"private_key_jwt\"");
                }
                let Some(secret) = secret else {
                    return fail(
                        self,
                        "introspection_auth by client secret needs introspection_client_secret_file",
                    );
                };
                let secret_file = self.resolve(secret);
                Some(if method == ClientAuthMethod::ClientSecretBasic {
                    IntrospectionAuth::ClientSecretBasic { secret_file }
                } else {
                    IntrospectionAuth::ClientSecretPost { secret_file }
                })
            }
            ClientAuthMethod::PrivateKeyJwt => {
                if secret.is_some() {
                    return fail(self, "introspection_client_secret_file is unused with introspection_auth = \"private_key_jwt\"");
                }
                let Some(key) = key else {
                    return fail(
                        self,
                        "introspection_auth = \"private_key_jwt\" needs introspection_private_key_file",
                    );
                };
                let alg = i.introspection_private_key_alg;
                if alg.is_some_and(|a| super::issuer::is_hmac(&a)) {
                    return fail(
                        self,
                        "introspection_private_key_alg must be a public-key algorithm",
                    );
                }
                Some(IntrospectionAuth::PrivateKeyJwt {
                    key_file: self.resolve(key),
                    alg,
                })
            }
        }
    }
}
