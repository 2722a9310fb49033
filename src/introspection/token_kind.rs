//! Which path a bearer token takes: a JWT goes to signature checks, anything
//! else to introspection; and what a bearer token can be at all.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

/// A JWS compact serialization: three dot-separated parts whose first is
/// base64url JSON object (the header). Structure only: nothing is
/// verified. Opaque tokens with dots (Google's `ya29.…`) are not JWTs.
pub(crate) fn is_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .is_some_and(|v| v.is_object())
}

/// RFC 6750 §2.1 `b64token`: what a bearer token can be. Anything else is
/// refused without asking the IdP.
pub(crate) fn is_bearer_token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwts_are_told_apart_by_structure() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
        assert!(is_jwt(&format!("{header}.e30.c2ln")));
        assert!(
            is_jwt(&format!("{header}.e30.")),
            "an empty signature is still a JWT (refused later)"
        );
        for opaque in [
            "mWrB8NRss31LbfZHqpi8ha5gfi8z8xosRv04Hg2BwTM",
            "ya29.a0AfH6SMBx-example",
            "gho_16C7e42F292c6912E7710c838347Ae178B4a",
            "a.b.c",
            "",
        ] {
            assert!(!is_jwt(opaque), "{opaque}");
        }
        let array = URL_SAFE_NO_PAD.encode("[1]");
        assert!(!is_jwt(&format!("{array}.e30.c2ln")));
        assert!(!is_jwt(&format!("{header}.e30.c2ln.more")));
    }

    #[test]
    fn bearer_tokens_use_the_b64token_alphabet() {
        for ok in ["abc", "aZ09-._~+/", "abc==", "ya29.a0Af"] {
            assert!(is_bearer_token(ok), "{ok}");
        }
        for bad in ["", "===", "a=b", "a b", "tok\n", "ä", "a,b", "\"a\""] {
            assert!(!is_bearer_token(bad), "{bad:?}");
        }
    }
}
