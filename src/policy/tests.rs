use std::path::Path;

use serde_json::json;

use super::*;
use crate::reason::ReasonClass;
use crate::subject::subject_within;

const SPEC_POLICY: &str = r#"
[defaults]
account = "APP"
ttl = "15m"

[permissions.metrics-reader]
sub = { allow = ["metrics.>"] }

[permissions.own-namespace]
pub = { allow = ["svc.{claim.sub}.>"] }
sub = { allow = ["svc.{claim.sub}.>", "_INBOX.>"] }
resp = { max = 1, ttl = "5s" }

[permissions.deployer]
pub = { allow = ["deploy.{claim.repository_owner}.>"], deny = ["deploy.*.prod"] }

[[rules]]
name = "metrics-readers"
issuer = "corp"
scopes = ["nats:metrics"]
grant = ["metrics-reader", "own-namespace"]

[[rules]]
name = "ci-main"
issuer = "github-actions"
claims = { repository = "acme/api", ref = "refs/heads/*" }
grant = ["deployer"]
account = "CI"
ttl = "5m"
"#;

pub(super) fn policy(src: &str) -> Policy {
    Policy::parse(Path::new("p.toml"), src, &Known::default()).unwrap()
}

pub(super) fn eval(
    p: &Policy,
    issuer: &str,
    claims: serde_json::Value,
    scopes: &[&str],
) -> Result<Grant, Denial> {
    let claims = claims.as_object().unwrap().clone();
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    p.evaluate(
        &Identity {
            issuer,
            claims: &claims,
            scopes: &scopes,
        },
        &Connection::default(),
    )
}

#[test]
fn spec_example_grants_union_of_sets() {
    let g = eval(
        &policy(SPEC_POLICY),
        "corp",
        json!({"sub": "svc-42"}),
        &["nats:metrics", "x"],
    )
    .unwrap();
    assert_eq!(g.account, "APP");
    assert_eq!(g.rules, vec!["metrics-readers"]);
    assert_eq!(g.permissions.publish.allow, vec!["svc.svc-42.>"]);
    assert_eq!(
        g.permissions.subscribe.allow,
        vec!["metrics.>", "svc.svc-42.>", "_INBOX.>"]
    );
    assert_eq!(
        g.permissions.resp,
        Some(ResponsePermission {
            max: 1,
            ttl: 5_000_000_000
        })
    );
    assert_eq!(g.ttl, Duration::from_secs(900));
}

#[test]
fn missing_scope_or_wrong_issuer_denies() {
    let p = policy(SPEC_POLICY);
    assert_eq!(
        eval(&p, "corp", json!({"sub": "a"}), &["other"]),
        Err(Denial::NoRule)
    );
    assert_eq!(
        eval(&p, "other", json!({"sub": "a"}), &["nats:metrics"]),
        Err(Denial::NoRule)
    );
}

#[test]
fn claims_glob_and_rule_account_and_ttl() {
    let p = policy(SPEC_POLICY);
    let c = json!({"repository": "acme/api", "ref": "refs/heads/main", "repository_owner": "acme"});
    let g = eval(&p, "github-actions", c, &[]).unwrap();
    assert_eq!(g.account, "CI");
    assert_eq!(g.ttl, Duration::from_secs(300));
    assert_eq!(g.permissions.publish.allow, vec!["deploy.acme.>"]);
    assert_eq!(g.permissions.publish.deny, vec!["deploy.*.prod"]);
    let tag = json!({"repository": "acme/api", "ref": "refs/tags/v1", "repository_owner": "acme"});
    assert_eq!(eval(&p, "github-actions", tag, &[]), Err(Denial::NoRule));
}

#[test]
fn interpolated_wildcard_claim_denies() {
    let p = policy(SPEC_POLICY);
    for sub in ["x.>", "*", ">", "a.b"] {
        assert_eq!(
            eval(&p, "corp", json!({ "sub": sub }), &["nats:metrics"]),
            Err(Denial::Interpolation(InterpolationError::NotAToken(
                "sub".into()
            )))
        );
    }
}

#[test]
fn matching_rules_must_agree_on_account() {
    let src = r#"
[permissions.a]
sub = { allow = ["a"] }
[[rules]]
name = "one"
scopes = ["a"]
grant = ["a"]
account = "A"
[[rules]]
name = "two"
scopes = ["b"]
grant = ["a"]
account = "B"
"#;
    let p = policy(src);
    assert_eq!(eval(&p, "x", json!({}), &["a"]).unwrap().account, "A");
    let err = eval(&p, "x", json!({}), &["a", "b"]).unwrap_err();
    assert!(matches!(err, Denial::AccountConflict { .. }), "{err}");
}

