//! deploy/kubernetes as its pods see it: the service runs the base's
//! callout.toml and policy.toml from directories laid out the way kubelet
//! mounts ConfigMaps and Secrets (`..<timestamp>/` holding the files,
//! `..data` → it, each file a symlink through `..data`), and follows a
//! ConfigMap update, which kubelet makes by writing a new timestamped
//! directory and renaming a new `..data` link over the old one. nats-server
//! runs the nats.conf that deploy/kubernetes/helm-values.yaml makes the NATS
//! Helm chart produce (the expected one: scripts/k8s/nats_chart_conf.py).
//! (Rendering and schema checks of the manifests: scripts/check-kubernetes.sh,
//! run by scripts/test.sh.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;
use jsonwebtoken::Algorithm;
use nats_oidc_callout::issuer::LocalKey;
use serde_json::json;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn base_file(name: &str) -> String {
    std::fs::read_to_string(root().join("deploy/kubernetes").join(name)).unwrap()
}

/// A ConfigMap or Secret volume as kubelet's atomic writer keeps it.
struct KubeletVolume {
    dir: PathBuf,
    generation: u32,
}

impl KubeletVolume {
    fn create(dir: PathBuf, files: &[(&str, &str)]) -> KubeletVolume {
        std::fs::create_dir_all(&dir).unwrap();
        let mut v = KubeletVolume { dir, generation: 0 };
        v.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), v.dir.join(name)).unwrap();
        }
        v
    }

    fn timestamped(&self) -> String {
        format!(
            "..2026_11_30_15_04_{:02}.{:09}",
            self.generation,
            1 + self.generation
        )
    }

    /// The swap: a new `..<timestamp>` dir, `..data_tmp` → it, renamed over
    /// `..data`, then the old dir removed. The file names never change.
    fn update(&mut self, files: &[(&str, &str)]) {
        let old = (self.generation > 0).then(|| self.dir.join(self.timestamped()));
        self.generation += 1;
        let new = self.timestamped();
        std::fs::create_dir(self.dir.join(&new)).unwrap();
        for (name, content) in files {
            write_secret(&self.dir.join(&new).join(name), content);
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&new, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(old).unwrap();
        }
    }
}

/// `text` with `from` replaced; `from` must be there, so the test notices
/// when the base file changes under it.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "{from:?} not in deploy/kubernetes file"
    );
    text.replace(from, to)
}

