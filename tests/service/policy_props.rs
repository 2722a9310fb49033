//! Properties of the policy engine that must hold for every input.

use std::path::Path;

use nats_oidc_callout::policy::{Connection, Denial, Identity, Known, Policy, SubjectTemplate};
use nats_oidc_callout::subject::is_plain_token;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn claims_with(name: &str, v: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(name.to_owned(), v);
    m
}

/// Any claim value: printable, unicode, wildcards, dots, whitespace, controls.
fn any_claim_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_-]{1,12}",
        "[ -~]{0,20}",
        "\\PC{0,20}",
        prop::sample::select(vec![
            "*", ">", "x.>", "a.b", "", " ", "\t", "a\u{0}b", "é.*"
        ])
        .prop_map(str::to_owned),
    ]
}

const SCOPES: [&str; 4] = ["a", "b", "c", "d"];

/// A rule over a small vocabulary, so generated rules overlap often.
fn rule_text(i: usize, scope: Option<usize>, set: usize) -> String {
    let scope = scope
        .map(|s| format!("scopes = [\"{}\"]\n", SCOPES[s]))
        .unwrap_or_default();
    format!("[[rules]]\nname = \"r{i}\"\nissuer = \"corp\"\n{scope}grant = [\"s{set}\"]\n")
}

fn policy_text(rules: &[(Option<usize>, usize)]) -> String {
    let mut text = String::from("[defaults]\naccount = \"APP\"\n");
    for s in 0..3 {
        text += &format!("[permissions.s{s}]\npub = {{ allow = [\"p{s}.{{claim.sub}}.>\"] }}\nsub = {{ allow = [\"q{s}.>\"] }}\n");
    }
    for (i, (scope, set)) in rules.iter().enumerate() {
        text += &rule_text(i, *scope, *set);
    }
    text
}

fn scopes_of(mask: u8) -> Vec<String> {
    (0..4)
        .filter(|b| mask & (1 << b) != 0)
        .map(|b| SCOPES[b].to_owned())
        .collect()
}

/// What may enter a subject as one token, written out here rather than
/// taken from the code under test: non-empty, at most 256 bytes, and no
/// `.`, `*`, `>`, whitespace or control character.
fn plain_token(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 256
        && !v
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
}

/// Whether any of `rules` applies to an issuer-`corp` token with `mask`'s
/// scopes: a rule without scopes always does, one with a scope when the
/// token has it.
fn some_rule_applies(rules: &[(Option<usize>, usize)], mask: u8) -> bool {
    rules
        .iter()
        .any(|(scope, _)| scope.is_none_or(|s| mask & (1 << s) != 0))
}

proptest! {
    #[test]
    fn interpolation_never_yields_wildcards_or_extra_tokens(v in any_claim_value()) {
        let t = SubjectTemplate::parse("tenant.{claim.x}.events").unwrap();
        let rendered = t.render(&claims_with("x", Value::String(v.clone())), None);
        // A value that is one plain token must render, and only such a value.
        prop_assert_eq!(is_plain_token(&v), plain_token(&v), "{:?}", v);
        prop_assert_eq!(rendered.is_ok(), plain_token(&v), "{:?}: {:?}", v, rendered);
        if let Ok(s) = rendered {
            prop_assert_eq!(s.split('.').count(), 3);
            prop_assert!(!s.contains('*') && !s.contains('>'));
            prop_assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control()));
            prop_assert_eq!(s, format!("tenant.{v}.events"));
        }
    }

    #[test]
    fn safe_values_render_as_themselves(v in "[A-Za-z0-9_-]{1,64}", n in any::<u32>()) {
        let t = SubjectTemplate::parse("tenant.{claim.x}.events").unwrap();
        let s = t.render(&claims_with("x", Value::String(v.clone())), None);
        prop_assert_eq!(s, Ok(format!("tenant.{v}.events")));
        // A whole-number claim enters as its decimal text.
        let s = t.render(&claims_with("x", json!(n)), None);
        prop_assert_eq!(s, Ok(format!("tenant.{n}.events")));
    }

    #[test]
    fn adding_a_rule_never_removes_an_allowed_subject(
        base in prop::collection::vec((prop::option::of(0usize..4), 0usize..3), 0..5),
        extra in (prop::option::of(0usize..4), 0usize..3),
        mask in 0u8..16,
    ) {
        let before = Policy::parse(Path::new("p.toml"), &policy_text(&base), &Known::default()).unwrap();
        let mut more = base.clone();
        more.push(extra);
        let after = Policy::parse(Path::new("p.toml"), &policy_text(&more), &Known::default()).unwrap();
        let claims = claims_with("sub", json!("u1"));
        let scopes = scopes_of(mask);
        let who = Identity { issuer: "corp", claims: &claims, scopes: &scopes };
        let g1 = before.evaluate(&who, &Connection::default());
        prop_assert_eq!(g1.is_ok(), some_rule_applies(&base, mask), "{:?}", g1);
        let g2 = after.evaluate(&who, &Connection::default());
        prop_assert_eq!(g2.is_ok(), some_rule_applies(&more, mask), "{:?}", g2);
        if let (Ok(g1), Ok(g2)) = (g1, g2) {
            for s in &g1.permissions.publish.allow {
                prop_assert!(g2.permissions.publish.allow.contains(s));
            }
            for s in &g1.permissions.subscribe.allow {
                prop_assert!(g2.permissions.subscribe.allow.contains(s));
            }
            // Each applying rule's set is granted, with the claim filled in.
            for (scope, set) in &more {
                if scope.is_none_or(|s| mask & (1 << s) != 0) {
                    let want = format!("p{set}.u1.>");
                    prop_assert!(g2.permissions.publish.allow.contains(&want), "{} missing", want);
                }
            }
        }
    }

    #[test]
    fn no_matching_rule_means_deny(
        rules in prop::collection::vec((prop::option::of(0usize..4), 0usize..3), 0..5),
        mask in 0u8..16,
        issuer in prop::sample::select(vec!["corp", "other"]),
    ) {
        let p = Policy::parse(Path::new("p.toml"), &policy_text(&rules), &Known::default()).unwrap();
        let claims = claims_with("sub", json!("u1"));
        let scopes = scopes_of(mask);
        let who = Identity { issuer, claims: &claims, scopes: &scopes };
        let e = p.explain(&who, &Connection::default());
        let any_matched = e.rules.iter().any(|r| r.matched);
        let applies = issuer == "corp" && some_rule_applies(&rules, mask);
        prop_assert_eq!(any_matched, applies);
        if applies {
            prop_assert!(e.result.is_ok(), "{:?}", e.result);
            prop_assert!(p.evaluate(&who, &Connection::default()).is_ok());
        } else {
            prop_assert_eq!(e.result, Err(Denial::NoRule));
            prop_assert_eq!(p.evaluate(&who, &Connection::default()).err(), Some(Denial::NoRule));
        }
    }
}
