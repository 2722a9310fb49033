//! A real nats-server on 127.0.0.1, and the config that delegates its
//! authentication to the callout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nats_oidc_callout::system::{SYSTEM_PUBLISH, SYSTEM_SUBSCRIBE};

use super::process::{read_log, wait_until, Proc};

/// The nats-server binary: `NATS_SERVER_BIN`, else the one `scripts/setup.sh`
/// installs. Missing is a failure, never a skip.
pub(crate) fn nats_server_bin() -> PathBuf {
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
pub(crate) const PORT: &str = "{PORT}";

/// A real nats-server on 127.0.0.1.
pub(crate) struct NatsServer {
    proc: Option<Proc>,
    pub(crate) port: u16,
    dir: tempfile::TempDir,
    restarts: usize,
}

impl NatsServer {
    /// Starts nats-server with `config` (which must listen on `port`).
    pub(crate) fn start(port: u16, config: &str) -> NatsServer {
        Self::try_start(port, config)
            .unwrap_or_else(|log| panic!("nats-server did not start:\n{log}"))
    }

    /// Starts nats-server with `config` on `port`; the error is its log when
    /// it stopped or never said it listens there (the port was taken: see
    /// [`port_taken`], and start the whole setup again on another port).
    pub(crate) fn try_start(port: u16, config: &str) -> Result<NatsServer, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("nats-server.conf"), config).expect("write config");
        let mut s = NatsServer {
            proc: None,
            port,
            dir,
            restarts: 0,
        };
        s.try_launch()?;
        Ok(s)
    }

    /// Starts nats-server with `template`, whose client port is [`PORT`]:
    /// the server picks a free port itself (`-1`), which is read back from
    /// its log and written into the config, so a restart keeps it. No port
    /// is chosen here and bound later by someone else. Other listeners the
    /// template sets to `-1` (routes, MQTT, WebSocket, monitoring) are read
    /// back with [`NatsServer::logged_port`]; a restart picks them anew.
    pub(crate) fn start_any_port(template: &str) -> NatsServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("nats-server.conf");
        std::fs::write(&conf, template.replace(PORT, "-1")).expect("write config");
        let mut cmd = Command::new(nats_server_bin());
        cmd.arg("-c").arg(&conf);
        let log = dir.path().join("nats-server.0.log");
        let proc = Proc::spawn(cmd, log.clone());
        let mut port = None;
        let found = wait_until(Duration::from_secs(10), || {
            port = logged_port_in(&read_log(&log), CLIENT_LISTENER);
            port.is_some()
        });
        assert!(
            found,
            "nats-server did not report its port:\n{}",
            read_log(&log)
        );
        let port = port.expect("found");
        std::fs::write(&conf, template.replace(PORT, &port.to_string())).expect("write config");
        let mut s = NatsServer {
            proc: Some(proc),
            port,
            dir,
            restarts: 0,
        };
        s.wait_ready()
            .unwrap_or_else(|log| panic!("nats-server did not start:\n{log}"));
        s
    }

    /// The port a listener reports in the log, e.g. `"Listening for route
    /// connections on "` for `cluster { listen: 127.0.0.1:-1 }`; waits
    /// (bounded) for the line.
    pub(crate) fn logged_port(&self, listener: &str) -> u16 {
        let mut port = None;
        let found = wait_until(Duration::from_secs(10), || {
            port = logged_port_in(&self.log(), listener);
            port.is_some()
        });
        assert!(
            found,
            "nats-server never logged {listener:?}:\n{}",
            self.log()
        );
        port.expect("found")
    }

    fn launch(&mut self) {
        self.try_launch()
            .unwrap_or_else(|log| panic!("nats-server did not start:\n{log}"));
    }

    fn try_launch(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(nats_server_bin());
        cmd.arg("-c").arg(self.dir.path().join("nats-server.conf"));
        let log = self
            .dir
            .path()
            .join(format!("nats-server.{}.log", self.restarts));
        self.proc = Some(Proc::spawn(cmd, log));
        self.wait_ready()
    }

    /// Waits (bounded) until this run of the server logs that it listens
    /// on its port and is ready. Its own log, not a connect: a connect would
    /// also succeed against whatever else took the port.
    fn wait_ready(&mut self) -> Result<(), String> {
        let log = self
            .dir
            .path()
            .join(format!("nats-server.{}.log", self.restarts));
        let listening = format!("{CLIENT_LISTENER}127.0.0.1:{}", self.port);
        let proc = self.proc.as_mut().expect("launched");
        let mut exited = false;
        let ready = wait_until(Duration::from_secs(10), || {
            let text = read_log(&log);
            if text.contains(&listening) && text.contains("Server is ready") {
                return true;
            }
            exited = matches!(proc.child.try_wait(), Ok(Some(_)));
            exited
        });
        if ready && !exited {
            Ok(())
        } else {
            self.stop();
            Err(read_log(&log))
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Everything the server has logged, across restarts.
    pub(crate) fn log(&self) -> String {
        (0..=self.restarts)
            .map(|i| read_log(&self.dir.path().join(format!("nats-server.{i}.log"))))
            .collect()
    }

    /// How often the server has logged `needle` so far.
    pub(crate) fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate();
        }
    }

    /// Stops the server and starts it again on the same port and config.
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.restarts += 1;
        self.launch();
    }

    /// Restarts on the same port with another config.
    pub(crate) fn reconfigure(&mut self, config: &str) {
        std::fs::write(self.dir.path().join("nats-server.conf"), config).expect("write config");
        self.restart();
    }

    /// The directory holding the config (and JetStream's store, if used).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// How nats-server announces its client listener.
