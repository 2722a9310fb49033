//! What operators get paged by and look at, checked against a real
//! Prometheus: the shipped alert rules pass their promtool unit tests, and a
//! Prometheus scraping a running service finds data for every dashboard
//! query and every alert selector, and fires the alerts for what the test
//! does to the service (denials, an IdP outage, NATS and the service going
//! away).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use jsonwebtoken::Algorithm;
use nats_oidc_callout::issuer::LocalKey;
use serde_json::Value;

const JOB: &str = "nats-oidc-callout";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A program from Debian's prometheus package, on PATH. Missing is a
/// failure, never a skip.
fn prometheus_tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found on PATH — run scripts/setup.sh (installs Debian's prometheus package)")
        })
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// `- alert: Name` lines of a rules file, in order.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

#[test]
fn alert_rules_pass_their_promtool_unit_tests_with_a_firing_case_and_a_near_miss_each() {
    let promtool = prometheus_tool("promtool");
    run(Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(repo("deploy/prometheus/alerts.yml")));
    let out = run(Command::new(&promtool)
        .arg("test")
        .arg("rules")
        .arg(repo("deploy/prometheus/alerts.test.yml")));
    assert!(out.contains("SUCCESS"), "{out}");

    // Each alert has a case where it fires and one where it must not
    // (`exp_alerts: []`); promtool checks them, this checks they exist.
    let rules = std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(repo("deploy/prometheus/alerts.test.yml")).unwrap();
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("alertname:") else {
            continue;
        };
        let exp = lines[i..]
            .iter()
            .find(|l| l.starts_with("exp_alerts:"))
            .unwrap_or_else(|| panic!("alertname {name} without exp_alerts"));
        if exp.ends_with("[]") {
            quiet.insert(name.trim().to_owned());
        } else {
            fires.insert(name.trim().to_owned());
        }
    }
    let names = alert_names(&rules);
    assert!(names.len() >= 12, "{names:?}");
    for name in &names {
        assert!(fires.contains(name), "no promtool case makes {name} fire");
        assert!(quiet.contains(name), "no promtool near miss for {name}");
    }
}

