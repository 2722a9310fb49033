//! The `revoke`/`unrevoke`/`revocations`/`sessions` commands as an operator
//! runs them.

use super::*;

struct CliEnv {
    dir: tempfile::TempDir,
}

impl CliEnv {
    /// A service config for the commands; `system` adds the `[system]` table.
    fn new(url: &str, system: bool, extra: &str) -> CliEnv {
        let dir = tempfile::tempdir().unwrap();
        write_secret(&dir.path().join("sys.password"), "syspw\n");
        let system = if system {
            "[system]\nuser = \"sys\"\npassword_file = \"sys.password\"\n"
        } else {
            ""
        };
        let config = format!(
            r#"
[nats]
url = "{url}"
user = "auth"
password = "authpw"

[signing]
issuer_seed_file = "issuer.nk"

[[issuer]]
name = "corp"
issuer = "https://idp.example.test"
audience = "nats"

[[issuer]]
name = "github"
issuer = "https://token.actions.example.test"
audience = "nats"

[policy]
file = "policy.toml"

{system}
[revocation]
bucket = "{BUCKET}"
{extra}
"#
        );
        std::fs::write(dir.path().join("callout.toml"), config).unwrap();
        CliEnv { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("callout.toml")
    }

    fn run(&self, args: &[&str]) -> (i32, Value, String) {
        let config = self.config();
        let mut all = vec![args[0], "--config", config.to_str().unwrap()];
        all.extend(&args[1..]);
        let out = run_cli(&all);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (
            out.status.code().unwrap_or(-1),
            json,
            format!("{stdout}{stderr}"),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_command_closes_the_subjects_connections_on_every_server() {
    let nodes = Nodes::start(3);
    nodes.ready().await;
    let _callout = responder(&nodes).await;
    let env = CliEnv::new(&nodes.url(0), true, "");
    let mut alices = Vec::new();
    for i in 0..3 {
        alices.push(user(&nodes, i, &token("corp", "alice")).await.0);
    }
    let (github_alice, _, _) = user(&nodes, 1, &token("github", "alice")).await;
    let (bob, _, _) = user(&nodes, 2, &token("corp", "bob")).await;

    let (code, out, text) = env.run(&[
        "revoke",
        "--subject",
        "alice",
        "--issuer",
        "corp",
        "--reason",
        "left the company",
        "--for",
        "1h",
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(out["closed"], 3, "{text}");
    assert_eq!(out["failed"], 0, "{text}");
    assert_eq!(
        out["revoked"]["selector"],
        json!({"subject": "alice", "issuer": "corp"})
    );
    assert_eq!(out["revoked"]["reason"], "left the company");
    let created = out["revoked"]["created_at"].as_i64().unwrap();
    assert_eq!(out["revoked"]["expires_at"].as_i64(), Some(created + 3600));
    for alice in &mut alices {
        alice
            .expect_error("disconnected", Duration::from_secs(5))
            .await;
    }
    // The test's responder knows no revocations (the service will deny the
    // reconnect), so the closed clients may come back: close them for good.
    drop(alices);
    let sys = nodes.system(0).await;
    let corp_alice = ConnzQuery {
        user: Some("corp/alice".into()),
        account: None,
    };
    let gone = wait_until_async(Duration::from_secs(10), || async {
        sys.connz(&corp_alice)
            .await
            .is_ok_and(|g| g.connections.is_empty())
    })
    .await;
    assert!(gone, "corp/alice still connected");
    // Another issuer's alice and bob are left alone.
    round_trip(&github_alice.nats, "github.alice").await;
    round_trip(&bob.nats, "bob").await;

    let (code, list, text) = env.run(&["revocations", "--json"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{text}");
    assert_eq!(list[0]["reason"], "left the company");
    let (code, _, text) = env.run(&["revocations"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("subject \"alice\" of issuer \"corp\""),
        "{text}"
    );

    let (code, sessions, text) = env.run(&["sessions", "--json"]);
    assert_eq!(code, 0, "{text}");
    let mut who: Vec<String> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["issuer"].as_str().unwrap(),
                s["subject"].as_str().unwrap()
            )
        })
        .collect();
    who.sort();
    assert_eq!(who, vec!["corp/bob", "github/alice"], "{text}");
    let (code, _, text) = env.run(&["sessions"]);
    assert_eq!(code, 0);
    assert!(text.contains("corp/bob"), "{text}");

    let (code, out, text) = env.run(&["unrevoke", "--subject", "alice", "--issuer", "corp"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        out["unrevoked"],
        json!({"subject": "alice", "issuer": "corp"})
    );
    let (code, _, text) = env.run(&["unrevoke", "--subject", "alice", "--issuer", "corp"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no revocation in force"), "{text}");
    let (code, list, _) = env.run(&["revocations", "--json"]);
    assert_eq!((code, list), (0, json!([])));

    // Without --issuer: the subject under every issuer.
    let (code, out, text) = env.run(&["revoke", "--subject", "alice"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(out["closed"], 1, "{text}");
    assert_eq!(out["revoked"]["reason"], "revoked by an operator");
    assert!(out["revoked"].get("expires_at").is_none(), "{text}");
    let mut github_alice = github_alice;
    github_alice
        .expect_error("disconnected", Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_refuse_bad_input_with_exit_2_and_a_reason() {
    let nodes = Nodes::start(1);
    nodes.ready().await;
    let env = CliEnv::new(&nodes.url(0), true, "");
    let no_system = CliEnv::new(&nodes.url(0), false, "");
    let account = nkeys::KeyPair::new_account().public_key();
    let cases: Vec<(&CliEnv, Vec<&str>, &str)> = vec![
        (&env, vec!["revoke"], "--subject"),
        (
            &env,
            vec!["revoke", "--subject", "a", "--jti", "b"],
            "cannot be used with",
        ),
        (
            &env,
            vec!["revoke", "--jti", "b", "--issuer", "corp"],
            "--issuer goes with --subject",
        ),
        (
            &env,
            vec!["unrevoke", "--jti", "b", "--issuer", "corp"],
            "--issuer goes with --subject",
        ),
        (
            &env,
            vec!["revoke", "--subject", "a", "--issuer", "nope"],
            "not an [[issuer]] name",
        ),
        (&env, vec!["revoke", "--subject", ""], "subject is empty"),
        (
            &env,
            vec!["revoke", "--user-nkey", &account],
            "not a user public key",
        ),
        (
            &env,
            vec!["revoke", "--subject", "a", "--for", "0s"],
            "at least 1s",
        ),
        (
            &env,
            vec!["revoke", "--subject", "a", "--for", "soon"],
            "--for",
        ),
        (
            &env,
            vec!["revoke", "--subject", "a", "--reason", ""],
            "--reason",
        ),
        (
            &no_system,
            vec!["revoke", "--subject", "a"],
            "needs a [system] table",
        ),
        (&no_system, vec!["sessions"], "needs a [system] table"),
        (&env, vec!["unrevoke"], "--subject"),
        (&env, vec!["unrevoke", "--subject", "a"], "does not exist"),
        (&env, vec!["revocations"], "does not exist"),
    ];
    for (e, args, needle) in cases {
        let (code, _, text) = e.run(&args);
        assert_eq!(code, 2, "{args:?}: {text}");
        assert!(text.contains(needle), "{args:?}: {text}");
    }
    // A bad [system] table is a config error naming the file.
    let broken = CliEnv::new(&nodes.url(0), false, "[system]\nuser = \"sys\"\n");
    let (code, _, text) = broken.run(&["sessions"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("callout.toml") && text.contains("[system] needs credentials"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_without_jetstream_is_refused_with_exit_2() {
    let issuer = nkeys::KeyPair::new_account();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    // The same node without any jetstream.
    let config = node_config(port, "n1", dir.path(), &issuer.public_key(), "")
        .replace(
            &format!("jetstream {{ store_dir: \"{}\" }}\n", dir.path().display()),
            "",
        )
        .replace("jetstream: enabled, ", "");
    let _server = NatsServer::start(port, &config);
    let env = CliEnv::new(&format!("nats://127.0.0.1:{port}"), true, "");
    let (code, _, text) = env.run(&["revoke", "--subject", "alice"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("JetStream is not available"), "{text}");
    let (code, _, text) = env.run(&["revocations"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("JetStream is not available"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_connection_connects_from_the_config_with_least_privilege() {
    let nodes = Nodes::start(1);
    nodes.ready().await;
    let _callout = responder(&nodes).await;
    let env = CliEnv::new(&nodes.url(0), true, "");
    let config = nats_oidc_callout::config::Config::load(&env.config()).unwrap();
    let sys = SystemClient::connect(&config, Persistence::Command)
        .await
        .unwrap()
        .with_timeouts(Duration::from_secs(2), Duration::from_secs(2));
    let (_c, server_id, cid) = user(&nodes, 0, &token("corp", "alice")).await;
    assert_eq!(sys.servers().await.unwrap().len(), 1);
    assert_eq!(sys.kick(&server_id, cid).await, Kick::Closed);
    // Anything beyond its grants is refused by the server (no answer).
    let other = sys
        .client()
        .request("$SYS.REQ.SERVER.PING.VARZ", "{}".into());
    let refused = tokio::time::timeout(Duration::from_secs(3), other).await;
    assert!(!matches!(refused, Ok(Ok(_))), "VARZ answered: {refused:?}");
}
