//! MQTT clients through nats-server's MQTT listener, with the access token as
//! the MQTT password: the recipe `policies/mqtt.toml` driven by the example
//! client `examples/mqtt/device.py` (PyPI paho-mqtt, installed by
//! `scripts/setup/mqtt.sh`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(15);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// paho-mqtt's venv; missing is a failure, never a skip.
fn python() -> PathBuf {
    let python = root().join(".tools/mqtt-venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing — run scripts/setup/mqtt.sh",
        python.display()
    );
    python
}

/// A deployment with an MQTT listener: JetStream on, for the APP account too.
struct MqttEnv {
    env: Env,
    mqtt_port: u16,
    _store: tempfile::TempDir,
}

impl MqttEnv {
    async fn start(policy: &str, issuer_name: &str) -> MqttEnv {
        let store = tempfile::tempdir().expect("tempdir");
        let nats_extra = format!(
            "server_name: mqtt-test\njetstream {{ store_dir: \"{}\" }}\nmqtt {{ listen: 127.0.0.1:-1 }}",
            store.path().display()
        );
        let env = Env::start(EnvOptions {
            policy,
            issuer_name,
            app_jetstream: true,
            // Unsealed requests, so the test can read what the server sends.
            xkey: false,
            nats_extra: &nats_extra,
            ..Default::default()
        })
        .await;
        // The server picked the port (-1) and says which.
        let mqtt_port = env
            .nats
            .logged_port("Listening for MQTT clients on mqtt://");
        MqttEnv {
            env,
            mqtt_port,
            _store: store,
        }
    }

    /// Runs `device.py` as `client_id` with a token for `sub` with `scope`.
    fn device(&self, client_id: &str, sub: &str, scope: &str, args: &[&str]) -> Device {
        let token = self.env.token(sub, scope);
        Device::spawn(self.env.dir.path(), self.mqtt_port, client_id, &token, args)
    }
}

/// One run of the example client, its JSON events read as they come.
struct Device {
    child: Child,
    events: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Device {
    fn spawn(dir: &Path, port: u16, client_id: &str, token: &str, args: &[&str]) -> Device {
        let token_file = dir.join(format!("token-{client_id}"));
        write_secret(&token_file, token);
        let mut cmd = Command::new(python());
        cmd.arg(root().join("examples/mqtt/device.py"))
            .args(["--port", &port.to_string(), "--client-id", client_id])
            .arg("--token-file")
            .arg(&token_file)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start device.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line).unwrap_or_else(
                    |e| json!({"event": "unparsed", "line": line, "error": e.to_string()}),
                );
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        Device {
            child,
            events,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for an event of kind `kind` for which `pred` holds.
    fn wait_for(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + LIMIT;
        if let Some(e) = self.seen.iter().find(|e| e["event"] == kind && pred(e)) {
            return e.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) => {
                    self.seen.push(e.clone());
                    if e["event"] == kind && pred(&e) {
                        return e;
                    }
                }
                Err(_) => panic!("no {kind} event within {LIMIT:?}; saw {:?}", self.seen),
            }
        }
    }

    /// Waits (bounded) for the client to exit; returns its status and every event.
    fn finish(mut self) -> (ExitStatus, Vec<Value>) {
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait device.py") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "device.py still running after {LIMIT:?}; saw {:?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(25));
        };
        // The reader thread ends with the pipe; collect what it still holds.
        while let Ok(e) = self.events.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(e);
        }
        (status, std::mem::take(&mut self.seen))
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// The service's audit line for the token subject `sub`.
fn decision_of(env: &Env, sub: &str) -> String {
    let log = env.service().log();
    let needle = format!("subject=\"{sub}\"");
    log.lines()
        .find(|l| l.contains("authorization decision") && l.contains(&needle))
        .unwrap_or_else(|| panic!("no decision for {sub}:\n{log}"))
        .to_owned()
}