#[test]
fn subject_containment() {
    assert!(subject_within("orders.eu", "orders.*"));
    assert!(subject_within("orders.*", "orders.*"));
    assert!(subject_within("orders.eu.x", "orders.>"));
    assert!(subject_within("orders.>", "orders.>"));
    assert!(subject_within("orders.*.x", "orders.>"));
    assert!(!subject_within("orders", "orders.>"));
    assert!(!subject_within("orders.>", "orders.*"));
    assert!(!subject_within("orders.*", "orders.eu"));
    assert!(!subject_within(">", "orders.>"));
    assert!(!subject_within("orders.eu.x", "orders.*"));
    assert!(!subject_within("billing.eu", "orders.*"));
}

const SCOPED: &str = r#"
[defaults]
account = "APP"
[permissions.ceiling]
pub = { allow = ["orders.>", "tenant.{claim.tenant}.>"], deny = ["orders.admin.>"] }
sub = { allow = ["alerts.>"] }
[[rules]]
name = "scoped"
issuer = "corp"
scope_permissions = { pub_prefix = "nats:pub:", sub_prefix = "nats:sub:", ceiling = "ceiling" }
"#;

#[test]
fn scopes_become_permissions_within_the_ceiling() {
    let p = policy(SCOPED);
    let scopes = [
        "nats:pub:orders.*",
        "nats:pub:billing.>",
        "nats:sub:alerts.eu",
        "nats:pub:tenant.t1.x",
        "nats:pub:bad..subj",
        "openid",
    ];
    let g = eval(&p, "corp", json!({"tenant": "t1"}), &scopes).unwrap();
    assert_eq!(g.permissions.publish.allow, vec!["orders.*", "tenant.t1.x"]);
    assert_eq!(g.permissions.publish.deny, vec!["orders.admin.>"]);
    assert_eq!(g.permissions.subscribe.allow, vec!["alerts.eu"]);
    // No scope inside the ceiling: the rule matches but grants nothing.
    let g = eval(&p, "corp", json!({"tenant": "t1"}), &["nats:pub:billing.>"]).unwrap();
    assert_eq!(g.permissions.publish.deny, vec![">"]);
    assert_eq!(g.permissions.subscribe.deny, vec![">"]);
}

#[test]
fn explain_names_the_failing_condition_and_the_origin() {
    let p = policy(SPEC_POLICY);
    let claims = json!({"sub": "svc-42"});
    let claims = claims.as_object().unwrap();
    let scopes = vec!["nats:metrics".to_string()];
    let e = p.explain(
        &Identity {
            issuer: "corp",
            claims,
            scopes: &scopes,
        },
        &Connection::default(),
    );
    assert!(e.result.is_ok());
    assert_eq!(
        e.rules[0],
        RuleTrace {
            rule: "metrics-readers".into(),
            matched: true,
            reason: None
        }
    );
    assert_eq!(
        e.rules[1].reason.as_deref(),
        Some("issuer is \"corp\", rule wants \"github-actions\"")
    );
    assert!(e.origins.contains(&Origin {
        list: "pub.allow",
        subject: "svc.svc-42.>".into(),
        rule: "metrics-readers".into(),
        via: "permission set \"own-namespace\"".into(),
    }));
    let none: Vec<String> = vec![];
    let e = p.explain(
        &Identity {
            issuer: "corp",
            claims,
            scopes: &none,
        },
        &Connection::default(),
    );
    assert_eq!(
        e.rules[0].reason.as_deref(),
        Some("scope \"nats:metrics\" not granted")
    );
    assert_eq!(e.result, Err(Denial::NoRule));
}

#[test]
fn array_claims_and_lists_of_patterns() {
    let src = r#"
[defaults]
account = "APP"
[permissions.admin]
pub = { allow = ["admin.>"] }
[[rules]]
name = "admins"
claims = { "realm_access.roles" = ["admin", "ops"] }
grant = ["admin"]
"#;
    let p = policy(src);
    assert!(eval(
        &p,
        "k",
        json!({"realm_access": {"roles": ["user", "ops"]}}),
        &[]
    )
    .is_ok());
    assert_eq!(
        eval(&p, "k", json!({"realm_access": {"roles": ["user"]}}), &[]),
        Err(Denial::NoRule)
    );
    assert_eq!(eval(&p, "k", json!({}), &[]), Err(Denial::NoRule));
}

