//! Reading an introspection response (RFC 7662 §2.2) strictly, and the
//! checks the issuer's rules put on it. The answer decides: `active` must
//! be a boolean, and the registered claims, when present, are held to the
//! same rules as a JWT's.

use serde_json::{Map, Value};

use super::error::IntrospectionError;

/// An active answer that passed the checks that do not depend on time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Active {
    pub(crate) claims: Map<String, Value>,
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    /// When the answer stops being usable: `exp`, or earlier when
    /// `max_token_age` ends it first.
    pub(crate) usable_until: Option<i64>,
}

/// What an issuer requires of an answer.
pub(crate) struct Rules<'a> {
    /// The issuer identifier (`iss` must equal it when present).
    pub(crate) issuer: &'a str,
    /// `aud`, when present, must hold one of these.
    pub(crate) audiences: &'a [String],
    /// Claims (paths) the answer must carry: `required_claims`.
    pub(crate) required_claims: &'a [String],
    /// `max_token_age` in seconds: then `iat` is required and checked.
    pub(crate) max_age_secs: Option<i64>,
    pub(crate) now: i64,
}

/// The body as a JSON object. Anything else is a bad response, which
/// denies and is not cached.
pub(crate) fn parse(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("not a JSON object".into()),
        Err(_) => Err("not JSON".into()),
    }
}

/// Decides an answer: `Ok` for an active token that passes `rules`;
/// `Err(Ok(e))` for a definitive refusal (inactive, wrong issuer or
/// audience, not an access token), which may be cached; `Err(Err(reason))`
/// for a response that breaks the protocol.
pub(crate) fn check(
    mut claims: Map<String, Value>,
    rules: &Rules,
) -> Result<Active, Result<IntrospectionError, String>> {
    match claims.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Err(Ok(IntrospectionError::Inactive)),
        Some(_) => return Err(Err("\"active\" is not a boolean".into())),
        None => return Err(Err("no \"active\" member".into())),
    }
    let exp = numeric_date(&claims, "exp").map_err(Err)?;
    let nbf = numeric_date(&claims, "nbf").map_err(Err)?;
    match claims.get("iss") {
        None => {}
        Some(Value::String(iss)) if iss == rules.issuer => {}
        Some(Value::String(_)) => return Err(Ok(IntrospectionError::Issuer)),
        Some(_) => return Err(Err("\"iss\" is not a string".into())),
    }
    if let Some(aud) = claims.get("aud") {
        let listed = match aud {
            Value::String(a) => vec![a.as_str()],
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().ok_or(()))
                .collect::<Result<_, _>>()
                .map_err(|_| Err("\"aud\" holds a non-string".into()))?,
            _ => return Err(Err("\"aud\" is not a string or array".into())),
        };
        if !listed
            .iter()
            .any(|a| rules.audiences.iter().any(|c| c == a))
        {
            return Err(Ok(IntrospectionError::Audience));
        }
    }
    match claims.get("token_type") {
        None => {}
        Some(Value::String(t)) if is_access_token_type(t) => {}
        Some(Value::String(t)) => return Err(Ok(IntrospectionError::TokenType(truncate(t)))),
        Some(_) => return Err(Err("\"token_type\" is not a string".into())),
    }
    if let Some(missing) = rules
        .required_claims
        .iter()
        .find(|c| matches!(crate::claims::lookup(&claims, c), Ok(None)))
    {
        return Err(Ok(IntrospectionError::MissingClaim(missing.clone())));
    }
    let mut usable_until = exp;
    if let Some(max) = rules.max_age_secs {
        let iat = numeric_date(&claims, "iat")
            .map_err(Err)?
            .ok_or_else(|| Ok(IntrospectionError::MissingClaim("iat".into())))?;
        let age = rules.now.saturating_sub(iat);
        if age > max {
            return Err(Ok(IntrospectionError::TooOld { age_secs: age }));
        }
        let aged = iat.saturating_add(max);
        usable_until = Some(usable_until.map_or(aged, |e| e.min(aged)));
    }
    claims.remove("active");
    // `userinfo.*` is reserved for what the userinfo endpoint said.
    claims.remove("userinfo");
    Ok(Active {
        claims,
        exp,
        nbf,
        usable_until,
    })
}

/// `token_type` values that mean "a bearer access token": RFC 6749's
/// `Bearer` (what RFC 7662 servers send), and the RFC 8693 names some
/// servers use. `DPoP` and `N_A` (RFC 8693) are not, nor refresh or ID
/// tokens.
fn is_access_token_type(t: &str) -> bool {
    [
        "bearer",
        "access_token",
        "urn:ietf:params:oauth:token-type:access_token",
    ]
    .iter()
    .any(|ok| t.eq_ignore_ascii_case(ok))
}

