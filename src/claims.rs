//! Reading claims: dotted paths into nested objects, glob matching, scopes.
//! Shared by token validation (`issuer`) and the policy, which do not
//! import each other.

use serde_json::{Map, Value};

/// Readings of one path tried before the path counts as ambiguous: a path
/// with `k` dots has up to `2^k` readings in claims built to have them all.
const MAX_READINGS: usize = 64;

/// A claim path that the token answers in more than one way: a literal
/// dotted key (`"realm_access.roles"`) beside a nested path
/// (`realm_access` → `roles`) with a different value. Someone may have
/// added the literal key to shadow the real claim, so neither is trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("claim {0:?} is ambiguous: the token holds it both as a dotted key and as a nested path, with different values")]
pub struct Ambiguous(pub String);

/// Finds a claim by name. Each dot may descend one object level
/// (`realm_access.roles`), but keys may contain dots themselves: namespaced
/// claims (`https://example.com/roles`) and Kubernetes' `kubernetes.io`.
/// Every way of reading the path is tried; they must agree.
pub fn lookup<'a>(
    claims: &'a Map<String, Value>,
    path: &str,
) -> Result<Option<&'a Value>, Ambiguous> {
    let mut found = Vec::new();
    if !readings(claims, path, &mut found) {
        return Err(Ambiguous(path.to_owned()));
    }
    let Some((first, rest)) = found.split_first() else {
        return Ok(None);
    };
    if rest.iter().any(|v| v != first) {
        return Err(Ambiguous(path.to_owned()));
    }
    Ok(Some(first))
}

/// Collects the values at every reading of `path`; false when there are
/// more than [`MAX_READINGS`].
fn readings<'a>(claims: &'a Map<String, Value>, path: &str, out: &mut Vec<&'a Value>) -> bool {
    if let Some(v) = claims.get(path) {
        out.push(v);
    }
    for (i, _) in path.match_indices('.') {
        if let Some(Value::Object(inner)) = claims.get(&path[..i]) {
            if !readings(inner, &path[i + 1..], out) {
                return false;
            }
        }
        if out.len() > MAX_READINGS {
            return false;
        }
    }
    out.len() <= MAX_READINGS
}

/// The top-level keys any reading of `path` starts from: what must be kept
/// of a token's claims for [`lookup`] to answer the same on the kept part.
pub fn roots(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('.')
        .map(move |(i, _)| &path[..i])
        .chain(std::iter::once(path))
}

/// Claims every cached token keeps whatever the policy reads: the subject,
/// the expiry, what revocations select on (`jti`, `client_id`, `azp`,
/// `cid`) and the certificate binding (`cnf`); the scope claim is added.
pub const CACHED_ALWAYS: [&str; 7] = ["sub", "exp", "jti", "client_id", "azp", "cid", "cnf"];

/// The part of `claims` a cache keeps: [`CACHED_ALWAYS`], the scope claim
/// and `paths`, such that [`lookup`] answers every kept path on it exactly
/// as on all the claims. A path with one reading is stored under its whole
/// name (lookup tries the whole name first). A path the token answers two
/// ways keeps every top-level claim any reading starts from, so the
/// ambiguity, and the denial it causes, survive the cache.
pub fn kept(
    claims: &Map<String, Value>,
    scope_claim: &str,
    paths: &[String],
) -> Map<String, Value> {
    let mut out = Map::new();
    let always = CACHED_ALWAYS.into_iter().chain([scope_claim]);
    for path in always.chain(paths.iter().map(String::as_str)) {
        match lookup(claims, path) {
            Ok(Some(v)) => {
                out.insert(path.to_owned(), v.clone());
            }
            Ok(None) => {}
            Err(_) => {
                for root in roots(path) {
                    if let Some(v) = claims.get(root) {
                        out.insert(root.to_owned(), v.clone());
                    }
                }
            }
        }
    }
    out
}

/// `*` matches any run of characters; everything else is literal.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = value.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    let Some((last, middle)) = tail.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whether a claim value satisfies one pattern: a string by glob, an array
/// when any string element does, booleans and integers by their JSON text.
pub fn value_matches(value: &Value, pattern: &str) -> bool {
    match value {
        Value::String(s) => glob_match(pattern, s),
        Value::Array(items) => items.iter().any(|i| match i {
            Value::Array(_) => false,
            other => value_matches(other, pattern),
        }),
        Value::Bool(b) => pattern == if *b { "true" } else { "false" },
        Value::Number(n) => pattern == n.to_string(),
        Value::Null | Value::Object(_) => false,
    }
}

