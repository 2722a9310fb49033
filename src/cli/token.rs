//! `token`: an access token by the client-credentials grant, for CI jobs and
//! scripts that have no OAuth SDK. Prints only the token.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{
    ClientId, ClientSecret, IssuerUrl, OAuth2TokenResponse, RequestTokenError, Scope,
};

use crate::issuer::check_url;
use crate::secret::read_secret;

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The issuer; its discovery document names the token endpoint.
    #[arg(long)]
    issuer_url: String,
    #[arg(long)]
    client_id: String,
    /// File holding the client secret (never pass secrets as arguments).
    #[arg(long)]
    client_secret_file: PathBuf,
    /// Space-separated scopes to request.
    #[arg(long)]
    scope: Option<String>,
    /// The API the token is for: sent as `resource` (RFC 8707) and `audience` (Auth0).
    #[arg(long)]
    audience: Option<String>,
    /// Allow plain http to a non-loopback issuer.
    #[arg(long)]
    allow_insecure_http: bool,
}

#[derive(Debug, thiserror::Error)]
enum TokenCmdError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Refused(String),
}

pub fn run(args: TokenArgs) -> ExitCode {
    match super::runtime().block_on(fetch(&args)) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(TokenCmdError::Usage(e)) => super::bad(e),
        Err(TokenCmdError::Refused(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn fetch(args: &TokenArgs) -> Result<String, TokenCmdError> {
    check_url(&args.issuer_url, args.allow_insecure_http)
        .map_err(|e| TokenCmdError::Usage(e.to_string()))?;
    let secret =
        read_secret(&args.client_secret_file).map_err(|e| TokenCmdError::Usage(e.to_string()))?;
    let issuer = IssuerUrl::new(args.issuer_url.clone())
        .map_err(|e| TokenCmdError::Usage(format!("--issuer-url: {e}")))?;
    // No redirects: a token request must go where discovery says, nowhere else.
    let http = openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| TokenCmdError::Refused(e.to_string()))?;
    let metadata = CoreProviderMetadata::discover_async(issuer, &http)
        .await
        .map_err(|e| {
            TokenCmdError::Refused(format!("discovery at {} failed: {e}", args.issuer_url))
        })?;
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(args.client_id.clone()),
        Some(ClientSecret::new(secret)),
    );
    let mut request = client
        .exchange_client_credentials()
        .map_err(|e| TokenCmdError::Refused(format!("the issuer offers no token endpoint: {e}")))?;
    for s in args.scope.iter().flat_map(|s| s.split_whitespace()) {
        request = request.add_scope(Scope::new(s.to_owned()));
    }
    if let Some(aud) = &args.audience {
        request = request
            .add_extra_param("resource", aud.clone())
            .add_extra_param("audience", aud.clone());
    }
    let response = request.request_async(&http).await.map_err(|e| {
        TokenCmdError::Refused(match e {
            RequestTokenError::ServerResponse(r) => match r.error_description() {
                Some(d) => format!("the issuer refused: {} ({d})", r.error()),
                None => format!("the issuer refused: {}", r.error()),
            },
            other => format!("token request failed: {other}"),
        })
    })?;
    Ok(response.access_token().secret().clone())
}
