//! A real nats-server on 127.0.0.1, and the config that delegates its
//! authentication to the callout.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{read_log, wait_until, Proc};

/// The nats-server binary: `NATS_SERVER_BIN`, else the one `scripts/setup.sh`
/// installs. Missing is a failure, never a skip.
pub fn nats_server_bin() -> PathBuf {
    let path = std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/nats-server")
        });
    assert!(
        path.is_file(),
        "nats-server not found at {} — run scripts/setup.sh or set NATS_SERVER_BIN",
        path.display()
    );
    path
}

/// The placeholder [`NatsServer::start_any_port`] replaces with the port.
pub const PORT: &str = "{PORT}";

/// A real nats-server on 127.0.0.1.
pub struct NatsServer {
    proc: Option<Proc>,
    pub port: u16,
    dir: tempfile::TempDir,
    restarts: usize,
}

impl NatsServer {
    /// Starts nats-server with `config` (which must listen on `port`).
    pub fn start(port: u16, config: &str) -> NatsServer {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("nats-server.conf"), config).expect("write config");
        let mut s = NatsServer {
            proc: None,
            port,
            dir,
            restarts: 0,
        };
        s.launch();
        s
    }

    /// Starts nats-server with `template`, whose client port is [`PORT`]:
    /// the server picks a free port itself (`-1`), which is read back from
    /// its log and written into the config, so a restart keeps it. No port
    /// is chosen here and bound later by someone else.
    pub fn start_any_port(template: &str) -> NatsServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("nats-server.conf");
        std::fs::write(&conf, template.replace(PORT, "-1")).expect("write config");
        let mut cmd = Command::new(nats_server_bin());
        cmd.arg("-c").arg(&conf);
        let log = dir.path().join("nats-server.0.log");
        let proc = Proc::spawn(cmd, log.clone());
        let mut port = None;
        let found = wait_until(Duration::from_secs(10), || {
            port = client_port(&read_log(&log));
            port.is_some()
        });
        assert!(
            found,
            "nats-server did not report its port:\n{}",
            read_log(&log)
        );
        let port = port.expect("found");
        std::fs::write(&conf, template.replace(PORT, &port.to_string())).expect("write config");
        let s = NatsServer {
            proc: Some(proc),
            port,
            dir,
            restarts: 0,
        };
        s.wait_listening();
        s
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(nats_server_bin());
        cmd.arg("-c").arg(self.dir.path().join("nats-server.conf"));
        let log = self
            .dir
            .path()
            .join(format!("nats-server.{}.log", self.restarts));
        self.proc = Some(Proc::spawn(cmd, log));
        self.wait_listening();
    }

    fn wait_listening(&self) {
        let port = self.port;
        let up = wait_until(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "nats-server did not listen on {port}:\n{}", self.log());
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Everything the server has logged, across restarts.
    pub fn log(&self) -> String {
        (0..=self.restarts)
            .map(|i| read_log(&self.dir.path().join(format!("nats-server.{i}.log"))))
            .collect()
    }

    /// How often the server has logged `needle` so far.
    pub fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate();
        }
    }

    /// Stops the server and starts it again on the same port and config.
    pub fn restart(&mut self) {
        self.stop();
        self.restarts += 1;
        self.launch();
    }

    /// Restarts on the same port with another config.
    pub fn reconfigure(&mut self, config: &str) {
        std::fs::write(self.dir.path().join("nats-server.conf"), config).expect("write config");
        self.restart();
    }

    /// The directory holding the config (and JetStream's store, if used).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The port from "Listening for client connections on 127.0.0.1:N".
fn client_port(log: &str) -> Option<u16> {
    let line = log
        .lines()
        .find(|l| l.contains("Listening for client connections on"))?;
    line.rsplit(':').next()?.trim().parse().ok()
}

/// Config-mode nats-server config delegating to the callout; listens on
/// `port` (a number, or [`PORT`] for [`NatsServer::start_any_port`]).
pub fn callout_server_config(
    port: impl std::fmt::Display,
    issuer: &str,
    xkey: Option<&str>,
) -> String {
    callout_server_config_with(port, issuer, xkey, false)
}

/// The same, with JetStream enabled for the APP account when `app_jetstream`
/// (MQTT keeps its sessions in the target account's streams).
pub fn callout_server_config_with(
    port: impl std::fmt::Display,
    issuer: &str,
    xkey: Option<&str>,
    app_jetstream: bool,
) -> String {
    let xkey = xkey.map(|x| format!("xkey: {x}")).unwrap_or_default();
    let app = if app_jetstream {
        "jetstream: enabled"
    } else {
        ""
    };
    format!(
        r#"listen: 127.0.0.1:{port}
accounts {{
  AUTH {{ users: [ {{ user: auth, password: authpw }} ] }}
  APP {{ {app} }}
  OTHER {{}}
  SYS {{}}
}}
system_account: SYS
authorization {{
  timeout: 2
  auth_callout {{
    issuer: {issuer}
    auth_users: [ auth ]
    account: AUTH
    {xkey}
  }}
}}
"#
    )
}
