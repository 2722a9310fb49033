//! `private_key_jwt` (RFC 7523 §2.2): the client assertion the service signs
//! for each call, and the private key it signs with.

use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::clock::now_unix;
use crate::issuer::LocalKey;

/// An assertion is good for this long: enough for clock skew between the
/// hosts, short enough that a captured one is soon useless (its `jti` is
/// single-use at the IdP as well).
const ASSERTION_LIFETIME_SECS: i64 = 60;

/// The private key behind `private_key_jwt`.
pub struct AssertionKey {
    key: LocalKey,
}

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AssertionKey({:?}, kid {})", self.key.alg, self.key.kid)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Kind {
    fn default_alg(self) -> Algorithm {
        match self {
            Kind::Rsa => Algorithm::RS256,
            Kind::P256 => Algorithm::ES256,
            Kind::P384 => Algorithm::ES384,
            Kind::Ed25519 => Algorithm::EdDSA,
        }
    }

    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Kind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Kind::P256 => alg == ES256,
            Kind::P384 => alg == ES384,
            Kind::Ed25519 => alg == EdDSA,
        }
    }
}

impl AssertionKey {
    /// Loads an unencrypted PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`;
    /// RSA, P-256, P-384 or Ed25519) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    /// The algorithm is the key's natural one (RS256, ES256, ES384, EdDSA)
    /// unless `alg` names another that fits it (PS256 for an RSA key, …).
    pub fn from_pem(pem: &str, alg: Option<Algorithm>) -> Result<Self, String> {
        let (label, der) = pem_block(pem)?;
        let kind = match label.as_str() {
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der)
                .map(|_| Kind::Rsa)
                .map_err(|_| "not a valid PKCS#1 RSA private key".to_owned())?,
            "PRIVATE KEY" => pkcs8_kind(&der)
                .ok_or("not a PKCS#8 RSA, P-256, P-384 or Ed25519 private key".to_owned())?,
            "EC PRIVATE KEY" => {
                return Err(
                    "SEC1 EC keys are not read; convert with `openssl pkcs8 -topk8 \
                            -nocrypt -in KEY -out KEY.p8`"
                        .into(),
                )
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err("the key is encrypted; store it unencrypted with mode 0600".into())
            }
            other => return Err(format!("PEM block {other:?} is not a private key")),
        };
        let alg = match alg {
            None => kind.default_alg(),
            Some(a) if kind.fits(a) => a,
            Some(a) => return Err(format!("{a:?} does not fit a {kind:?} key")),
        };
        let key = LocalKey::from_pem(alg, pem).map_err(|e| e.to_string())?;
        Ok(Self { key })
    }

    /// The algorithm the assertions are signed with.
    pub fn alg(&self) -> Algorithm {
        self.key.alg
    }

    /// The `kid` sent in the header: the key's RFC 7638 SHA-256 thumbprint,
    /// which is what to register as the client key's `kid` at the IdP.
    pub fn kid(&self) -> &str {
        &self.key.kid
    }

    /// The public JWK to register with the IdP.
    pub fn public_jwk(&self) -> serde_json::Value {
        self.key.jwk()
    }

    /// A fresh assertion: `iss` = `sub` = the client id, `aud` = the
    /// endpoint called, a random single-use `jti`, short `exp`.
    pub fn assertion(&self, client_id: &str, audience: &str) -> String {
        let now = now_unix();
        let jti: [u8; 16] = rand::random();
        self.key.sign(&json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": data_encoding::HEXLOWER.encode(&jti),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        }))
    }
}

fn pkcs8_kind(der: &[u8]) -> Option<Kind> {
    if RsaKeyPair::from_pkcs8(der).is_ok() {
        Some(Kind::Rsa)
    } else if EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).is_ok() {
        Some(Kind::P256)
    } else if EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der).is_ok() {
        Some(Kind::P384)
    } else if Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).is_ok() {
        Some(Kind::Ed25519)
    } else {
        None
    }
}

