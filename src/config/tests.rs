use super::*;

fn minimal() -> ConfigBuilder {
    ConfigBuilder::new("nats://127.0.0.1:4222", "keys/issuer.nk", "policy.toml")
        .user_password("auth", "pw")
        .issuer(IssuerBuilder::new(
            "corp",
            "https://idp.example.com",
            &["nats"],
        ))
}

fn parse(src: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("c.toml"), src)
}

/// The one error, with its `file:line:column`, or a panic naming what
/// parsed.
fn error_of(src: &str) -> String {
    match parse(src) {
        Ok(_) => panic!("accepted:\n{src}"),
        Err(e) => e.to_string(),
    }
}

/// `needle`'s line (1-based) in `src`.
fn line_of(src: &str, needle: &str) -> usize {
    src.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{src}"))
        + 1
}

#[test]
fn minimal_config_gets_defaults_and_resolved_paths() {
    let c = Config::parse(Path::new("/etc/callout/callout.toml"), &minimal().build()).unwrap();
    assert_eq!(c.nats.queue_group, "nats-oidc-callout");
    assert_eq!(
        c.token.sources,
        vec![TokenSource::AuthToken, TokenSource::Password]
    );
    assert_eq!(c.token.max_ttl, Duration::from_secs(3600));
    assert_eq!(c.issuers[0].algorithms, vec![Algorithm::RS256]);
    assert_eq!(c.issuers[0].audience, vec!["nats".to_string()]);
    assert_eq!(c.policy.file, PathBuf::from("/etc/callout/policy.toml"));
    assert_eq!(
        c.signing.issuer_seed_file,
        PathBuf::from("/etc/callout/keys/issuer.nk")
    );
    assert_eq!(c.nats.max_in_flight, 512);
    assert_eq!(c.nats.request_timeout, Duration::from_millis(1500));
}

#[test]
fn unknown_key_names_line_and_column() {
    let src = minimal()
        .issuer(
            IssuerBuilder::new("b", "https://b.example.com", &["nats"]).set("audiance", "\"x\""),
        )
        .build();
    let text = error_of(&src);
    let line = line_of(&src, "audiance");
    assert!(text.starts_with(&format!("c.toml:{line}:")), "{text}");
    assert!(text.contains("audiance"), "{text}");
}

#[test]
fn hmac_algorithms_are_refused() {
    let src = minimal()
        .issuer(IssuerBuilder::new("b", "https://b.example.com", &["nats"]).algorithms(&["HS256"]))
        .build();
    assert!(error_of(&src).contains("never accepted"));
}

#[test]
fn bad_duration_is_reported() {
    let src = minimal().token_lines("max_ttl = \"forever\"").build();
    assert!(error_of(&src).contains("invalid duration"));
}

#[test]
fn request_limits_are_bounded_with_positions() {
    for (line, needle) in [
        ("max_in_flight = 0", "max_in_flight"),
        ("max_in_flight = 9223372036854775807", "max_in_flight"),
        ("request_timeout = \"0s\"", "request_timeout"),
        ("request_timeout = \"11s\"", "request_timeout"),
    ] {
        let src = minimal().nats_lines(line).build();
        let err = error_of(&src);
        assert!(err.contains(needle), "{line}: {err}");
        let at = format!("c.toml:{}:", line_of(&src, line));
        assert!(err.starts_with(&at), "{line}: {err}");
    }
}

/// Values that would silently switch a check off are errors that name
/// their place.
#[test]
fn values_that_switch_checks_off_are_located_errors() {
    let issuer =
        |extra: &str| IssuerBuilder::new("b", "https://b.example.com", &["nats"]).lines(extra);
    for (extra, needle, at) in [
        ("jwks_refresh = \"0s\"", "jwks_refresh", "jwks_refresh"),
        ("jwks_refresh = \"10ms\"", "jwks_refresh", "jwks_refresh"),
        (
            "jwks_min_refetch = \"0s\"",
            "jwks_min_refetch",
            "jwks_min_refetch",
        ),
        ("leeway = \"3650d\"", "leeway", "leeway"),
        ("leeway = \"11m\"", "leeway", "leeway"),
        (
            "jwks_max_stale = \"0s\"",
            "jwks_max_stale",
            "jwks_max_stale",
        ),
    ] {
        let src = minimal().issuer(issuer(extra)).build();
        let err = error_of(&src);
        assert!(err.contains(needle), "{extra}: {err}");
        assert!(
            err.starts_with(&format!("c.toml:{}:", line_of(&src, at))),
            "{extra}: {err}"
        );
    }
    // The edges that stay allowed.
    let ok = minimal()
        .issuer(issuer("leeway = \"10m\"\njwks_refresh = \"1s\""))
        .build();
    parse(&ok).unwrap();
}

