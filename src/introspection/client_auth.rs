//! How the service proves who it is to the introspection endpoint: the
//! three methods of `introspection_auth`, turned into a header and form
//! fields for one call.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::assertion::AssertionKey;
use std::path::Path;

use crate::config::{Introspection, IntrospectionAuth};
use crate::secret::read_secret;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The service's client credentials at one issuer. Debug never shows them.
pub(crate) enum ClientAuth {
    /// `client_secret_basic`.
    Basic {
        /// The whole `Authorization` header value, computed once.
        header: String,
    },
    /// `client_secret_post`: id and secret as form fields.
    Post {
        /// The client id.
        client_id: String,
        /// The client secret.
        secret: String,
    },
    /// `private_key_jwt`: a signed assertion per call.
    PrivateKeyJwt {
        /// The client id, the assertion's `iss` and `sub`.
        client_id: String,
        /// The key that signs the assertions.
        key: AssertionKey,
    },
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientAuth::Basic { .. } => "ClientAuth::Basic(redacted)",
            ClientAuth::Post { .. } => "ClientAuth::Post(redacted)",
            ClientAuth::PrivateKeyJwt { .. } => "ClientAuth::PrivateKeyJwt(redacted)",
        })
    }
}

/// What one call carries to authenticate: an `Authorization` header and/or
/// form fields.
#[derive(Default)]
pub(crate) struct Credentials {
    pub(crate) authorization: Option<String>,
    pub(crate) form: Vec<(&'static str, String)>,
}

impl ClientAuth {
    /// Reads the issuer's secret or key file (already resolved against the
    /// config's directory).
    pub(crate) fn from_config(settings: &Introspection) -> Result<Self, String> {
        let client_id = settings.client_id.clone();
        let secret = |path: &Path| read_secret(path).map_err(|e| e.to_string());
        Ok(match &settings.auth {
            IntrospectionAuth::ClientSecretBasic { secret_file } => {
                Self::basic(&client_id, &secret(secret_file)?)
            }
            IntrospectionAuth::ClientSecretPost { secret_file } => ClientAuth::Post {
                client_id,
                secret: secret(secret_file)?,
            },
            IntrospectionAuth::PrivateKeyJwt { key_file, alg } => {
                let pem = std::fs::read_to_string(key_file)
                    .map_err(|e| format!("cannot read {}: {e}", key_file.display()))?;
                let key = AssertionKey::from_pem(&pem, *alg)
                    .map_err(|e| format!("{}: {e}", key_file.display()))?;
                ClientAuth::PrivateKeyJwt { client_id, key }
            }
        })
    }

    /// `client_secret_basic`: id and secret are each form-encoded before
    /// joining with `:` (RFC 6749 §2.3.1), so a `:` or `%` in either
    /// survives the trip.
    pub(crate) fn basic(client_id: &str, secret: &str) -> Self {
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let pair = format!("{}:{}", encode(client_id), encode(secret));
        ClientAuth::Basic {
            header: format!("Basic {}", STANDARD.encode(pair)),
        }
    }

    /// The credentials for one call to `endpoint` (a `private_key_jwt`
    /// assertion names it as audience and is made fresh for each call).
    pub(crate) fn credentials(&self, endpoint: &str) -> Credentials {
        match self {
            ClientAuth::Basic { header } => Credentials {
                authorization: Some(header.clone()),
                form: Vec::new(),
            },
            ClientAuth::Post { client_id, secret } => Credentials {
                authorization: None,
                form: vec![
                    ("client_id", client_id.clone()),
                    ("client_secret", secret.clone()),
                ],
            },
            ClientAuth::PrivateKeyJwt { client_id, key } => Credentials {
                authorization: None,
                form: vec![
                    ("client_id", client_id.clone()),
                    ("client_assertion_type", ASSERTION_TYPE.to_owned()),
                    ("client_assertion", key.assertion(client_id, endpoint)),
                ],
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    use crate::issuer::LocalKey;

    fn basic_pair(auth: &ClientAuth) -> String {
        let creds = auth.credentials("https://idp.test/introspect");
        assert!(creds.form.is_empty());
        let header = creds.authorization.unwrap();
        let b64 = header.strip_prefix("Basic ").unwrap();
        String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap()
    }

    #[test]
    fn basic_form_encodes_id_and_secret_before_joining_them() {
        assert_eq!(
            basic_pair(&ClientAuth::basic("callout", "s3cret")),
            "callout:s3cret"
        );
        // RFC 6749 §2.3.1: a `:` in the id no longer splits the pair.
        assert_eq!(
            basic_pair(&ClientAuth::basic("my:client", "p@ss:w%rd +/é")),
            "my%3Aclient:p%40ss%3Aw%25rd+%2B%2F%C3%A9"
        );
    }

    #[test]
    fn post_sends_id_and_secret_in_the_form() {
        let auth = ClientAuth::Post {
            client_id: "callout".into(),
            secret: "s3cret".into(),
        };
        let creds = auth.credentials("https://idp.test/introspect");
        assert!(creds.authorization.is_none());
        assert_eq!(
            creds.form,
            vec![
                ("client_id", "callout".to_owned()),
                ("client_secret", "s3cret".to_owned())
            ]
        );
    }

    #[test]
    fn private_key_jwt_sends_a_fresh_signed_assertion_for_the_endpoint() {
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            let local = LocalKey::generate(alg).unwrap();
            let key = AssertionKey::from_pem(local.pem(), None).unwrap();
            let jwk: Jwk = serde_json::from_value(key.public_jwk()).unwrap();
            let auth = ClientAuth::PrivateKeyJwt {
                client_id: "callout".into(),
                key,
            };
            let endpoint = "https://idp.test/token/introspection";
            let assertion = |creds: Credentials| {
                assert!(creds.authorization.is_none());
                assert_eq!(creds.form[0], ("client_id", "callout".to_owned()));
                assert_eq!(
                    creds.form[1],
                    ("client_assertion_type", ASSERTION_TYPE.to_owned())
                );
                assert_eq!(creds.form[2].0, "client_assertion");
                creds.form[2].1.clone()
            };
            let first = assertion(auth.credentials(endpoint));
            let second = assertion(auth.credentials(endpoint));
            let mut v = Validation::new(alg);
            v.set_audience(&[endpoint]);
            v.set_issuer(&["callout"]);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            let decode = |t: &str| {
                jsonwebtoken::decode::<serde_json::Value>(
                    t,
                    &DecodingKey::from_jwk(&jwk).unwrap(),
                    &v,
                )
                .unwrap()
            };
            let (a, b) = (decode(&first), decode(&second));
            assert_eq!(
                a.header.kid.as_deref(),
                Some(jwk.common.key_id.as_deref().unwrap())
            );
            assert_eq!(a.claims["sub"], "callout");
            assert_eq!(
                a.claims["exp"].as_i64().unwrap() - a.claims["iat"].as_i64().unwrap(),
                60
            );
            assert_eq!(a.claims["jti"].as_str().unwrap().len(), 32);
            assert_ne!(a.claims["jti"], b.claims["jti"], "jti is single-use");
        }
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let auth = ClientAuth::basic("callout", "s3cret");
        assert!(!format!("{auth:?}").contains("s3cret"));
        let auth = ClientAuth::Post {
            client_id: "callout".into(),
            secret: "s3cret".into(),
        };
        assert!(!format!("{auth:?}").contains("s3cret"));
    }
}
