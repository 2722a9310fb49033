//! `sessions`: live connections on every server (CONNZ), with the rules and
//! expiry only the authorizing instances know; and the connections and
//! instance requests the revocation commands share.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use serde_json::json;

use super::{bad, load_config, runtime};
use crate::config::Config;
use crate::connect::{connect, Credentials, Persistence};
use crate::session::{SessionFacts, SessionSummary, SESSIONS_SUBJECT};
use crate::system::{ConnzQuery, SystemClient};

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    #[arg(long)]
    pub(super) config: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub(super) json: bool,
}

pub(super) fn issuer_names(config: &Config) -> Vec<&str> {
    config.issuers.iter().map(|i| i.name.as_str()).collect()
}

pub(super) async fn nats(config: &Config) -> Result<async_nats::Client, String> {
    connect(
        &config.nats_urls(),
        Credentials::of_nats(&config.nats),
        "[nats]",
        None,
        Persistence::Command,
    )
    .await
    .map_err(|e| e.to_string())
}

pub(super) async fn system(config: &Config, command: &str) -> Result<SystemClient, String> {
    if config.system.is_none() {
        return Err(format!(
            "`{command}` needs a [system] table in {} (a system-account user that may \
             list and close connections)",
            config.path.display()
        ));
    }
    SystemClient::connect(config, Persistence::Command)
        .await
        .map_err(|e| e.to_string())
}

/// Every running instance's answer to one request on `subject` (they do
/// not share a queue group for it).
pub(super) async fn gather(
    client: &async_nats::Client,
    subject: &str,
    body: Vec<u8>,
) -> Vec<Vec<u8>> {
    let inbox = client.new_inbox();
    let Ok(mut replies) = client.subscribe(inbox.clone()).await else {
        return Vec::new();
    };
    if client
        .publish_with_reply(subject.to_owned(), inbox, body.into())
        .await
        .is_err()
    {
        return Vec::new();
    }
    let _ = client.flush().await;
    let mut out = Vec::new();
    // The first answer may take a close or two; after it, instances answer
    // together.
    let mut wait = INSTANCE_FIRST_ANSWER;
    while let Ok(Some(msg)) = tokio::time::timeout(wait, replies.next()).await {
        out.push(msg.payload.to_vec());
        wait = INSTANCE_NEXT_ANSWER;
    }
    out
}

const INSTANCE_FIRST_ANSWER: Duration = Duration::from_millis(2000);
const INSTANCE_NEXT_ANSWER: Duration = Duration::from_millis(300);

/// RFC 3339 in UTC, `-` when unknown.
pub(super) fn time(unix: Option<i64>) -> String {
    unix.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or_else(
            || "-".to_owned(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
}

pub(crate) fn sessions(args: ListArgs) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = runtime().block_on(async {
        let sys = system(&config, "sessions").await?;
        let connz = sys
            .connz(&ConnzQuery::default())
            .await
            .map_err(|e| e.to_string())?;
        // What only the authorizing instances know: rules and expiry.
        let client = nats(&config).await?;
        let records: Vec<SessionSummary> = gather(&client, SESSIONS_SUBJECT, Vec::new())
            .await
            .iter()
            .filter_map(|a| serde_json::from_slice::<Vec<SessionSummary>>(a).ok())
            .flatten()
            .collect();
        Ok::<_, String>((connz, records))
    });
    let (gather, records) = match result {
        Ok(g) => g,
        Err(e) => return bad(e),
    };
    if !gather.complete() {
        eprintln!(
            "warning: not every server answered CONNZ (silent: {:?}, unknown: {}, errors: {:?})",
            gather.missing, gather.unknown_missing, gather.errors
        );
    }
    let issuers = issuer_names(&config);
    let mut sessions: Vec<SessionFacts> = gather
        .connections
        .iter()
        .filter_map(|c| SessionFacts::from_connz(c, &issuers))
        .collect();
    for s in &mut sessions {
        if let Some(r) = records
            .iter()
            .find(|r| r.server_id == s.server_id && r.cid == s.cid)
        {
            s.rules = Some(r.rules.clone());
            s.expires = Some(r.expires_at);
        }
    }
    sessions.sort_by(|a, b| (&a.server_name, a.cid).cmp(&(&b.server_name, b.cid)));
    if args.json {
        println!("{}", json!(sessions));
    } else if sessions.is_empty() {
        println!("no live sessions");
    } else {
        for s in &sessions {
            println!(
                "{}\tcid {}\t{}/{}\taccount {}\tsince {}\trules {}\texpires {}",
                s.server_name,
                s.cid,
                s.issuer,
                s.subject,
                s.account,
                time(s.start),
                s.rules.as_ref().map_or("-".to_owned(), |r| r.join(",")),
                time(s.expires)
            );
        }
    }
    ExitCode::SUCCESS
}
