//! The decision: authorization request in, signed response out. Shared by
//! `serve` (for every connection) and `check` (for one token), so both
//! decide exactly alike.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crypto_box::SalsaBox;
use serde_json::{Map, Value};

use crate::config::{Config, TokenSource};
use crate::issuer::{Issuers, TokenError, VerifiedToken};
use crate::policy::{Connection, Grant, Identity, Origin, Policy, PolicyError, RuleTrace};
use crate::protocol::{
    decode_request, encode, open_request, seal_response, AccountSigner, AuthorizationRequest,
    AuthorizationResponse, ClaimsData, NatsClaims, NkeySigner, Sealer, ServerBox, User,
    AUTHORIZATION_REQUEST_AUDIENCE,
};

/// An approved identity and when its NATS user expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub grant: Grant,
    pub expires_at: i64,
}

/// A decision and what it was about, for the audit line and `check`.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// A stable label for metrics: `ok`, or why it was denied.
    pub class: &'static str,
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub result: Result<Approval, String>,
    /// Per-rule verdicts and subject origins, when asked for (`--explain`).
    pub trace: Option<(Vec<RuleTrace>, Vec<Origin>)>,
}

impl Outcome {
    fn denied(class: &'static str, reason: impl ToString) -> Self {
        Self {
            class,
            issuer: None,
            subject: None,
            result: Err(reason.to_string()),
            trace: None,
        }
    }
}

/// One answered request: the bytes to publish and the audit facts.
pub struct Reply {
    /// Empty means "deny without reason", used only when the request is too
    /// broken to address a response to.
    pub payload: Vec<u8>,
    pub outcome: Outcome,
    pub client_host: String,
    pub client_name: String,
    pub server_id: String,
}

impl Reply {
    /// A denial for a request too broken to answer with a signed response.
    fn unaddressable(class: &'static str, reason: String) -> Self {
        Self {
            payload: Vec::new(),
            outcome: Outcome::denied(class, reason),
            client_host: String::new(),
            client_name: String::new(),
            server_id: String::new(),
        }
    }
}

/// Token in, decision out: issuers, policy and lifetime caps. Needs no
/// signing key, so `check` can run where the service's secrets are not.
pub struct Decider {
    issuers: Arc<Issuers>,
    policy: RwLock<Arc<Policy>>,
    max_ttl: Duration,
    reloads: AtomicU64,
    failed_reloads: AtomicU64,
}

/// Operator mode: the key that signs users of one target account.
struct Target {
    public_key: String,
    signer: AccountSigner,
}

