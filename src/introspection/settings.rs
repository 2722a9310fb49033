//! The per-issuer config keys for opaque tokens: their defaults and the
//! checks `Config::parse` runs on them, so a bad combination fails at load,
//! naming the key, rather than at the first connection.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use crate::config::IssuerConfig;
use crate::duration::HumanDuration;
use crate::issuer::check_url;

/// Which kinds of bearer token an issuer accepts (`token_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    /// Signed JWTs, checked against the issuer's keys.
    Jwt,
    /// Anything else, asked about at the introspection endpoint.
    Opaque,
}

/// How the service authenticates to the introspection endpoint
/// (`introspection_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// HTTP Basic with the form-encoded id and secret (RFC 6749 §2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A client assertion signed with a private key (RFC 7523).
    PrivateKeyJwt,
}

pub fn default_token_types() -> Vec<TokenType> {
    vec![TokenType::Jwt]
}

/// Positive answers are kept this long at most (and never past `exp`): the
/// longest a token revoked at the IdP is still accepted.
pub fn default_cache() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

/// `active: false` answers are kept this long: repeats of a dead or made-up
/// token cost no call, and a token value is never reissued, so nothing is
/// lost by remembering.
pub fn default_negative_cache() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// One introspection (or userinfo) call; below the service's default
/// `request_timeout` (1.5 s) so a slow IdP gives a reason, not a timeout.
pub fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

/// Calls to the IdP at once per issuer; beyond it a token not in the cache
/// is denied at once ("saturated") instead of queueing.
pub fn default_max_in_flight() -> usize {
    16
}

/// Calls to the IdP per second per issuer (a burst of as many is allowed):
/// the bound on what a flood of made-up tokens costs the IdP.
pub fn default_rate_limit() -> u32 {
    100
}

impl IssuerConfig {
    pub fn accepts(&self, kind: TokenType) -> bool {
        self.token_types.contains(&kind)
    }

    /// Whether this issuer ever calls its introspection endpoint.
    pub fn introspects(&self) -> bool {
        self.accepts(TokenType::Opaque) || self.introspect_jwt
    }
}

