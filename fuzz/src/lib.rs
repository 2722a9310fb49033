//! What the fuzz targets share: one complete service set up per process
//! (issuer keys, JWKS file, policy, signing and xkey seeds, all generated at
//! start, none stored), and the placeholders that let the fuzzer's input
//! reach past signature checks.
//!
//! Seeds (`fuzz/seeds/<target>/`) are JSON or TOML with placeholders that are
//! replaced before use, since no signature can be checked in: `@SERVER@` (the
//! server's public key), `@SERVERX@` (its xkey), `@USER@` (a fresh user key), `@EXP@` (a near-future
//! Unix time), `@NOW@`, and `@TOKEN@` (a bearer token our issuer really
//! signed). A grant is possible only through `@TOKEN@`, which the targets
//! assert.

use std::path::Path;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use nats_oidc_callout::callout::Callout;
use nats_oidc_callout::config::{Config, ConfigBuilder, IssuerBuilder};
use nats_oidc_callout::issuer::{jwks, Issuers, LocalKey};
use nkeys::{KeyPair, XKey};
use serde_json::json;

pub const ISSUER: &str = "https://fuzz.test";
pub const AUDIENCE: &str = "nats";

pub const POLICY: &str = r#"
[defaults]
account = "APP"
ttl = "10m"

[permissions.own]
pub = { allow = ["app.{claim.sub}.>"], deny = ["app.{claim.sub}.admin"] }
sub = { allow = ["app.{claim.sub}.>", "_INBOX.>"] }

[permissions.team]
pub = { allow = ["team.{claim.sub}.>"] }

[[rules]]
name = "readers"
issuer = "i"
scopes = ["nats"]
grant = ["own"]

[[rules]]
name = "teams"
issuer = "i"
claims = { groups = ["ops", "dev-*"] }
grant = ["team"]
"#;

pub struct World {
    _dir: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
    /// RS256, ES256 and EdDSA, all in the issuer's JWKS.
    pub keys: Vec<LocalKey>,
    pub issuers: Issuers,
    pub plain: Callout,
    pub sealed: Callout,
    pub server: KeyPair,
    pub server_xkey: XKey,
    pub service_xkey: XKey,
}

pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(build)
}

fn build() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let keys: Vec<LocalKey> = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
        .into_iter()
        .map(|alg| LocalKey::generate(alg).expect("test key"))
        .collect();
    let refs: Vec<&LocalKey> = keys.iter().collect();
    write(d, "jwks.json", &jwks(&refs).to_string());
    write(
        d,
        "issuer.nk",
        &KeyPair::new_account().seed().expect("seed"),
    );
    let service_xkey = XKey::new();
    write(d, "xkey.nk", &service_xkey.seed().expect("seed"));
    write(d, "policy.toml", POLICY);
    let config = |xkey: bool| {
        let mut b = ConfigBuilder::new("nats://127.0.0.1:4222", "issuer.nk", "policy.toml")
            .token_lines("sources = [\"auth_token\", \"password\"]")
            .issuer(
                IssuerBuilder::new("i", ISSUER, &[AUDIENCE])
                    .jwks_file("jwks.json")
                    .algorithms(&["RS256", "ES256", "EdDSA"]),
            );
        if xkey {
            b = b.xkey_seed_file("xkey.nk");
        }
        Config::parse(&d.join("callout.toml"), &b.build()).expect("fuzz config")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let plain = Callout::from_config(&config(false)).expect("callout");
    let sealed = Callout::from_config(&config(true)).expect("callout with xkey");
    let issuers = Issuers::new(&config(false)).expect("issuers");
    rt.block_on(async {
        for a in [&plain, &sealed] {
            a.decider().issuers().load_all().await;
        }
        issuers.load_all().await;
    });
    World {
        _dir: dir,
        rt,
        keys,
        issuers,
        plain,
        sealed,
        server: KeyPair::new_server(),
        server_xkey: XKey::new(),
        service_xkey,
    }
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).expect("write fixture file");
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

impl World {
    /// A bearer token our issuer signed, valid for a minute.
    pub fn valid_token(&self) -> String {
        self.keys[0].sign(&json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "fuzz", "scope": "nats",
            "groups": ["ops"], "exp": now() + 60, "iat": now(),
        }))
    }

    /// Replaces the placeholders described in the module docs.
    pub fn fill(&self, text: &str) -> String {
        let mut out = text
            .replace("@SERVERX@", &self.server_xkey.public_key())
            .replace("@SERVER@", &self.server.public_key())
            .replace("@USER@", &KeyPair::new_user().public_key())
            .replace("@EXP@", &(now() + 2).to_string())
            .replace("@NOW@", &now().to_string());
        if out.contains("@TOKEN@") {
            out = out.replace("@TOKEN@", &self.valid_token());
        }
        out
    }

    /// `payload` as the claims of a request JWT the server really signed.
    pub fn server_signed(&self, payload: &[u8]) -> String {
        let head = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
        let signed = format!("{head}.{}", URL_SAFE_NO_PAD.encode(payload));
        let sig = self.server.sign(signed.as_bytes()).expect("sign");
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Opens a response the service sealed for the server.
    pub fn opened_by_server(&self, payload: &[u8]) -> Vec<u8> {
        let from = XKey::from_public_key(&self.service_xkey.public_key()).expect("xkey");
        self.server_xkey
            .open(payload, &from)
            .expect("a sealed response opens")
    }

    /// Seals `jwt` as the server does for a service with an xkey.
    pub fn sealed_by_server(&self, jwt: &[u8]) -> Vec<u8> {
        let to = XKey::from_public_key(&self.service_xkey.public_key()).expect("xkey");
        self.server_xkey.seal(jwt, &to).expect("seal")
    }
}

/// First part before a NUL byte, and the rest.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