/// A [`Decider`] plus the keys that sign and seal the server's answers.
pub struct Authorizer {
    decider: Decider,
    /// Operator mode's target accounts by name; empty in config mode.
    targets: std::collections::HashMap<String, Target>,
    signer: AccountSigner,
    xkey: Option<Sealer>,
    sources: Vec<TokenSource>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {reason}")]
    Key { path: String, reason: String },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Jwks(#[from] crate::issuer::JwksError),
}

/// Reads a secret file (nkey seed, password, client secret): its first
/// non-empty line that is not a comment.
pub fn read_secret(path: &Path) -> Result<String, SetupError> {
    let text = std::fs::read_to_string(path).map_err(|e| SetupError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("--"))
        .map(str::to_owned)
        .ok_or_else(|| SetupError::Key {
            path: path.display().to_string(),
            reason: "file holds no seed".into(),
        })
}

/// Requests are ~1 KB plus the client's token (and certificates with mTLS).
const MAX_REQUEST_BYTES: usize = 512 * 1024;

/// A request's `exp` is the server's own callout deadline (now + its auth
/// timeout), so a later answer is useless to the server and a request that
/// old is a replay. The slack absorbs clock skew between the two hosts.
const REQUEST_EXPIRY_SLACK_SECS: i64 = 10;

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Decider {
    pub fn from_config(config: &Config) -> Result<Self, SetupError> {
        let issuers = Arc::new(Issuers::new(config)?);
        let policy = Policy::load(&config.resolve(&config.policy.file), Some(&issuers.names()))?;
        Ok(Self {
            issuers,
            policy: RwLock::new(Arc::new(policy)),
            max_ttl: config.token.max_ttl.into(),
            reloads: AtomicU64::new(0),
            failed_reloads: AtomicU64::new(0),
        })
    }

    pub fn issuers(&self) -> &Arc<Issuers> {
        &self.issuers
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().expect("policy lock").clone()
    }

    /// Swaps in a new policy; on error the current one stays.
    pub fn reload_policy(&self, path: &Path) -> Result<Arc<Policy>, PolicyError> {
        match Policy::load(path, Some(&self.issuers.names())) {
            Ok(p) => {
                let policy = Arc::new(p);
                *self.policy.write().expect("policy lock") = policy.clone();
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(policy)
            }
            Err(e) => {
                self.failed_reloads.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// (successful, failed) policy reloads since start.
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads.load(Ordering::Relaxed),
            self.failed_reloads.load(Ordering::Relaxed),
        )
    }

    /// Validates a token and evaluates the policy, as for a connection.
    pub async fn decide(
        &self,
        token: &str,
        conn: &Connection<'_>,
        now: i64,
        explain: bool,
    ) -> Outcome {
        // One policy for both steps: the cache keeps the claims it reads.
        let policy = self.policy();
        match self
            .issuers
            .validate(token, Some(policy.claims_read()))
            .await
        {
            Ok(verified) => self.evaluate(&policy, &verified, conn, now, explain),
            Err(e) => Outcome::denied(e.class(), e),
        }
    }

    /// Evaluates the policy on unverified claims (`check --claims`): `iss`
    /// picks the issuer, whose scope claim is then read.
    pub fn decide_claims(
        &self,
        claims: Map<String, Value>,
        conn: &Connection<'_>,
        now: i64,
        explain: bool,
    ) -> Outcome {
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(issuer) = self.issuers.by_iss(iss) else {
            let e = if iss.is_empty() {
                TokenError::NoIssuer
            } else {
                TokenError::UnknownIssuer(iss.to_owned())
            };
            return Outcome::denied(e.class(), e);
        };
        let verified = VerifiedToken::new(
            issuer.config.name.clone(),
            &issuer.config.scope_claim,
            claims,
        );
        self.evaluate(&self.policy(), &verified, conn, now, explain)
    }

    fn evaluate(
        &self,
        policy: &Policy,
        token: &VerifiedToken,
        conn: &Connection<'_>,
        now: i64,
        explain: bool,
    ) -> Outcome {
        let identity = Identity {
            issuer: &token.issuer,
            claims: &token.claims,
            scopes: &token.scopes,
        };
        let (evaluated, trace) = if explain {
            let e = policy.explain(&identity, conn);
            (e.result, Some((e.rules, e.origins)))
        } else {
            (policy.evaluate(&identity, conn), None)
        };
        let mut class = "ok";
        let result = evaluated
            .map_err(|d| {
                class = d.class();
                d.to_string()
            })
            .and_then(|grant| {
                let expires_at = self.expiry(&grant, token.expires_at, now);
                if expires_at <= now {
                    class = "token_expiring";
                    Err("token expires too soon to issue a user".to_owned())
                } else {
                    Ok(Approval { grant, expires_at })
                }
            });
        Outcome {
            class,
            issuer: Some(token.issuer.clone()),
            subject: Some(token.subject.clone()),
            result,
            trace,
        }
    }

    /// The user lives no longer than the grant's ttl, `max_ttl`, and the
    /// token it was minted from.
    fn expiry(&self, grant: &Grant, token_exp: Option<i64>, now: i64) -> i64 {
        let cap = grant
            .ttl
            .min(self.max_ttl)
            .as_secs()
            .min(i64::MAX as u64 / 2) as i64;
        let mut exp = now.saturating_add(cap);
        if let Some(t) = token_exp {
            exp = exp.min(t);
        }
        exp
    }
}

impl Authorizer {
    /// Builds an authorizer from config: signing keys, issuers, policy.
    pub fn from_config(config: &Config) -> Result<Self, SetupError> {
        let seed_path = config.resolve(&config.signing.issuer_seed_file);
        let signer =
            AccountSigner::from_seed(&read_secret(&seed_path)?).ok_or_else(|| SetupError::Key {
                path: seed_path.display().to_string(),
                reason: "not an account seed (SA…); create one with `keygen account`".into(),
            })?;
        let xkey = match &config.signing.xkey_seed_file {
            None => None,
            Some(p) => {
                let path = config.resolve(p);
                Some(
                    Sealer::from_seed(&read_secret(&path)?).map_err(|_| SetupError::Key {
                        path: path.display().to_string(),
                        reason: "not a curve seed (SX…); create one with `keygen xkey`".into(),
                    })?,
                )
            }
        };
        let decider = Decider::from_config(config)?;
        let mut targets = std::collections::HashMap::new();
        for a in &config.accounts {
            let path = config.resolve(&a.signing_key_file);
            let key =
                AccountSigner::from_seed(&read_secret(&path)?).ok_or_else(|| SetupError::Key {
                    path: path.display().to_string(),
                    reason: format!("not an account seed (SA…) for account {:?}", a.name),
                })?;
            targets.insert(
                a.name.clone(),
                Target {
                    public_key: a.public_key.clone(),
                    signer: key,
                },
            );
        }
        if config.operator_mode() {
            let policy = decider.policy();
            if let Some(missing) = policy
                .accounts()
                .into_iter()
                .find(|a| !targets.contains_key(*a))
            {
                return Err(SetupError::Key {
                    path: config.path.display().to_string(),
                    reason: format!(
                        "the policy names account {missing:?}, which has no [[account]] entry"
                    ),
                });
            }
        }
        Ok(Self {
            decider,
            targets,
            signer,
            xkey,
            sources: config.token.sources.clone(),
        })
    }

    pub fn decider(&self) -> &Decider {
        &self.decider
    }

    pub fn signer_public_key(&self) -> String {
        self.signer.public_key()
    }

    pub fn xkey_public_key(&self) -> Option<String> {
        self.xkey.as_ref().map(|x| x.public_key().to_owned())
    }

    /// Answers one raw request from `$SYS.REQ.USER.AUTH`.
    pub async fn respond(&self, payload: &[u8], server_xkey: Option<&str>) -> Reply {
        let (request, reply_key) = match self.open(payload, server_xkey) {
            Ok(x) => x,
            Err(reason) => return Reply::unaddressable("bad_request", reason),
        };
        let req = &request.nats;
        let now = now_unix();
        let conn = Connection {
            conn_type: Some(connection_type(req)),
            host: Some(req.client_info.host.as_str()),
        };
        // A stale request is still the server's: it gets a signed denial with
        // the reason, so clock skew shows in the server's log, not as "no
        // reason supplied". A denial is all a replay can get.
        let outcome = match (stale(&request.data, now), self.token_of(req)) {
            (Some(reason), _) => Outcome::denied("stale_request", reason),
            (None, Some(t)) => self.decider.decide(t, &conn, now, false).await,
            (None, None) => Outcome::denied(TokenError::Missing.class(), TokenError::Missing),
        };
        self.answer(req, reply_key.as_deref(), outcome, now)
    }

    /// Denies a request without deciding (overload), still with a reason
    /// the server logs.
    pub fn refuse(
        &self,
        payload: &[u8],
        server_xkey: Option<&str>,
        class: &'static str,
        reason: &str,
    ) -> Reply {
        match self.open(payload, server_xkey) {
            Ok((request, reply_key)) => self.answer(
                &request.nats,
                reply_key.as_deref(),
                Outcome::denied(class, reason),
                now_unix(),
            ),
            Err(reason) => Reply::unaddressable("bad_request", reason),
        }
    }

    /// Opens, decodes and checks a request. The error is why it cannot be
    /// answered with a signed response (it then gets an empty denial).
    fn open(
        &self,
        payload: &[u8],
        server_xkey: Option<&str>,
    ) -> Result<(NatsClaims<AuthorizationRequest>, Option<ServerBox>), String> {
        if payload.len() > MAX_REQUEST_BYTES {
            return Err(format!("request larger than {MAX_REQUEST_BYTES} bytes"));
        }
        let (jwt, reply_key) = open_request(payload, server_xkey, self.xkey.as_ref())
            .map_err(|e| format!("unreadable request: {e}"))?;
        let request = std::str::from_utf8(&jwt)
            .map_err(|_| "request is not UTF-8".to_owned())
            .and_then(|t| decode_request(t).map_err(|e| e.to_string()))
            .map_err(|e| format!("invalid authorization request: {e}"))?;
        if request.data.aud != AUTHORIZATION_REQUEST_AUDIENCE {
            return Err(format!(
                "request aud is {:?}, expected {AUTHORIZATION_REQUEST_AUDIENCE:?}",
                request.data.aud
            ));
        }
        let req = &request.nats;
        if request.data.iss != req.server_id.id {
            return Err("request issuer is not the sending server".into());
        }
        if reply_key.is_some() && req.server_id.xkey != server_xkey.unwrap_or_default() {
            return Err("request xkey header does not match its server_id.xkey".into());
        }
        if !is_user_key(&req.user_nkey) {
            return Err("request user_nkey is not a user public key".into());
        }
        Ok((request, reply_key))
    }

    /// Signs (and seals, when the request was sealed) the answer.
    fn answer(
        &self,
        req: &AuthorizationRequest,
        reply_key: Option<&SalsaBox>,
        outcome: Outcome,
        now: i64,
    ) -> Reply {
        let response = match &outcome.result {
            Ok(approval) => self
                .user_jwt(
                    req,
                    approval,
                    outcome.subject.as_deref().unwrap_or_default(),
                    now,
                )
                .map(AuthorizationResponse::allow),
            Err(reason) => Ok(AuthorizationResponse::deny(reason.clone())),
        };
        let payload = response
            .and_then(|r| self.sign_response(req, r, now))
            .map(|jwt| match reply_key {
                Some(server) => seal_response(jwt.as_bytes(), server),
                None => jwt.into_bytes(),
            });
        let (payload, outcome) = match payload {
            Ok(p) => (p, outcome),
            Err(e) => (
                Vec::new(),
                Outcome::denied("internal", format!("cannot build response: {e}")),
            ),
        };
        Reply {
            payload,
            outcome,
            client_host: req.client_info.host.clone(),
            client_name: req.client_info.name.clone(),
            server_id: req.server_id.id.clone(),
        }
    }

    fn token_of<'a>(&self, req: &'a AuthorizationRequest) -> Option<&'a str> {
        self.sources
            .iter()
            .map(|s| match s {
                TokenSource::AuthToken => req.connect_opts.auth_token.as_str(),
                TokenSource::Password => req.connect_opts.pass.as_str(),
            })
            .find(|t| !t.is_empty())
    }

