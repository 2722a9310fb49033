//! JWKS and OpenID discovery documents as an IdP (or whoever answers in its
//! place) serves them. First byte picks which.
#![no_main]

use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use nats_oidc_callout::issuer::{jwks_uri_from_discovery, KeySet};
use nats_oidc_callout_fuzz::ISSUER;

const ALGS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fuzz_target!(|data: &[u8]| {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    if form % 2 == 0 {
        if let Ok(set) = KeySet::parse(rest) {
            for alg in ALGS {
                let _ = set.select(None, alg);
                let _ = set.select(Some(""), alg);
                let _ = set.select(Some("k1"), alg);
            }
        }
    } else {
        let url = format!("{ISSUER}/.well-known/openid-configuration");
        if jwks_uri_from_discovery(rest, &url, ISSUER).is_ok() {
            let doc: serde_json::Value = serde_json::from_slice(rest).expect("was parsed");
            assert_eq!(doc["issuer"], ISSUER, "accepted another issuer");
        }
    }
});
