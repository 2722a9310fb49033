//! `doctor --monitor URL`: audit a running nats-server. Exit 1 on any
//! critical finding, 2 when the monitoring endpoint cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use crate::doctor::{audit, Inputs, Severity};

#[derive(Args, Debug)]
pub(crate) struct DoctorArgs {
    /// The server's monitoring endpoint, e.g. http://127.0.0.1:8222
    #[arg(long)]
    monitor: String,
    /// This service's config: checks that its callout account is served.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: DoctorArgs) -> ExitCode {
    let config = match &args.config {
        Some(p) => match super::load_config(p) {
            Ok(c) => Some(c),
            Err(code) => return code,
        },
        None => None,
    };
    let base = args.monitor.trim_end_matches('/').to_owned();
    let fetched = super::runtime().block_on(async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        let get = |path: &str| {
            let url = format!("{base}{path}");
            let http = http.clone();
            async move {
                let r = http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| format!("{url}: {e}"))?;
                if !r.status().is_success() {
                    return Err(format!("{url}: HTTP {}", r.status()));
                }
                r.json::<Value>()
                    .await
                    .map_err(|e| format!("{url}: not JSON: {e}"))
            }
        };
        let varz = get("/varz").await?;
        let local_now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let connz = get("/connz?subs=detail&auth=true&limit=100000").await.ok();
        let anonymous = probe_anonymous(&varz).await;
        Ok::<_, String>((varz, connz, anonymous, local_now_ms))
    });
    let (varz, connz, anonymous, local_now_ms) = match fetched {
        Ok(x) => x,
        Err(e) => return super::bad(format!("cannot read the monitoring endpoint: {e}")),
    };
    let findings = audit(&Inputs {
        varz: &varz,
        connz: connz.as_ref(),
        anonymous_accepted: anonymous,
        expected_account: config.as_ref().map(|c| c.nats.account.as_str()),
        request_timeout: config.as_ref().map(|c| c.nats.request_timeout),
        local_now_ms: Some(local_now_ms),
        needs_client_certificates: config.as_ref().and_then(needs_client_certificates),
        revocation_configured: config.as_ref().map(|c| c.system.is_some()),
    });
    let critical = findings.iter().any(|f| f.severity == Severity::Critical);
    if args.json {
        let out = json!({
            "server": {"name": varz["server_name"], "version": varz["version"], "id": varz["server_id"]},
            "findings": findings,
            "critical": critical,
        });
        println!("{out}");
    } else {
        println!(
            "nats-server {} ({})",
            varz["version"].as_str().unwrap_or("?"),
            varz["server_name"].as_str().unwrap_or("?")
        );
        for f in &findings {
            let tag = match f.severity {
                Severity::Critical => "CRITICAL",
                Severity::Warning => "warning ",
                Severity::Info => "info    ",
            };
            println!("{tag} {}: {}", f.id, f.message);
        }
        println!(
            "{} finding(s), {}",
            findings.len(),
            if critical {
                "critical"
            } else {
                "no critical finding"
            }
        );
    }
    if critical {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Connects to the client port with no credentials; `Some(true)` when the
/// server let it in. A listener on every interface is probed via loopback.
async fn probe_anonymous(varz: &Value) -> Option<bool> {
    let port = varz["port"].as_u64()?;
    let host = match varz["host"].as_str()? {
        "0.0.0.0" | "" | "::" => "127.0.0.1",
        h => h,
    };
    let url = format!("nats://{host}:{port}");
    let result = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .max_reconnects(Some(0))
        .name("nats-oidc-callout-doctor")
        .connect(url.as_str())
        .await;
    match result {
        Ok(_) => Some(true),
        Err(e) if e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation => Some(false),
        Err(_) => None,
    }
}

/// Why this config needs verified client certificates, if it does.
fn needs_client_certificates(config: &crate::config::Config) -> Option<String> {
    if let Some(i) = config
        .issuers
        .iter()
        .find(|i| i.certificate_bound == crate::certificate::CertificateBound::Required)
    {
        return Some(format!(
            "issuer {:?} requires certificate-bound tokens",
            i.name
        ));
    }
    let policy = crate::decision::Decider::from_config(config).ok()?.policy();
    policy
        .reads_certificates()
        .then(|| "the policy has rules or subjects that read the client certificate".to_owned())
}
