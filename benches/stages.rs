//! Microbenchmarks of each stage of a decision. Keys are generated here;
//! nothing touches the network (the issuer's keys come from a JWKS file).
//!
//! cargo bench --bench stages

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::Algorithm;
use nats_oidc_callout::callout::Callout;
use nats_oidc_callout::clock::now_unix;
use nats_oidc_callout::config::{Config, ConfigBuilder, IssuerBuilder};
use nats_oidc_callout::issuer::{jwks, LocalKey};
use nats_oidc_callout::policy::{Connection, Identity, Known, Policy};
use nats_oidc_callout::protocol::{
    decode_request, encode, open_request, seal_response, AuthorizationRequest, ClaimsData,
    NatsClaims, Sealer, AUTHORIZATION_REQUEST_AUDIENCE,
};
use serde_json::json;

const ISS: &str = "https://bench.invalid";

struct Setup {
    _dir: tempfile::TempDir,
    callout: Callout,
    keys: Vec<LocalKey>,
    server: nkeys::KeyPair,
    server_xkey: nkeys::XKey,
    service_xkey_pub: String,
}

fn setup(policy: &str, cache_size: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let algs = [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ];
    let keys: Vec<LocalKey> = algs
        .iter()
        .map(|a| LocalKey::generate(*a).unwrap())
        .collect();
    std::fs::write(
        d.join("jwks.json"),
        jwks(&keys.iter().collect::<Vec<_>>()).to_string(),
    )
    .unwrap();
    let account = nkeys::KeyPair::new_account();
    let xkey = nkeys::XKey::new();
    std::fs::write(d.join("issuer.nk"), account.seed().unwrap()).unwrap();
    std::fs::write(d.join("xkey.nk"), xkey.seed().unwrap()).unwrap();
    std::fs::write(d.join("policy.toml"), policy).unwrap();
    let config = ConfigBuilder::new("nats://127.0.0.1:4222", "issuer.nk", "policy.toml")
        .xkey_seed_file("xkey.nk")
        .token_lines(&format!("cache_size = {cache_size}"))
        .issuer(
            IssuerBuilder::new("corp", ISS, &["nats"])
                .jwks_file("jwks.json")
                .algorithms(&["RS256", "PS256", "ES256", "EdDSA"]),
        )
        .build();
    let config = Config::parse(&d.join("c.toml"), &config).unwrap();
    let authorizer = Callout::from_config(&config).unwrap();
    Setup {
        _dir: dir,
        callout: authorizer,
        keys,
        server: nkeys::KeyPair::new_server(),
        server_xkey: nkeys::XKey::new(),
        service_xkey_pub: xkey.public_key(),
    }
}

const SMALL_POLICY: &str = "[defaults]\naccount = \"APP\"\n[permissions.own]\npub = { allow = [\"app.{claim.sub}.>\"] }\n\
    sub = { allow = [\"app.{claim.sub}.>\", \"_INBOX.>\"] }\n[[rules]]\nname = \"users\"\nissuer = \"corp\"\nscopes = [\"nats\"]\ngrant = [\"own\"]\n";

fn big_policy(rules: usize) -> String {
    let mut p = String::from("[defaults]\naccount = \"APP\"\n[permissions.own]\npub = { allow = [\"app.{claim.sub}.>\"] }\n");
    for i in 0..rules {
        p += &format!("[[rules]]\nname = \"r{i}\"\nissuer = \"corp\"\nclaims = {{ team = \"team-{i}\" }}\ngrant = [\"own\"]\n");
    }
    p
}

fn claims(sub: &str) -> serde_json::Value {
    let now = now_unix();
    json!({"iss": ISS, "aud": "nats", "sub": sub, "scope": "openid nats", "team": "team-499", "iat": now, "exp": now + 3600})
}