#[test]
fn an_empty_audience_is_refused() {
    for aud in [&[""][..], &["nats", " "][..], &[][..]] {
        let src = minimal()
            .issuer(IssuerBuilder::new("b", "https://b.example.com", aud))
            .build();
        let err = error_of(&src);
        assert!(err.contains("audience"), "{aud:?}: {err}");
    }
}

#[test]
fn two_issuers_with_one_url_are_refused_at_the_second() {
    let src = minimal()
        .issuer(IssuerBuilder::new(
            "again",
            "https://idp.example.com",
            &["other"],
        ))
        .build();
    let err = error_of(&src);
    let second = src
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("issuer = \"https://idp.example.com\""))
        .nth(1)
        .unwrap()
        .0
        + 1;
    assert!(err.starts_with(&format!("c.toml:{second}:")), "{err}");
    assert!(err.contains("already configured at c.toml:"), "{err}");
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let src = minimal()
        .nats_lines("max_in_flight = 0")
        .issuer(IssuerBuilder::new("b", "https://b.example.com", &[""]).lines("leeway = \"1h\""))
        .build();
    let err = error_of(&src);
    assert_eq!(err.lines().count(), 3, "{err}");
}

#[test]
fn missing_issuers_are_an_error_at_the_start_of_the_file() {
    let src = ConfigBuilder::new("nats://127.0.0.1:4222", "k", "p").build();
    let err = error_of(&src);
    assert!(
        err.starts_with("c.toml:1:1: at least one [[issuer]]"),
        "{err}"
    );
}

#[test]
fn builder_quotes_what_it_writes() {
    let src = ConfigBuilder::new("nats://127.0.0.1:4222", "dir with \"quote\"/k.nk", "p.toml")
        .issuer(IssuerBuilder::new(
            "corp",
            "https://idp.example.com",
            &["a\\b"],
        ))
        .build();
    let c = Config::parse(Path::new("/x/c.toml"), &src).unwrap();
    assert_eq!(
        c.signing.issuer_seed_file,
        PathBuf::from("/x/dir with \"quote\"/k.nk")
    );
    assert_eq!(c.issuers[0].audience, vec!["a\\b".to_string()]);
}

#[test]
fn flood_defaults_are_on_and_below_the_request_timeout() {
    let c = parse(&minimal().build()).unwrap();
    assert!(c.flood.enabled);
    assert_eq!(c.flood, crate::flood::FloodConfig::default());
    assert!(c.flood.hold < c.nats.request_timeout);
    // A short request_timeout shortens the default hold with it.
    let c = parse(&minimal().nats_lines("request_timeout = \"600ms\"").build()).unwrap();
    assert_eq!(c.flood.hold, Duration::from_millis(300));
}

#[test]
fn flood_values_are_bounded_with_positions() {
    for (line, needle) in [
        ("failures = 0", "failures"),
        ("window = \"100ms\"", "window"),
        ("window = \"2h\"", "window"),
        ("hold = \"1500ms\"", "below [nats] request_timeout"),
        ("max_held = 0", "max_held"),
        ("max_held = 100000", "max_held"),
        ("max_sources = 0", "max_sources"),
    ] {
        let src = minimal().tables(&format!("[flood]\n{line}\n")).build();
        let err = error_of(&src);
        assert!(err.contains(needle), "{line}: {err}");
        let at = format!("c.toml:{}:", line_of(&src, line));
        assert!(err.starts_with(&at), "{line}: {err}");
    }
    let src = minimal()
        .tables("[flood]\nenabled = false\nfailures = 5\nwindow = \"1m\"\nhold = \"1400ms\"\nmax_held = 10\nmax_sources = 50\n")
        .build();
    let f = parse(&src).unwrap().flood;
    assert_eq!(
        f,
        crate::flood::FloodConfig {
            enabled: false,
            failures: 5,
            window: Duration::from_secs(60),
            hold: Duration::from_millis(1400),
            max_held: 10,
            max_sources: 50,
        }
    );
}
