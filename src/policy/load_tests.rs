//! What a policy file gets at load: errors with positions, warnings, and
//! the checks against the service config.

use std::path::Path;

use serde_json::json;

use super::tests::{eval, policy};
use super::*;

#[test]
fn an_unconditional_rule_with_another_account_is_a_load_error() {
    let src = "[permissions.a]\nsub = { allow = [\"a\"] }\n[[rules]]\nname = \"all\"\ngrant = [\"a\"]\naccount = \"A\"\n\
               [[rules]]\nname = \"ci\"\nscopes = [\"ci\"]\ngrant = [\"a\"]\naccount = \"B\"\n";
    let err = Policy::parse(Path::new("p.toml"), src, &Known::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("p.toml:3:") && err.contains("always conflicts"),
        "{err}"
    );
}

#[test]
fn templates_of_claims_that_never_fit_are_load_errors() {
    let src = "[defaults]\naccount = \"A\"\n[permissions.a]\nsub = { allow = [\"x.{claim.iss}\", \"y.{claim.jti}\"] }\n";
    let err = Policy::parse(Path::new("p.toml"), src, &Known::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("{claim.iss} can never be"), "{err}");
    assert!(!err.contains("jti"), "{err}");
    let ok = policy(
        "[defaults]\naccount = \"A\"\n[permissions.a]\nsub = { allow = [\"y.{claim.jti}\"] }\n",
    );
    assert!(
        ok.warnings()
            .iter()
            .any(|w| w.contains("{claim.jti} changes")),
        "{:?}",
        ok.warnings()
    );
}

#[test]
fn empty_policy_denies_everything() {
    let p = policy("");
    assert_eq!(
        eval(&p, "x", json!({"sub": "a"}), &["any"]),
        Err(Denial::NoRule)
    );
    assert!(!p.warnings().is_empty());
}

#[test]
fn errors_are_collected_with_positions() {
    let src = r#"[defaults]
account = "APP"

[permissions.p]
pub = { allow = ["ok.>", "bad..subject"] }

[[rules]]
name = "r"
issuer = "nope"
grant = ["p", "missing"]
connection_types = ["carrier-pigeon"]
"#;
    let issuers = vec!["corp".to_string()];
    let err = Policy::parse(
        Path::new("p.toml"),
        src,
        &Known {
            issuers: Some(&issuers),
            ..Known::default()
        },
    )
    .unwrap_err();
    let PolicyError::Invalid(errors) = err else {
        panic!("expected Invalid")
    };
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|e| e.starts_with("p.toml:5:") && e.contains("bad..subject")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|e| e.starts_with("p.toml:9:") && e.contains("unknown issuer \"nope\"")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|e| e.starts_with("p.toml:10:")
                && e.contains("undefined permission set \"missing\"")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|e| e.starts_with("p.toml:11:") && e.contains("carrier-pigeon")),
        "{text:?}"
    );
}

#[test]
fn unknown_key_in_rule_is_an_error() {
    let src = "[[rules]]\nname = \"r\"\ngrant = []\ngrnat = [\"x\"]\n";
    let err = Policy::parse(Path::new("p.toml"), src, &Known::default()).unwrap_err();
    assert!(err.to_string().contains("grnat"), "{err}");
}

#[test]
fn rule_without_any_account_is_an_error() {
    let src =
        "[permissions.p]\nsub = { allow = [\"a\"] }\n[[rules]]\nname = \"r\"\ngrant = [\"p\"]\n";
    let err = Policy::parse(Path::new("p.toml"), src, &Known::default()).unwrap_err();
    assert!(err.to_string().contains("no account"), "{err}");
}

#[test]
fn publish_everything_is_warned() {
    let src = "[defaults]\naccount = \"A\"\n[permissions.p]\npub = { allow = [\">\"] }\n[[rules]]\nname = \"r\"\ngrant = [\"p\"]\n";
    let p = policy(src);
    assert!(
        p.warnings().iter().any(|w| w.contains("every subject")),
        "{:?}",
        p.warnings()
    );
}

#[test]
fn claims_read_lists_rule_claims_and_template_claims() {
    let p = policy(
        "[defaults]\naccount = \"A\"\n[permissions.p]\npub = { allow = [\"t.{claim.org.id}.{claim.sub}\"] }\n\
         sub = { deny = [\"x.{claim.team}\"] }\n\
         [[rules]]\nname = \"r\"\nclaims = { \"realm_access.roles\" = \"admin\", team = \"*\" }\ngrant = [\"p\"]\n",
    );
    assert_eq!(
        p.claims_read().to_vec(),
        vec!["org.id", "realm_access.roles", "sub", "team"]
    );
}

#[test]
fn subscribing_to_every_inbox_is_warned_and_a_per_identity_inbox_is_not() {
    for shared in ["_INBOX.>", "_INBOX.*.*", ">", "*.>"] {
        let p = policy(&format!(
            "[defaults]\naccount = \"A\"\n[permissions.p]\nsub = {{ allow = [\"{shared}\"] }}\n\
             [[rules]]\nname = \"r\"\nscopes = [\"x\"]\ngrant = [\"p\"]\n"
        ));
        let w = p.warnings().iter().find(|w| w.contains("reply inbox"));
        assert!(
            w.is_some_and(|w| w.starts_with("p.toml:4:")),
            "{shared}: {:?}",
            p.warnings()
        );
    }
    for own in ["_INBOX.{claim.sub}.>", "_INBOX_acme.>", "_INBOX.acme.>"] {
        let p = policy(&format!(
            "[defaults]\naccount = \"A\"\n[permissions.p]\nsub = {{ allow = [\"{own}\"] }}\n\
             [[rules]]\nname = \"r\"\nscopes = [\"x\"]\ngrant = [\"p\"]\n"
        ));
        assert!(
            !p.warnings().iter().any(|w| w.contains("reply inbox")),
            "{own}: {:?}",
            p.warnings()
        );
    }
}

/// In operator mode every account a grant names must be signable; users in
/// the callout or system account are a warning.
#[test]
fn accounts_are_checked_against_the_service_config() {
    let src = "[defaults]\naccount = \"APP\"\n[permissions.p]\nsub = { allow = [\"a\"] }\n\
               [[rules]]\nname = \"r\"\nscopes = [\"x\"]\ngrant = [\"p\"]\naccount = \"OTHER\"\n";
    let known_accounts = vec!["APP".to_string()];
    let err = Policy::parse(
        Path::new("p.toml"),
        src,
        &Known {
            accounts: Some(&known_accounts),
            ..Known::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("p.toml:9:"), "{err}");
    assert!(
        err.to_string().contains("\"OTHER\" has no [[account]]"),
        "{err}"
    );
    let privileged = vec!["AUTH".to_string(), "SYS".to_string()];
    let p = Policy::parse(
        Path::new("p.toml"),
        &src.replace("OTHER", "AUTH"),
        &Known {
            privileged_accounts: &privileged,
            ..Known::default()
        },
    )
    .unwrap();
    assert!(
        p.warnings()
            .iter()
            .any(|w| w.starts_with("p.toml:9:") && w.contains("\"AUTH\"")),
        "{:?}",
        p.warnings()
    );
}
