//! Where the service may fetch from: https everywhere, plain http only on
//! loopback unless explicitly allowed. Shared by key fetching and
//! introspection, and checked when the config is compiled.

/// Why a URL may not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not parseable as a URL.
    #[error("{url} is not a URL: {reason}")]
    Invalid {
        /// The text as configured.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// Plain http to a non-loopback host, without `allow_insecure_http`.
    #[error("{0} is not https; use https or set allow_insecure_http for a non-loopback host")]
    Insecure(String),
}

/// https everywhere except loopback, unless `allow_insecure_http`.
pub fn check_url(url: &str, allow_insecure_http: bool) -> Result<(), UrlError> {
    let parsed = url::Url::parse(url).map_err(|e| UrlError::Invalid {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback || allow_insecure_http => Ok(()),
        _ => Err(UrlError::Insecure(url.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_required_except_loopback() {
        assert!(check_url("https://idp.example.com/jwks", false).is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks", false).is_ok());
        assert!(check_url("http://[::1]:8080/jwks", false).is_ok());
        assert!(check_url("http://localhost/jwks", false).is_ok());
        assert!(check_url("http://idp.example.com/jwks", false).is_err());
        assert!(check_url("http://idp.example.com/jwks", true).is_ok());
        assert!(check_url("file:///etc/passwd", true).is_err());
        assert!(matches!(
            check_url("not a url", true),
            Err(UrlError::Invalid { .. })
        ));
    }
}