    fn user_jwt(
        &self,
        req: &AuthorizationRequest,
        approval: &Approval,
        name: &str,
        now: i64,
    ) -> Result<String, String> {
        let p = &approval.grant.permissions;
        let mut claims = NatsClaims {
            data: ClaimsData {
                aud: approval.grant.account.clone(),
                exp: approval.expires_at,
                iat: now,
                name: name.to_owned(),
                sub: req.user_nkey.clone(),
                ..ClaimsData::default()
            },
            nats: User::new(p.publish.clone(), p.subscribe.clone(), p.resp),
        };
        if self.targets.is_empty() {
            return encode(&mut claims, &self.signer).map_err(|e| e.to_string());
        }
        // Operator mode: the target account's key signs; a signing key names
        // the account it signs for.
        let target = self.targets.get(&approval.grant.account).ok_or_else(|| {
            format!(
                "account {:?} has no [[account]] entry",
                approval.grant.account
            )
        })?;
        if target.signer.public_key() != target.public_key {
            claims.nats.issuer_account = Some(target.public_key.clone());
        }
        encode(&mut claims, &target.signer).map_err(|e| e.to_string())
    }

    fn sign_response(
        &self,
        req: &AuthorizationRequest,
        resp: AuthorizationResponse,
        now: i64,
    ) -> Result<String, String> {
        let mut claims = NatsClaims {
            data: ClaimsData {
                aud: req.server_id.id.clone(),
                iat: now,
                sub: req.user_nkey.clone(),
                ..ClaimsData::default()
            },
            nats: resp,
        };
        encode(&mut claims, &self.signer).map_err(|e| e.to_string())
    }
}

