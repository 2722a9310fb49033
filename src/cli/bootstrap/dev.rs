//! The development issuer `bootstrap` creates when no real one is given,
//! and `dev-token`, which mints tokens from it.

use std::path::Path;
use std::process::ExitCode;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::{random_secret, DevTokenArgs, DEV_ISSUER_NAME, DEV_KEY_FILE};
use crate::cli::keygen::{write_new, write_secret};
use crate::clock::now_unix;
use crate::config::{Config, KeySourceKind};
use crate::issuer::{jwks, LocalKey};

/// Creates the development issuer: an ES256 key and its public JWKS.
pub(super) fn write_dev_issuer(dir: &Path) -> Result<(), String> {
    let key = LocalKey::generate(Algorithm::ES256).map_err(|e| e.to_string())?;
    let jwks = serde_json::to_string_pretty(&jwks(&[&key])).map_err(|e| e.to_string())?;
    write_secret(&dir.join(DEV_KEY_FILE), key.pem().as_bytes())?;
    write_new(&dir.join("dev-jwks.json"), jwks.as_bytes(), 0o644)
}

pub(crate) fn dev_token(args: DevTokenArgs) -> ExitCode {
    match mint(&args) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => crate::cli::bad(e),
    }
}

fn mint(args: &DevTokenArgs) -> Result<String, String> {
    let config = Config::load(&args.dir.join("callout.toml")).map_err(|e| e.to_string())?;
    let issuer = config
        .issuers
        .iter()
        .find(|i| i.name == DEV_ISSUER_NAME && i.key_source() == KeySourceKind::File)
        .ok_or_else(|| {
            format!(
                "{} has no development issuer; was it made by `bootstrap` without --issuer?",
                config.path.display()
            )
        })?;
    let pem = std::fs::read_to_string(args.dir.join(DEV_KEY_FILE))
        .map_err(|e| format!("cannot read {DEV_KEY_FILE}: {e}"))?;
    let key =
        LocalKey::from_pem(Algorithm::ES256, &pem).map_err(|e| format!("{DEV_KEY_FILE}: {e}"))?;

    let now = now_unix();
    let mut claims = Map::new();
    claims.insert("iss".into(), issuer.issuer.clone().into());
    claims.insert("aud".into(), issuer.audience[0].clone().into());
    claims.insert("sub".into(), args.sub.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + args.ttl.as_secs() as i64).into());
    claims.insert("jti".into(), random_secret().into());
    if let Some(scope) = &args.scope {
        claims.insert("scope".into(), scope.clone().into());
    }
    for (k, v) in &args.claims {
        claims.insert(k.clone(), v.clone());
    }
    Ok(key.sign(&Value::Object(claims)))
}
