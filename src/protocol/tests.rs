//! Fixtures: `tests/fixtures/protocol-vectors.txt` holds a request signed by
//! a real nats-server 2.15.1 and tokens signed with the *public* test seed
//! from nats-server's own test suite (a fixture key, used nowhere else).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use nkeys::{KeyPair, KeyPairType, XKey};

use super::jwt::decode;
use super::*;

const VECTORS: &str = include_str!("../../tests/fixtures/protocol-vectors.txt");

fn vector(key: &str) -> &'static str {
    VECTORS
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("vector {key} missing"))
}

/// Public seed from nats-server's auth_callout_test.go; fixture only.
fn fixture_issuer() -> KeyPair {
    KeyPair::from_seed(
        &[
            "SAANDLKMXL6CUS3CP52WIXBEDN6",
            "YJ545GDKC65U5JZPPV6WH6ESWUA6YAI",
        ]
        .concat(),
    )
    .unwrap()
}

#[test]
fn decodes_and_verifies_a_real_server_request() {
    let req = decode_request(vector("REQUEST_TOKEN")).unwrap();
    assert_eq!(req.data.aud, AUTHORIZATION_REQUEST_AUDIENCE);
    assert_eq!(req.data.iss, req.nats.server_id.id);
    assert_eq!(
        req.nats.user_nkey,
        "UC3RPNBE6ZEE2M4FRTLXCEJOIXUX33OJJUHMCFIM2TKQJR4TAWK72FHF"
    );
    assert_eq!(req.nats.connect_opts.pass, "secret-pw");
    assert_eq!(req.nats.client_info.conn_type, "nats");
    assert_eq!(req.nats.client_info.host, "127.0.0.1");
    assert_eq!(req.nats.server_id.version, "2.15.1");
    assert_eq!(req.nats.connect_opts.protocol, 1);
}

#[test]
fn real_request_jti_matches_nats_io_jwt() {
    let req = decode_request(vector("REQUEST_TOKEN")).unwrap();
    assert_eq!(jti(&req.data), req.data.jti);
    let expected = vector("JTI_COMPUTED").split(' ').next().unwrap();
    assert_eq!(req.data.jti, expected);
}

#[test]
fn tampered_request_is_rejected() {
    let token = vector("REQUEST_TOKEN");
    let parts: Vec<&str> = token.split('.').collect();
    let mut body = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
    let text = String::from_utf8(body.clone())
        .unwrap()
        .replace("secret-pw", "secret-px");
    body = text.into_bytes();
    let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(body), parts[2]);
    assert_eq!(decode_request(&forged).unwrap_err(), JwtError::Signature);
}

#[test]
fn request_signed_by_a_non_server_key_is_rejected() {
    let req = decode_request(vector("REQUEST_TOKEN")).unwrap();
    let mut claims = req.clone();
    let forged = encode(&mut claims, &KeyPair::new_account()).unwrap();
    assert!(matches!(
        decode_request(&forged),
        Err(JwtError::IssuerKind(_, "server"))
    ));
    let mut claims = req;
    let by_server = encode(&mut claims, &KeyPair::new_server()).unwrap();
    assert!(decode_request(&by_server).is_ok());
}

#[test]
fn malformed_requests_name_the_problem() {
    assert_eq!(decode_request("a.b").unwrap_err(), JwtError::Shape);
    assert_eq!(decode_request("a.b.c.d").unwrap_err(), JwtError::Shape);
    assert_eq!(
        decode_request("@@.b.c").unwrap_err(),
        JwtError::Base64("header")
    );
    let token = vector("REQUEST_TOKEN");
    let padded = token.replacen('.', "=.", 1);
    assert_eq!(
        decode_request(&padded).unwrap_err(),
        JwtError::Base64("header")
    );
    let user = vector("USER_TOKEN");
    assert!(matches!(decode_request(user), Err(JwtError::Type { .. })));
}

