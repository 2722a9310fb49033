//! `doctor` against real nats-servers configured each way.

use crate::support::*;
use serde_json::Value;

fn doctor(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    all.push("--json");
    let o = run_cli(&all);
    let out = String::from_utf8_lossy(&o.stdout);
    let v = serde_json::from_str(&out).unwrap_or(Value::Null);
    (o.status.code().unwrap(), v)
}

fn ids(v: &Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect()
}

/// How nats-server announces its monitoring listener.
const MONITOR: &str = "Starting http monitor on ";

/// A server with `config` and monitoring, both on ports it picks itself.
fn monitored(config: &str) -> (NatsServer, String) {
    let server = NatsServer::start_any_port(&format!(
        "listen: 127.0.0.1:{PORT}\nhttp: 127.0.0.1:-1\n{config}"
    ));
    let http = server.logged_port(MONITOR);
    (server, format!("http://127.0.0.1:{http}"))
}

#[test]
fn an_open_server_is_critical() {
    let (_server, url) = monitored("");
    let (code, v) = doctor(&["--monitor", &url]);
    assert_eq!(code, 1, "{v}");
    let found = ids(&v);
    for id in [
        "auth_not_required",
        "anonymous_accepted",
        "auth_callout_absent",
    ] {
        assert!(
            found.contains(&id.to_owned()),
            "{id} missing from {found:?}"
        );
    }
    assert_eq!(v["critical"], true);
    // Human output names the same findings.
    let o = run_cli(&["doctor", "--monitor", &url]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("CRITICAL auth_not_required"));

    let (_server, url) = monitored("no_system_account: true\n");
    let (_, v) = doctor(&["--monitor", &url]);
    assert!(ids(&v).contains(&"no_system_account".to_owned()), "{v}");
}

#[test]
fn no_auth_user_lets_anonymous_clients_in() {
    let (_server, url) =
        monitored("accounts { A { users: [ {user: u, password: p} ] } }\nno_auth_user: u\n");
    let (code, v) = doctor(&["--monitor", &url]);
    assert_eq!(code, 1, "{v}");
    assert!(ids(&v).contains(&"anonymous_accepted".to_owned()), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_callout_has_no_critical_finding() {
    let env = Env::start(EnvOptions {
        nats_extra: "http: 127.0.0.1:-1\nmax_control_line: 16KB",
        ..Default::default()
    })
    .await;
    let url = format!("http://127.0.0.1:{}", env.nats.logged_port(MONITOR));
    let config = env.config_path();
    let (code, v) = doctor(&["--monitor", &url, "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        ids(&v),
        vec!["client_port_without_tls", "revocation_off"],
        "{v}"
    );
    assert_eq!(v["server"]["version"], "2.15.1");

    // A stray subscriber on the callout subject, outside the queue group.
    let stray = connect_user_pass(&env.nats.url(), "auth", "authpw")
        .await
        .unwrap()
        .nats;
    let _sub = stray.subscribe("$SYS.REQ.USER.AUTH").await.unwrap();
    stray.flush().await.unwrap();
    let (code, v) = doctor(&["--monitor", &url, "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "a warning does not fail: {v}");
    assert_eq!(
        ids(&v),
        vec![
            "client_port_without_tls",
            "revocation_off",
            "auth_callout_without_queue_group"
        ],
        "{v}"
    );

    // A config naming another callout account than the one being served.
    let other = env.dir.path().join("other.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[nats]", "[nats]\naccount = \"CALLOUT\"");
    std::fs::write(&other, text).unwrap();
    let (code, v) = doctor(&["--monitor", &url, "--config", other.to_str().unwrap()]);
    assert_eq!(code, 1, "{v}");
    assert!(
        ids(&v).contains(&"auth_callout_account_mismatch".to_owned()),
        "{v}"
    );
}

#[test]
fn an_unreachable_monitor_is_a_usage_error() {
    let port = free_port();
    let o = run_cli(&["doctor", "--monitor", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read the monitoring endpoint"));
}
