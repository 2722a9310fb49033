//! The shipped policies in `policies/`, each run through `check --claims`
//! on realistic claims, with the exact permissions asserted.

mod common;

use std::path::PathBuf;

use common::run_cli;
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `check --claims` and returns (exit code, decision JSON).
fn check(config: &str, claims: &str) -> (i32, Value) {
    check_with(config, claims, &[])
}

fn check_with(config: &str, claims: &str, extra: &[&str]) -> (i32, Value) {
    let config = root().join("policies").join(config);
    let claims = root().join("tests/fixtures/claims").join(claims);
    let mut args = vec![
        "check",
        "--config",
        config.to_str().unwrap(),
        "--claims",
        claims.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = run_cli(&args);
    let out = String::from_utf8_lossy(&o.stdout);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code().unwrap(), v)
}

#[test]
fn example_policy_metrics_reader() {
    let (code, v) = check("example.callout.toml", "corp-metrics.json");
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["account"], "APP");
    assert_eq!(v["rules"], json!(["metrics-readers"]));
    assert_eq!(
        v["permissions"],
        json!({
            "pub": {"allow": ["svc.svc-42.>"], "deny": []},
            "sub": {"allow": ["metrics.>", "svc.svc-42.>", "_INBOX.>"], "deny": []},
            "resp": {"max": 1, "ttl": "5s"}
        })
    );
}

#[test]
fn example_policy_ci_main_branch_only() {
    let (code, v) = check("example.callout.toml", "github-main.json");
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["account"], "CI");
    assert_eq!(v["rules"], json!(["ci-main"]));
    assert_eq!(
        v["permissions"],
        json!({
            "pub": {"allow": ["deploy.acme.>"], "deny": ["deploy.*.prod"]},
            "sub": {"allow": [], "deny": [">"]},
            "resp": null
        })
    );

    let (code, v) = check("example.callout.toml", "github-tag.json");
    assert_eq!(code, 1);
    assert_eq!(v["error"], "no rule grants access");
}

#[test]
fn explain_shows_rule_verdicts_and_subject_origins() {
    let (code, v) = check_with("example.callout.toml", "corp-metrics.json", &["--explain"]);
    assert_eq!(code, 0);
    let rules = &v["explain"]["rules"];
    assert_eq!(
        rules[0],
        json!({"rule": "metrics-readers", "matched": true, "reason": null})
    );
    assert_eq!(
        rules[1],
        json!({"rule": "ci-main", "matched": false,
               "reason": "issuer is \"corp\", rule wants \"github-actions\""})
    );
    let origins = v["explain"]["origins"].as_array().unwrap();
    assert!(
        origins.contains(&json!({"list": "sub.allow", "subject": "metrics.>",
        "rule": "metrics-readers", "via": "permission set \"metrics-reader\""})),
        "{origins:?}"
    );

    let (code, v) = check_with("example.callout.toml", "github-tag.json", &["--explain"]);
    assert_eq!(code, 1);
    assert_eq!(
        v["explain"]["rules"][1]["reason"],
        "claim \"ref\" does not match [\"refs/heads/*\"]"
    );
    let (_, plain) = check("example.callout.toml", "github-tag.json");
    assert!(plain.get("explain").is_none());
}
