//! Opaque tokens against a real IdP: panva/oidc-provider's introspection,
//! revocation and userinfo endpoints, asked through the library's
//! `Introspector` exactly as a decision asks it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use jsonwebtoken::Algorithm;
use nats_oidc_callout::claims::lookup;
use nats_oidc_callout::config::Config;
use nats_oidc_callout::introspection::{CallResult, IntrospectionError, Introspector, Refused};
use nats_oidc_callout::issuer::LocalKey;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::json;

/// An introspector for `idp`'s opaque tokens using `client`, plus `extra`
/// issuer lines. The config lives in `dir`. Calls may take up to 10 s: these
/// tests are about answers, and the test machine may be busy.
fn introspector(
    dir: &tempfile::TempDir,
    idp: &NodeIdp,
    client: &IntrospectionClient,
    extra: &str,
) -> Introspector {
    let src = format!(
        "[nats]\nurl = \"nats://127.0.0.1:4222\"\n[signing]\nissuer_seed_file = \"unused.nk\"\n\
         [[issuer]]\nname = \"node\"\nissuer = \"{}\"\naudience = \"{}\"\n\
         token_types = [\"opaque\"]\nintrospection_timeout = \"10s\"\n{}{extra}\n\
         [policy]\nfile = \"unused.toml\"\n",
        idp.issuer(),
        idp.opaque_resource,
        client.config_lines()
    );
    let config = Config::parse(&dir.path().join("callout.toml"), &src).expect("config parses");
    Introspector::from_config(&config, &config.issuers[0]).expect("introspector")
}