#[test]
fn connection_conditions_fail_closed_when_unknown() {
    let src = r#"
[defaults]
account = "APP"
[permissions.p]
sub = { allow = ["a"] }
[[rules]]
name = "browser"
connection_types = ["websocket"]
source_cidrs = ["10.0.0.0/8"]
grant = ["p"]
"#;
    let p = policy(src);
    let claims = json!({}).as_object().unwrap().clone();
    let who = Identity {
        issuer: "i",
        claims: &claims,
        scopes: &[],
    };
    let conn = |t, h| Connection {
        conn_type: Some(t),
        host: Some(h),
        certificate: None,
    };
    assert!(p.evaluate(&who, &conn("websocket", "10.1.2.3")).is_ok());
    for (label, c) in [
        ("another type", conn("nats", "10.1.2.3")),
        ("outside the range", conn("websocket", "192.168.1.1")),
        ("no address", conn("websocket", "not-an-ip")),
        ("unknown connection", Connection::default()),
    ] {
        assert_eq!(p.evaluate(&who, &c).err(), Some(Denial::NoRule), "{label}");
    }
}

#[test]
fn a_direction_with_no_allow_is_denied_entirely() {
    let g = eval(
        &policy(SPEC_POLICY),
        "corp",
        json!({"sub": "svc-42"}),
        &["nats:metrics"],
    )
    .unwrap();
    assert!(g.permissions.subscribe.deny.is_empty());
    let ci =
        json!({"repository": "acme/api", "ref": "refs/heads/main", "repository_owner": "acme"});
    let g = eval(&policy(SPEC_POLICY), "github-actions", ci, &[]).unwrap();
    assert!(g.permissions.subscribe.allow.is_empty());
    assert_eq!(g.permissions.subscribe.deny, vec![">"]);
}

/// A claim the token answers two ways denies the decision, naming it, even
/// when another rule would match.
#[test]
fn an_ambiguous_claim_denies_with_its_name() {
    let p = policy(
        "[defaults]\naccount = \"A\"\n[permissions.p]\nsub = { allow = [\"a\"] }\n\
         [[rules]]\nname = \"admins\"\nclaims = { \"realm_access.roles\" = \"admin\" }\ngrant = [\"p\"]\n\
         [[rules]]\nname = \"all\"\nscopes = [\"nats\"]\ngrant = [\"p\"]\n",
    );
    let shadowed = json!({"realm_access.roles": ["admin"], "realm_access": {"roles": ["user"]}});
    let err = eval(&p, "corp", shadowed, &["nats"]).unwrap_err();
    assert_eq!(err.class(), ReasonClass::ClaimAmbiguous);
    assert!(err.to_string().contains("\"realm_access.roles\""), "{err}");
    // Either reading alone is fine.
    for alone in [
        json!({"realm_access.roles": ["admin"]}),
        json!({"realm_access": {"roles": ["admin"]}}),
    ] {
        assert!(eval(&p, "corp", alone, &[]).is_ok());
    }
    let trace = p.explain(
        &Identity {
            issuer: "corp",
            claims: json!({"realm_access.roles": "x", "realm_access": {"roles": "y"}})
                .as_object()
                .unwrap(),
            scopes: &[],
        },
        &Connection::default(),
    );
    assert_eq!(
        trace.result.as_ref().map_err(Denial::class).err(),
        Some(ReasonClass::ClaimAmbiguous),
        "{:?}",
        trace.result
    );
    assert!(trace.rules[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("ambiguous"));
}

#[test]
fn a_tenant_named_like_reserved_subject_space_is_denied() {
    let p = policy(
        "[defaults]\naccount = \"A\"\n[permissions.p]\npub = { allow = [\"{claim.tenant}.>\"] }\n\
         [[rules]]\nname = \"r\"\nscopes = [\"nats\"]\ngrant = [\"p\"]\n",
    );
    for tenant in ["$SYS", "$JS", "$KV", "_INBOX"] {
        let err = eval(&p, "corp", json!({ "tenant": tenant }), &["nats"]).unwrap_err();
        assert_eq!(err.class(), ReasonClass::ClaimReservedSubject, "{tenant}");
        assert!(err.to_string().contains("\"tenant\""), "{err}");
    }
    let g = eval(&p, "corp", json!({"tenant": "acme"}), &["nats"]).unwrap();
    assert_eq!(g.permissions.publish.allow, vec!["acme.>"]);
    assert!(
        p.warnings()
            .iter()
            .any(|w| w.contains("first subject token")),
        "{:?}",
        p.warnings()
    );
}
