//! MQTT topic filters against the NATS subjects they map to: what a policy
//! must grant for each, and that the recipe grants exactly its topics.

use super::*;

/// What a policy must grant for MQTT filters, proved on two small policies.
const LAB_POLICY: &str = r#"
[defaults]
account = "APP"
ttl = "15m"

[permissions.children-only]
pub = { allow = ["lab.{claim.sub}.>"] }
sub = { allow = ["lab.{claim.sub}.>"] }

[permissions.no-mqtt-internals]
pub = { allow = ["lab.{claim.sub}", "lab.{claim.sub}.>"] }
sub = { allow = ["lab.{claim.sub}", "lab.{claim.sub}.>"], deny = ["$MQTT.>"] }

[[rules]]
name = "children-only"
issuer = "corp"
scopes = ["children-only"]
connection_types = ["mqtt"]
grant = ["children-only"]

[[rules]]
name = "no-mqtt-internals"
issuer = "corp"
scopes = ["no-mqtt-internals"]
connection_types = ["mqtt"]
grant = ["no-mqtt-internals"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_filters_need_their_mapped_subjects_granted() {
    let m = MqttEnv::start(LAB_POLICY, "corp").await;

    // Only `lab.a.>`: `lab/a/#` also needs `lab.a`, so it is refused; `+`
    // and exact topics are not, and a QoS 0 round trip works.
    let (status, events) = m
        .device(
            "a",
            "a",
            "children-only",
            &[
                "--qos",
                "0",
                "--sub",
                "lab/a/#",
                "--sub",
                "lab/a/+",
                "--pub",
                "lab/a/x=hi",
                "--expect",
                "1",
            ],
        )
        .finish();
    assert!(status.success(), "{events:?}");
    let codes: Vec<_> = of_kind(&events, "suback")
        .iter()
        .map(|e| (e["topic"].clone(), e["code"].clone()))
        .collect();
    assert_eq!(
        codes,
        vec![(json!("lab/a/#"), json!(128)), (json!("lab/a/+"), json!(0))]
    );
    assert_eq!(
        of_kind(&events, "message"),
        vec![&json!({"event": "message", "topic": "lab/a/x", "payload": "hi", "qos": 0})]
    );
    assert!(m
        .env
        .nats
        .log()
        .contains("Subscription Violation - Subject \"lab.a\""));

    // QoS 2 needs nothing more either (its PUBREL deliveries are internal too).
    let (status, events) = m
        .device(
            "a2",
            "a",
            "children-only",
            &[
                "--qos",
                "2",
                "--sub",
                "lab/a/+",
                "--pub",
                "lab/a/y=q2",
                "--expect",
                "1",
            ],
        )
        .finish();
    assert!(status.success(), "{events:?}");
    assert_eq!(of_kind(&events, "suback")[0]["code"], 2);
    assert_eq!(
        of_kind(&events, "message"),
        vec![&json!({"event": "message", "topic": "lab/a/y", "payload": "q2", "qos": 2})]
    );

    // Denying `$MQTT.>` leaves QoS 0 working but refuses QoS 1 subscriptions:
    // their JetStream consumers deliver on `$MQTT.sub.<id>`.
    let (status, events) = m
        .device(
            "b0",
            "b",
            "no-mqtt-internals",
            &[
                "--qos",
                "0",
                "--sub",
                "lab/b/#",
                "--pub",
                "lab/b/x=q0",
                "--expect",
                "1",
            ],
        )
        .finish();
    assert!(status.success(), "{events:?}");
    assert_eq!(of_kind(&events, "suback")[0]["code"], 0);
    let (_, events) = m
        .device(
            "b1",
            "b",
            "no-mqtt-internals",
            &["--qos", "1", "--sub", "lab/b/#"],
        )
        .finish();
    assert_eq!(of_kind(&events, "suback")[0]["code"], 128, "{events:?}");
    assert!(m
        .env
        .nats
        .log()
        .contains("Subscription Violation - Subject \"$MQTT.sub."));
}

#[test]
fn the_recipe_grants_exactly_its_topics_and_only_over_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    let claims = dir.path().join("claims.json");
    std::fs::write(
        &claims,
        json!({"iss": "https://idp.acme.example", "aud": "mqtt", "sub": "d1", "scope": "device"})
            .to_string(),
    )
    .unwrap();
    let config = root().join("policies/mqtt.callout.toml");
    let check = |client_type: &str| {
        let o = run_cli(&[
            "check",
            "--config",
            config.to_str().unwrap(),
            "--claims",
            claims.to_str().unwrap(),
            "--client-type",
            client_type,
        ]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&o.stderr));
        });
        (o.status.code(), v)
    };
    let (code, v) = check("mqtt");
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["rules"], json!(["devices"]));
    assert_eq!(
        v["permissions"],
        json!({
            "pub": {"allow": ["devices.d1.telemetry", "devices.d1.telemetry.>"], "deny": []},
            "sub": {"allow": ["devices.d1.commands", "devices.d1.commands.>"], "deny": []},
            "resp": null
        })
    );
    let (code, v) = check("nats");
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["error"], "no rule grants access");
}
