//! One JSON Web Key Set: which keys may verify signatures, and which key a
//! token's header picks.

use std::str::FromStr;
use std::time::Instant;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::JwksError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }

    /// The JWK members that are the key itself (RFC 7638's thumbprint set).
    fn material(self) -> &'static [&'static str] {
        match self {
            KeyKind::Rsa => &["e", "n"],
            KeyKind::P256 | KeyKind::P384 => &["crv", "x", "y"],
            KeyKind::Ed25519 => &["crv", "x"],
        }
    }
}

/// What identifies a key across refreshes: its `kid` and key material. A
/// token verified with a key whose fingerprint is gone from the JWKS (the
/// IdP withdrew it) is no longer honoured.
pub type KeyFingerprint = [u8; 32];

/// One verification key, with what it may be used for.
pub struct KeyEntry {
    pub kid: Option<String>,
    alg: Option<Algorithm>,
    kind: KeyKind,
    pub fingerprint: KeyFingerprint,
    pub key: DecodingKey,
}

impl KeyEntry {
    /// A key is only used with the algorithm its type (and `alg`, if
    /// declared) allows: no RSA key for ES256, no EC key for HS256.
    fn usable_for(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }

    /// The key, or why this service may not verify signatures with it.
    fn from_json(v: &Value) -> Result<KeyEntry, String> {
        let obj = v.as_object().ok_or("not a JSON object")?;
        match obj.get("use") {
            None => {}
            Some(Value::String(u)) if u == "sig" => {}
            Some(Value::String(u)) => return Err(format!("\"use\" is {u:?}, not \"sig\"")),
            Some(_) => return Err("\"use\" is not a string".into()),
        }
        match obj.get("key_ops") {
            None => {}
            Some(Value::Array(ops)) => {
                if ops.iter().any(|op| !op.is_string()) {
                    return Err("\"key_ops\" holds a non-string".into());
                }
                if !ops.iter().any(|op| op == "verify") {
                    return Err("\"key_ops\" does not include \"verify\"".into());
                }
            }
            Some(_) => return Err("\"key_ops\" is not an array".into()),
        }
        let alg = match obj.get("alg") {
            None => None,
            Some(Value::String(a)) => Some(
                Algorithm::from_str(a).map_err(|_| format!("\"alg\" {a:?} is not supported"))?,
            ),
            Some(_) => return Err("\"alg\" is not a string".into()),
        };
        let kid = match obj.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err("\"kid\" is not a string".into()),
        };
        let kty = obj.get("kty").and_then(Value::as_str).unwrap_or_default();
        let kind = match (kty, obj.get("crv").and_then(Value::as_str)) {
            ("RSA", _) => KeyKind::Rsa,
            ("EC", Some("P-256")) => KeyKind::P256,
            ("EC", Some("P-384")) => KeyKind::P384,
            ("OKP", Some("Ed25519")) => KeyKind::Ed25519,
            (kty, crv) => return Err(format!("key type {kty:?} (crv {crv:?}) is not supported")),
        };
        let jwk: Jwk = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
        let mut h = Sha256::new();
        for part in std::iter::once(kty).chain(kid.as_deref()).chain(
            kind.material()
                .iter()
                .map(|m| obj.get(*m).and_then(Value::as_str).unwrap_or_default()),
        ) {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        Ok(KeyEntry {
            kid,
            alg,
            kind,
            fingerprint: h.finalize().into(),
            key,
        })
    }
}

/// The keys of one issuer at one point in time.
pub struct KeySet {
    keys: Vec<KeyEntry>,
    /// Why each skipped key was skipped, for the log.
    pub(crate) skipped: Vec<String>,
    /// When the set was loaded, for `jwks_max_stale`.
    pub(crate) fetched_at: Instant,
}

/// Why no key was chosen for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoKey {
    /// No key has the token's `kid`.
    UnknownKid,
    /// No key (with that `kid`) fits the token's algorithm.
    WrongAlgorithm,
    /// No `kid`, and more than one key fits the algorithm.
    Ambiguous,
}

