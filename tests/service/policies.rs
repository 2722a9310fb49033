//! The shipped policies in `policies/`, each run through `check --claims`
//! on realistic claims, with the exact permissions asserted.

use std::path::PathBuf;

use crate::support::run_cli;
use jsonwebtoken::Algorithm;
use nats_oidc_callout::config::Config;
use nats_oidc_callout::decision::{Decider, Request};
use nats_oidc_callout::issuer::{jwks, LocalKey};
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
            "sub": {"allow": ["metrics.>", "svc.svc-42.>", "_INBOX.svc-42.>"], "deny": []},
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

/// Expected decision: (account, rules, permissions) or the denial reason.
type Expected = Result<(&'static str, Value, Value), &'static str>;
/// (policy name, claims file, expected decision).
type Case = (&'static str, &'static str, Expected);

/// Every shipped per-IdP policy, with realistic claims of that IdP and the
/// exact decision: (policy, claims file, account, rules, permissions) or
/// (policy, claims file, error).
fn provider_cases() -> Vec<Case> {
    let closed = json!({"allow": [], "deny": [">"]});
    let allow = |subjects: Value| json!({"allow": subjects, "deny": []});
    let perms = |p: Value, s: Value| json!({"pub": p, "sub": s, "resp": null});
    const NO_RULE: &str = "no rule grants access";
    vec![
        (
            "okta",
            "okta-service.json",
            Ok((
                "APP",
                json!(["orders-services"]),
                perms(
                    allow(json!(["orders.0oa8f5j3ecb5w3dF35d7.>"])),
                    allow(json!([
                        "orders.requests.>",
                        "_INBOX.0oa8f5j3ecb5w3dF35d7.>"
                    ])),
                ),
            )),
        ),
        (
            "okta",
            "okta-person.json",
            Ok((
                "APP",
                json!(["ops-people"]),
                perms(
                    allow(json!(["ops.query.>"])),
                    allow(json!(["ops.>", "_INBOX.00u1f2g3h4i5J6k7L5d7.>"])),
                ),
            )),
        ),
        ("okta", "okta-denied.json", Err(NO_RULE)),
        (
            "auth0",
            "auth0-device.json",
            Ok((
                "APP",
                json!(["devices"]),
                perms(
                    allow(json!(["telemetry.kD3vTq9Lw0c5xYb2.>"])),
                    closed.clone(),
                ),
            )),
        ),
        (
            "auth0",
            "auth0-analyst.json",
            Ok((
                "APP",
                json!(["dashboard-users"]),
                perms(
                    closed.clone(),
                    allow(json!([
                        "telemetry.>",
                        "_INBOX.auth0|64f0c2a1b3d4e5f6a7b8c9d0.>"
                    ])),
                ),
            )),
        ),
        ("auth0", "auth0-denied.json", Err(NO_RULE)),
        (
            "keycloak",
            "keycloak-writer.json",
            Ok((
                "APP",
                json!(["inventory-writers"]),
                perms(
                    allow(json!(["inventory.warehouse-scanner.>"])),
                    allow(json!(["_INBOX.warehouse-scanner.>"])),
                ),
            )),
        ),
        (
            "keycloak",
            "keycloak-reader.json",
            Ok((
                "APP",
                json!(["readers"]),
                perms(
                    closed.clone(),
                    allow(json!([
                        "inventory.>",
                        "_INBOX.a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d.>"
                    ])),
                ),
            )),
        ),
        (
            "keycloak",
            "keycloak-person.json",
            Ok((
                "APP",
                json!(["people"]),
                perms(
                    allow(json!(["user.7d1c2b3a-4e5f-4a6b-9c8d-0e1f2a3b4c5d.>"])),
                    allow(json!([
                        "user.7d1c2b3a-4e5f-4a6b-9c8d-0e1f2a3b4c5d.>",
                        "_INBOX.7d1c2b3a-4e5f-4a6b-9c8d-0e1f2a3b4c5d.>"
                    ])),
                ),
            )),
        ),
        ("keycloak", "keycloak-denied.json", Err(NO_RULE)),
        (
            "entra",
            "entra-daemon.json",
            Ok((
                "APP",
                json!(["workers"]),
                perms(
                    allow(json!(["jobs.results.5f1a3c9e-7b2d-4e8f-a6c0-d9b4e2f1a7c3"])),
                    allow(json!([
                        "jobs.queue.>",
                        "_INBOX.5f1a3c9e-7b2d-4e8f-a6c0-d9b4e2f1a7c3.>"
                    ])),
                ),
            )),
        ),
        (
            "entra",
            "entra-user.json",
            Ok((
                "APP",
                json!(["users"]),
                perms(
                    allow(json!(["users.d8b1e0a4-2c6f-4f3e-9a7b-1c5d8e2f4a60.outbox"])),
                    allow(json!([
                        "users.d8b1e0a4-2c6f-4f3e-9a7b-1c5d8e2f4a60.>",
                        "_INBOX.d8b1e0a4-2c6f-4f3e-9a7b-1c5d8e2f4a60.>"
                    ])),
                ),
            )),
        ),
        ("entra", "entra-denied.json", Err(NO_RULE)),
        (
            "github-actions",
            "github-deploy.json",
            Ok((
                "CI",
                json!(["prod-deploys", "ci-events"]),
                perms(
                    allow(json!(["deploy.1234567.requests", "ci.events.1234567"])),
                    allow(json!(["_INBOX.76543210.>"])),
                ),
            )),
        ),
        (
            "github-actions",
            "github-pr.json",
            Ok((
                "CI",
                json!(["ci-events"]),
                perms(allow(json!(["ci.events.1234567"])), closed.clone()),
            )),
        ),
        ("github-actions", "github-other-org.json", Err(NO_RULE)),
        // The names again, under ids that are not the configured ones: a
        // renamed organisation whose old name someone else registered.
        ("github-actions", "github-name-reused.json", Err(NO_RULE)),
        (
            "gitlab-ci",
            "gitlab-release.json",
            Ok((
                "CI",
                json!(["protected-releases"]),
                perms(
                    allow(json!(["releases.20.>"])),
                    allow(json!(["_INBOX.20.>"])),
                ),
            )),
        ),
        ("gitlab-ci", "gitlab-unprotected.json", Err(NO_RULE)),
        ("gitlab-ci", "gitlab-path-reused.json", Err(NO_RULE)),
        (
            "kubernetes",
            "kubernetes-payments.json",
            Ok((
                "APP",
                json!(["workloads"]),
                perms(
                    allow(json!(["k8s.payments.>"])),
                    allow(json!(["k8s.payments.>", "_INBOX.payments.>"])),
                ),
            )),
        ),
        ("kubernetes", "kubernetes-kube-system.json", Err(NO_RULE)),
        (
            "multi-tenant",
            "tenant-admin.json",
            Ok((
                "APP",
                json!(["tenants", "tenant-admins"]),
                json!({
                    "pub": allow(json!(["tenant.globex.>", "admin.globex.>"])),
                    "sub": allow(json!(["tenant.globex.>", "_INBOX.globex.u-100.>"])),
                    "resp": {"max": 1, "ttl": "5s"},
                }),
            )),
        ),
        (
            "scoped",
            "scoped-client.json",
            Ok((
                "APP",
                json!(["scoped-clients"]),
                perms(
                    json!({"allow": ["orders.eu.*", "tenant.globex.events"], "deny": ["orders.admin.>"]}),
                    allow(json!(["alerts.>"])),
                ),
            )),
        ),
        (
            "multi-tenant",
            "tenant-escape.json",
            Err("claim \"tenant\" is not a valid subject token"),
        ),
        (
            "multi-tenant",
            "tenant-star.json",
            Err("claim \"tenant\" is not a valid subject token"),
        ),
    ]
}

fn assert_decision(label: &str, v: &Value, expected: &Expected) {
    match expected {
        Ok((account, rules, permissions)) => {
            assert_eq!(v["allowed"], true, "{label}: {v}");
            assert_eq!(v["account"], *account, "{label}");
            assert_eq!(v["rules"], *rules, "{label}");
            assert_eq!(v["permissions"], *permissions, "{label}");
        }
        Err(reason) => {
            assert_eq!(v["allowed"], false, "{label}: {v}");
            assert_eq!(v["error"], *reason, "{label}");
        }
    }
}

#[test]
fn per_idp_policies_on_realistic_claims() {
    for (policy, claims, expected) in provider_cases() {
        let (code, v) = check(&format!("{policy}.callout.toml"), claims);
        assert_eq!(code, if expected.is_ok() { 0 } else { 1 }, "{claims}: {v}");
        assert_decision(claims, &v, &expected);
    }
}

/// The same claims as signed tokens through full validation: scope claim
/// shapes (`scp` array, `scope` string), array `aud`, namespaced and nested
/// claims survive signature and registered-claim checks unchanged.
#[tokio::test]
async fn per_idp_tokens_through_validation() {
    let rsa = LocalKey::generate(Algorithm::RS256).unwrap();
    let ec = LocalKey::generate(Algorithm::ES256).unwrap();
    for (policy, claims_file, expected) in provider_cases() {
        let key = if policy == "keycloak" { &ec } else { &rsa };
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            root().join(format!("policies/{policy}.toml")),
            dir.path().join(format!("{policy}.toml")),
        )
        .unwrap();
        std::fs::write(dir.path().join("jwks.json"), jwks(&[key]).to_string()).unwrap();
        let mut config =
            std::fs::read_to_string(root().join(format!("policies/{policy}.callout.toml")))
                .unwrap();
        config = config
            .lines()
            .map(|l| {
                if l.starts_with("jwks_file") {
                    format!(
                        "jwks_file = \"jwks.json\"\nalgorithms = [\"{:?}\"]",
                        key.alg
                    )
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::parse(&dir.path().join("callout.toml"), &config).unwrap();
        let decider = Decider::from_config(&config).unwrap();
        decider.issuers().load_all().await;
        let claims: Value = serde_json::from_slice(
            &std::fs::read(root().join("tests/fixtures/claims").join(claims_file)).unwrap(),
        )
        .unwrap();
        let token = key.sign(&claims);
        let now = crate::support::now();
        let outcome = decider
            .decide(&token, &Request::default(), now, false)
            .await;
        let v = nats_oidc_callout::cli::decision_json(&outcome);
        assert_decision(claims_file, &v, &expected);
    }
}