pub(crate) const CLIENT_LISTENER: &str = "Listening for client connections on ";

/// Whether a failed start's log says its port was already taken.
pub(crate) fn port_taken(log: &str) -> bool {
    log.contains("address already in use")
}

/// The port on the first line that starts with `listener` after the log
/// prefix, e.g. "Listening for client connections on 127.0.0.1:N" or
/// "Listening for MQTT clients on mqtt://127.0.0.1:N".
fn logged_port_in(log: &str, listener: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains(listener))?;
    line.rsplit(':').next()?.trim().parse().ok()
}

/// Config-mode nats-server config delegating to the callout; listens on
/// `port` (a number, or [`PORT`] for [`NatsServer::start_any_port`]).
pub(crate) fn callout_server_config(
    port: impl std::fmt::Display,
    issuer: &str,
    xkey: Option<&str>,
) -> String {
    callout_server_config_with(port, issuer, xkey, false, false)
}

/// The same, with JetStream enabled for the APP account when `app_jetstream`
/// (MQTT keeps its sessions in the target account's streams), and for
/// AUTH with a least-privilege system user `sys` (password `syspw`) when
/// `revocation` (the revocation bucket and KICK/CONNZ).
pub(crate) fn callout_server_config_with(
    port: impl std::fmt::Display,
    issuer: &str,
    xkey: Option<&str>,
    app_jetstream: bool,
    revocation: bool,
) -> String {
    let xkey = xkey.map(|x| format!("xkey: {x}")).unwrap_or_default();
    let app = if app_jetstream {
        "jetstream: enabled"
    } else {
        ""
    };
    let auth = if revocation {
        "jetstream: enabled,"
    } else {
        ""
    };
    let quoted = |items: &[&str]| {
        items
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (sys, auth_users) = if revocation {
        (
            format!(
                "users: [ {{ user: sys, password: syspw, permissions: {{ publish: [ {} ], subscribe: [ {} ] }} }} ]",
                quoted(&SYSTEM_PUBLISH),
                quoted(&SYSTEM_SUBSCRIBE)
            ),
            "auth, sys",
        )
    } else {
        (String::new(), "auth")
    };
    format!(
        r#"listen: 127.0.0.1:{port}
accounts {{
  AUTH {{ {auth} users: [ {{ user: auth, password: authpw }} ] }}
  APP {{ {app} }}
  OTHER {{}}
  SYS {{ {sys} }}
}}
system_account: SYS
authorization {{
  timeout: 2
  auth_callout {{
    issuer: {issuer}
    auth_users: [ {auth_users} ]
    account: AUTH
    {xkey}
  }}
}}
"#
    )
}
