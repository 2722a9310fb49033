//! The files docker-compose.yml mounts (deploy/), run as they are: nats-server
//! runs deploy/nats-server.conf with its variables filled in, the service
//! (the real binary) runs deploy/callout.toml and deploy/policy.toml with
//! only the compose host names and the listen addresses moved to loopback.
//! Only the containers are left out.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::nats::{nats_server_bin, NatsServer, PORT};
use super::process::{run_cli, write_secret};
use super::service::ServiceProcess;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// nats-server and the service, configured by deploy/.
pub(crate) struct DeployStack {
    pub(crate) nats: NatsServer,
    pub(crate) service: ServiceProcess,
    dir: tempfile::TempDir,
}

impl DeployStack {
    /// `keycloak` is the URL standing in for Keycloak's two compose names:
    /// `http://localhost:8080` (the issuer, as the host sees it) and
    /// `http://keycloak:8080` (the compose network). None leaves them as
    /// they are, unreachable here.
    pub(crate) fn start(keycloak: Option<&str>) -> DeployStack {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir(d.join("keys")).unwrap();
        let issuer = nkeys::KeyPair::new_account();
        let xkey = nkeys::XKey::new();
        let password = format!("p{}", nkeys::KeyPair::new_user().public_key());
        write_secret(&d.join("keys/issuer.nk"), &issuer.seed().unwrap());
        write_secret(&d.join("keys/xkey.nk"), &xkey.seed().unwrap());
        write_secret(&d.join("keys/auth.password"), &password);

        let server_conf = root().join("deploy/nats-server.conf");
        let mut env = vec![
            ("CALLOUT_ISSUER", issuer.public_key()),
            ("CALLOUT_XKEY", xkey.public_key()),
            ("AUTH_PASSWORD", password),
            ("NATS_LISTEN", "127.0.0.1:4222".to_owned()),
        ];
        // The file as compose runs it, its variables from the environment.
        let check = Command::new(nats_server_bin())
            .args(["-t", "-c"])
            .arg(&server_conf)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("nats-server -t");
        assert!(
            check.status.success(),
            "nats-server -t {}: {}",
            server_conf.display(),
            String::from_utf8_lossy(&check.stderr)
        );
        // The server picks its port (-1) and says which.
        env.retain(|(k, _)| *k != "NATS_LISTEN");
        env.push(("NATS_LISTEN", format!("127.0.0.1:{PORT}")));
        let mut conf = std::fs::read_to_string(&server_conf).unwrap();
        for (name, value) in &env {
            let var = format!("${name}");
            assert!(conf.contains(&var), "{var} not in deploy/nats-server.conf");
            conf = conf.replace(&var, value);
        }
        let nats = NatsServer::start_any_port(&conf);

        let mut config = std::fs::read_to_string(root().join("deploy/callout.toml")).unwrap();
        let mut moves = vec![
            ("nats://nats:4222", nats.url()),
            ("0.0.0.0:9090", "127.0.0.1:0".to_owned()),
        ];
        if let Some(url) = keycloak {
            moves.push(("http://localhost:8080", url.to_owned()));
            moves.push(("http://keycloak:8080", url.to_owned()));
        }
        for (from, to) in moves {
            assert!(config.contains(from), "{from} not in deploy/callout.toml");
            config = config.replace(from, &to);
        }
        std::fs::write(d.join("callout.toml"), config).unwrap();
        std::fs::copy(root().join("deploy/policy.toml"), d.join("policy.toml")).unwrap();
        let validate = run_cli(&[
            "validate",
            "--config",
            d.join("callout.toml").to_str().unwrap(),
        ]);
        let said = String::from_utf8_lossy(&validate.stderr);
        assert!(validate.status.success(), "{said}");
        assert!(!said.contains("warning"), "deploy/ validates with {said}");
        let service = ServiceProcess::start(&d.join("callout.toml"));
        DeployStack { nats, service, dir }
    }

    /// The service config as run (deploy/callout.toml, hosts moved).
    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join("callout.toml")
    }

    /// The service's `/readyz`, `/healthz` and `/metrics` base URL.
    pub(crate) fn http_url(&self) -> String {
        format!("http://{}", self.service.http_addr())
    }
}
