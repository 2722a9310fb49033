//! `revoke`, `unrevoke`, `revocations`: revocations in the shared bucket. They need no running
//! service: `revoke` closes matching live connections itself.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::sessions::{gather, issuer_names, nats, system, time, ListArgs};
use super::{bad, load_config, runtime};
use crate::clock::now_unix;
use crate::config::Config;
use crate::revocation::{Revocation, RevocationStore, Selector, MAX_REASON_BYTES};
use crate::session::{user_name, Closed, SessionFacts, ENFORCE_SUBJECT};
use crate::system::{replicas_for, ConnzQuery, Kick, SystemClient};

/// Exactly one of these names who is revoked.
#[derive(Args, Debug)]
#[group(id = "selector", required = true, multiple = false)]
pub(crate) struct SelectorArgs {
    /// The token's `sub` (with --issuer: of that issuer only).
    #[arg(long)]
    subject: Option<String>,
    /// The token's `jti`.
    #[arg(long)]
    jti: Option<String>,
    /// The token's `client_id`, `azp` or `cid`.
    #[arg(long)]
    client_id: Option<String>,
    /// The NATS user nkey of one connection (U…).
    #[arg(long)]
    user_nkey: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct RevokeArgs {
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    selector: SelectorArgs,
    /// With --subject: only that issuer's tokens (its config name).
    #[arg(long)]
    issuer: Option<String>,
    /// Lift the revocation after this long (e.g. 30m, 24h); default: until `unrevoke`.
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Why; a denied connect is logged as `revoked: <reason>`.
    #[arg(long, default_value = "revoked by an operator")]
    reason: String,
}

#[derive(Args, Debug)]
pub(crate) struct UnrevokeArgs {
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    selector: SelectorArgs,
    /// With --subject: the revocation of that issuer's subject only.
    #[arg(long)]
    issuer: Option<String>,
}

/// The selector from the flags, checked against the config.
fn selector(
    config: &Config,
    args: &SelectorArgs,
    issuer: &Option<String>,
) -> Result<Selector, String> {
    if issuer.is_some() && args.subject.is_none() {
        return Err("--issuer goes with --subject only".into());
    }
    let s = match (&args.subject, &args.jti, &args.client_id, &args.user_nkey) {
        (Some(s), ..) => Selector::Subject {
            subject: s.clone(),
            issuer: issuer.clone(),
        },
        (_, Some(j), ..) => Selector::Jti(j.clone()),
        (_, _, Some(c), _) => Selector::ClientId(c.clone()),
        (.., Some(u)) => Selector::UserNkey(u.clone()),
        _ => return Err("name who: --subject, --jti, --client-id or --user-nkey".into()),
    };
    s.validate()?;
    if let Some(i) = issuer {
        if !config.issuers.iter().any(|c| &c.name == i) {
            return Err(format!(
                "--issuer {i:?} is not an [[issuer]] name in {} (known: {})",
                config.path.display(),
                issuer_names(config).join(", ")
            ));
        }
    }
    Ok(s)
}

/// `user@host` of whoever runs the command.
fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{host}")
}

pub(crate) fn revoke(args: RevokeArgs) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let selector = match selector(&config, &args.selector, &args.issuer) {
        Ok(s) => s,
        Err(e) => return bad(e),
    };
    if args.duration.is_some_and(|d| d < Duration::from_secs(1)) {
        return bad("--for must be at least 1s");
    }
    if args.reason.trim().is_empty() || args.reason.len() > MAX_REASON_BYTES {
        return bad(format!("--reason must be 1..{MAX_REASON_BYTES} bytes"));
    }
    let result = runtime().block_on(async {
        let sys = system(&config, "revoke").await?;
        let servers = sys.servers().await.map_err(|e| e.to_string())?;
        let client = nats(&config).await?;
        let store = RevocationStore::open_or_create(
            &client,
            &config.revocation.bucket,
            replicas_for(&servers),
        )
        .await
        .map_err(|e| e.to_string())?;
        let now = now_unix();
        let revocation = Revocation {
            selector,
            reason: args.reason.clone(),
            created_at: now,
            expires_at: args
                .duration
                .map(|d| now.saturating_add(d.as_secs().min(i64::MAX as u64) as i64)),
            by: operator(),
        };
        store
            .revoke(&revocation, now)
            .await
            .map_err(|e| e.to_string())?;
        let _ = client.flush().await;
        // The instances first: they close what they authorized and count it
        // once; the CONNZ sweep then finds only what no instance knows (its
        // instance died), so no connection is counted twice.
        let (closed, failed, instances) = ask_instances(&client, &revocation).await;
        let mut sweep = close_matching(&sys, &config, &revocation.selector).await;
        sweep.closed += closed;
        sweep.failed += failed;
        if instances == 0 {
            sweep.notes.push(
                "no service instance answered: connections matching by jti, client id or \
                 user nkey are closed once an instance runs (new connects are denied now)"
                    .into(),
            );
        }
        Ok::<_, String>((revocation, sweep))
    });
    let (revocation, sweep) = match result {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    for line in &sweep.notes {
        eprintln!("warning: {line}");
    }
    if sweep.failed > 0 {
        eprintln!(
            "warning: {} live connection(s) could not be closed; their user JWTs still expire",
            sweep.failed
        );
    }
    println!(
        "{}",
        json!({"revoked": revocation, "closed": sweep.closed, "failed": sweep.failed})
    );
    ExitCode::SUCCESS
}