/// A Prometheus server on 127.0.0.1 with its own config and storage,
/// stopped by PID when dropped.
struct Prometheus {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(scrape_port: u16, rules: &str) -> Prometheus {
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
    async fn wait_ready(&self) {
        let ready = wait_until_async(Duration::from_secs(30), || async {
            reqwest::get(format!("{}/-/ready", self.url))
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(ready, "Prometheus did not get ready:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `data` of a GET on the HTTP API.
    async fn get(&self, path: &str) -> Value {
        let resp = reqwest::get(format!("{}{path}", self.url))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let body: Value = resp.json().await.expect("API answers JSON");
        assert_eq!(body["status"], "success", "GET {path}: {body}");
        body["data"].clone()
    }

    /// The result vector of an instant query.
    async fn query(&self, promql: &str) -> Vec<Value> {
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
    async fn alert_state(&self, name: &str, labels: &[(&str, &str)]) -> Option<String> {
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
    async fn wait_firing(&self, name: &str, labels: &[(&str, &str)]) {
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

    async fn assert_not_active(&self, names: &[&str]) {
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

/// The shipped rules with every `for:` set to 0s, so an alert fires at the
/// first evaluation where its expression holds; the expressions are the
/// shipped ones, untouched. The real `for:` durations (minutes) are tested
/// by promtool against synthetic time.
fn rules_without_for(rules: &str) -> String {
    let mut rewritten = 0;
    let copy: Vec<String> = rules
        .lines()
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            if line.trim_start().starts_with("for:") {
                rewritten += 1;
                format!("{indent}for: 0s")
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert!(rewritten >= 10, "only {rewritten} `for:` lines found");
    copy.join("\n") + "\n"
}

/// The metric selectors (name plus matchers) in a PromQL expression: every
/// identifier that is not a function, keyword, label list, number, range
/// or string.
fn selectors(expr: &str) -> Vec<String> {
    const KEYWORDS: [&str; 21] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "group_left",
        "group_right",
        // Aggregations, which may be followed by `by (…)` before `(`.
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // Index just past the bracket matching the one at `i`, skipping strings.
    let close = |mut i: usize, open: u8, shut: u8| {
        let mut depth = 0;
        let mut quote = None;
        while i < b.len() {
            match (quote, b[i]) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), b'\\') => i += 1,
                (Some(_), _) => {}
                (None, b'"' | b'\'' | b'`') => quote = Some(b[i]),
                (None, c) if c == open => depth += 1,
                (None, c) if c == shut => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        panic!("unbalanced {} in {expr}", open as char);
    };
    while i < b.len() {
        let c = b[i];
        if c == b'[' {
            i = close(i, b'[', b']');
        } else if c == b'"' || c == b'\'' || c == b'`' {
            let mut j = i + 1;
            while b[j] != c {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            i = j + 1;
        } else if c.is_ascii_digit() || c == b'.' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let name = &expr[start..i];
            let mut j = i;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            let next = b.get(j).copied();
            if LABEL_LISTS.contains(&name) && next == Some(b'(') {
                i = close(j, b'(', b')');
            } else if next == Some(b'(') || KEYWORDS.contains(&name) {
                // A function or aggregation: its arguments are scanned next.
            } else if next == Some(b'{') {
                i = close(j, b'{', b'}');
                out.push(format!("{name}{}", &expr[j..i]));
            } else {
                out.push(name.to_owned());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// A panel query with the dashboard's variables filled in as Grafana would
/// for this test's deployment.
fn substitute(expr: &str) -> String {
    let q = expr
        .replace("${job}", JOB)
        .replace("$job", JOB)
        .replace("${issuer}", "corp")
        .replace("$issuer", "corp")
        .replace("$__rate_interval", "1m");
    assert!(!q.contains('$'), "unknown variable left in {q}");
    q
}

/// Every panel (rows included) of a dashboard.
fn panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut stack: Vec<Value> = dashboard["panels"].as_array().unwrap().clone();
    while let Some(p) = stack.pop() {
        if let Some(inner) = p["panels"].as_array() {
            stack.extend(inner.iter().cloned());
        }
        out.push(p);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_finds_every_dashboard_and_alert_series_and_alerts_fire_on_outages() {
    // corp also takes opaque tokens, introspected at the in-process IdP.
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("introspect.secret");
    write_secret(&secret, "introspection-test-secret");
    let issuer_extra = format!(
        "jwks_refresh = \"1s\"\ntoken_types = [\"jwt\", \"opaque\"]\n\
         introspection_endpoint = \"{{idp}}{INTROSPECTION_PATH}\"\n\
         introspection_client_id = \"callout\"\n\
         introspection_client_secret_file = \"{}\"\n",
        secret.display()
    );
    let mut env = Env::start(EnvOptions {
        config_extra: "[http]\nlisten = \"127.0.0.1:0\"\n",
        // Refresh every second, so an outage shows as failed fetches at once.
        issuer_extra: &issuer_extra,
        ..Default::default()
    })
    .await;
    let url = env.nats.url();
    // One decision of each kind before Prometheus starts, so both series
    // exist at its first scrape and the traffic below is an increase.
    let token = env.token("mona", "nats");
    connect_token(&url, &token).await.expect("mona connects");
    env.assert_refused(
        connect_token(&url, &env.token("mona", "none")).await,
        "no rule grants access",
    )
    .await;

    let shipped = std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).unwrap();
    let http_port = env.service().http.expect("http bound").port();
    let prom = Prometheus::start(http_port, &rules_without_for(&shipped));
    prom.wait_ready().await;
    let up = wait_until_async(Duration::from_secs(30), || async {
        prom.query(&format!("up{{job=\"{JOB}\"}} == 1")).await.len() == 1
    })
    .await;
    assert!(up, "Prometheus never scraped the service:\n{}", prom.log());

    // Allowed (the same token again: cache hits) and denied connects.
    for _ in 0..10 {
        connect_token(&url, &token).await.expect("mona connects");
    }
    // Each denial is the service's, for no rule (not a timeout): the alerts
    // below must fire on these, labelled no_rule.
    for i in 0..40 {
        let denied = connect_token(&url, &env.token(&format!("user{i}"), "none")).await;
        env.assert_refused(denied, "no rule grants access").await;
    }

    // Every rule evaluates without error on the real series (label
    // matching included), and the denials page as no_rule.
    let names = alert_names(&shipped);
    prom.wait_firing(
        "NatsOidcCalloutDenialRatioCritical",
        &[("reason_class", "no_rule")],
    )
    .await;
    prom.wait_firing(
        "NatsOidcCalloutDenialRatioHigh",
        &[("reason_class", "no_rule")],
    )
    .await;
    let groups = prom.get("/api/v1/rules").await;
    let rules: Vec<Value> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect();
    let loaded: Vec<String> = rules
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(loaded, names, "Prometheus loaded other rules");
    for r in &rules {
        assert_eq!(r["health"], "ok", "rule failed to evaluate: {r}");
    }
    // With `for: 0s`, a rule that matched the wrong labels or metric
    // would be firing on this healthy service.
    prom.assert_not_active(&[
        "NatsOidcCalloutNoInstanceAnswering",
        "NatsOidcCalloutInstanceDown",
        "NatsOidcCalloutNatsDisconnected",
        "NatsOidcCalloutJwksFetchFailing",
        "NatsOidcCalloutNoKeys",
        "NatsOidcCalloutDecisionsTimingOutOrSaturated",
        "NatsOidcCalloutPolicyReloadFailed",
        "NatsOidcCalloutConnectionsNotClosed",
        "NatsOidcCalloutRevocationsStale",
        "NatsOidcCalloutIntrospectionFailing",
        "NatsOidcCalloutIntrospectionLimited",
    ])
    .await;
    // An opaque token the IdP does not know: answered, inactive.
    env.assert_refused(
        connect_token(&url, "made-up-opaque-token-of-some-length").await,
        "token inactive",
    )
    .await;

    // The IdP goes down: refreshes fail and the JWKS alert fires.
    env.idp.set_down(true);
    prom.wait_firing("NatsOidcCalloutJwksFetchFailing", &[("issuer", "corp")])
        .await;
    // New opaque tokens cannot be asked about: denied with the reason.
    env.assert_refused(
        connect_token(&url, "another-made-up-opaque-token").await,
        "introspection at issuer \"corp\" failed",
    )
    .await;
    prom.wait_firing("NatsOidcCalloutIntrospectionFailing", &[("issuer", "corp")])
        .await;
    // The keys already held keep working (and keep NoKeys quiet).
    assert!(connect_token(&url, &env.token("ivan", "nats"))
        .await
        .is_ok());
    prom.assert_not_active(&["NatsOidcCalloutNoKeys"]).await;
    // The IdP hangs: a token with a new kid waits for a refetch and is
    // denied at the per-request deadline (reason class `timeout`).
    env.idp.set_fault(IdpFault::Hang);
    let stranger = LocalKey::generate(Algorithm::ES256).unwrap();
    let rotated = stranger.sign(&env.claims("rhea", "nats"));
    env.assert_refused(
        connect_token(&url, &rotated).await,
        "decision took too long (deadline exceeded)",
    )
    .await;
    let scraped = wait_until_async(Duration::from_secs(30), || async {
        !prom
            .query("nats_oidc_callout_decisions_total{reason_class=\"timeout\"}")
            .await
            .is_empty()
    })
    .await;
    assert!(scraped, "the timeout denial never reached Prometheus");

    // Every alert selector has data: no rule watches a series the service
    // does not export.
    for r in &rules {
        let query = r["query"].as_str().unwrap();
        let sels = selectors(query);
        assert!(!sels.is_empty(), "no selector found in {query}");
        for sel in sels {
            assert!(
                !prom.query(&sel).await.is_empty(),
                "alert {} selects {sel}, which has no data",
                r["name"]
            );
        }
    }

    // Every dashboard query returns data, every metric selector in it too,
    // and every metric family the service exports is on the dashboard.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("deploy/grafana/nats-oidc-callout.json")).unwrap(),
    )
    .expect("dashboard is JSON");
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter()
            .any(|v| v["name"] == "DS_PROMETHEUS" && v["type"] == "datasource"),
        "no DS_PROMETHEUS datasource variable"
    );
    let mut shown = BTreeSet::new();
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let def = v["definition"].as_str().unwrap();
        let args = def
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: {def}", v["name"]));
        let (sel, label) = args.rsplit_once(',').unwrap();
        let series = prom.query(&substitute(sel.trim())).await;
        assert!(
            series.iter().any(|s| s["metric"][label.trim()].is_string()),
            "variable {} finds no {label} values",
            v["name"]
        );
    }
    let mut queries = 0;
    for p in panels(&dashboard).iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().unwrap();
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            let q = substitute(t["expr"].as_str().unwrap());
            queries += 1;
            assert!(
                !prom.query(&q).await.is_empty(),
                "panel {title:?}: no data for {q}"
            );
            for sel in selectors(&q) {
                assert!(
                    !prom.query(&sel).await.is_empty(),
                    "panel {title:?}: no data for {sel}"
                );
                shown.insert(sel.split('{').next().unwrap().to_owned());
            }
        }
    }
    assert!(queries >= 15, "only {queries} panel queries");
    let (_, exposition) = http_get(&format!("http://127.0.0.1:{http_port}/metrics")).await;
    for family in exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
    {
        assert!(
            shown
                .iter()
                .any(|m| m == family || m.strip_suffix("_bucket") == Some(family)),
            "{family} is exported but on no dashboard panel"
        );
    }

    // NATS goes away: the instance reports it, and no instance answers.
    env.nats.stop();
    prom.wait_firing("NatsOidcCalloutNatsDisconnected", &[("job", JOB)])
        .await;
    prom.wait_firing("NatsOidcCalloutNoInstanceAnswering", &[])
        .await;
    // The service itself goes away: its target is down.
    env.service_mut().stop().expect("the service stops");
    prom.wait_firing("NatsOidcCalloutInstanceDown", &[("job", JOB)])
        .await;
}

#[test]
fn selectors_are_found_in_prometheus_formatted_queries() {
    let q = r#"(sum by(job, reason_class) (rate(a_total{reason_class!~"x|y",result="deny"}[10m])) / on(job) group_left() sum by(job) (rate(a_total[10m]))) > 0.25 and on(job, reason_class) b >= 30"#;
    assert_eq!(
        selectors(q),
        [
            r#"a_total{reason_class!~"x|y",result="deny"}"#,
            "a_total",
            "b"
        ]
    );
    assert_eq!(selectors(r#"absent(up{job="j"} == 1)"#), [r#"up{job="j"}"#]);
    assert_eq!(
        selectors("histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m]))) >= 1.5"),
        ["h_bucket"]
    );
    assert_eq!(selectors("k > 18 * 3600"), ["k"]);
}
