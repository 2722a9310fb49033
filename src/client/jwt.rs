//! Reading a JWT's own claims without verifying it: a client only needs its
//! token's `sub` (to name its inbox) and `exp` (to know when to refresh);
//! the callout verifies the signature.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

fn claims(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `sub` claim, if the token is a JWT that has one.
pub(crate) fn subject(token: &str) -> Option<String> {
    claims(token)?.get("sub")?.as_str().map(str::to_owned)
}

/// The `exp` claim (seconds since the epoch), if present.
pub(crate) fn expires_at(token: &str) -> Option<i64> {
    claims(token)?.get("exp")?.as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn reads_sub_and_exp_of_a_jwt() {
        let t = jwt(r#"{"sub":"worker","exp":1800000000}"#);
        assert_eq!(subject(&t).as_deref(), Some("worker"));
        assert_eq!(expires_at(&t), Some(1_800_000_000));
    }

    #[test]
    fn anything_else_has_no_claims() {
        for t in [
            "opaque-token".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            jwt("not json"),
            jwt(r#"{"sub":42}"#),
        ] {
            assert_eq!(subject(&t), None, "{t}");
        }
    }
}