/// The first PEM block: its label and DER bytes.
fn pem_block(text: &str) -> Result<(String, Vec<u8>), String> {
    let not_pem = || "not a PEM private key".to_owned();
    let start = text.find("-----BEGIN ").ok_or_else(not_pem)?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or_else(not_pem)?;
    let label = rest[..label_end].to_owned();
    let body_and_end = &rest[label_end + 5..];
    let end = body_and_end
        .find(&format!("-----END {label}-----"))
        .ok_or_else(not_pem)?;
    let b64: String = body_and_end[..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = STANDARD.decode(b64).map_err(|_| not_pem())?;
    Ok((label, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RSAPrivateKey (PKCS#1) inside a PKCS#8 PrivateKeyInfo: its
    /// last element, an OCTET STRING.
    fn pkcs1_of(pkcs8: &[u8]) -> Vec<u8> {
        fn header(der: &[u8], at: usize) -> (usize, usize) {
            let first = der[at + 1];
            if first < 0x80 {
                return (at + 2, first as usize);
            }
            let n = (first & 0x7f) as usize;
            let len = der[at + 2..at + 2 + n]
                .iter()
                .fold(0usize, |l, b| l << 8 | *b as usize);
            (at + 2 + n, len)
        }
        let (mut at, _) = header(pkcs8, 0); // PrivateKeyInfo SEQUENCE
        for _ in 0..2 {
            let (start, len) = header(pkcs8, at); // version, algorithm
            at = start + len;
        }
        assert_eq!(pkcs8[at], 0x04, "OCTET STRING");
        let (start, len) = header(pkcs8, at);
        pkcs8[start..start + len].to_vec()
    }

    fn der_of(pem: &str) -> Vec<u8> {
        pem_block(pem).unwrap().1
    }

    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn the_algorithm_follows_the_key() {
        for (gen, expected) in [
            (Algorithm::RS256, Algorithm::RS256),
            (Algorithm::ES256, Algorithm::ES256),
            (Algorithm::ES384, Algorithm::ES384),
            (Algorithm::EdDSA, Algorithm::EdDSA),
        ] {
            let local = LocalKey::generate(gen).unwrap();
            let key = AssertionKey::from_pem(local.pem(), None).unwrap();
            assert_eq!(key.alg(), expected);
            assert_eq!(key.kid(), local.kid);
        }
    }

    #[test]
    fn an_explicit_algorithm_must_fit_the_key() {
        let rsa = LocalKey::generate(Algorithm::RS256).unwrap();
        let ps = AssertionKey::from_pem(rsa.pem(), Some(Algorithm::PS256)).unwrap();
        assert_eq!(ps.alg(), Algorithm::PS256);
        let e = AssertionKey::from_pem(rsa.pem(), Some(Algorithm::ES256)).unwrap_err();
        assert!(e.contains("does not fit"), "{e}");
        let ec = LocalKey::generate(Algorithm::ES256).unwrap();
        assert!(AssertionKey::from_pem(ec.pem(), Some(Algorithm::ES384)).is_err());
    }

    #[test]
    fn a_pkcs1_rsa_key_is_read() {
        let rsa = LocalKey::generate(Algorithm::RS256).unwrap();
        let pkcs1 = pem("RSA PRIVATE KEY", &pkcs1_of(&der_of(rsa.pem())));
        let key = AssertionKey::from_pem(&pkcs1, None).unwrap();
        assert_eq!(key.alg(), Algorithm::RS256);
        assert_eq!(key.kid(), rsa.kid, "same key, same thumbprint");
    }

    #[test]
    fn unusable_files_are_refused_with_a_hint_and_never_echoed() {
        let ec = LocalKey::generate(Algorithm::ES256).unwrap();
        let sec1 = ec.pem().replace("PRIVATE KEY", "EC PRIVATE KEY");
        assert!(AssertionKey::from_pem(&sec1, None)
            .unwrap_err()
            .contains("openssl pkcs8"));
        let enc = ec.pem().replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY");
        assert!(AssertionKey::from_pem(&enc, None)
            .unwrap_err()
            .contains("encrypted"));
        let cert = ec.pem().replace("PRIVATE KEY", "CERTIFICATE");
        assert!(AssertionKey::from_pem(&cert, None)
            .unwrap_err()
            .contains("not a private key"));
        let junk = pem("PRIVATE KEY", b"definitely not a key");
        let e = AssertionKey::from_pem(&junk, None).unwrap_err();
        assert!(e.contains("not a PKCS#8"), "{e}");
        assert_eq!(
            AssertionKey::from_pem("s3cret", None).unwrap_err(),
            "not a PEM private key"
        );
    }
}