/// `exp`/`nbf`: absent, or a number (rounded down, as for JWTs).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or_else(|| format!("\"{name}\" is not a number")),
    }
}

/// The time checks, run on every use (a cached answer ages): expired once
/// `now` is past `exp` + leeway, not yet valid while before `nbf` − leeway.
pub(crate) fn check_time(
    exp: Option<i64>,
    nbf: Option<i64>,
    now: i64,
    leeway: i64,
) -> Result<(), IntrospectionError> {
    if exp.is_some_and(|exp| now > exp.saturating_add(leeway)) {
        return Err(IntrospectionError::Expired);
    }
    if nbf.is_some_and(|nbf| now < nbf.saturating_sub(leeway)) {
        return Err(IntrospectionError::NotYetValid);
    }
    Ok(())
}

/// Puts the userinfo claims under `userinfo`. Its `sub` must be the
/// introspected `sub` when both are present (OpenID Connect Core §5.3.2):
/// otherwise the claims are about someone else and are not used.
pub(crate) fn merge_userinfo(
    claims: &mut Map<String, Value>,
    userinfo: Map<String, Value>,
) -> Result<(), String> {
    if let (Some(a), Some(b)) = (claims.get("sub"), userinfo.get("sub")) {
        if a != b {
            return Err("its sub differs from the introspected sub".into());
        }
    }
    claims.insert("userinfo".into(), Value::Object(userinfo));
    Ok(())
}

