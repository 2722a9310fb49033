//! The nats-server side of a bootstrapped setup, in config or operator
//! mode: the accounts, the callout's `authorization`, JetStream for the
//! revocation bucket (in the callout account), and the system-account user
//! that closes and lists live connections with least privilege.

use super::{random_secret, seed, BootstrapArgs};
use crate::cli::keygen::write_secret;
use crate::clock::now_unix;
use crate::protocol::{
    creds, encode, Account, ClaimsData, ExternalAuthorization, JetStreamLimits, NatsClaims,
    Operator, Permission, User,
};
use crate::system::{SYSTEM_PUBLISH, SYSTEM_SUBSCRIBE};

/// What the service config needs to log in, as TOML lines.
pub(super) struct ServerSetup {
    /// nats-server.conf.
    pub conf: String,
    /// Credential lines for `[nats]`.
    pub nats: Vec<(&'static str, String)>,
    /// Credential lines for `[system]`.
    pub system: Vec<(&'static str, String)>,
    /// Operator mode's `[[account]]` tables: (name, public key, seed file).
    pub accounts: Vec<(String, String, String)>,
}

/// JetStream's directory, absolute: nats-server resolves a relative one
/// against its working directory, not the config's.
fn store_dir(dir: &std::path::Path) -> Result<String, String> {
    let dir = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir.join("jetstream").display().to_string())
}

/// The system user's name in config mode.
const SYSTEM_USER: &str = "callout-sys";

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Config mode: accounts in the server config; the service and the system
/// user log in with passwords and are exempt from the callout.
pub(super) fn config_mode(
    args: &BootstrapArgs,
    issuer: &nkeys::KeyPair,
    xkey: &nkeys::XKey,
) -> Result<ServerSetup, String> {
    let password = random_secret();
    write_secret(
        &args.dir.join("keys/auth.password"),
        format!("{password}\n").as_bytes(),
    )?;
    let sys_password = random_secret();
    write_secret(
        &args.dir.join("keys/sys.password"),
        format!("{sys_password}\n").as_bytes(),
    )?;
    let accounts: String = args
        .accounts
        .iter()
        .map(|a| format!("  {a} {{}}\n"))
        .collect();
    let conf = format!(
        "# Written by nats-oidc-callout bootstrap: a local nats-server that delegates\n\
         # every client authentication to the callout service.\n\
         listen: 127.0.0.1:{port}\n\
         # JetStream holds the revocation bucket, in the callout account.\n\
         jetstream {{ store_dir: \"{store}\" }}\n\
         accounts {{\n\
         \x20 AUTH {{ jetstream: enabled, users: [ {{ user: auth, password: \"{password}\" }} ] }}\n\
         {accounts}\
         \x20 # The service's system user: lists (CONNZ) and closes (KICK) connections, nothing else.\n\
         \x20 SYS {{ users: [ {{ user: {SYSTEM_USER}, password: \"{sys_password}\",\n\
         \x20   permissions: {{ publish: [ {publish} ], subscribe: [ {subscribe} ] }} }} ] }}\n\
         }}\n\
         system_account: SYS\n\
         authorization {{\n  timeout: 2\n  auth_callout {{\n    issuer: {issuer_pub}\n    auth_users: [ auth, {SYSTEM_USER} ]\n    account: AUTH\n    xkey: {xkey_pub}\n  }}\n}}\n",
        port = args.port,
        store = store_dir(&args.dir)?,
        publish = quoted_list(&SYSTEM_PUBLISH),
        subscribe = quoted_list(&SYSTEM_SUBSCRIBE),
        issuer_pub = issuer.public_key(),
        xkey_pub = xkey.public_key(),
    );
    Ok(ServerSetup {
        conf,
        nats: vec![
            ("user", "auth".into()),
            ("password_file", "keys/auth.password".into()),
        ],
        system: vec![
            ("user", SYSTEM_USER.into()),
            ("password_file", "keys/sys.password".into()),
        ],
        accounts: Vec::new(),
    })
}

/// Signs a JWT body for `sub` with `signer`.
fn jwt<T: serde::Serialize>(
    sub: &str,
    name: &str,
    nats: T,
    signer: &nkeys::KeyPair,
) -> Result<String, String> {
    let mut claims = NatsClaims {
        data: ClaimsData {
            sub: sub.to_owned(),
            name: name.to_owned(),
            iat: now_unix(),
            ..ClaimsData::default()
        },
        nats,
    };
    encode(&mut claims, signer).map_err(|e| e.to_string())
}

/// Operator mode: an operator, a system account with the service's system
/// user, the callout account (`issuer` is its key, JetStream on) with
/// `authorization` naming the service user, and one account per
/// `--accounts` entry, all in a memory resolver. Clients need no JWT of
/// their own: a bearer `default_sentinel` carries them to the callout.
pub(super) fn operator_mode(
    args: &BootstrapArgs,
    issuer: &nkeys::KeyPair,
    xkey: &nkeys::XKey,
) -> Result<ServerSetup, String> {
    let dir = &args.dir;
    let operator = nkeys::KeyPair::new_operator();
    let system = nkeys::KeyPair::new_account();
    write_secret(
        &dir.join("keys/operator.nk"),
        format!("{}\n", seed(&operator)?).as_bytes(),
    )?;
    write_secret(
        &dir.join("keys/SYS.nk"),
        format!("{}\n", seed(&system)?).as_bytes(),
    )?;
    let mut preload = Vec::new();
    let mut accounts = Vec::new();
    let mut targets = Vec::new();
    for name in &args.accounts {
        // The account key only signs its JWT; users are signed by a signing
        // key the JWT lists, so the identity key can be kept offline.
        let key = nkeys::KeyPair::new_account();
        let signing = nkeys::KeyPair::new_account();
        let key_file = format!("keys/accounts/{name}.nk");
        let signing_file = format!("keys/accounts/{name}.signing.nk");
        write_secret(
            &dir.join(&key_file),
            format!("{}\n", seed(&key)?).as_bytes(),
        )?;
        write_secret(
            &dir.join(&signing_file),
            format!("{}\n", seed(&signing)?).as_bytes(),
        )?;
        let account = Account::new(vec![signing.public_key()], None);
        preload.push((
            key.public_key(),
            jwt(&key.public_key(), name, account, &operator)?,
        ));
        accounts.push((name.clone(), key.public_key(), signing_file));
        targets.push(key.public_key());
    }
    let service_user = nkeys::KeyPair::new_user();
    let authorization = ExternalAuthorization {
        auth_users: vec![service_user.public_key()],
        allowed_accounts: targets,
        xkey: Some(xkey.public_key()),
    };
    let mut callout_account = Account::new(vec![], Some(authorization));
    // The revocation bucket lives here.
    callout_account.limits.jetstream = Some(JetStreamLimits::unlimited());
    preload.push((
        issuer.public_key(),
        jwt(&issuer.public_key(), "AUTH", callout_account, &operator)?,
    ));
    preload.push((
        system.public_key(),
        jwt(
            &system.public_key(),
            "SYS",
            Account::new(vec![], None),
            &operator,
        )?,
    ));
    let operator_jwt = jwt(
        &operator.public_key(),
        "local",
        Operator::new(system.public_key()),
        &operator,
    )?;

    let service_jwt = jwt(
        &service_user.public_key(),
        "nats-oidc-callout",
        User::new(Permission::default(), Permission::default(), None),
        issuer,
    )?;
    write_secret(
        &dir.join("keys/auth.creds"),
        creds(&service_jwt, &seed(&service_user)?).as_bytes(),
    )?;
    // The system user: CONNZ and KICK only.
    let sys_user = nkeys::KeyPair::new_user();
    let list = |subjects: &[&str]| Permission {
        allow: subjects.iter().map(|s| (*s).to_owned()).collect(),
        deny: vec![],
    };
    let sys_jwt = jwt(
        &sys_user.public_key(),
        "nats-oidc-callout-system",
        User::new(list(&SYSTEM_PUBLISH), list(&SYSTEM_SUBSCRIBE), None),
        &system,
    )?;
    write_secret(
        &dir.join("keys/sys.creds"),
        creds(&sys_jwt, &seed(&sys_user)?).as_bytes(),
    )?;
    let deny_all = Permission {
        allow: vec![],
        deny: vec![">".into()],
    };
    let mut sentinel = User::new(deny_all.clone(), deny_all, None);
    sentinel.bearer_token = true;
    let sentinel_jwt = jwt(
        &nkeys::KeyPair::new_user().public_key(),
        "sentinel",
        sentinel,
        issuer,
    )?;

    let preload: String = preload
        .iter()
        .map(|(k, j)| format!("  {k}: {j}\n"))
        .collect();
    let conf = format!(
        "# Written by nats-oidc-callout bootstrap (operator mode): a local nats-server\n\
         # whose callout account delegates every client authentication to the service.\n\
         listen: 127.0.0.1:{port}\n\
         # JetStream holds the revocation bucket, in the callout account.\n\
         jetstream {{ store_dir: \"{store}\" }}\n\
         operator: {operator_jwt}\n\
         system_account: {sys}\n\
         resolver: MEMORY\n\
         resolver_preload: {{\n{preload}}}\n\
         # Clients present only their token; this bearer sentinel (no permissions)\n\
         # brings them to the callout account.\n\
         default_sentinel: {sentinel_jwt}\n",
        port = args.port,
        store = store_dir(dir)?,
        sys = system.public_key(),
    );
    Ok(ServerSetup {
        conf,
        nats: vec![("creds_file", "keys/auth.creds".into())],
        system: vec![("creds_file", "keys/sys.creds".into())],
        accounts,
    })
}
