//! What operators get paged by and look at, checked against a real
//! Prometheus: the shipped alert rules pass their promtool unit tests, and a
//! Prometheus scraping a running service finds data for every dashboard
//! query and every alert selector, and fires the alerts for what the test
//! does to the service (denials, an IdP outage, NATS and the service going
//! away).

mod queries;
mod rules;
mod server;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use jsonwebtoken::Algorithm;
use nats_oidc_callout::issuer::LocalKey;
use queries::{alert_names, panels, rules_without_for, selectors, substitute};
use serde_json::Value;
use server::Prometheus;

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