/// A request as nats-server sends it: signed by its server key, sealed to
/// the service's xkey.
fn request(s: &Setup, token: &str) -> Vec<u8> {
    let mut req = NatsClaims {
        data: ClaimsData {
            aud: AUTHORIZATION_REQUEST_AUDIENCE.into(),
            // The server sets now + its auth timeout; requests here are
            // built up front and used for the whole run, so they live long.
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
    req.nats.server_id.id = s.server.public_key();
    req.nats.server_id.xkey = s.server_xkey.public_key();
    req.nats.client_info.host = "127.0.0.1".into();
    req.nats.client_info.conn_type = "nats".into();
    req.nats.connect_opts.auth_token = token.into();
    let jwt = encode(&mut req, &s.server).unwrap();
    let to = nkeys::XKey::from_public_key(&s.service_xkey_pub).unwrap();
    s.server_xkey.seal(jwt.as_bytes(), &to).unwrap()
}

fn stages(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = setup(SMALL_POLICY, 1_000_000);
    rt.block_on(s.callout.decider().issuers().load_all());
    // Cold numbers come from a service whose token cache holds nothing.
    let cold = setup(SMALL_POLICY, 0);
    let issuers = cold.callout.decider().issuers();
    // As `serve` validates: keeping only the claims the policy reads.
    let cold_policy = cold.callout.decider().policy();
    let keep = Some(cold_policy.claims_read());
    rt.block_on(issuers.load_all());

    let token = s.keys[0].sign(&claims("svc-1"));
    let sealed = request(&s, &token);
    let (jwt, _) = {
        let service =
            Sealer::from_seed(&std::fs::read_to_string(s._dir.path().join("xkey.nk")).unwrap())
                .unwrap();
        open_request(&sealed, Some(&s.server_xkey.public_key()), Some(&service)).unwrap()
    };
    let jwt = String::from_utf8(jwt).unwrap();
    c.bench_function("request decode+verify", |b| {
        b.iter(|| decode_request(black_box(&jwt)).unwrap())
    });

    let service =
        Sealer::from_seed(&std::fs::read_to_string(s._dir.path().join("xkey.nk")).unwrap())
            .unwrap();
    let server_pub = s.server_xkey.public_key();
    c.bench_function("xkey open (cached agreement)", |b| {
        b.iter(|| open_request(black_box(&sealed), Some(&server_pub), Some(&service)).unwrap())
    });
    let (_, reply_box) = open_request(&sealed, Some(&server_pub), Some(&service)).unwrap();
    let reply_box = reply_box.unwrap();
    c.bench_function("xkey seal", |b| {
        b.iter(|| seal_response(black_box(jwt.as_bytes()), &reply_box))
    });

    for key in &cold.keys {
        // Cold: every iteration a token the cache has never seen.
        let pool: Vec<String> = (0..4000)
            .map(|i| key.sign(&claims(&format!("u{i}"))))
            .collect();
        let next = AtomicUsize::new(0);
        c.bench_function(&format!("token validation cold {:?}", key.alg), |b| {
            b.iter(|| {
                let t = &pool[next.fetch_add(1, Ordering::Relaxed) % pool.len()];
                rt.block_on(issuers.validate(t, keep))
            })
        });
    }
    let warm_issuers = s.callout.decider().issuers();
    let warm_policy = s.callout.decider().policy();
    c.bench_function("token validation warm (cache hit)", |b| {
        b.iter(|| {
            rt.block_on(warm_issuers.validate(black_box(&token), Some(warm_policy.claims_read())))
                .unwrap()
        })
    });

    let claims_map = claims("svc-1").as_object().unwrap().clone();
    let scopes = vec!["openid".to_string(), "nats".to_string()];
    let who = Identity {
        issuer: "corp",
        claims: &claims_map,
        scopes: &scopes,
    };
    let small = Policy::parse(Path::new("p.toml"), SMALL_POLICY, &Known::default()).unwrap();
    c.bench_function("policy eval 1 rule", |b| {
        b.iter(|| {
            small
                .evaluate(black_box(&who), &Connection::default())
                .unwrap()
        })
    });
    let big = Policy::parse(Path::new("p.toml"), &big_policy(500), &Known::default()).unwrap();
    c.bench_function("policy eval 500 rules", |b| {
        b.iter(|| {
            big.evaluate(black_box(&who), &Connection::default())
                .unwrap()
        })
    });

    let user = nats_oidc_callout::protocol::AccountSigner::from_seed(
        &nkeys::KeyPair::new_account().seed().unwrap(),
    )
    .unwrap();
    c.bench_function("user JWT + response signing", |b| {
        b.iter(|| {
            let mut u = NatsClaims {
                data: ClaimsData {
                    aud: "APP".into(),
                    sub: "U".into(),
                    exp: 1,
                    ..ClaimsData::default()
                },
                nats: nats_oidc_callout::protocol::User::new(
                    Default::default(),
                    Default::default(),
                    None,
                ),
            };
            let jwt = encode(&mut u, &user).unwrap();
            let mut r = NatsClaims {
                data: ClaimsData {
                    aud: "N".into(),
                    sub: "U".into(),
                    ..ClaimsData::default()
                },
                nats: nats_oidc_callout::protocol::AuthorizationResponse::allow(jwt),
            };
            encode(&mut r, &user).unwrap()
        })
    });

    // Whole decision, sealed request in, sealed signed response out.
    let warm_req = request(&s, &token);
    let first = rt.block_on(s.callout.respond(&warm_req, Some(&server_pub)));
    assert!(first.outcome.result.is_ok(), "{:?}", first.outcome.result);
    c.bench_function("whole decision warm", |b| {
        b.iter(|| rt.block_on(s.callout.respond(black_box(&warm_req), Some(&server_pub))))
    });
    let cold_server_pub = cold.server_xkey.public_key();
    let cold_pool: Vec<Vec<u8>> = (0..2000)
        .map(|i| request(&cold, &cold.keys[0].sign(&claims(&format!("cold-{i}")))))
        .collect();
    let check = rt.block_on(cold.callout.respond(&cold_pool[0], Some(&cold_server_pub)));
    assert!(check.outcome.result.is_ok(), "{:?}", check.outcome.result);
    let next = AtomicUsize::new(0);
    c.bench_function("whole decision cold RS256", |b| {
        b.iter(|| {
            let r = &cold_pool[next.fetch_add(1, Ordering::Relaxed) % cold_pool.len()];
            rt.block_on(cold.callout.respond(r, Some(&cold_server_pub)))
        })
    });
}

criterion_group!(benches, stages);
criterion_main!(benches);