impl KeySet {
    /// Parses a JWKS. Keys this service cannot use (encryption keys,
    /// unsupported types) are skipped; a set with none left is an error.
    pub fn parse(bytes: &[u8]) -> Result<KeySet, JwksError> {
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| JwksError::Malformed(e.to_string()))?;
        let listed = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwksError::Malformed("no \"keys\" array".into()))?;
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (i, v) in listed.iter().enumerate() {
            match KeyEntry::from_json(v) {
                Ok(k) => keys.push(k),
                Err(why) => {
                    let kid = v.get("kid").and_then(Value::as_str).unwrap_or("");
                    skipped.push(format!("key {i} (kid {kid:.64?}) skipped: {why}"));
                }
            }
        }
        if keys.is_empty() {
            return Err(JwksError::Empty);
        }
        Ok(KeySet {
            keys,
            skipped,
            fetched_at: Instant::now(),
        })
    }

    /// The number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no usable key (never, for a parsed set).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether the key with this fingerprint is still published.
    pub fn holds(&self, fingerprint: &KeyFingerprint) -> bool {
        self.keys.iter().any(|k| &k.fingerprint == fingerprint)
    }

    /// Picks the key for a token. Without `kid`, the set must hold exactly
    /// one key usable for `alg`.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&KeyEntry, NoKey> {
        match kid {
            Some(kid) => {
                let mut same_kid = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if same_kid.peek().is_none() {
                    return Err(NoKey::UnknownKid);
                }
                same_kid
                    .find(|k| k.usable_for(alg))
                    .ok_or(NoKey::WrongAlgorithm)
            }
            None => {
                let mut usable = self.keys.iter().filter(|k| k.usable_for(alg));
                match (usable.next(), usable.next()) {
                    (Some(k), None) => Ok(k),
                    (None, _) => Err(NoKey::WrongAlgorithm),
                    (Some(_), Some(_)) => Err(NoKey::Ambiguous),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_N: &str = "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw";

    fn rsa(kid: &str, alg: Option<&str>) -> Value {
        let mut v = serde_json::json!({"kty": "RSA", "kid": kid, "n": RSA_N, "e": "AQAB"});
        if let Some(a) = alg {
            v["alg"] = a.into();
        }
        v
    }

    fn set(keys: Vec<Value>) -> KeySet {
        KeySet::parse(serde_json::json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn selects_by_kid_and_checks_algorithm_fit() {
        let s = set(vec![rsa("a", Some("RS256")), rsa("b", None)]);
        assert_eq!(
            s.select(Some("a"), Algorithm::RS256)
                .unwrap()
                .kid
                .as_deref(),
            Some("a")
        );
        assert_eq!(
            s.select(Some("a"), Algorithm::PS256).err(),
            Some(NoKey::WrongAlgorithm)
        );
        assert!(s.select(Some("b"), Algorithm::PS256).is_ok());
        assert_eq!(
            s.select(Some("b"), Algorithm::ES256).err(),
            Some(NoKey::WrongAlgorithm)
        );
        assert_eq!(
            s.select(Some("c"), Algorithm::RS256).err(),
            Some(NoKey::UnknownKid)
        );
        assert_eq!(
            s.select(None, Algorithm::RS256).err(),
            Some(NoKey::Ambiguous)
        );
    }

    #[test]
    fn no_kid_is_fine_with_exactly_one_usable_key() {
        let s = set(vec![rsa("only", None)]);
        assert!(s.select(None, Algorithm::RS256).is_ok());
        assert_eq!(
            s.select(None, Algorithm::ES256).err(),
            Some(NoKey::WrongAlgorithm)
        );
    }

    #[test]
    fn unusable_keys_are_skipped_and_empty_sets_refused() {
        let enc =
            serde_json::json!({"kty": "RSA", "kid": "e", "use": "enc", "n": RSA_N, "e": "AQAB"});
        let hmac = serde_json::json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"});
        let odd_alg = rsa("x", Some("RSA-OAEP"));
        let s = set(vec![
            enc.clone(),
            hmac.clone(),
            odd_alg.clone(),
            rsa("ok", None),
        ]);
        assert_eq!(s.len(), 1);
        assert_eq!(s.skipped.len(), 3, "{:?}", s.skipped);
        let only_bad = serde_json::json!({ "keys": [enc, hmac, odd_alg] }).to_string();
        assert_eq!(
            KeySet::parse(only_bad.as_bytes()).err(),
            Some(JwksError::Empty)
        );
        assert!(matches!(KeySet::parse(b"{}"), Err(JwksError::Malformed(_))));
        assert!(matches!(
            KeySet::parse(b"not json"),
            Err(JwksError::Malformed(_))
        ));
    }

    #[test]
    fn only_keys_meant_for_verifying_signatures_verify() {
        let with = |k: &str, v: Value| {
            let mut key = rsa("k", None);
            key[k] = v;
            key
        };
        for (bad, why) in [
            (
                with("key_ops", serde_json::json!(["encrypt"])),
                "does not include",
            ),
            (
                with("key_ops", serde_json::json!(["sign"])),
                "does not include",
            ),
            (with("key_ops", serde_json::json!("verify")), "not an array"),
            (
                with("key_ops", serde_json::json!([1, "verify"])),
                "non-string",
            ),
            (with("use", serde_json::json!(["sig"])), "not a string"),
            (with("use", serde_json::json!(true)), "not a string"),
            (with("use", serde_json::json!("enc")), "not \"sig\""),
            (with("kid", serde_json::json!(7)), "kid"),
        ] {
            let doc = serde_json::json!({ "keys": [bad, rsa("other", None)] }).to_string();
            let s = KeySet::parse(doc.as_bytes()).unwrap();
            assert_eq!(s.len(), 1, "{why}");
            assert!(s.skipped[0].contains(why), "{why}: {:?}", s.skipped);
            assert_eq!(
                s.select(Some("k"), Algorithm::RS256).err(),
                Some(NoKey::UnknownKid)
            );
        }
        for good in [
            with("key_ops", serde_json::json!(["verify"])),
            with("key_ops", serde_json::json!(["sign", "verify"])),
            with("use", serde_json::json!("sig")),
        ] {
            assert_eq!(set(vec![good]).len(), 1);
        }
    }

    #[test]
    fn fingerprints_follow_kid_and_key_material() {
        let a = set(vec![rsa("a", None)]);
        let fp = a.select(Some("a"), Algorithm::RS256).unwrap().fingerprint;
        assert!(
            set(vec![rsa("a", Some("RS256"))]).holds(&fp),
            "alg is not material"
        );
        assert!(!set(vec![rsa("b", None)]).holds(&fp), "another kid");
        let mut other = rsa("a", None);
        other["e"] = "Aw".into();
        assert!(!set(vec![other]).holds(&fp), "other key material");
    }
}
