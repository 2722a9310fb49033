//! Issuers this project runs itself: the development issuer that
//! `bootstrap` creates, and the keys tests generate at run time.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

/// A private signing key with its public JWK.
pub struct LocalKey {
    /// The algorithm it signs with.
    pub alg: Algorithm,
    /// Its RFC 7638 SHA-256 thumbprint, in the JWK and in signed headers.
    pub kid: String,
    encoding: EncodingKey,
    pem: String,
}

/// Why a key could not be generated or loaded.
#[derive(Debug, thiserror::Error)]
#[error("local key: {0}")]
pub struct LocalKeyError(String);

impl LocalKey {
    /// A new key for `alg`: RSA 2048 for RS*/PS*, P-256 or P-384 for
    /// ES256/ES384, Ed25519 for EdDSA. HMAC is refused: never a signing key here.
    pub fn generate(alg: Algorithm) -> Result<Self, LocalKeyError> {
        use Algorithm::*;
        let failed = |what: &str| LocalKeyError(format!("{what} key generation failed"));
        let der = match alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => RsaKeyPair::generate(KeySize::Rsa2048)
                .and_then(|k| k.as_der().map(|d| d.as_ref().to_vec()))
                .map_err(|_| failed("RSA"))?,
            ES256 | ES384 => {
                let curve = if alg == ES256 {
                    &ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &ECDSA_P384_SHA384_FIXED_SIGNING
                };
                EcdsaKeyPair::generate(curve)
                    .and_then(|k| k.to_pkcs8v1())
                    .map(|d| d.as_ref().to_vec())
                    .map_err(|_| failed("EC"))?
            }
            EdDSA => Ed25519KeyPair::generate()
                .and_then(|k| k.to_pkcs8v1())
                .map(|d| d.as_ref().to_vec())
                .map_err(|_| failed("Ed25519"))?,
            other => {
                return Err(LocalKeyError(format!(
                    "{other:?} keys are never generated here"
                )))
            }
        };
        Self::from_pem(alg, &pem("PRIVATE KEY", &der))
    }

    /// Loads a PKCS#8 PEM private key written by [`LocalKey::pem`].
    pub fn from_pem(alg: Algorithm, pem_text: &str) -> Result<Self, LocalKeyError> {
        let encoding = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem_text.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem_text.as_bytes()),
            _ => EncodingKey::from_rsa_pem(pem_text.as_bytes()),
        }
        .map_err(|e| LocalKeyError(e.to_string()))?;
        let jwk =
            Jwk::from_encoding_key(&encoding, alg).map_err(|e| LocalKeyError(e.to_string()))?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| LocalKeyError(e.to_string()))?;
        Ok(Self {
            alg,
            kid,
            encoding,
            pem: pem_text.to_owned(),
        })
    }

    /// The private key as PKCS#8 PEM. A secret: write it with mode 0600.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The public JWK, with `kid`, `alg` and `use`.
    pub fn jwk(&self) -> Value {
        let jwk =
            Jwk::from_encoding_key(&self.encoding, self.alg).expect("checked at construction");
        let mut v = serde_json::to_value(jwk).expect("a JWK serializes");
        v["kid"] = self.kid.clone().into();
        v["use"] = "sig".into();
        v
    }

    /// Signs claims with a header of `alg`, `typ: JWT` and this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        self.sign_with_header(&header, claims)
    }

    /// Signs raw header and payload JSON text, for tokens a serializer would
    /// never write (duplicate keys, odd nesting): adversarial tests.
    pub fn sign_raw(&self, header_json: &str, payload_json: &str) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header_json),
            URL_SAFE_NO_PAD.encode(payload_json)
        );
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, self.alg)
            .expect("signing with a valid key");
        format!("{message}.{sig}")
    }

    /// Signs with a caller-made header (tests of hostile headers).
    pub fn sign_with_header(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("signing with a valid key")
    }
}

/// A JWKS document holding the public keys given.
pub fn jwks(keys: &[&LocalKey]) -> Value {
    serde_json::json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