#[test]
fn user_and_response_encode_byte_for_byte() {
    let user_token = vector("USER_TOKEN");
    let user = decode::<User>(user_token, KeyPairType::Account).unwrap();
    let mut again = user.clone();
    again.data.jti.clear();
    let encoded = encode(&mut again, &fixture_issuer()).unwrap();
    assert_eq!(encoded, user_token);

    let resp_token = vector("RESPONSE_TOKEN");
    let resp = decode::<AuthorizationResponse>(resp_token, KeyPairType::Account).unwrap();
    assert_eq!(resp.nats.jwt.as_deref(), Some(user_token));
    let mut again = resp.clone();
    assert_eq!(encode(&mut again, &fixture_issuer()).unwrap(), resp_token);
}

#[test]
fn new_user_has_unlimited_limits_and_v2_type() {
    let u = User::new(Permission::default(), Permission::default(), None);
    let json = serde_json::to_string(&u).unwrap();
    assert_eq!(
        json,
        r#"{"pub":{},"sub":{},"subs":-1,"data":-1,"payload":-1,"type":"user","version":2}"#
    );
}

fn open_err<T>(r: Result<T, SealError>) -> SealError {
    match r {
        Err(e) => e,
        Ok(_) => panic!("expected an error"),
    }
}

/// The service side (crypto_box with cached agreements) against the nkeys
/// implementation, which interoperates with nats-server's Go code.
#[test]
fn xkey_round_trip_and_mismatches() {
    let server = XKey::new();
    let service_key = XKey::new();
    let service = Sealer::from_seed(&service_key.seed().unwrap()).unwrap();
    assert_eq!(service.public_key(), service_key.public_key());
    let to_service = XKey::from_public_key(&service_key.public_key()).unwrap();
    let sealed = server.seal(b"eyJhello", &to_service).unwrap();

    let server_pub = server.public_key();
    let (opened, reply_box) = open_request(&sealed, Some(&server_pub), Some(&service)).unwrap();
    assert_eq!(opened, b"eyJhello");
    let answer = seal_response(b"eyJanswer", &reply_box.unwrap());
    assert_eq!(server.open(&answer, &to_service).unwrap(), b"eyJanswer");
    // The cached agreement serves the next request from the same server.
    let again = server.seal(b"eyJtwo", &to_service).unwrap();
    assert_eq!(
        open_request(&again, Some(&server_pub), Some(&service))
            .unwrap()
            .0,
        b"eyJtwo"
    );

    assert_eq!(
        open_err(open_request(&sealed, None, Some(&service))),
        SealError::MissingServerKey
    );
    assert_eq!(
        open_err(open_request(&sealed, Some("XBAD"), Some(&service))),
        SealError::BadServerKey
    );
    assert_eq!(
        open_err(open_request(&sealed, Some(&server_pub), None)),
        SealError::NoServiceKey
    );
    assert_eq!(
        open_err(open_request(b"eyJplain", None, Some(&service))),
        SealError::NotSealed
    );
    let stranger = Sealer::from_seed(&XKey::new().seed().unwrap()).unwrap();
    assert_eq!(
        open_err(open_request(&sealed, Some(&server_pub), Some(&stranger))),
        SealError::Open
    );
    let other_server = XKey::new().public_key();
    assert_eq!(
        open_err(open_request(&sealed, Some(&other_server), Some(&service))),
        SealError::Open
    );
    assert_eq!(
        open_err(open_request(
            b"xkv1short",
            Some(&server_pub),
            Some(&service)
        )),
        SealError::Open
    );
    let (plain, none) = open_request(b"eyJplain", None, None).unwrap();
    assert_eq!((plain.as_slice(), none.is_none()), (&b"eyJplain"[..], true));
    assert!(Sealer::from_seed("SAnotacurveseed").is_err());
}

/// The fast signer produces exactly nkeys' (deterministic Ed25519) bytes.
#[test]
fn account_signer_matches_nkeys_byte_for_byte() {
    let seed = fixture_issuer().seed().unwrap();
    let fast = AccountSigner::from_seed(&seed).unwrap();
    let user = decode::<User>(vector("USER_TOKEN"), KeyPairType::Account).unwrap();
    let mut again = user.clone();
    assert_eq!(encode(&mut again, &fast).unwrap(), vector("USER_TOKEN"));
    assert!(AccountSigner::from_seed(&KeyPair::new_user().seed().unwrap()).is_none());
    assert!(AccountSigner::from_seed("not a seed").is_none());
}
