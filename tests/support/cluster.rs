//! A JetStream cluster of nats-servers with the callout on every node, a
//! least-privilege system user, and several in-process service instances
//! sharing one config with `[system]` and `[revocation]`: what revocation
//! and live sessions need.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use nats_oidc_callout::config::{ConfigBuilder, IssuerBuilder};
use nats_oidc_callout::issuer::LocalKey;
use nats_oidc_callout::system::{SYSTEM_PUBLISH, SYSTEM_SUBSCRIBE};
use serde_json::{json, Value};

use super::env::{AUDIENCE, DEFAULT_POLICY};
use super::idp::Idp;
use super::nats::NatsServer;
use super::process::{free_port, run_cli, wait_until, write_secret};
use super::service::Service;

pub(crate) struct ClusterOptions<'a> {
    pub(crate) nodes: usize,
    pub(crate) instances: usize,
    pub(crate) policy: &'a str,
    /// Lines for `[revocation]` (e.g. `on_policy_change = "keep"`).
    pub(crate) revocation: &'a str,
    /// Lines for `[policy]`.
    pub(crate) policy_extra: &'a str,
}

impl Default for ClusterOptions<'_> {
    fn default() -> Self {
        Self {
            nodes: 3,
            instances: 2,
            policy: DEFAULT_POLICY,
            revocation: "",
            policy_extra: "watch = false",
        }
    }
}

pub(crate) struct Cluster {
    pub(crate) idp: Idp,
    pub(crate) key: LocalKey,
    pub(crate) nodes: Vec<NatsServer>,
    pub(crate) services: Vec<Service>,
    pub(crate) dir: tempfile::TempDir,
    _stores: tempfile::TempDir,
}

fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Cluster {
    pub(crate) async fn start(opts: ClusterOptions<'_>) -> Cluster {
        let key = LocalKey::generate(Algorithm::RS256).expect("rsa key");
        let idp = Idp::start(&[&key]).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let stores = tempfile::tempdir().expect("tempdir");
        let account = nkeys::KeyPair::new_account();
        write_secret(&dir.path().join("issuer.nk"), &account.seed().unwrap());
        write_secret(&dir.path().join("sys.password"), "syspw");
        std::fs::write(dir.path().join("policy.toml"), opts.policy).unwrap();
        let ports: Vec<(u16, u16)> = (0..opts.nodes)
            .map(|_| (free_port(), free_port()))
            .collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, r)| format!("nats-route://127.0.0.1:{r}"))
            .collect();
        let mut nodes = Vec::new();
        for (i, (port, route)) in ports.iter().enumerate() {
            let cluster = if opts.nodes > 1 {
                format!(
                    "cluster {{ name: c, listen: 127.0.0.1:{route}, routes: [{}] }}",
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            let config = format!(
                r#"listen: 127.0.0.1:{port}
server_name: n{n}
jetstream {{ store_dir: "{store}" }}
accounts {{
  AUTH {{ jetstream: enabled, users: [ {{ user: auth, password: authpw }} ] }}
  APP {{}}
  SYS {{ users: [ {{ user: sys, password: syspw,
    permissions: {{ publish: [ {publish} ], subscribe: [ {subscribe} ] }} }} ] }}
}}
system_account: SYS
authorization {{
  timeout: 2
  auth_callout {{
    issuer: {issuer}
    auth_users: [ auth, sys ]
    account: AUTH
  }}
}}
{cluster}
"#,
                n = i + 1,
                store = stores.path().join(format!("n{i}")).display(),
                publish = quoted(&SYSTEM_PUBLISH),
                subscribe = quoted(&SYSTEM_SUBSCRIBE),
                issuer = account.public_key(),
            );
            nodes.push(NatsServer::start(*port, &config));
        }
        let urls: Vec<String> = nodes.iter().map(NatsServer::url).collect();
        let urls_toml = format!(
            "urls = [{}]",
            urls.iter()
                .map(|u| format!("\"{u}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let config = ConfigBuilder::new(&urls[0], "issuer.nk", "policy.toml")
            .user_password("auth", "authpw")
            .issuer(
                IssuerBuilder::new("corp", &idp.issuer, &[AUDIENCE])
                    .algorithms(&["RS256", "ES256"])
                    .set("leeway", "\"2s\""),
            )
            .policy_lines(opts.policy_extra)
            .tables(&format!(
                "[system]\n{urls_toml}\nuser = \"sys\"\npassword_file = \"sys.password\"\n\n[revocation]\nbucket = \"revocations\"\n{}\n",
                opts.revocation
            ))
            .build()
            // One instance per node at most: all of them use every URL.
            .replace(&format!("url = \"{}\"", urls[0]), &urls_toml);
        std::fs::write(dir.path().join("callout.toml"), config).unwrap();
        let mut cluster = Cluster {
            idp,
            key,
            nodes,
            services: Vec::new(),
            dir,
            _stores: stores,
        };
        for _ in 0..opts.instances {
            cluster.start_instance();
        }
        cluster
    }

    /// Starts one more service instance on the shared config, and waits
    /// until it has read the revocation bucket (a new JetStream cluster
    /// elects its leaders first; until then every connect is denied).
    pub(crate) fn start_instance(&mut self) {
        let path = self.config_path();
        let service = Service::start(&path);
        let loaded = wait_until(Duration::from_secs(30), || {
            service.log().contains("revocations loaded")
        });
        assert!(loaded, "revocations never loaded:\n{}", service.log());
        self.services.push(service);
    }

    pub(crate) fn url(&self, node: usize) -> String {
        self.nodes[node].url()
    }

    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join("callout.toml")
    }

    pub(crate) fn claims(&self, sub: &str, scope: &str) -> Value {
        let now = super::now();
        json!({"iss": self.idp.issuer, "aud": AUDIENCE, "sub": sub, "scope": scope,
               "iat": now, "exp": now + 300, "jti": format!("jti-{sub}-{now}"),
               "client_id": format!("client-{sub}")})
    }

    pub(crate) fn token(&self, sub: &str, scope: &str) -> String {
        self.key.sign(&self.claims(sub, scope))
    }

    /// Runs the CLI with `--config` of this cluster.
    pub(crate) fn cli(&self, command: &str, args: &[&str]) -> std::process::Output {
        let config = self.config_path();
        let mut all = vec![command, "--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        run_cli(&all)
    }

    /// Every node's log.
    pub(crate) fn logs(&self) -> String {
        self.nodes.iter().map(NatsServer::log).collect()
    }

    /// How often the nodes logged `needle`.
    pub(crate) fn count(&self, needle: &str) -> usize {
        self.nodes.iter().map(|n| n.count(needle)).sum()
    }
}