/// Checks one issuer's opaque-token keys; the message names the key.
pub fn check_settings(iss: &IssuerConfig) -> Result<(), String> {
    if iss.token_types.is_empty() {
        return Err("token_types is empty".into());
    }
    if iss.token_types.iter().collect::<HashSet<_>>().len() != iss.token_types.len() {
        return Err("token_types names a type twice".into());
    }
    if iss.introspect_jwt && !iss.accepts(TokenType::Jwt) {
        return Err("introspect_jwt needs \"jwt\" in token_types".into());
    }
    let used = [
        (
            "introspection_endpoint",
            iss.introspection_endpoint.is_some(),
        ),
        (
            "introspection_client_id",
            iss.introspection_client_id.is_some(),
        ),
        (
            "introspection_client_secret_file",
            iss.introspection_client_secret_file.is_some(),
        ),
        (
            "introspection_private_key_file",
            iss.introspection_private_key_file.is_some(),
        ),
        ("userinfo", iss.userinfo),
        ("userinfo_endpoint", iss.userinfo_endpoint.is_some()),
    ];
    if !iss.introspects() {
        return match used.iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(format!(
                "{key} is set but nothing is introspected; add \"opaque\" to token_types or set \
                 introspect_jwt"
            )),
            None => Ok(()),
        };
    }
    if iss.introspection_client_id.is_none() {
        return Err("introspection needs introspection_client_id".into());
    }
    let secret = iss.introspection_client_secret_file.is_some();
    let key = iss.introspection_private_key_file.is_some();
    match iss.introspection_auth {
        ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost => {
            if !secret {
                return Err(
                    "introspection_auth by client secret needs introspection_client_secret_file"
                        .into(),
                );
            }
            if key || iss.introspection_private_key_alg.is_some() {
                return Err(
                    "introspection_private_key_file/_alg are only for introspection_auth \
                            = \"private_key_jwt\""
                        .into(),
                );
            }
        }
        ClientAuthMethod::PrivateKeyJwt => {
            if !key {
                return Err(
                    "introspection_auth = \"private_key_jwt\" needs introspection_private_key_file"
                        .into(),
                );
            }
            if iss.introspection_private_key_alg.is_some_and(|a| {
                matches!(
                    a,
                    jsonwebtoken::Algorithm::HS256
                        | jsonwebtoken::Algorithm::HS384
                        | jsonwebtoken::Algorithm::HS512
                )
            }) {
                return Err("introspection_private_key_alg must be a public-key algorithm".into());
            }
            if secret {
                return Err("introspection_client_secret_file is unused with \
                            introspection_auth = \"private_key_jwt\""
                    .into());
            }
        }
    }
    if iss.userinfo_endpoint.is_some() && !iss.userinfo {
        return Err("userinfo_endpoint is set but userinfo = false".into());
    }
    for url in [&iss.introspection_endpoint, &iss.userinfo_endpoint]
        .into_iter()
        .flatten()
    {
        check_url(url, iss.allow_insecure_http).map_err(|e| e.to_string())?;
    }
    let timeout = Duration::from(iss.introspection_timeout);
    if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(10) {
        return Err(format!(
            "introspection_timeout {} is outside 10ms..10s",
            iss.introspection_timeout
        ));
    }
    if !(1..=1024).contains(&iss.introspection_max_in_flight) {
        return Err(format!(
            "introspection_max_in_flight {} is outside 1..1024",
            iss.introspection_max_in_flight
        ));
    }
    if iss.introspection_rate_limit == 0 {
        return Err("introspection_rate_limit must be at least 1 (calls per second)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(issuer_lines: &str) -> Result<Config, String> {
        let src = format!(
            "[nats]\nurl = \"nats://127.0.0.1:4222\"\n[signing]\nissuer_seed_file = \"x.nk\"\n\
             [[issuer]]\nname = \"corp\"\nissuer = \"https://idp.test\"\naudience = \"nats\"\n\
             {issuer_lines}\n[policy]\nfile = \"p.toml\"\n"
        );
        Config::parse(Path::new("c.toml"), &src).map_err(|e| e.to_string())
    }

    const OPAQUE: &str = "token_types = [\"opaque\"]\nintrospection_client_id = \"callout\"\n\
                          introspection_client_secret_file = \"s\"";

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        let i = &c.issuers[0];
        assert_eq!(i.token_types, vec![super::TokenType::Jwt]);
        assert!(!i.introspects());
        let c = parse(OPAQUE).unwrap();
        let i = &c.issuers[0];
        assert!(i.introspects());
        assert_eq!(
            i.introspection_auth,
            super::ClientAuthMethod::ClientSecretBasic
        );
        assert_eq!(i.introspection_cache.0.as_secs(), 60);
        assert_eq!(i.introspection_negative_cache.0.as_secs(), 10);
        assert_eq!(i.introspection_timeout.0.as_secs(), 1);
        assert_eq!(i.introspection_max_in_flight, 16);
        assert_eq!(i.introspection_rate_limit, 100);
        assert!(!i.introspect_jwt && !i.userinfo);
    }

    #[test]
    fn bad_combinations_name_the_key() {
        for (lines, needle) in [
            ("token_types = []", "token_types is empty"),
            ("token_types = [\"jwt\", \"jwt\"]", "twice"),
            ("token_types = [\"paseto\"]", "paseto"),
            ("token_types = [\"opaque\"]", "introspection_client_id"),
            (
                "token_types = [\"opaque\"]\nintrospection_client_id = \"c\"",
                "introspection_client_secret_file",
            ),
            ("introspection_client_id = \"c\"", "nothing is introspected"),
            ("userinfo = true", "nothing is introspected"),
            (
                "token_types = [\"opaque\"]\nintrospect_jwt = true",
                "needs \"jwt\"",
            ),
            (
                "token_types = [\"opaque\"]\nintrospection_client_id = \"c\"\n\
                 introspection_auth = \"private_key_jwt\"",
                "introspection_private_key_file",
            ),
            (
                "token_types = [\"opaque\"]\nintrospection_client_id = \"c\"\n\
                 introspection_auth = \"private_key_jwt\"\nintrospection_private_key_file = \"k\"\n\
                 introspection_private_key_alg = \"HS256\"",
                "public-key algorithm",
            ),
            (
                "token_types = [\"opaque\"]\nintrospection_client_id = \"c\"\n\
                 introspection_auth = \"client_secret_jwt\"",
                "client_secret_jwt",
            ),
        ] {
            let e = parse(lines).unwrap_err();
            assert!(e.contains(needle), "{lines}: {e}");
        }
        for (extra, needle) in [
            ("introspection_private_key_file = \"k\"", "only for"),
            (
                "introspection_endpoint = \"http://idp.example.com/i\"",
                "not https",
            ),
            (
                "userinfo_endpoint = \"https://idp.test/me\"",
                "userinfo = false",
            ),
            ("introspection_timeout = \"0s\"", "introspection_timeout"),
            ("introspection_timeout = \"11s\"", "introspection_timeout"),
            (
                "introspection_max_in_flight = 0",
                "introspection_max_in_flight",
            ),
            ("introspection_rate_limit = 0", "introspection_rate_limit"),
        ] {
            let e = parse(&format!("{OPAQUE}\n{extra}")).unwrap_err();
            assert!(e.contains(needle), "{extra}: {e}");
        }
    }

    #[test]
    fn loopback_endpoints_may_be_plain_http() {
        let c = parse(&format!(
            "{OPAQUE}\nintrospection_endpoint = \"http://127.0.0.1:9/i\"\nuserinfo = true\n\
             userinfo_endpoint = \"http://[::1]:9/me\""
        ));
        assert!(c.is_ok(), "{c:?}");
    }
}
