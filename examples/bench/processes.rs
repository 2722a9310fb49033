//! The processes a bench run starts and reads: nats-servers, the service,
//! the ceiling responder, their readiness, metrics and CPU time.

use super::*;

/// Kills the child on drop, so a panic never leaves a server behind.
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn nats_server() -> PathBuf {
    std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/nats-server")
        })
}

pub(crate) fn start_nats(dir: &Path, name: &str, port: u16, conf: &str) -> Guard {
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(nats_server())
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server (run scripts/setup.sh)");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Guard(child)
}

/// A nats-server delegating to the callout (the service's or the ceiling's).
pub(crate) fn start_callout_nats(
    dir: &Path,
    name: &str,
    port: u16,
    account: &str,
    xkey: Option<&str>,
) -> Guard {
    start_nats(
        dir,
        name,
        port,
        &format!(
            "listen: 127.0.0.1:{port}\nmax_connections: 1000000\naccounts {{ AUTH {{ users: [{{user: auth, password: pw}}] }}\n APP {{}}\n SYS {{}} }}\n\
             system_account: SYS\nauthorization {{ timeout: 2\n auth_callout {{ issuer: {account}\n auth_users: [auth]\n account: AUTH\n {} }} }}\n",
            xkey.map(|x| format!("xkey: {x}")).unwrap_or_default()
        ),
    )
}

/// The load average, which says how shared the 2 cores were.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Starts the ceiling responder (this binary, `--responder`) and waits
/// until it is subscribed.
pub(crate) fn start_responder(url: &str, dir: &Path, xkey: bool) -> Guard {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg("--responder").arg(url).arg(dir);
    if !xkey {
        cmd.arg("--no-xkey");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = Guard(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert_eq!(line.trim(), "ready", "ceiling responder did not start");
    guard
}

/// Waits (up to a minute) until the service answers `/readyz` with 200.
pub(crate) async fn wait_ready(readyz: &str) {
    for _ in 0..600 {
        if let Ok(r) = reqwest::get(readyz).await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the service was not ready within a minute");
}

pub(crate) async fn metrics_text(metrics: &str) -> Option<String> {
    reqwest::get(metrics).await.ok()?.text().await.ok()
}

/// The service's `nats_oidc_callout_token_cache_entries` gauge.
pub(crate) async fn cache_entries(metrics: &str) -> Option<u64> {
    let body = metrics_text(metrics).await?;
    body.lines()
        .find_map(|l| l.strip_prefix("nats_oidc_callout_token_cache_entries "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// utime + stime of a process, from /proc.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
