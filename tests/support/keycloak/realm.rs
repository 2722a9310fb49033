//! One realm in the shared Keycloak: tokens (client credentials, password),
//! revocation, clients and secrets, and key rotation through the admin API.

use super::*;

/// One realm of a [`Keycloak`], with the admin operations the tests need.
pub(crate) struct Realm {
    pub(super) keycloak: String,
    pub(crate) name: String,
    pub(super) admin_password: String,
    /// Reused for 30 s (Keycloak's admin tokens live 60 s): each password
    /// grant costs Keycloak a password hash.
    pub(super) admin_token: Mutex<Option<(String, Instant)>>,
}

/// An RSA signing key as Keycloak reports it.
#[derive(Debug, Clone)]
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    /// The id of the key-provider component that holds it.
    pub(crate) provider: String,
    pub(crate) priority: i64,
}

impl Realm {
    /// The `iss` of this realm's tokens (requested on 127.0.0.1).
    pub(crate) fn issuer(&self) -> String {
        format!("{}/realms/{}", self.keycloak, self.name)
    }

    fn token_endpoint(&self) -> String {
        format!("{}/protocol/openid-connect/token", self.issuer())
    }

    pub(super) async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let cached = self
            .admin_token
            .lock()
            .unwrap()
            .clone()
            .filter(|(_, at)| at.elapsed() < Duration::from_secs(30));
        let token = match cached {
            Some((token, _)) => token,
            None => {
                let token = fetch_admin_token(&self.keycloak, &self.admin_password).await;
                *self.admin_token.lock().unwrap() = Some((token.clone(), Instant::now()));
                token
            }
        };
        http()
            .request(method, format!("{}{path}", self.keycloak))
            .bearer_auth(token)
    }

    /// GET on the realm's admin API (`path` after `/admin/realms/<realm>`).
    pub(crate) async fn admin_get(&self, path: &str) -> Value {
        let path = format!("/admin/realms/{}{path}", self.name);
        let resp = self
            .admin(reqwest::Method::GET, &path)
            .await
            .send()
            .await
            .expect("admin GET");
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }

    async fn admin_send(&self, method: reqwest::Method, path: &str, body: &Value) {
        let path = format!("/admin/realms/{}{path}", self.name);
        let resp = self
            .admin(method.clone(), &path)
            .await
            .json(body)
            .send()
            .await
            .expect("admin request");
        let status = resp.status();
        assert!(
            status.is_success(),
            "{method} {path}: {status} {}",
            resp.text().await.unwrap_or_default()
        );
    }

    async fn client_uuid(&self, client_id: &str) -> String {
        let list = self
            .admin_get(&format!("/clients?clientId={client_id}"))
            .await;
        list[0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no client {client_id} in realm {}", self.name))
            .to_owned()
    }

    /// A new secret for `client_id` (Keycloak makes it; the old one ends).
    pub(crate) async fn new_client_secret(&self, client_id: &str) -> String {
        let id = self.client_uuid(client_id).await;
        let path = format!("/admin/realms/{}/clients/{id}/client-secret", self.name);
        let resp = self
            .admin(reqwest::Method::POST, &path)
            .await
            .send()
            .await
            .expect("new client secret");
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body["value"].as_str().expect("secret value").to_owned()
    }

    /// Adds a confidential client with no grant of its own (it only
    /// authenticates, e.g. to the introspection endpoint); returns the
    /// secret Keycloak generated for it.
    pub(crate) async fn add_confidential_client(&self, client_id: &str) -> String {
        self.admin_send(
            reqwest::Method::POST,
            "/clients",
            &json!({
                "clientId": client_id,
                "enabled": true,
                "publicClient": false,
                "clientAuthenticatorType": "client-secret",
                "standardFlowEnabled": false,
                "directAccessGrantsEnabled": false,
                "serviceAccountsEnabled": false
            }),
        )
        .await;
        self.client_secret(client_id).await
    }

    /// Revokes an access token at Keycloak's revocation endpoint (RFC
    /// 7009), as the public client `client_id` it was issued to.
    pub(crate) async fn revoke(&self, client_id: &str, token: &str) {
        let url = format!("{}/protocol/openid-connect/revoke", self.issuer());
        let resp = http()
            .post(&url)
            .form(&[
                ("client_id", client_id),
                ("token", token),
                ("token_type_hint", "access_token"),
            ])
            .send()
            .await
            .expect("revoke");
        let status = resp.status();
        assert!(
            status.is_success(),
            "{url} said {status}: {}",
            resp.text().await.unwrap_or_default()
        );
    }

    /// The secret Keycloak generated for a confidential client.
    pub(crate) async fn client_secret(&self, client_id: &str) -> String {
        let id = self.client_uuid(client_id).await;
        self.admin_get(&format!("/clients/{id}/client-secret"))
            .await["value"]
            .as_str()
            .expect("client secret")
            .to_owned()
    }

    /// An access token by the client-credentials grant.
    pub(crate) async fn token_by_client_credentials(
        &self,
        client_id: &str,
        secret: &str,
    ) -> String {
        form_post(
            &self.token_endpoint(),
            &[("grant_type", "client_credentials")],
            Some((client_id, secret)),
        )
        .await["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// Sets a user's password (not temporary) through the admin API.
    pub(crate) async fn set_password(&self, username: &str, password: &str) {
        let users = self
            .admin_get(&format!("/users?username={username}&exact=true"))
            .await;
        let id = users[0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no user {username} in realm {}", self.name))
            .to_owned();
        self.admin_send(
            reqwest::Method::PUT,
            &format!("/users/{id}/reset-password"),
            &json!({"type": "password", "value": password, "temporary": false}),
        )
        .await;
    }

    /// An access token by the password grant (direct access grant).
    pub(crate) async fn token_by_password(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> String {
        form_post(
            &self.token_endpoint(),
            &[
                ("grant_type", "password"),
                ("client_id", client_id),
                ("username", username),
                ("password", password),
            ],
            None,
        )
        .await["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// The realm's RSA signing keys that are enabled, highest priority first.
    pub(crate) async fn rsa_signing_keys(&self) -> Vec<SigningKey> {
        let keys = self.admin_get("/keys").await;
        let mut out: Vec<SigningKey> = keys["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter(|k| k["type"] == "RSA" && k["use"] == "SIG" && k["status"] != "DISABLED")
            .map(|k| SigningKey {
                kid: k["kid"].as_str().unwrap().to_owned(),
                provider: k["providerId"].as_str().unwrap().to_owned(),
                priority: k["providerPriority"].as_i64().unwrap_or_default(),
            })
            .collect();
        out.sort_by_key(|k| -k.priority);
        out
    }

    /// Key rotation: adds a generated RSA key provider, active, with a
    /// priority above every existing key, so Keycloak signs with it from
    /// now on. Returns the new key.
    pub(crate) async fn rotate_key(&self, name: &str) -> SigningKey {
        let before = self.rsa_signing_keys().await;
        let priority = before.iter().map(|k| k.priority).max().unwrap_or(0) + 100;
        let realm_id = self.admin_get("").await["id"]
            .as_str()
            .expect("realm id")
            .to_owned();
        let component = json!({
            "name": name,
            "providerId": "rsa-generated",
            "providerType": "org.keycloak.keys.KeyProvider",
            "parentId": realm_id,
            "config": {"priority": [priority.to_string()], "active": ["true"],
                       "enabled": ["true"], "algorithm": ["RS256"]},
        });
        let path = format!("/admin/realms/{}/components", self.name);
        let resp = self
            .admin(reqwest::Method::POST, &path)
            .await
            .json(&component)
            .send()
            .await
            .expect("add key provider");
        assert!(resp.status().is_success(), "POST {path}: {}", resp.status());
        self.rsa_signing_keys()
            .await
            .into_iter()
            .find(|k| !before.iter().any(|b| b.kid == k.kid))
            .expect("the new key is listed")
    }

    /// Disables a key provider: its keys leave the realm's JWKS.
    pub(crate) async fn disable_key_provider(&self, provider: &str) {
        let mut component = self.admin_get(&format!("/components/{provider}")).await;
        component["config"]["enabled"] = json!(["false"]);
        self.admin_send(
            reqwest::Method::PUT,
            &format!("/components/{provider}"),
            &component,
        )
        .await;
    }

    /// The `kid`s of the signing keys the realm publishes in its JWKS.
    pub(crate) async fn jwks_signing_kids(&self) -> Vec<String> {
        let jwks: Value = http()
            .get(format!("{}/protocol/openid-connect/certs", self.issuer()))
            .send()
            .await
            .expect("jwks")
            .json()
            .await
            .expect("jwks is JSON");
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter(|k| k["use"] == "sig")
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The `kid` in a JWT's header.
pub(crate) fn jwt_kid(token: &str) -> String {
    jwt_part(token, 0)["kid"].as_str().expect("kid").to_owned()
}

/// A JWT's claims, decoded without any check (for assertions only).
pub(crate) fn jwt_claims(token: &str) -> Value {
    jwt_part(token, 1)
}

fn jwt_part(token: &str, i: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(i).expect("JWT part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}
