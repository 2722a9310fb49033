//! `check`: one decision, printed as JSON, with the exit code saying
//! allowed (0) or denied (1).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Map, Value};

use crate::clock::now_unix;
use crate::decision::{Decider, Outcome, Request};
use crate::issuer::trim_token;
use crate::policy::{permissions_json, Connection};
use crate::reason::ALLOWED;

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("input").required(true))]
pub(crate) struct CheckArgs {
    #[arg(long)]
    config: PathBuf,
    /// The token (a JWT or an opaque token), `@path` to read it from a file,
    /// or `-` for stdin.
    #[arg(long, group = "input")]
    token: Option<String>,
    /// A JSON file of claims to evaluate without signature validation.
    #[arg(long, group = "input")]
    claims: Option<PathBuf>,
    /// Connection type to assume (nats, websocket, mqtt, leafnode).
    #[arg(long)]
    client_type: Option<String>,
    /// Client address to assume, for rules with `source_cidrs`.
    #[arg(long)]
    client_host: Option<String>,
    /// Add each rule's verdict (and why) and each subject's origin.
    #[arg(long)]
    explain: bool,
}

pub(crate) fn run(args: CheckArgs) -> ExitCode {
    let config = match super::load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let decider = match Decider::from_config(&config) {
        Ok(a) => a,
        Err(e) => return super::bad(e),
    };
    let request = Request {
        conn: Connection {
            conn_type: args.client_type.as_deref(),
            host: args.client_host.as_deref(),
            certificate: None,
        },
        user_nkey: None,
    };
    let now = now_unix();
    let outcome = if let Some(path) = &args.claims {
        let claims = match read_claims(path) {
            Ok(c) => c,
            Err(e) => return super::bad(e),
        };
        decider.decide_claims(claims, &request, now, args.explain)
    } else {
        let token = match read_token(args.token.as_deref().unwrap_or_default()) {
            Ok(t) => t,
            Err(e) => return super::bad(e),
        };
        super::runtime().block_on(async {
            decider.issuers().load_all().await;
            decider.decide(&token, &request, now, args.explain).await
        })
    };
    println!("{}", decision_json(&outcome));
    if outcome.result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn read_claims(path: &PathBuf) -> Result<Map<String, Value>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(format!("{}: claims must be a JSON object", path.display())),
        Err(e) => Err(format!(
            "{}:{}:{}: {e}",
            path.display(),
            e.line(),
            e.column()
        )),
    }
}

fn read_token(arg: &str) -> Result<String, String> {
    let raw = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read the token from stdin: {e}"))?;
        s
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token from {path}: {e}"))?
    } else {
        arg.to_owned()
    };
    let token = trim_token(&raw);
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    Ok(token.to_owned())
}

/// The JSON that `check` prints (keys may be added, never removed).
pub fn decision_json(o: &Outcome) -> Value {
    let mut v = outcome_json(o);
    if let Some((rules, origins)) = &o.trace {
        let rules: Vec<Value> = rules
            .iter()
            .map(|r| json!({"rule": r.rule, "matched": r.matched, "reason": r.reason}))
            .collect();
        let origins: Vec<Value> = origins
            .iter()
            .map(|o| json!({"list": o.list, "subject": o.subject, "rule": o.rule, "via": o.via}))
            .collect();
        v["explain"] = json!({"rules": rules, "origins": origins});
    }
    v
}

/// Named as in the audit event (`decision`, `reason`, `reason_class`); the
/// contract's `allowed` and `error` stay.
fn outcome_json(o: &Outcome) -> Value {
    match &o.result {
        Ok(a) => json!({
            "allowed": true,
            "decision": "allow",
            "reason": null,
            "reason_class": ALLOWED,
            "issuer": o.issuer,
            "subject": o.subject,
            "account": a.grant.account,
            "rules": a.grant.rules,
            "permissions": permissions_json(&a.grant.permissions),
            "expires_at": a.expires_at,
            "error": null,
        }),
        Err(reason) => json!({
            "allowed": false,
            "decision": "deny",
            "reason": reason.to_string(),
            "reason_class": reason.class().as_str(),
            "issuer": o.issuer,
            "subject": o.subject,
            "account": null,
            "rules": [],
            "permissions": null,
            "expires_at": null,
            "error": reason.to_string(),
        }),
    }
}
