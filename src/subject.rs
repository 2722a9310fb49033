//! NATS subject syntax: what a subject, a single token, and containment
//! between two subject patterns are. Used by the config, the policy and the
//! callout, none of which needs the others for it.

/// Longest value a claim may contribute to a subject.
pub const MAX_TOKEN_BYTES: usize = 256;

/// One literal subject token: what a claim value must be to enter a subject.
pub fn is_plain_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TOKEN_BYTES
        && !s
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control())
}

/// Checks a concrete NATS subject (wildcards allowed where NATS allows them).
pub fn validate_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("subject is empty".into());
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return Err("subject has an empty token".into());
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("subject contains whitespace or control characters".into());
        }
        if *t == ">" && i + 1 != tokens.len() {
            return Err("'>' may only be the last token".into());
        }
        if t.len() > 1 && t.contains(['*', '>']) {
            return Err(format!(
                "wildcard inside token {t:?}; wildcards must be whole tokens"
            ));
        }
    }
    Ok(())
}

/// Whether every subject matching `inner` also matches `outer`.
pub fn subject_within(inner: &str, outer: &str) -> bool {
    let a: Vec<&str> = inner.split('.').collect();
    for (i, b) in outer.split('.').enumerate() {
        if b == ">" {
            return a.len() > i;
        }
        match a.get(i) {
            Some(&">") | None => return false,
            Some(&"*") if b != "*" => return false,
            Some(t) if b != "*" && *t != b => return false,
            Some(_) => {}
        }
    }
    a.len() == outer.split('.').count()
}

/// A first token that names server-reserved subject space: `$SYS`, `$JS`,
/// `$KV`, `$MQTT`, … and the shared reply space `_INBOX`.
pub fn is_reserved_first_token(token: &str) -> bool {
    token.starts_with('$') || token == "_INBOX"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_checked_token_by_token() {
        assert!(validate_subject("a.b.>").is_ok());
        assert!(validate_subject("a.*.c").is_ok());
        for bad in ["", "a..b", "a.>.b", "a.b*", "a b", "a.\tb"] {
            assert!(validate_subject(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn containment_follows_wildcards() {
        assert!(subject_within("orders.eu.new", "orders.>"));
        assert!(subject_within("orders.*", "orders.>"));
        assert!(!subject_within("orders.>", "orders.*"));
        assert!(!subject_within("orders", "orders.>"));
        assert!(subject_within("_INBOX.x.y", ">"));
    }

    #[test]
    fn reserved_first_tokens() {
        for t in ["$SYS", "$JS", "$KV", "$MQTT", "$", "_INBOX"] {
            assert!(is_reserved_first_token(t), "{t}");
        }
        for t in ["_INBOX_acme", "tenant", "INBOX", "x$"] {
            assert!(!is_reserved_first_token(t), "{t}");
        }
    }
}
