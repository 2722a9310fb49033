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

/// An oracle independent of the parser: the document lists a signing key
/// with this kid (`None`: without one) whose type fits `alg` and whose
/// declared `alg`, `use` and `key_ops` (if any) allow verifying with it.
fn listed_for(doc: &serde_json::Value, kid: Option<&str>, alg: Algorithm) -> bool {
    let Some(keys) = doc["keys"].as_array() else {
        return false;
    };
    let family = |k: &serde_json::Value| match (k["kty"].as_str(), k["crv"].as_str()) {
        (Some("RSA"), _) => matches!(
            alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        (Some("EC"), Some("P-256")) => alg == Algorithm::ES256,
        (Some("EC"), Some("P-384")) => alg == Algorithm::ES384,
        (Some("OKP"), Some("Ed25519")) => alg == Algorithm::EdDSA,
        _ => false,
    };
    keys.iter().any(|k| {
        k.get("kid").and_then(|v| v.as_str()) == kid
            && family(k)
            && k.get("alg")
                .is_none_or(|a| a.as_str() == Some(&format!("{alg:?}")))
            && k.get("use").is_none_or(|u| u == "sig")
            && k.get("key_ops").is_none_or(|ops| {
                ops.as_array()
                    .is_some_and(|o| o.iter().any(|x| x == "verify"))
            })
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    if form % 2 == 0 {
        if let Ok(set) = KeySet::parse(rest) {
            let doc: serde_json::Value = serde_json::from_slice(rest).expect("was parsed");
            for alg in ALGS {
                // A token without a kid gets a key the JWKS offers for its alg.
                if let Ok(key) = set.select(None, alg) {
                    let kid = key.kid.as_deref();
                    assert!(
                        listed_for(&doc, kid, alg),
                        "selected a key the JWKS does not offer for {alg:?} (kid {kid:?})"
                    );
                }
                for kid in ["", "k1"] {
                    if let Ok(key) = set.select(Some(kid), alg) {
                        assert_eq!(key.kid.as_deref(), Some(kid), "selected another kid");
                        assert!(
                            listed_for(&doc, Some(kid), alg),
                            "selected a key the JWKS does not offer for {alg:?} under kid {kid:?}"
                        );
                    }
                }
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
