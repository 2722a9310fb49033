//! The service under test: in process (`Service`: its own thread and
//! runtime, its log and its decisions captured per instance), or as the
//! real binary (`ServiceProcess`: for signals, crashes and memory).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nats_oidc_callout::config::Config;
use serde_json::{Map, Value};
use tracing_subscriber::layer::SubscriberExt;

use super::process::{read_log, wait_until, Proc};

/// A buffer several threads log into.
#[derive(Clone, Default)]
struct SharedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Records every audit event (one per decision) with its fields.
#[derive(Clone, Default)]
struct Decisions(Arc<Mutex<Vec<Map<String, Value>>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Decisions {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "audit" {
            return;
        }
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

struct Fields(Map<String, Value>);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_i64(&mut self, f: &tracing::field::Field, v: i64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_u64(&mut self, f: &tracing::field::Field, v: u64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_bool(&mut self, f: &tracing::field::Field, v: bool) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
        self.0.insert(f.name().into(), format!("{v:?}").into());
    }
}

/// The service in this process, on its own thread and multi-threaded
/// runtime (so a test blocking its own thread cannot starve it). Its log
/// and decisions are its own even with many instances in one process.
pub(crate) struct Service {
    log: SharedLog,
    decisions: Decisions,
    reload: tokio::sync::mpsc::Sender<()>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    /// The bound `[http] listen` address, when configured.
    pub(crate) http: Option<SocketAddr>,
}

impl Service {
    /// Starts an instance and waits until it listens for requests.
    pub(crate) fn start(config: &Path) -> Service {
        Self::try_start(config).unwrap_or_else(|e| panic!("service did not start: {e}"))
    }

    /// Starts an instance; the error is why it stopped before it was ready,
    /// with its log.
    pub(crate) fn try_start(config: &Path) -> Result<Service, String> {
        let config = Config::load(config).map_err(|e| e.to_string())?;
        let log = SharedLog::default();
        let decisions = Decisions::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info"))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer({
                        let log = log.clone();
                        move || log.clone()
                    }),
            )
            .with(decisions.clone());
        let dispatch = tracing::Dispatch::new(subscriber);
        let (reload, reload_rx) = tokio::sync::mpsc::channel(4);
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let _guard = tracing::dispatcher::set_default(&dispatch);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .on_thread_start(move || {
                    // Every worker logs into this instance's log, for its life.
                    std::mem::forget(tracing::dispatcher::set_default(&dispatch));
                })
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let mut running = nats_oidc_callout::service::run(
                    config,
                    async {
                        let _ = shutdown_rx.await;
                    },
                    reload_rx,
                );
                let ready = running.ready().await.map_err(|e| e.to_string());
                let failed = ready.is_err();
                let _ = ready_tx.send(ready.map(|r| r.http));
                if failed {
                    return Ok(());
                }
                running.wait().await.map_err(|e| e.to_string())
            })
        });
        let text = |log: &SharedLog| String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
        match ready_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(http)) => Ok(Service {
                log,
                decisions,
                reload,
                shutdown: Some(shutdown),
                thread: Some(thread),
                http,
            }),
            Ok(Err(e)) => Err(format!("{e}\n{}", text(&log))),
            Err(_) => Err(format!("not ready within 15 s:\n{}", text(&log))),
        }
    }

    /// Everything this instance logged.
    pub(crate) fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.0.lock().unwrap()).into_owned()
    }

    /// Every decision so far, as the audit event's fields.
    pub(crate) fn decisions(&self) -> Vec<Map<String, Value>> {
        self.decisions.0.lock().unwrap().clone()
    }

    /// How many decisions there are so far.
    pub(crate) fn decision_count(&self) -> usize {
        self.decisions.0.lock().unwrap().len()
    }

    /// Asks for a policy reload (what SIGHUP does to the binary).
    pub(crate) fn reload(&self) {
        self.reload.try_send(()).expect("reload queued");
    }

    /// Stops it (draining) and waits, bounded; the error is the service's.
    pub(crate) fn stop(&mut self) -> Result<(), String> {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !thread.is_finished() {
            return Err("did not stop within 15 s".into());
        }
        thread
            .join()
            .map_err(|_| "the service thread panicked".to_owned())?
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The service run as the real binary.
pub(crate) struct ServiceProcess {
    proc: Option<Proc>,
    log: PathBuf,
}

pub(crate) const READY_LINE: &str = "ready: listening for authorization requests";

impl ServiceProcess {
    /// Starts an instance; several may run on one config (HA), each with
    /// its own log next to the config.
    pub(crate) fn start(config: &Path) -> ServiceProcess {
        static INSTANCES: AtomicUsize = AtomicUsize::new(0);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nats-oidc-callout"));
        cmd.arg("serve").arg("--config").arg(config);
        let n = INSTANCES.fetch_add(1, Ordering::SeqCst);
        let log = config.with_file_name(format!("service-{n}.log"));
        let proc = Proc::spawn(cmd, log.clone());
        let svc = ServiceProcess {
            proc: Some(proc),
            log: log.clone(),
        };
        let ready = wait_until(Duration::from_secs(15), || {
            read_log(&log).contains(READY_LINE)
        });
        assert!(ready, "service did not become ready:\n{}", svc.log());
        svc
    }

    /// The address `[http] listen` bound (`127.0.0.1:0` picks a free port),
    /// from the line the service logs when it starts serving HTTP.
    pub(crate) fn http_addr(&self) -> SocketAddr {
        let log = self.log();
        log.lines()
            .find(|l| l.contains("http: /metrics"))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("the service logged no http address:\n{log}"))
    }

    /// Everything this instance logged, also after it stopped.
    pub(crate) fn log(&self) -> String {
        read_log(&self.log)
    }

    /// Resident set size in KiB, from /proc (None once it has stopped).
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        let pid = self.proc.as_ref()?.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub(crate) fn signal(&self, sig: &str) {
        if let Some(p) = &self.proc {
            p.signal(sig);
        }
    }

    /// SIGKILL: a crash, with no drain.
    pub(crate) fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status (None if it had to be killed).
    pub(crate) fn stop(&mut self) -> Option<ExitStatus> {
        self.proc.take().and_then(|mut p| p.terminate())
    }
}