/// Scopes granted by a token: a string of scopes separated by spaces
/// (`scope`, RFC 6749 §3.3: U+0020 only, so `"x\tnats"` is one scope) or an
/// array (`scp`), whichever shape the claim has. An ambiguous claim grants
/// no scope.
pub fn scopes(claims: &Map<String, Value>, claim: &str) -> Vec<String> {
    match lookup(claims, claim) {
        Ok(Some(Value::String(s))) => s
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Ok(Some(Value::Array(items))) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn glob() {
        assert!(glob_match("refs/heads/*", "refs/heads/main"));
        assert!(glob_match("refs/heads/*", "refs/heads/"));
        assert!(!glob_match("refs/heads/*", "refs/tags/v1"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn lookup_reads_whole_keys_and_paths() {
        let c = map(json!({"https://x.io/roles": ["a"], "realm_access": {"roles": ["admin"]}}));
        assert_eq!(lookup(&c, "https://x.io/roles"), Ok(Some(&json!(["a"]))));
        assert_eq!(
            lookup(&c, "realm_access.roles"),
            Ok(Some(&json!(["admin"])))
        );
        assert_eq!(lookup(&c, "realm_access.missing"), Ok(None));
        assert_eq!(lookup(&c, "nope"), Ok(None));
        let k8s = map(
            json!({"kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "api"}}}),
        );
        assert_eq!(
            lookup(&k8s, "kubernetes.io.namespace"),
            Ok(Some(&json!("payments")))
        );
        assert_eq!(
            lookup(&k8s, "kubernetes.io.serviceaccount.name"),
            Ok(Some(&json!("api")))
        );
        assert_eq!(lookup(&k8s, "kubernetes.namespace"), Ok(None));
    }

    #[test]
    fn a_literal_dotted_key_that_disagrees_with_the_nested_path_is_ambiguous() {
        let c = map(json!({"realm_access.roles": ["admin"], "realm_access": {"roles": ["user"]}}));
        assert_eq!(
            lookup(&c, "realm_access.roles"),
            Err(Ambiguous("realm_access.roles".into()))
        );
        // Deeper: {"a.b": {"c": 1}} against {"a": {"b.c": 2}}.
        let c = map(json!({"a.b": {"c": 1}, "a": {"b.c": 2}}));
        assert!(lookup(&c, "a.b.c").is_err());
        // Readings that agree are fine.
        let c = map(json!({"a.b": 1, "a": {"b": 1}}));
        assert_eq!(lookup(&c, "a.b"), Ok(Some(&json!(1))));
    }

    #[test]
    fn claims_built_to_explode_the_readings_are_ambiguous_not_slow() {
        // Every prefix of a 20-dot path present at every level.
        fn nest(depth: usize) -> Value {
            let mut m = Map::new();
            if depth > 0 {
                for k in 1..=3 {
                    m.insert(vec!["a"; k].join("."), nest(depth - 1));
                }
            } else {
                m.insert("a".into(), json!(1));
            }
            Value::Object(m)
        }
        let c = nest(8);
        let path = vec!["a"; 21].join(".");
        assert!(lookup(c.as_object().unwrap(), &path).is_err());
    }

    #[test]
    fn roots_are_every_dotted_prefix() {
        assert_eq!(
            roots("a.b.c").collect::<Vec<_>>(),
            vec!["a", "a.b", "a.b.c"]
        );
        assert_eq!(roots("sub").collect::<Vec<_>>(), vec!["sub"]);
    }

    #[test]
    fn values_match_by_shape() {
        assert!(value_matches(&json!(["x", "admin"]), "adm*"));
        assert!(!value_matches(&json!([["admin"]]), "admin"));
        assert!(value_matches(&json!(true), "true"));
        assert!(value_matches(&json!(7), "7"));
        assert!(!value_matches(&json!({"a": 1}), "*"));
        assert!(!value_matches(&json!(null), "*"));
    }

    #[test]
    fn scopes_from_string_or_array() {
        let c = map(json!({"scope": "a  b", "scp": ["c", 1, "d"]}));
        assert_eq!(scopes(&c, "scope"), vec!["a", "b"]);
        assert_eq!(scopes(&c, "scp"), vec!["c", "d"]);
        assert!(scopes(&c, "none").is_empty());
    }

    #[test]
    fn only_u0020_separates_scopes() {
        for joined in [
            "x\u{a0}nats",
            "x\tnats",
            "x\nnats",
            "x\u{2003}nats",
            "x\rnats",
        ] {
            let c = map(json!({ "scope": joined }));
            assert_eq!(scopes(&c, "scope"), vec![joined.to_owned()], "{joined:?}");
        }
    }
}