/// IdP-chosen strings are cut short before they reach a log line.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://idp.test";

    fn aud() -> Vec<String> {
        vec!["nats".into(), "other".into()]
    }

    fn run(v: Value) -> Result<Active, Result<IntrospectionError, String>> {
        run_with(v, &[], None)
    }

    fn run_with(
        v: Value,
        required: &[String],
        max_age_secs: Option<i64>,
    ) -> Result<Active, Result<IntrospectionError, String>> {
        let audiences = aud();
        let rules = Rules {
            issuer: ISS,
            audiences: &audiences,
            required_claims: required,
            max_age_secs,
            now: 10_000,
        };
        check(parse(v.to_string().as_bytes()).unwrap(), &rules)
    }

    #[test]
    fn body_must_be_a_json_object() {
        assert_eq!(parse(b"[]").unwrap_err(), "not a JSON object");
        assert_eq!(parse(b"<html>").unwrap_err(), "not JSON");
        assert_eq!(parse(b"").unwrap_err(), "not JSON");
        assert!(parse(br#"{"active":false}"#).is_ok());
    }

    #[test]
    fn active_must_be_a_boolean() {
        for bad in [
            json!({}),
            json!({"active": "true"}),
            json!({"active": 1}),
            json!({"active": null}),
        ] {
            assert!(matches!(run(bad.clone()), Err(Err(_))), "{bad}");
        }
        assert_eq!(
            run(json!({"active": false})),
            Err(Ok(IntrospectionError::Inactive))
        );
        // Inactive wins over anything else the body says.
        assert_eq!(
            run(json!({"active": false, "iss": "https://evil", "exp": "soon"})),
            Err(Ok(IntrospectionError::Inactive))
        );
    }

    #[test]
    fn an_active_answer_keeps_its_claims_and_times() {
        let a = run(json!({"active": true, "iss": ISS, "aud": ["x", "nats"], "sub": "alice",
            "scope": "nats", "client_id": "app", "exp": 2000.9, "nbf": 1000, "token_type": "Bearer"}))
        .unwrap();
        assert_eq!(a.exp, Some(2000));
        assert_eq!(a.nbf, Some(1000));
        assert_eq!(a.claims["sub"], "alice");
        assert_eq!(a.claims["client_id"], "app");
        assert!(!a.claims.contains_key("active"));
    }

    #[test]
    fn registered_claims_are_checked_when_present() {
        assert!(run(json!({"active": true})).is_ok());
        assert_eq!(
            run(json!({"active": true, "iss": "https://idp.test/"})),
            Err(Ok(IntrospectionError::Issuer))
        );
        assert_eq!(
            run(json!({"active": true, "aud": "someone-else"})),
            Err(Ok(IntrospectionError::Audience))
        );
        assert_eq!(
            run(json!({"active": true, "aud": []})),
            Err(Ok(IntrospectionError::Audience))
        );
        assert!(run(json!({"active": true, "aud": "other"})).is_ok());
        for bad in [
            json!({"active": true, "iss": 1}),
            json!({"active": true, "aud": 1}),
            json!({"active": true, "aud": ["nats", 2]}),
            json!({"active": true, "exp": "1700000000"}),
            json!({"active": true, "nbf": true}),
            json!({"active": true, "token_type": 3}),
        ] {
            assert!(matches!(run(bad.clone()), Err(Err(_))), "{bad}");
        }
    }

    #[test]
    fn only_bearer_access_tokens_are_accepted() {
        for ok in [
            "Bearer",
            "bearer",
            "access_token",
            "urn:ietf:params:oauth:token-type:access_token",
        ] {
            assert!(
                run(json!({"active": true, "token_type": ok})).is_ok(),
                "{ok}"
            );
        }
        for bad in ["refresh_token", "DPoP", "N_A", "id_token", "mac"] {
            assert_eq!(
                run(json!({"active": true, "token_type": bad})),
                Err(Ok(IntrospectionError::TokenType(bad.into()))),
                "{bad}"
            );
        }
        // `cnf` is kept for the decision's binding check (RFC 8705 §3.2),
        // which refuses what it cannot verify, as for JWTs.
        let bound = run(json!({"active": true, "cnf": {"jkt": "abc"}})).unwrap();
        assert_eq!(bound.claims["cnf"], json!({"jkt": "abc"}));
    }

    #[test]
    fn required_claims_and_max_token_age_apply_as_for_jwts() {
        let required = vec!["client_id".to_owned(), "ext.tenant".to_owned()];
        let ok = json!({"active": true, "client_id": "c", "ext": {"tenant": "t"}});
        assert!(run_with(ok, &required, None).is_ok());
        assert_eq!(
            run_with(json!({"active": true, "client_id": "c"}), &required, None),
            Err(Ok(IntrospectionError::MissingClaim("ext.tenant".into())))
        );
        // now = 10000, max age 100 s.
        assert_eq!(
            run_with(json!({"active": true}), &[], Some(100)),
            Err(Ok(IntrospectionError::MissingClaim("iat".into())))
        );
        assert_eq!(
            run_with(json!({"active": true, "iat": 9899}), &[], Some(100)),
            Err(Ok(IntrospectionError::TooOld { age_secs: 101 }))
        );
        let a = run_with(
            json!({"active": true, "iat": 9950, "exp": 20000}),
            &[],
            Some(100),
        )
        .unwrap();
        assert_eq!((a.exp, a.usable_until), (Some(20000), Some(10050)));
        let a = run_with(
            json!({"active": true, "iat": 9950, "exp": 10010}),
            &[],
            Some(100),
        )
        .unwrap();
        assert_eq!(a.usable_until, Some(10010));
        assert_eq!(
            run(json!({"active": true, "exp": 77}))
                .unwrap()
                .usable_until,
            Some(77)
        );
        assert!(matches!(
            run_with(json!({"active": true, "iat": "yesterday"}), &[], Some(100)),
            Err(Err(_))
        ));
    }

    #[test]
    fn a_userinfo_claim_in_the_introspection_answer_is_dropped() {
        let a = run(json!({"active": true, "userinfo": {"groups": ["admins"]}})).unwrap();
        assert!(!a.claims.contains_key("userinfo"));
    }

    #[test]
    fn time_checks_use_the_leeway() {
        assert_eq!(check_time(Some(100), None, 130, 30), Ok(()));
        assert_eq!(
            check_time(Some(100), None, 131, 30),
            Err(IntrospectionError::Expired)
        );
        assert_eq!(check_time(None, Some(100), 70, 30), Ok(()));
        assert_eq!(
            check_time(None, Some(100), 69, 30),
            Err(IntrospectionError::NotYetValid)
        );
        assert_eq!(check_time(None, None, i64::MAX, 30), Ok(()));
        assert_eq!(check_time(Some(i64::MAX), Some(i64::MIN), 0, 30), Ok(()));
    }

    #[test]
    fn userinfo_goes_under_its_own_name_and_must_be_about_the_same_subject() {
        let mut claims = json!({"sub": "alice", "scope": "openid"})
            .as_object()
            .unwrap()
            .clone();
        let info = json!({"sub": "alice", "email": "a@example.test", "groups": ["ops"]});
        merge_userinfo(&mut claims, info.as_object().unwrap().clone()).unwrap();
        assert_eq!(claims["userinfo"]["groups"], json!(["ops"]));
        assert_eq!(
            crate::claims::lookup(&claims, "userinfo.email").unwrap(),
            Some(&json!("a@example.test"))
        );
        let mut claims = json!({"sub": "alice"}).as_object().unwrap().clone();
        let other = json!({"sub": "mallory", "groups": ["admins"]});
        assert!(merge_userinfo(&mut claims, other.as_object().unwrap().clone()).is_err());
        assert!(!claims.contains_key("userinfo"));
    }
}