/// Asks every running instance to close what `revocation` covers among the
/// sessions it authorized (it may have started on its own, from the bucket
/// watch); sums their counts. Returns (closed, failed, instances).
async fn ask_instances(
    client: &async_nats::Client,
    revocation: &Revocation,
) -> (usize, usize, usize) {
    let body = serde_json::to_vec(revocation).expect("revocation serializes");
    let (mut closed, mut failed, mut instances) = (0, 0, 0);
    for answer in gather(client, ENFORCE_SUBJECT, body).await {
        if let Ok(c) = serde_json::from_slice::<Closed>(&answer) {
            closed += c.closed;
            failed += c.failed;
            instances += 1;
        }
    }
    (closed, failed, instances)
}

/// What closing the live connections of a new revocation achieved.
#[derive(Debug, Default)]
struct Sweep {
    closed: usize,
    failed: usize,
    notes: Vec<String>,
}

/// Finds live connections the selector covers (CONNZ knows only
/// `<issuer>/<subject>`) and kicks them all at once.
async fn close_matching(sys: &SystemClient, config: &Config, selector: &Selector) -> Sweep {
    let mut sweep = Sweep::default();
    let issuers = issuer_names(config);
    let names: Vec<String> = match selector {
        Selector::Subject {
            subject,
            issuer: Some(i),
        } => vec![user_name(i, subject)],
        Selector::Subject {
            subject,
            issuer: None,
        } => issuers.iter().map(|i| user_name(i, subject)).collect(),
        _ => {
            sweep.notes.push(format!(
                "CONNZ identifies connections only by <issuer>/<subject>: live connections \
                 matching the {selector} are closed by the running service instances"
            ));
            return sweep;
        }
    };
    let mut targets = Vec::new();
    for name in names {
        let query = ConnzQuery {
            user: Some(name),
            account: None,
        };
        match sys.connz(&query).await {
            Ok(gather) => {
                if !gather.complete() {
                    sweep.notes.push(format!(
                        "not every server answered CONNZ (silent: {:?}, unknown: {}, errors: {:?})",
                        gather.missing, gather.unknown_missing, gather.errors
                    ));
                }
                targets.extend(
                    gather
                        .connections
                        .iter()
                        .filter_map(|c| SessionFacts::from_connz(c, &issuers))
                        .filter(|f| selector.covers(&f.presented()))
                        .map(|f| (f.server_id, f.cid)),
                );
            }
            Err(e) => {
                sweep.failed += 1;
                sweep.notes.push(format!("cannot list connections: {e}"));
            }
        }
    }
    let kicks = targets
        .iter()
        .map(|(server, cid)| async move { (server, cid, sys.kick(server, *cid).await) });
    for (server, cid, kick) in futures::future::join_all(kicks).await {
        match kick {
            Kick::Closed => sweep.closed += 1,
            Kick::NoSuchClient => {}
            other => {
                sweep.failed += 1;
                sweep.notes.push(format!(
                    "could not close cid {cid} on server {server}: {other:?}"
                ));
            }
        }
    }
    sweep
}

pub(crate) fn unrevoke(args: UnrevokeArgs) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let selector = match selector(&config, &args.selector, &args.issuer) {
        Ok(s) => s,
        Err(e) => return bad(e),
    };
    let result = runtime().block_on(async {
        let client = nats(&config).await?;
        let store = RevocationStore::open(&client, &config.revocation.bucket)
            .await
            .map_err(|e| e.to_string())?;
        store
            .unrevoke(&selector, now_unix())
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(true) => {
            println!("{}", json!({ "unrevoked": selector }));
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!("no revocation in force for the {selector}");
            ExitCode::from(1)
        }
        Err(e) => bad(e),
    }
}

pub(crate) fn revocations(args: ListArgs) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = runtime().block_on(async {
        let client = nats(&config).await?;
        let store = RevocationStore::open(&client, &config.revocation.bucket)
            .await
            .map_err(|e| e.to_string())?;
        store.list(now_unix()).await.map_err(|e| e.to_string())
    });
    let list = match result {
        Ok(l) => l,
        Err(e) => return bad(e),
    };
    if args.json {
        println!("{}", json!(list));
    } else if list.is_empty() {
        println!("no revocations in force");
    } else {
        for r in &list {
            println!(
                "{}\treason {:?}\tsince {}\tuntil {}\tby {}",
                r.selector,
                r.reason,
                time(Some(r.created_at)),
                time(r.expires_at),
                r.by
            );
        }
    }
    ExitCode::SUCCESS
}
