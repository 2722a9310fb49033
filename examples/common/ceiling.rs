//! The ceiling: the least a valid callout responder does. It opens each
//! request exactly as the service does (unseal with the same xkey setting,
//! decode, verify the server's signature, check audience, issuer and user
//! key), then signs a user JWT with fixed permissions and the response,
//! and nothing else: no token, no policy, no cache, no metrics, no audit.
//! What the service costs beyond it is the price of deciding.

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use nats_oidc_callout::callout::request;
use nats_oidc_callout::clock::now_unix;
use nats_oidc_callout::protocol::{
    encode, seal_response, AccountSigner, AuthorizationResponse, ClaimsData, NatsClaims,
    Permission, Sealer, User, AUTH_SUBJECT, XKEY_HEADER,
};

/// Answers requests on `url` until the process is killed; prints `ready`
/// once subscribed. Keys are the service's (`issuer.nk`, `xkey.nk` in `dir`).
pub(crate) fn serve(url: &str, dir: &Path, xkey: bool) {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let signer = AccountSigner::from_seed(read("issuer.nk").trim()).expect("account seed");
    let sealer = xkey.then(|| Sealer::from_seed(read("xkey.nk").trim()).expect("xkey seed"));
    // The service's runtime (a worker per core) and its task per request:
    // answering inline measured slower on 2 shared cores, where decisions
    // then queue on one worker.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys = Arc::new((signer, sealer));
    runtime.block_on(async {
        let client = async_nats::ConnectOptions::with_user_and_password("auth".into(), "pw".into())
            .connect(url)
            .await
            .expect("ceiling responder connects");
        let mut requests = client.subscribe(AUTH_SUBJECT).await.unwrap();
        client.flush().await.unwrap();
        println!("ready");
        while let Some(msg) = requests.next().await {
            let (client, keys) = (client.clone(), keys.clone());
            tokio::spawn(async move {
                let Some(reply_to) = msg.reply else { return };
                let server_xkey = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(XKEY_HEADER))
                    .map(|v| v.as_str());
                let (signer, sealer) = &*keys;
                let Ok(opened) = request::open(&msg.payload, server_xkey, sealer.as_ref()) else {
                    return;
                };
                let payload = answer(signer, &opened);
                let _ = client.publish(reply_to, payload.into()).await;
            });
        }
    });
}

/// A user allowed to publish on `app.>`, for ten minutes, and the signed
/// (and sealed, when the request was) response carrying it.
pub(crate) fn answer(signer: &AccountSigner, opened: &request::Opened) -> Vec<u8> {
    let req = &opened.request.nats;
    let now = now_unix();
    let allow = |s: &str| Permission {
        allow: vec![s.to_owned()],
        deny: Vec::new(),
    };
    let mut user = NatsClaims {
        data: ClaimsData {
            aud: "APP".into(),
            exp: now + 600,
            iat: now,
            name: "ceiling".into(),
            sub: req.user_nkey.clone(),
            ..ClaimsData::default()
        },
        nats: User::new(allow("app.>"), allow("_INBOX.>"), None),
    };
    let user_jwt = encode(&mut user, signer).unwrap();
    let mut response = NatsClaims {
        data: ClaimsData {
            aud: req.server_id.id.clone(),
            iat: now,
            sub: req.user_nkey.clone(),
            ..ClaimsData::default()
        },
        nats: AuthorizationResponse::allow(user_jwt),
    };
    let jwt = encode(&mut response, signer).unwrap();
    match &opened.reply_key {
        Some(server) => seal_response(jwt.as_bytes(), server),
        None => jwt.into_bytes(),
    }
}