/// The chart's nats.conf for these values, as one server on 127.0.0.1 whose
/// port is [`PORT`] (no cluster routes, monitoring port or pid file), with
/// the variables the pod gets from the Secret (`container.env`) filled in
/// from `secret`.
fn chart_nats_conf(secret: &[(&str, &str)]) -> String {
    let python = root().join(".tools/k8s-venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing — run scripts/setup.sh",
        python.display()
    );
    let out = std::process::Command::new(python)
        .arg(root().join("scripts/k8s/nats_chart_conf.py"))
        .arg("expected-json")
        .arg(root().join("deploy/kubernetes/helm-values.yaml"))
        .arg(root().join("scripts/k8s/nats-chart-2.14.2-base.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut conf: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let map = conf.as_object_mut().unwrap();
    for key in ["cluster", "http_port", "pid_file"] {
        assert!(map.remove(key).is_some(), "the chart config has no {key}");
    }
    map.insert("host".into(), json!("127.0.0.1"));
    map.insert("port".into(), json!(PORT));
    let mut text = serde_json::to_string_pretty(&conf).unwrap();
    for (var, value) in secret {
        let written = format!("\"<< ${var} >>\"");
        assert!(text.contains(&written), "{written} not in the chart config");
        text = text.replace(&written, &serde_json::to_string(value).unwrap());
    }
    // What is left in << >> is raw NATS config (units such as 16KB).
    text.replace("\"<< ", "")
        .replace(" >>\"", "")
        .replace(&format!("\"{PORT}\""), PORT)
}

async fn reloads_ok(service: &ServiceProcess) -> f64 {
    let (_, text) = http_get(&format!("http://{}/metrics", service.http_addr())).await;
    text.lines()
        .find_map(|l| l.strip_prefix("nats_oidc_callout_policy_reloads_total{result=\"ok\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no reload counter in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_update_by_symlink_swap_reloads_the_policy() {
    let key = LocalKey::generate(Algorithm::RS256).unwrap();
    let idp = Idp::start(&[&key]).await;
    let account = nkeys::KeyPair::new_account();
    let xkey = nkeys::XKey::new();
    let password = format!(
        "p{}",
        nkeys::KeyPair::new_user().public_key().to_lowercase()
    );
    let nats = NatsServer::start_any_port(&chart_nats_conf(&[
        ("AUTH_PASSWORD", &password),
        ("CALLOUT_ISSUER", &account.public_key()),
        ("CALLOUT_XKEY", &xkey.public_key()),
        ("SERVER_NAME", "nats-0"),
    ]));

    let mounts = tempfile::tempdir().unwrap();
    let m = mounts.path();
    let config = replaced(
        &base_file("callout.toml"),
        "nats://nats.nats.svc.cluster.local:4222",
        &nats.url(),
    );
    let config = replaced(&config, "https://sso.example.com/realms/nats", &idp.issuer);
    let config = replaced(&config, "0.0.0.0:9090", "127.0.0.1:0");
    // kubelet takes up to about a minute to swap; the test need not wait 10 s more.
    let config = replaced(
        &config,
        "watch_interval = \"10s\"",
        "watch_interval = \"200ms\"",
    );
    let _config = KubeletVolume::create(m.join("config"), &[("callout.toml", &config)]);
    let _keys = KubeletVolume::create(
        m.join("keys"),
        &[
            ("issuer.nk", &account.seed().unwrap()),
            ("xkey.nk", &xkey.seed().unwrap()),
            ("auth.password", &password),
        ],
    );
    let v1 = base_file("policy.toml");
    let mut policy = KubeletVolume::create(m.join("policy"), &[("policy.toml", &v1)]);
    let config_path = m.join("config/callout.toml");
    let validate = run_cli(&["validate", "--config", config_path.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&validate.stderr);
    assert!(validate.status.success(), "{said}");
    assert!(
        !said.contains("warning"),
        "deploy/kubernetes validates with {said}"
    );
    let service = ServiceProcess::start(&config_path);

    let now = now();
    let reader = key.sign(&json!({"iss": idp.issuer, "aud": "nats", "sub": "olga",
        "azp": "ops-console", "realm_access": {"roles": ["nats-reader"]},
        "iat": now, "exp": now + 300}));
    connect_token(&nats.url(), &reader)
        .await
        .expect("a nats-reader is allowed by the base policy");
    assert_eq!(reloads_ok(&service).await, 0.0);

    // The update: readers now need nats-admin.
    let v2 = replaced(
        &v1,
        r#"claims = { "realm_access.roles" = ["nats-reader", "nats-admin"] }"#,
        r#"claims = { "realm_access.roles" = "nats-admin" }"#,
    );
    policy.update(&[("policy.toml", &v2)]);
    let reloaded = wait_until_async(Duration::from_secs(10), || async {
        reloads_ok(&service).await == 1.0
    })
    .await;
    assert!(reloaded, "no reload after the swap:\n{}", service.log());
    assert!(connect_token(&nats.url(), &reader).await.is_err());
    let denied = "Auth callout service returned an error: no rule grants access";
    assert!(
        wait_until(Duration::from_secs(5), || nats.log().contains(denied)),
        "{}\n{}",
        nats.log(),
        service.log()
    );

    // And back: the next swap allows the reader again.
    policy.update(&[("policy.toml", &v1)]);
    let reloaded = wait_until_async(Duration::from_secs(10), || async {
        reloads_ok(&service).await == 2.0
    })
    .await;
    assert!(
        reloaded,
        "no reload after the second swap:\n{}",
        service.log()
    );
    connect_token(&nats.url(), &reader)
        .await
        .expect("the reader is allowed again");
    let log = service.log();
    assert_eq!(log.matches("policy file changed").count(), 2, "{log}");
}

/// The ConfigMap's policy is the shipped Keycloak policy (which
/// tests/peers/keycloak.rs runs against a real Keycloak), rule for rule.
#[test]
fn configmap_policy_is_the_keycloak_policy() {
    let parse = |text: &str| text.parse::<toml::Table>().unwrap();
    assert_eq!(
        parse(&base_file("policy.toml")),
        parse(&std::fs::read_to_string(root().join("policies/keycloak.toml")).unwrap())
    );
}
