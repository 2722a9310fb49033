//! HTTP for token sources: https only (plain http on loopback, or when the
//! caller insists), no redirects (a token request goes where it was sent),
//! bounded time, and errors that quote no response body.

use std::time::Duration;

use super::TokenError;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Refuses URLs that would carry a secret in clear text off this host.
pub fn check_url(url: &str, allow_insecure_http: bool) -> Result<url::Url, TokenError> {
    let parsed = url::Url::parse(url).map_err(|e| TokenError::Config(format!("{url:?}: {e}")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback || allow_insecure_http => Ok(parsed),
        _ => Err(TokenError::Config(format!(
            "{url}: use https (plain http only on loopback, or with allow_insecure_http)"
        ))),
    }
}

pub(crate) fn client() -> Result<reqwest::Client, TokenError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| TokenError::Config(format!("HTTP client: {e}")))
}

/// A transport failure, named by the URL's origin and path only.
pub(crate) fn unreachable(url: &str, e: reqwest::Error) -> TokenError {
    let what = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        e.without_url().to_string()
    };
    TokenError::Unavailable(format!("{}: {what}", without_query(url)))
}

/// URLs may carry credentials in their query (GitHub's request URL does
/// not, but nothing forbids it): errors print only scheme, host and path.
pub(crate) fn without_query(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "<invalid url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_everywhere_http_only_on_loopback() {
        assert!(check_url("https://idp.example.com/realms/x", false).is_ok());
        assert!(check_url("http://127.0.0.1:8080", false).is_ok());
        assert!(check_url("http://[::1]:8080", false).is_ok());
        assert!(check_url("http://localhost/x", false).is_ok());
        assert!(matches!(
            check_url("http://idp.example.com", false),
            Err(TokenError::Config(_))
        ));
        assert!(check_url("http://idp.example.com", true).is_ok());
        assert!(check_url("ftp://127.0.0.1", true).is_err());
        assert!(check_url("not a url", false).is_err());
    }

    #[test]
    fn errors_name_no_query_or_password() {
        assert_eq!(
            without_query("https://u:pw@x.example/t?sig=abc#f"),
            "https://u@x.example/t"
        );
    }
}