fn random_string() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(43)
        .map(char::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_opaque_token_gives_its_claims() {
    let idp = NodeIdp::start();
    let dir = tempfile::tempdir().unwrap();
    let client = idp.introspection_client(IntrospectionAuth::ClientSecretBasic);
    let i = introspector(&dir, &idp, &client, "");
    let endpoints = i.resolve_endpoints().await.unwrap().unwrap();
    assert_eq!(
        endpoints.introspection,
        format!("{}/token/introspection", idp.issuer())
    );

    let token = idp.opaque_token("nats").await;
    let t = i.introspect(&token, None).await.unwrap();
    assert_eq!(t.issuer, "node");
    assert_eq!(t.subject, "ci-job");
    assert_eq!(t.scopes, vec!["nats"]);
    assert_eq!(t.claims["client_id"], "ci-job");
    assert_eq!(t.claims["aud"], json!(idp.opaque_resource));
    assert_eq!(t.claims["groups"], json!(["ci", "deploy"]));
    let exp = t.expires_at.expect("exp");
    assert!(exp > now() && exp <= now() + 300, "exp {exp}");
    assert_eq!(idp.stats().await.introspection, 1);

    // A JWT access token of the same IdP: oidc-provider refuses to
    // introspect structured tokens, and the reason carries its error code.
    let jwt = idp.token("nats").await;
    let e = i.introspect(&jwt, None).await.unwrap_err();
    assert!(
        e.to_string().contains("HTTP 400 unsupported_token_type"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_three_client_auth_methods_are_accepted() {
    let idp = NodeIdp::start();
    let dir = tempfile::tempdir().unwrap();
    let token = idp.opaque_token("nats").await;
    for auth in [
        IntrospectionAuth::ClientSecretBasic,
        IntrospectionAuth::ClientSecretPost,
        IntrospectionAuth::PrivateKeyJwt(Algorithm::ES256),
        IntrospectionAuth::PrivateKeyJwt(Algorithm::RS256),
    ] {
        let client = idp.introspection_client(auth);
        let i = introspector(&dir, &idp, &client, "");
        // Two calls (the repeat is a cache hit, the other token is not): a
        // private_key_jwt assertion is single-use at the IdP, so the second
        // call only succeeds with a fresh one.
        let other = idp.opaque_token("nats").await;
        for t in [&token, &token, &other] {
            let t = i.introspect(t, None).await;
            assert_eq!(t.map(|t| t.subject), Ok("ci-job".to_owned()), "{auth:?}");
        }
        assert_eq!(i.counters().calls(), 2, "{auth:?}");
        assert_eq!(i.counters().cache_hits(), 1, "{auth:?}");
    }

    // The credentials matter: a wrong secret is refused by the IdP, and
    // the reason says so without naming the secret.
    let mut client = idp.introspection_client(IntrospectionAuth::ClientSecretPost);
    client.file = dir.path().join("wrong.secret");
    write_secret(&client.file, "not-the-secret");
    let i = introspector(&dir, &idp, &client, "");
    let e = i.introspect(&token, None).await.unwrap_err();
    assert_eq!(e.class().as_str(), "idp_unavailable");
    assert!(e.to_string().contains("HTTP 401 invalid_client"), "{e}");
    assert!(!e.to_string().contains("not-the-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_inactive_once_the_cache_window_ends() {
    let idp = NodeIdp::start();
    let dir = tempfile::tempdir().unwrap();
    let client = idp.introspection_client(IntrospectionAuth::ClientSecretBasic);
    let i = introspector(&dir, &idp, &client, "introspection_cache = \"1s\"");
    let token = idp.opaque_token("nats").await;
    assert!(i.introspect(&token, None).await.is_ok());

    idp.revoke(&token).await;
    // Within the window the cached answer stands, without a call.
    assert!(i.introspect(&token, None).await.is_ok());
    assert_eq!(idp.stats().await.introspection, 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let e = i.introspect(&token, None).await.unwrap_err();
    assert_eq!(e, IntrospectionError::Inactive);
    assert_eq!(e.to_string(), "token inactive");
    assert_eq!(idp.stats().await.introspection, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_idp_stopped_a_seen_token_is_answered_and_a_new_one_gets_the_reason() {
    let mut idp = NodeIdp::start();
    let dir = tempfile::tempdir().unwrap();
    let client = idp.introspection_client(IntrospectionAuth::ClientSecretBasic);
    let i = introspector(&dir, &idp, &client, "");
    let seen = idp.opaque_token("nats").await;
    let unseen = idp.opaque_token("nats").await;
    assert!(i.introspect(&seen, None).await.is_ok());

    idp.stop();
    assert_eq!(i.introspect(&seen, None).await.unwrap().subject, "ci-job");
    let e = i.introspect(&unseen, None).await.unwrap_err();
    assert_eq!(e.class().as_str(), "idp_unavailable");
    let text = e.to_string();
    assert!(
        text.starts_with("introspection at issuer \"node\" failed: cannot connect"),
        "{text}"
    );
    assert!(
        !text.contains(&unseen),
        "the token never appears in a reason"
    );
    // Failures are not cached: the next try calls (and fails) again.
    assert!(i.introspect(&unseen, None).await.is_err());
    assert_eq!(i.counters().calls_with(CallResult::Unavailable), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_strings_costs_a_bounded_number_of_calls() {
    let idp = NodeIdp::start();
    let dir = tempfile::tempdir().unwrap();
    let client = idp.introspection_client(IntrospectionAuth::ClientSecretBasic);
    // The default limits (16 calls in flight, 100 calls a second, burst
    // 100); negative answers kept long enough to outlive the test.
    let i = Arc::new(introspector(
        &dir,
        &idp,
        &client,
        "introspection_negative_cache = \"10m\"",
    ));
    let junk: Vec<String> = (0..1000).map(|_| random_string()).collect();

    let started = Instant::now();
    let tasks: Vec<_> = junk
        .iter()
        .cloned()
        .map(|t| {
            let i = i.clone();
            tokio::spawn(async move { i.introspect(&t, None).await })
        })
        .collect();
    let mut inactive = 0;
    for t in tasks {
        match t.await.unwrap() {
            Err(IntrospectionError::Inactive) => inactive += 1,
            Err(IntrospectionError::Saturated { .. } | IntrospectionError::RateLimited { .. }) => {}
            other => panic!("a random string got {other:?}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let calls = i.counters().calls();
    let at_idp = idp.stats().await.introspection;
    eprintln!(
        "flood, 1000 at once: {calls} introspection calls ({inactive} inactive, {} saturated, \
         {} rate-limited) in {elapsed:.2} s",
        i.counters().skipped_for(Refused::Saturated),
        i.counters().skipped_for(Refused::RateLimited),
    );
    assert_eq!(calls, at_idp, "every call counted reached the IdP");
    assert_eq!(calls as usize, inactive);
    // The rate limit's bound: one burst plus the rate over the time taken.
    assert!(
        calls as f64 <= 100.0 + (100.0 * elapsed).ceil(),
        "{calls} calls in {elapsed} s"
    );

    // The same strings again, one at a time: each one already answered is
    // in the negative cache and costs nothing; the rest are limited as before.
    let started = Instant::now();
    for t in &junk {
        let r = i.introspect(t, None).await;
        assert!(r.is_err(), "a random string was accepted");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let second = i.counters().calls() - calls;
    eprintln!(
        "flood, the same 1000 one by one: {second} more calls, {} cache hits, in {elapsed:.2} s",
        i.counters().cache_hits()
    );
    assert_eq!(i.counters().cache_hits(), calls);
    assert!(
        second as f64 <= 100.0 + (100.0 * elapsed).ceil(),
        "{second} calls in {elapsed} s"
    );
    assert_eq!(i.counters().calls(), idp.stats().await.introspection);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_with_one_token_costs_one_call() {
    let idp = NodeIdp::start();
    let dir = tempfile::tempdir().unwrap();
    let client = idp.introspection_client(IntrospectionAuth::ClientSecretBasic);
    let i = Arc::new(introspector(&dir, &idp, &client, ""));
    let token = idp.opaque_token("nats").await;
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (i, token) = (i.clone(), token.clone());
            tokio::spawn(async move { i.introspect(&token, None).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().subject, "ci-job");
    }
    let at_idp = idp.stats().await.introspection;
    eprintln!("storm, 1000 at once with one token: {at_idp} introspection call(s)");
    assert_eq!(at_idp, 1);
    assert_eq!(i.counters().cache_hits(), 999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_claims_are_merged_under_userinfo() {
    let idp = NodeIdp::start();
    let dir = tempfile::tempdir().unwrap();
    let client = idp.introspection_client(IntrospectionAuth::ClientSecretBasic);
    let i = introspector(&dir, &idp, &client, "userinfo = true");
    let token = idp.user_token("alice", "openid email groups").await;
    let keep: Arc<[String]> =
        vec!["userinfo.groups".to_owned(), "userinfo.email".to_owned()].into();
    for _ in 0..3 {
        let t = i.introspect(&token, Some(&keep)).await.unwrap();
        assert_eq!(t.subject, "alice");
        let always = nats_oidc_callout::claims::CACHED_ALWAYS;
        let extra: Vec<&String> = t
            .claims
            .keys()
            .filter(|k| {
                !always.contains(&k.as_str()) && *k != "scope" && !k.starts_with("userinfo.")
            })
            .collect();
        assert!(
            extra.is_empty(),
            "kept what the policy does not read: {extra:?}"
        );
        assert!(
            t.claims.contains_key("client_id"),
            "kept: revocations select on it"
        );
        assert_eq!(
            lookup(&t.claims, "userinfo.email"),
            Ok(Some(&json!("alice@example.test")))
        );
        assert_eq!(
            lookup(&t.claims, "userinfo.groups"),
            Ok(Some(&json!(["users", "team-alice"])))
        );
    }
    let stats = idp.stats().await;
    assert_eq!(
        (stats.introspection, stats.userinfo),
        (1, 1),
        "cached together"
    );

    // A token the userinfo endpoint refuses (a client-credentials token)
    // is denied: userinfo fails closed, and is not cached.
    let cc = idp.opaque_token("nats").await;
    for _ in 0..2 {
        let e = i.introspect(&cc, None).await.unwrap_err();
        assert_eq!(e.class().as_str(), "userinfo_failed", "{e}");
        assert!(e.to_string().contains("HTTP 401"), "{e}");
    }
    assert_eq!(idp.stats().await.userinfo, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_that_cannot_introspect_gives_a_clear_reason() {
    // The in-process IdP: discovery without an introspection endpoint, and
    // switches for outages.
    let key = LocalKey::generate(Algorithm::ES256).unwrap();
    let idp = Idp::start(&[&key]).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    write_secret(&secret, "s3cret");
    let config = |extra: &str| {
        let src = format!(
            "[nats]\nurl = \"nats://127.0.0.1:4222\"\n[signing]\nissuer_seed_file = \"x.nk\"\n\
             [[issuer]]\nname = \"plain\"\nissuer = \"{}\"\naudience = \"nats\"\n\
             token_types = [\"opaque\"]\nintrospection_client_id = \"callout\"\n\
             introspection_client_secret_file = \"{}\"\n{extra}\n[policy]\nfile = \"p.toml\"\n",
            idp.issuer,
            secret.display()
        );
        let config = Config::parse(&dir.path().join("c.toml"), &src).unwrap();
        Introspector::from_config(&config, &config.issuers[0]).unwrap()
    };

    let i = config("");
    let e = i.resolve_endpoints().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "introspection at issuer \"plain\" failed: discovery document has no introspection_endpoint"
    );
    assert_eq!(i.introspect("abc", None).await.unwrap_err(), e);

    let explicit = format!("introspection_endpoint = \"{}/introspect\"", idp.issuer);
    idp.set_fault(IdpFault::Down);
    let e = config(&explicit).introspect("abc", None).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "introspection at issuer \"plain\" failed: HTTP 503"
    );

    idp.set_fault(IdpFault::Hang);
    let i = config(&format!("{explicit}\nintrospection_timeout = \"300ms\""));
    let e = i.introspect("abc", None).await.unwrap_err();
    assert_eq!(
        e,
        IntrospectionError::Timeout {
            issuer: "plain".into()
        }
    );
    assert_eq!(e.class().as_str(), "idp_timeout");
    assert_eq!(i.counters().calls_with(CallResult::Timeout), 1);
}
