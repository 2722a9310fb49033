//! Encoding, signing and verifying JWTs the way nats-io/jwt v2 does.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use nkeys::{KeyPair, KeyPairType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512_256};

use super::claims::AuthorizationRequest;

/// The only header nats-io/jwt v2 writes.
pub const NKEY_HEADER: &str = r#"{"typ":"JWT","alg":"ed25519-nkey"}"#;

/// Largest JWT nats-io/jwt will decode (`jwt.MaxTokenSize`).
const MAX_TOKEN_SIZE: usize = 1024 * 1024;

/// Why a NATS JWT cannot be read, verified or made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    /// Over nats-io/jwt's size limit; refused before decoding.
    #[error("token is larger than {MAX_TOKEN_SIZE} bytes")]
    TooLarge,
    /// Not `header.claims.signature`.
    #[error("expected 3 dot-separated parts")]
    Shape,
    /// The named part is not unpadded base64url.
    #[error("{0} is not valid unpadded base64url")]
    Base64(&'static str),
    /// The named part is not the JSON we expect.
    #[error("{part} is not valid JSON: {reason}")]
    Json {
        /// `header` or `claims`.
        part: &'static str,
        /// serde's message.
        reason: String,
    },
    /// A header other than [`NKEY_HEADER`]'s.
    #[error("unsupported JWT header (typ {typ:?}, alg {alg:?})")]
    Header {
        /// As found.
        typ: String,
        /// As found; only `ed25519-nkey` is accepted.
        alg: String,
    },
    /// A JWT of another kind (e.g. a user JWT where a request was due).
    #[error("claims type is {found:?}, expected {expected:?}")]
    Type {
        /// The `nats.type` in the token.
        found: String,
        /// The `nats.type` the caller asked for.
        expected: &'static str,
    },
    /// Not a v2 JWT.
    #[error("claims version is {0}, expected 2")]
    Version(u32),
    /// `iss` is not a public nkey of the required kind (server, account).
    #[error("issuer {0:?} is not a {1} public key")]
    IssuerKind(String, &'static str),
    /// The signature is not `iss`'s over header and claims.
    #[error("signature does not verify")]
    Signature,
    /// Our key could not sign.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// The registered claims nats-io/jwt hashes into the jti, in its field order.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimsData {
    /// Audience: the server id on responses, the account on user JWTs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub aud: String,
    /// Expiry, Unix seconds; 0 is none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub exp: i64,
    /// Content hash, see [`jti`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    /// Issued at, Unix seconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub iat: i64,
    /// The signer's public nkey.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub iss: String,
    /// A label for people; nothing checks it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Not before, Unix seconds; 0 is none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nbf: i64,
    /// Whom the claims are about (on responses and users: the user nkey).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sub: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A full NATS JWT body: registered claims followed by the `nats` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NatsClaims<T> {
    /// Registered claims, at the top level of the JSON.
    #[serde(flatten)]
    pub data: ClaimsData,
    /// The type-specific body.
    pub nats: T,
}

/// The `nats.type` of a claims body, which also selects how it must be read.
pub trait NatsType {
    /// The `nats.type` this body must carry.
    const TYPE: &'static str;
    /// What the decoded body says it is, checked against [`Self::TYPE`] and 2.
    fn type_and_version(&self) -> (&str, u32);
}

/// jti as nats-io/jwt computes it: base32 (no padding) of SHA-512/256 over
/// the JSON of the registered claims with `jti` cleared.
pub fn jti(data: &ClaimsData) -> String {
    let cleared = ClaimsData {
        jti: String::new(),
        ..data.clone()
    };
    let json = serde_json::to_vec(&cleared).expect("ClaimsData always serializes");
    data_encoding::BASE32_NOPAD.encode(&Sha512_256::digest(&json))
}

/// An nkey that can sign NATS JWTs.
pub trait NkeySigner {
    /// Goes into `iss`.
    fn public_key(&self) -> String;
    /// Ed25519 over `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, JwtError>;
}

impl NkeySigner for KeyPair {
    fn public_key(&self) -> String {
        KeyPair::public_key(self)
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, JwtError> {
        KeyPair::sign(self, message).map_err(|e| JwtError::Signing(e.to_string()))
    }
}

/// An account key for the hot path: Ed25519 through aws-lc-rs, about twice
/// as fast as the nkeys crate's, with the same (deterministic) signatures.
pub struct AccountSigner {
    pair: aws_lc_rs::signature::Ed25519KeyPair,
    public: String,
}

impl AccountSigner {
    /// From an account seed (`SA…`); None for anything else.
    pub fn from_seed(seed: &str) -> Option<Self> {
        let kp = KeyPair::from_seed(seed).ok()?;
        if kp.key_pair_type() != KeyPairType::Account {
            return None;
        }
        let (_, raw) = nkeys::decode_seed(seed).ok()?;
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(&raw).ok()?;
        Some(Self {
            pair,
            public: kp.public_key(),
        })
    }
}

impl NkeySigner for AccountSigner {
    fn public_key(&self) -> String {
        self.public.clone()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, JwtError> {
        Ok(self.pair.sign(message).as_ref().to_vec())
    }
}

/// Sets `iss` and `jti` on the claims and signs them with `signer`.
pub fn encode<T: Serialize>(
    claims: &mut NatsClaims<T>,
    signer: &impl NkeySigner,
) -> Result<String, JwtError> {
    claims.data.iss = signer.public_key();
    claims.data.jti = jti(&claims.data);
    let body = serde_json::to_vec(claims).map_err(|e| JwtError::Signing(e.to_string()))?;
    let mut token = String::with_capacity(body.len() * 4 / 3 + 160);
    URL_SAFE_NO_PAD.encode_string(NKEY_HEADER, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&body, &mut token);
    let sig = signer.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut token);
    Ok(token)
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    typ: String,
    #[serde(default)]
    alg: String,
}

/// Decodes a NATS JWT and verifies its signature against its own `iss`,
/// which must be a key of `issuer_kind`.
pub fn decode<T: DeserializeOwned + NatsType>(
    token: &str,
    issuer_kind: KeyPairType,
) -> Result<NatsClaims<T>, JwtError> {
    if token.len() > MAX_TOKEN_SIZE {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Shape);
    };
    let header: Header = parse_part(h, "header")?;
    let alg = header.alg.to_ascii_lowercase();
    if !header.typ.eq_ignore_ascii_case("jwt") || !(alg == "ed25519-nkey" || alg == "ed25519") {
        return Err(JwtError::Header {
            typ: header.typ,
            alg: header.alg,
        });
    }
    let claims: NatsClaims<T> = parse_part(p, "payload")?;
    let (found, version) = claims.nats.type_and_version();
    if found != T::TYPE {
        return Err(JwtError::Type {
            found: found.to_owned(),
            expected: T::TYPE,
        });
    }
    if version != 2 {
        return Err(JwtError::Version(version));
    }
    let raw = nkeys::from_public_key(&claims.data.iss)
        .ok()
        .filter(|(prefix, _)| KeyPairType::from(*prefix) == issuer_kind)
        .map(|(_, raw)| raw)
        .ok_or_else(|| JwtError::IssuerKind(claims.data.iss.clone(), kind_name(&issuer_kind)))?;
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwtError::Base64("signature"))?;
    let signed = &token[..h.len() + 1 + p.len()];
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, raw)
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| JwtError::Signature)?;
    Ok(claims)
}

/// Decodes an `authorization_request`; its issuer must be a server key.
pub fn decode_request(token: &str) -> Result<NatsClaims<AuthorizationRequest>, JwtError> {
    decode(token, KeyPairType::Server)
}

fn parse_part<T: DeserializeOwned>(b64: &str, part: &'static str) -> Result<T, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| JwtError::Base64(part))?;
    serde_json::from_slice(&bytes).map_err(|e| JwtError::Json {
        part,
        reason: e.to_string(),
    })
}

fn kind_name(kind: &KeyPairType) -> &'static str {
    match kind {
        KeyPairType::Server => "server",
        KeyPairType::Account => "account",
        KeyPairType::User => "user",
        KeyPairType::Operator => "operator",
        _ => "recognised",
    }
}
