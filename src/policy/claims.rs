//! Reading claims: dotted paths into nested objects, glob matching, scopes.

use serde_json::{Map, Value};

/// Finds a claim by name. Each dot may descend one object level
/// (`realm_access.roles`), but keys may contain dots themselves: namespaced
/// claims (`https://example.com/roles`) and Kubernetes' `kubernetes.io`. At
/// each level the longest key that is a prefix of the path wins.
pub fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    name.rmatch_indices('.').find_map(|(i, _)| {
        let inner = claims.get(&name[..i])?.as_object()?;
        lookup(inner, &name[i + 1..])
    })
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

/// Scopes granted by a token: a space-separated string (`scope`) or an
/// array (`scp`), whichever shape the claim has.
pub fn scopes(claims: &Map<String, Value>, claim: &str) -> Vec<String> {
    match lookup(claims, claim) {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
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
    fn lookup_prefers_whole_keys_then_paths() {
        let c = json!({"https://x.io/roles": ["a"], "realm_access": {"roles": ["admin"]}});
        let c = c.as_object().unwrap();
        assert_eq!(lookup(c, "https://x.io/roles"), Some(&json!(["a"])));
        assert_eq!(lookup(c, "realm_access.roles"), Some(&json!(["admin"])));
        assert_eq!(lookup(c, "realm_access.missing"), None);
        assert_eq!(lookup(c, "nope"), None);
        let k8s =
            json!({"kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "api"}}});
        let k8s = k8s.as_object().unwrap();
        assert_eq!(
            lookup(k8s, "kubernetes.io.namespace"),
            Some(&json!("payments"))
        );
        assert_eq!(
            lookup(k8s, "kubernetes.io.serviceaccount.name"),
            Some(&json!("api"))
        );
        assert_eq!(lookup(k8s, "kubernetes.namespace"), None);
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
        let c = json!({"scope": "a  b", "scp": ["c", 1, "d"]});
        let c = c.as_object().unwrap();
        assert_eq!(scopes(c, "scope"), vec!["a", "b"]);
        assert_eq!(scopes(c, "scp"), vec!["c", "d"]);
        assert!(scopes(c, "none").is_empty());
    }
}
