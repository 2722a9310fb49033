//! The authorization request from nats-server, as the service receives it:
//! raw bytes, a request the server really signed with fuzzed claims, and the
//! same sealed with xkeys. First byte picks the form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nats_oidc_callout::protocol::{decode, AuthorizationResponse, User};
use nats_oidc_callout_fuzz::world;

fuzz_target!(|data: &[u8]| {
    let w = world();
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let claims = w.fill(&String::from_utf8_lossy(rest));
    let reply = match form % 3 {
        0 => w.rt.block_on(w.plain.respond(rest, None)),
        1 => {
            let jwt = w.server_signed(claims.as_bytes());
            w.rt.block_on(w.plain.respond(jwt.as_bytes(), None))
        }
        _ => {
            let sealed = w.sealed_by_server(w.server_signed(claims.as_bytes()).as_bytes());
            let server = w.server_xkey.public_key();
            w.rt.block_on(w.sealed.respond(&sealed, Some(&server)))
        }
    };
    if reply.outcome.result.is_ok() {
        assert!(
            form % 3 != 0 && rest.windows(7).any(|x| x == b"@TOKEN@"),
            "granted without a token our issuer signed"
        );
        assert!(!reply.payload.is_empty(), "a grant must carry a response");
        // The grant is addressed to the server that asked, for the user key
        // it asked about, and so is the user inside it.
        let jwt = if form % 3 == 2 {
            w.opened_by_server(&reply.payload)
        } else {
            reply.payload.clone()
        };
        let jwt = String::from_utf8(jwt).expect("a response is text");
        let resp = decode::<AuthorizationResponse>(&jwt, nkeys::KeyPairType::Account)
            .expect("the response decodes and verifies");
        assert_eq!(
            resp.data.aud,
            w.server.public_key(),
            "response for another server"
        );
        // The user key as the fuzzer's request names it, read here rather
        // than taken from what the service parsed.
        let asked: serde_json::Value =
            serde_json::from_str(&claims).expect("a granted request's claims are JSON");
        let user_key = asked["nats"]["user_nkey"]
            .as_str()
            .expect("a granted request names a user key");
        assert_eq!(reply.client.user_nkey, user_key, "audited another user key");
        assert_eq!(resp.data.sub, user_key, "response for another user");
        let user = decode::<User>(
            resp.nats.jwt.as_deref().expect("a grant holds a user"),
            nkeys::KeyPairType::Account,
        )
        .expect("the user JWT decodes and verifies");
        assert_eq!(user.data.sub, user_key, "user JWT for another key");
    }
});