fn recipe() -> String {
    std::fs::read_to_string(root().join("policies/mqtt.toml")).expect("policies/mqtt.toml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_and_consoles_talk_over_mqtt_within_the_recipe() {
    let m = MqttEnv::start(&recipe(), "devices").await;
    let mut tap = RequestTap::start(&m.env.nats.url()).await;

    // The console watches telemetry; `devices/+/telemetry/#` is granted
    // because the policy allows both `devices.*.telemetry` and its `.>`.
    let mut console = m.device(
        "console-1",
        "ops",
        "console",
        &[
            "--sub",
            "devices/+/telemetry/#",
            "--expect",
            "1",
            "--timeout",
            "20",
        ],
    );
    let suback = console.wait_for("suback", |_| true);
    assert_eq!(suback["code"], 1, "QoS 1 granted: {suback}");

    // The device subscribes to its commands, then reports at QoS 1.
    let mut device = m.device(
        "d1",
        "d1",
        "device",
        &[
            "--sub",
            "devices/d1/commands/#",
            "--pub",
            "devices/d1/telemetry/temp=21.5",
            "--expect",
            "1",
            "--timeout",
            "20",
        ],
    );
    let telemetry = console.wait_for("message", |_| true);
    assert_eq!(
        telemetry,
        json!({"event": "message", "topic": "devices/d1/telemetry/temp", "payload": "21.5", "qos": 1})
    );
    assert_eq!(device.wait_for("suback", |_| true)["code"], 1);

    // A second console publishes a command; the device receives it.
    let (status, events) = m
        .device(
            "console-2",
            "ops",
            "console",
            &["--pub", "devices/d1/commands/reboot=now"],
        )
        .finish();
    assert!(status.success(), "{events:?}");
    let command = device.wait_for("message", |_| true);
    assert_eq!(
        command,
        json!({"event": "message", "topic": "devices/d1/commands/reboot", "payload": "now", "qos": 1})
    );
    let (status, events) = device.finish();
    assert!(status.success(), "{events:?}");
    let (status, events) = console.finish();
    assert!(status.success(), "{events:?}");

    // What the server told the service about the MQTT client.
    let req = tap
        .next_where(LIMIT, |r| r["client_info"]["mqtt_id"] == "d1")
        .await;
    eprintln!("request for an MQTT client: {}", RequestTap::redacted(&req));
    let info = &req["client_info"];
    assert_eq!(info["type"], "mqtt");
    assert_eq!(info["kind"], "Client");
    assert_eq!(info["host"], "127.0.0.1");
    // The MQTT user name shows as the client's `user`; MQTT has no `name`.
    assert_eq!(info["user"], "token");
    assert!(info.get("name").is_none(), "{info}");
    assert_eq!(req["connect_opts"]["user"], "token");
    assert!(req["connect_opts"]["pass"]
        .as_str()
        .is_some_and(|p| !p.is_empty()));
    let line = decision_of(&m.env, "d1");
    assert!(
        line.contains("decision=\"allow\"") && line.contains("rules=devices"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_refusals_subscription_0x80_and_connack() {
    let m = MqttEnv::start(&recipe(), "devices").await;

    // Another device's commands: SUBACK 0x80; its own: granted.
    let (status, events) = m
        .device(
            "d1",
            "d1",
            "device",
            &[
                "--sub",
                "devices/d2/commands/#",
                "--sub",
                "devices/d1/commands/+",
            ],
        )
        .finish();
    assert!(status.success(), "{events:?}");
    let subacks = of_kind(&events, "suback");
    assert_eq!(
        subacks,
        vec![
            &json!({"event": "suback", "topic": "devices/d2/commands/#", "code": 128, "granted": false}),
            &json!({"event": "suback", "topic": "devices/d1/commands/+", "code": 1, "granted": true}),
        ]
    );
    // The refused filter, by name (its parent level or its `.>`).
    let refused = "Subscription Violation - Subject \"devices.d2.commands";
    assert!(
        wait_until(LIMIT, || m.env.nats.log().contains(refused)),
        "server log lacks {refused:?}:\n{}",
        m.env.nats.log()
    );

    // A publish outside the grant is dropped and logged; MQTT 3.1.1 has no
    // way to say so, and the server still acknowledges it at QoS 1.
    let (status, events) = m
        .device(
            "d1",
            "d1",
            "device",
            &["--pub", "devices/d2/telemetry=spoofed"],
        )
        .finish();
    assert!(status.success(), "{events:?}");
    assert_eq!(
        of_kind(&events, "published"),
        vec![&json!({"event": "published", "topic": "devices/d2/telemetry", "done": true})]
    );
    assert!(wait_until(LIMIT, || m.env.nats.log().contains(
        "Publish Violation - Subject \"devices.d2.telemetry\""
    )));

    // A token no rule grants: CONNACK "not authorized", reason in the server log.
    let (status, events) = m.device("d3", "d3", "telemetry:read", &[]).finish();
    assert!(!status.success());
    assert_eq!(
        of_kind(&events, "connack"),
        vec![&json!({"event": "connack", "code": 135, "reason": "Not authorized"})]
    );
    let needle = "Auth callout service returned an error: no rule grants access";
    assert!(
        wait_until(LIMIT, || m.env.nats.log().contains(needle)),
        "server log lacks {needle:?}:\n{}",
        m.env.nats.log()
    );
    let line = decision_of(&m.env, "d3");
    assert!(
        line.contains("decision=\"deny\"") && line.contains("no rule grants access"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_only_rules_do_not_grant_plain_nats() {
    let m = MqttEnv::start(&recipe(), "devices").await;
    let token = m.env.token("d1", "device");
    let (status, events) = m
        .device("d1", "d1", "device", &["--pub", "devices/d1/telemetry=up"])
        .finish();
    assert!(status.success(), "{events:?}");

    // The same token, as NATS password or token: no rule grants it.
    m.env
        .assert_refused(
            connect_user_pass(&m.env.nats.url(), "token", &token).await,
            "no rule grants access",
        )
        .await;
    m.env
        .assert_refused(
            connect_token(&m.env.nats.url(), &token).await,
            "no rule grants access",
        )
        .await;
}

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
