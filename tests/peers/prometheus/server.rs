//! A real Prometheus (Debian's package) on loopback, scraping the
//! service, with the shipped rules loaded; stopped by PID.

use super::*;

/// A Prometheus server on 127.0.0.1 with its own config and storage,
/// stopped by PID when dropped.
pub(super) struct Prometheus {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    pub(super) fn start(scrape_port: u16, rules: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("alerts.yml"), rules).unwrap();
        let config = format!(
            r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ["127.0.0.1:{scrape_port}"]
"#
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let log_path = dir.path().join("prometheus.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(prometheus_tool("prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            // Port 0: it binds a free port itself and logs which.
            .arg("--web.listen-address=127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut prom = Prometheus {
            child,
            url: String::new(),
            dir,
        };
        let mut addr = None;
        let logged = wait_until(Duration::from_secs(30), || {
            addr = read_log(&log_path)
                .lines()
                .find(|l| l.contains("msg=\"Listening on\""))
                .and_then(|l| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix("address="))
                })
                .map(str::to_owned);
            addr.is_some()
        });
        assert!(
            logged,
            "Prometheus never said where it listens:\n{}",
            prom.log()
        );
        prom.url = format!("http://{}", addr.expect("logged"));
        prom
    }

    /// Waits (bounded) until the server answers `/-/ready`.
    pub(super) async fn wait_ready(&self) {
        let ready = wait_until_async(Duration::from_secs(30), || async {
            reqwest::get(format!("{}/-/ready", self.url))
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(ready, "Prometheus did not get ready:\n{}", self.log());
    }

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `data` of a GET on the HTTP API.
    pub(super) async fn get(&self, path: &str) -> Value {
        let resp = reqwest::get(format!("{}{path}", self.url))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let body: Value = resp.json().await.expect("API answers JSON");
        assert_eq!(body["status"], "success", "GET {path}: {body}");
        body["data"].clone()
    }

    /// The result vector of an instant query.
    pub(super) async fn query(&self, promql: &str) -> Vec<Value> {
        let body: Value = reqwest::Client::new()
            .post(format!("{}/api/v1/query", self.url))
            .form(&[("query", promql)])
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("query answers JSON");
        assert_eq!(body["status"], "success", "query {promql}: {body}");
        body["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("query {promql}: {body}"))
            .clone()
    }

    /// State ("pending", "firing") of the alert `name` whose labels include
    /// `labels`, or None if it is inactive.
    pub(super) async fn alert_state(&self, name: &str, labels: &[(&str, &str)]) -> Option<String> {
        let data = self.get("/api/v1/alerts").await;
        data["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .find(|a| {
                a["labels"]["alertname"] == name
                    && labels.iter().all(|(k, v)| a["labels"][*k] == *v)
            })
            .map(|a| a["state"].as_str().unwrap_or_default().to_owned())
    }

    /// Waits (bounded) until the alert fires.
    pub(super) async fn wait_firing(&self, name: &str, labels: &[(&str, &str)]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.alert_state(name, labels).await.as_deref() == Some("firing") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} {labels:?} did not fire within 30 s; alerts: {}\nprometheus log:\n{}",
                self.get("/api/v1/alerts").await,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(super) async fn assert_not_active(&self, names: &[&str]) {
        for name in names {
            assert_eq!(
                self.alert_state(name, &[]).await,
                None,
                "{name} is active on a healthy service"
            );
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let stopped = wait_until(Duration::from_secs(10), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