/// Why a request is too old to decide on, if it is: its `exp` is the
/// server's own deadline, so past it (and the slack) it is a replay or the
/// clocks disagree.
fn stale(claims: &ClaimsData, now: i64) -> Option<String> {
    if claims.exp <= 0 {
        return Some("request has no exp".into());
    }
    let late = now.saturating_sub(claims.exp);
    (late > REQUEST_EXPIRY_SLACK_SECS).then(|| {
        format!(
            "request expired {late} s ago: a replay, or the clocks of server and service disagree"
        )
    })
}

/// Prefix and checksum, as nats-io/nkeys' `IsValidPublicUserKey` checks.
/// Not `KeyPair::from_public_key`, which also decompresses the curve point
/// (a field inversion, ~3% of a decision) for a key only the server uses.
fn is_user_key(key: &str) -> bool {
    nkeys::from_public_key(key)
        .is_ok_and(|(prefix, _)| nkeys::KeyPairType::from(prefix) == nkeys::KeyPairType::User)
}

/// `nats`, `websocket`, `mqtt`, or `leafnode` (whose `type` is empty).
fn connection_type(req: &AuthorizationRequest) -> &str {
    if req.client_info.kind.eq_ignore_ascii_case("leafnode") {
        "leafnode"
    } else {
        req.client_info.conn_type.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::{jwks, LocalKey};
    use jsonwebtoken::Algorithm;
    use nkeys::{KeyPair, KeyPairType};

    struct Fixture {
        _dir: tempfile::TempDir,
        authorizer: Authorizer,
        key: LocalKey,
        server: KeyPair,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let key = LocalKey::generate(Algorithm::ES256).unwrap();
        std::fs::write(d.join("jwks.json"), jwks(&[&key]).to_string()).unwrap();
        std::fs::write(d.join("issuer.nk"), KeyPair::new_account().seed().unwrap()).unwrap();
        std::fs::write(
            d.join("policy.toml"),
            "[defaults]\naccount = \"APP\"\n[permissions.p]\nsub = { allow = [\"a.{claim.sub}\"] }\n\
             [[rules]]\nname = \"r\"\nscopes = [\"nats\"]\ngrant = [\"p\"]\n",
        )
        .unwrap();
        let config = "[nats]\nurl = \"nats://127.0.0.1:4222\"\n[signing]\nissuer_seed_file = \"issuer.nk\"\n\
            [[issuer]]\nname = \"i\"\nissuer = \"https://i.test\"\naudience = \"nats\"\njwks_file = \"jwks.json\"\n\
            algorithms = [\"ES256\"]\n[policy]\nfile = \"policy.toml\"\n";
        let config = Config::parse(&d.join("c.toml"), config).unwrap();
        Fixture {
            _dir: dir,
            authorizer: Authorizer::from_config(&config).unwrap(),
            key,
            server: KeyPair::new_server(),
        }
    }

    fn request(f: &Fixture, signer: &KeyPair, token: &str) -> (Vec<u8>, String) {
        request_with(f, signer, token, |_| {})
    }

    fn request_with(
        f: &Fixture,
        signer: &KeyPair,
        token: &str,
        edit: impl FnOnce(&mut NatsClaims<AuthorizationRequest>),
    ) -> (Vec<u8>, String) {
        let user = KeyPair::new_user().public_key();
        let mut req = NatsClaims {
            data: ClaimsData {
                aud: AUTHORIZATION_REQUEST_AUDIENCE.into(),
                exp: now_unix() + 2,
                ..ClaimsData::default()
            },
            nats: AuthorizationRequest {
                user_nkey: user.clone(),
                kind: "authorization_request".into(),
                version: 2,
                ..AuthorizationRequest::default()
            },
        };
        req.nats.server_id.id = f.server.public_key();
        req.nats.connect_opts.auth_token = token.into();
        edit(&mut req);
        (encode(&mut req, signer).unwrap().into_bytes(), user)
    }

    fn response(reply: &Reply) -> NatsClaims<AuthorizationResponse> {
        let text = std::str::from_utf8(&reply.payload).unwrap();
        crate::protocol::decode::<AuthorizationResponse>(text, KeyPairType::Account).unwrap()
    }

    #[tokio::test]
    async fn allowed_request_gets_a_signed_user_for_the_right_server_and_user() {
        let f = fixture();
        f.authorizer.decider().issuers().load_all().await;
        let now = now_unix();
        let token = f.key.sign(
            &serde_json::json!({"iss": "https://i.test", "aud": "nats", "sub": "bo",
            "scope": "nats", "exp": now + 60}),
        );
        let (payload, user) = request(&f, &f.server, &token);
        let reply = f.authorizer.respond(&payload, None).await;
        let resp = response(&reply);
        assert_eq!(resp.data.aud, f.server.public_key());
        assert_eq!(resp.data.sub, user);
        assert_eq!(resp.data.iss, f.authorizer.signer_public_key());
        let jwt = resp.nats.jwt.expect("allowed");
        let u = crate::protocol::decode::<User>(&jwt, KeyPairType::Account).unwrap();
        assert_eq!(u.data.sub, user);
        assert_eq!(u.data.aud, "APP");
        assert!(u.data.exp <= now + 60, "user outlives its token");
        assert_eq!(u.nats.subscribe.allow, vec!["a.bo"]);
        assert_eq!(u.nats.publish.deny, vec![">"]);
    }

    #[tokio::test]
    async fn refusals_are_signed_denials_with_the_reason() {
        let f = fixture();
        let (payload, _) = request(&f, &f.server, "irrelevant");
        let reply = f
            .authorizer
            .refuse(&payload, None, "saturated", "service saturated");
        assert_eq!(
            response(&reply).nats.error.as_deref(),
            Some("service saturated")
        );
        assert_eq!(reply.outcome.class, "saturated");
    }

    #[tokio::test]
    async fn broken_requests_get_an_empty_denial() {
        let f = fixture();
        // Signed by an account key instead of the server's.
        let (forged, _) = request(&f, &KeyPair::new_account(), "t");
        let reply = f.authorizer.respond(&forged, None).await;
        assert!(reply.payload.is_empty());
        assert_eq!(reply.outcome.class, "bad_request");
        let huge = vec![b'e'; MAX_REQUEST_BYTES + 1];
        let reply = f.authorizer.respond(&huge, None).await;
        assert!(reply.outcome.result.unwrap_err().contains("larger than"));
        let reply = f.authorizer.respond(b"\x00\x01garbage", None).await;
        assert!(reply.payload.is_empty());
    }

    #[test]
    fn only_user_public_keys_pass_as_user_nkey() {
        let user = KeyPair::new_user().public_key();
        assert!(is_user_key(&user));
        let mut flipped = user.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        for bad in [
            KeyPair::new_account().public_key(),
            KeyPair::new_server().public_key(),
            String::from_utf8(flipped).unwrap(),
            String::new(),
            "U".repeat(56),
            format!("{user}="),
            format!("{}é", &user[..55]),
        ] {
            assert!(!is_user_key(&bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn stale_requests_are_denied_and_misaddressed_ones_not_answered() {
        let f = fixture();
        f.authorizer.decider().issuers().load_all().await;
        let token = f
            .key
            .sign(&serde_json::json!({"iss": "https://i.test", "aud": "nats",
            "sub": "bo", "scope": "nats", "exp": now_unix() + 60}));
        let fresh = request_with(&f, &f.server, &token, |r| r.data.exp = now_unix() + 2).0;
        let reply = f.authorizer.respond(&fresh, None).await;
        assert!(reply.outcome.result.is_ok(), "{:?}", reply.outcome.result);
        // Inside the slack the request is still answered.
        let late = request_with(&f, &f.server, &token, |r| r.data.exp = now_unix() - 5).0;
        assert!(f
            .authorizer
            .respond(&late, None)
            .await
            .outcome
            .result
            .is_ok());
        let far = request_with(&f, &f.server, &token, |r| r.data.exp = i64::MAX).0;
        assert!(f
            .authorizer
            .respond(&far, None)
            .await
            .outcome
            .result
            .is_ok());
        // Stale: a signed denial that says why, never a grant.
        type Edit = fn(&mut NatsClaims<AuthorizationRequest>);
        let stale: [(&str, Edit); 3] = [
            ("expired 60 s ago", |r| r.data.exp = now_unix() - 60),
            ("expired 12 s ago", |r| r.data.exp = now_unix() - 12),
            ("no exp", |r| r.data.exp = 0),
        ];
        for (needle, edit) in stale {
            let (replayed, _) = request_with(&f, &f.server, &token, edit);
            let reply = f.authorizer.respond(&replayed, None).await;
            assert_eq!(reply.outcome.class, "stale_request", "{needle}");
            let reason = reply.outcome.result.as_ref().unwrap_err();
            assert!(reason.contains(needle), "{needle}: {reason}");
            let resp = response(&reply);
            assert!(resp.nats.jwt.is_none(), "{needle}");
            assert!(resp.nats.error.unwrap().contains(needle));
        }
        // Addressed to something else: not answered at all.
        let (other, _) = request_with(&f, &f.server, &token, |r| {
            r.data.aud = "nats-authorization-response".into()
        });
        let reply = f.authorizer.respond(&other, None).await;
        assert!(reply.payload.is_empty());
        assert_eq!(reply.outcome.class, "bad_request");
        assert!(reply.outcome.result.unwrap_err().contains("aud"));
    }
}
