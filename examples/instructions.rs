//! Instructions per decision, in process, for callgrind: counts repeat to
//! the instruction on a machine whose timings do not (shared cores). Each
//! kind answers N sealed requests exactly as `serve` does (minus NATS):
//!
//! - `ceiling`: open the request and sign a fixed user (`common/ceiling.rs`)
//! - `warm`: the service, one token (cache hits)
//! - `cold`: the service, distinct RS256 tokens (every one verified)
//! - `malformed`: the service, a token that is not a JWT
//!
//! Only `measured` is counted:
//!
//! cargo build --release --examples
//! valgrind --tool=callgrind --toggle-collect='*measured*' \
//!     target/release/examples/instructions cold 2000
//!
//! and divide the total (`callgrind_annotate`) by N.

use jsonwebtoken::Algorithm;
use nats_oidc_callout::callout::{request, Callout};
use nats_oidc_callout::clock::now_unix;
use nats_oidc_callout::config::{Config, ConfigBuilder, IssuerBuilder};
use nats_oidc_callout::issuer::{jwks, LocalKey};
use nats_oidc_callout::protocol::{
    encode, AccountSigner, AuthorizationRequest, ClaimsData, NatsClaims, Sealer,
    AUTHORIZATION_REQUEST_AUDIENCE,
};

#[path = "common/ceiling.rs"]
#[allow(dead_code)]
mod ceiling;
#[path = "common/tokens.rs"]
#[allow(dead_code)]
mod tokens;

const ISS: &str = "https://bench.invalid";

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(kind), Some(Ok(n))) = (args.next(), args.next().map(|n| n.parse::<usize>())) else {
        eprintln!("usage: instructions ceiling|warm|cold|malformed N");
        std::process::exit(2);
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = LocalKey::generate(Algorithm::RS256).unwrap();
    std::fs::write(d.join("jwks.json"), jwks(&[&key]).to_string()).unwrap();
    let account = nkeys::KeyPair::new_account();
    let xkey = nkeys::XKey::new();
    std::fs::write(d.join("issuer.nk"), account.seed().unwrap()).unwrap();
    std::fs::write(d.join("xkey.nk"), xkey.seed().unwrap()).unwrap();
    std::fs::write(
        d.join("policy.toml"),
        "[defaults]\naccount = \"APP\"\n[permissions.p]\npub = { allow = [\"app.{claim.sub}.>\"] }\n\
         [[rules]]\nname = \"all\"\nscopes = [\"nats\"]\ngrant = [\"p\"]\n",
    )
    .unwrap();
    let config = ConfigBuilder::new("nats://127.0.0.1:4222", "issuer.nk", "policy.toml")
        .xkey_seed_file("xkey.nk")
        .issuer(IssuerBuilder::new("bench", ISS, &["nats"]).jwks_file("jwks.json"))
        .build();
    let config = Config::parse(&d.join("c.toml"), &config).unwrap();
    let callout = Callout::from_config(&config).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(callout.decider().issuers().load_all());

    let server = nkeys::KeyPair::new_server();
    let server_xkey = nkeys::XKey::new();
    let now = now_unix() as u64;
    let token = |i: usize| key.sign(&tokens::claims(tokens::Shape::Minimal, ISS, i, now));
    let one = token(0);
    let requests: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let t = match kind.as_str() {
                "cold" => token(i + 1),
                "malformed" => format!("not-a-jwt-{i}"),
                _ => one.clone(),
            };
            sealed_request(&server, &server_xkey, &xkey.public_key(), &t)
        })
        .collect();
    let server_pub = server_xkey.public_key();
    // Warm the cache and the xkey agreement outside the count.
    rt.block_on(callout.respond(&requests[0], Some(&server_pub)));
    let signer = AccountSigner::from_seed(&account.seed().unwrap()).unwrap();
    let sealer = Sealer::from_seed(&xkey.seed().unwrap()).unwrap();
    let answered = measured(
        &kind,
        &rt,
        &callout,
        &signer,
        &sealer,
        &requests,
        &server_pub,
    );
    println!("{kind}: {answered} of {n} answered");
}

/// The counted part: every request answered, one after the other.
#[inline(never)]
fn measured(
    kind: &str,
    rt: &tokio::runtime::Runtime,
    callout: &Callout,
    signer: &AccountSigner,
    sealer: &Sealer,
    requests: &[Vec<u8>],
    server_pub: &str,
) -> usize {
    let mut answered = 0;
    for r in requests {
        let payload = if kind == "ceiling" {
            let opened = request::open(r, Some(server_pub), Some(sealer)).unwrap();
            ceiling::answer(signer, &opened)
        } else {
            rt.block_on(callout.respond(r, Some(server_pub))).payload
        };
        answered += usize::from(!payload.is_empty());
    }
    answered
}

/// A request as nats-server sends it: signed by its server key, sealed to
/// the service's xkey.
fn sealed_request(
    server: &nkeys::KeyPair,
    server_xkey: &nkeys::XKey,
    service_xkey: &str,
    token: &str,
) -> Vec<u8> {
    let mut req = NatsClaims {
        data: ClaimsData {
            aud: AUTHORIZATION_REQUEST_AUDIENCE.into(),
            exp: now_unix() + 3600,
            iat: now_unix(),
            sub: "A".into(),
            ..ClaimsData::default()
        },
        nats: AuthorizationRequest {
            user_nkey: nkeys::KeyPair::new_user().public_key(),
            kind: "authorization_request".into(),
            version: 2,
            ..AuthorizationRequest::default()
        },
    };
    req.nats.server_id.id = server.public_key();
    req.nats.server_id.xkey = server_xkey.public_key();
    req.nats.client_info.host = "127.0.0.1".into();
    req.nats.client_info.conn_type = "nats".into();
    req.nats.connect_opts.auth_token = token.into();
    let jwt = encode(&mut req, server).unwrap();
    let to = nkeys::XKey::from_public_key(service_xkey).unwrap();
    server_xkey.seal(jwt.as_bytes(), &to).unwrap()
}
