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

#[test]
fn revocation_defaults_and_checks() {
    let c = parse(&minimal().build()).unwrap();
    assert_eq!(c.revocation.bucket, DEFAULT_REVOCATION_BUCKET);
    assert_eq!(c.revocation.on_policy_change, OnPolicyChange::KickChanged);
    assert!(c.system.is_none());
    for (text, expected) in [
        ("kick-changed", OnPolicyChange::KickChanged),
        ("kick-denied", OnPolicyChange::KickDenied),
        ("keep", OnPolicyChange::Keep),
    ] {
        let src = minimal()
            .tables(&format!("[revocation]\non_policy_change = \"{text}\"\n"))
            .build();
        assert_eq!(parse(&src).unwrap().revocation.on_policy_change, expected);
    }
    for bad in [
        "[revocation]\non_policy_change = \"kick\"",
        "[revocation]\nbuckets = \"x\"",
    ] {
        let src = minimal().tables(bad).build();
        let err = error_of(&src);
        assert!(
            err.starts_with(&format!("c.toml:{}:", line_of(&src, "[revocation]") + 1)),
            "{err}"
        );
    }
    for bad in ["", "a.b", "a b", "a/b", "a*"] {
        let src = minimal()
            .tables(&format!("[revocation]\nbucket = \"{bad}\"\n"))
            .build();
        let err = error_of(&src);
        assert!(err.contains("bucket"), "{bad:?}: {err}");
        assert!(
            err.starts_with(&format!("c.toml:{}:", line_of(&src, "bucket ="))),
            "{err}"
        );
    }
}

#[test]
fn system_table_needs_exactly_one_credential_and_defaults_to_the_nats_urls() {
    let system = |body: &str| parse(&minimal().tables(&format!("[system]\n{body}\n")).build());
    let c = system("user = \"sys\"\npassword_file = \"p\"").unwrap();
    let s = c.system.unwrap();
    assert_eq!(s.urls, vec!["nats://127.0.0.1:4222".to_string()]);
    // Relative to the config's folder, made absolute at load.
    assert_eq!(s.password_file, Some(std::path::absolute("p").unwrap()));
    assert!(system("creds_file = \"sys.creds\"\nurl = \"nats://127.0.0.1:4223\"").is_ok());
    for (bad, needle) in [
        ("", "needs credentials"),
        ("user = \"sys\"", "needs credentials"),
        ("token = \"t\"\ncreds_file = \"c\"", "one of"),
        ("password = \"p\"", "`user` goes with"),
        ("user = \"u\"\ntoken = \"t\"", "`user` goes with"),
        ("url = \"a\"\nurls = [\"b\"]\ntoken = \"t\"", "at most one"),
        ("urls = []\ntoken = \"t\"", "non-empty"),
        ("token = \"t\"\nuser_name = \"x\"", "user_name"),
    ] {
        let err = system(bad).unwrap_err().to_string();
        assert!(err.contains(needle), "{bad:?}: {err}");
        assert!(err.starts_with("c.toml:"), "{err}");
    }
}

/// A config whose one issuer has `issuer_lines` added.
fn with_issuer_lines(issuer_lines: &str) -> String {
    format!(
        "[nats]\nurl = \"nats://127.0.0.1:4222\"\n[signing]\nissuer_seed_file = \"x.nk\"\n\
         [[issuer]]\nname = \"corp\"\nissuer = \"https://idp.test\"\naudience = \"nats\"\n\
         {issuer_lines}\n[policy]\nfile = \"p.toml\"\n"
    )
}

const OPAQUE: &str = "token_types = [\"opaque\"]\nintrospection_client_id = \"callout\"\n\
                      introspection_client_secret_file = \"s\"";

#[test]
fn introspection_defaults_and_resolved_secret() {
    let c = Config::parse(Path::new("/etc/callout/c.toml"), &with_issuer_lines("")).unwrap();
    assert_eq!(c.issuers[0].token_types, vec![TokenType::Jwt]);
    assert!(c.issuers[0].introspection.is_none());
    let c = Config::parse(Path::new("/etc/callout/c.toml"), &with_issuer_lines(OPAQUE)).unwrap();
    let iss = &c.issuers[0];
    assert!(iss.accepts(TokenType::Opaque) && !iss.accepts(TokenType::Jwt));
    let i = iss.introspection.as_ref().expect("introspects");
    assert_eq!(
        i.auth,
        IntrospectionAuth::ClientSecretBasic {
            secret_file: PathBuf::from("/etc/callout/s")
        }
    );
    assert_eq!(i.cache, Duration::from_secs(60));
    assert_eq!(i.negative_cache, Duration::from_secs(10));
    assert_eq!(i.timeout, Duration::from_secs(1));
    assert_eq!((i.max_in_flight, i.rate_limit), (16, 100));
    assert!(!i.introspect_jwt && !i.userinfo && !iss.introspects_jwt());
}

#[test]
fn bad_introspection_settings_name_the_key_and_line() {
    for (lines, needle, at) in [
        ("token_types = []", "token_types is empty", "token_types"),
        ("token_types = [\"jwt\", \"jwt\"]", "twice", "token_types"),
        ("token_types = [\"paseto\"]", "paseto", "token_types"),
        (
            "token_types = [\"opaque\"]",
            "introspection_client_id",
            "[[issuer]]",
        ),
        (
            "token_types = [\"opaque\"]\nintrospection_client_id = \"c\"",
            "introspection_client_secret_file",
            "[[issuer]]",
        ),
        (
            "introspection_client_id = \"c\"",
            "nothing is introspected",
            "[[issuer]]",
        ),
        ("userinfo = true", "nothing is introspected", "[[issuer]]"),
        (
            "token_types = [\"opaque\"]\nintrospect_jwt = true",
            "needs \"jwt\"",
            "introspect_jwt",
        ),
        (
            "token_types = [\"opaque\"]\nintrospection_client_id = \"c\"\n\
             introspection_auth = \"private_key_jwt\"",
            "introspection_private_key_file",
            "[[issuer]]",
        ),
        (
            "token_types = [\"opaque\"]\nintrospection_client_id = \"c\"\n\
             introspection_auth = \"private_key_jwt\"\nintrospection_private_key_file = \"k\"\n\
             introspection_private_key_alg = \"HS256\"",
            "public-key algorithm",
            "[[issuer]]",
        ),
        (
            "token_types = [\"opaque\"]\nintrospection_client_id = \"c\"\n\
             introspection_auth = \"client_secret_jwt\"",
            "client_secret_jwt",
            "introspection_auth",
        ),
    ] {
        let src = with_issuer_lines(lines);
        let e = error_of(&src);
        assert!(e.contains(needle), "{lines}: {e}");
        assert!(
            e.contains(&format!("c.toml:{}:", line_of(&src, at))),
            "{lines}: {e}"
        );
    }
    for (extra, needle) in [
        ("introspection_private_key_file = \"k\"", "only for"),
        (
            "introspection_endpoint = \"http://idp.example.com/i\"",
            "not https",
        ),
        (
            "userinfo_endpoint = \"https://idp.test/me\"",
            "userinfo = false",
        ),
        ("introspection_timeout = \"0s\"", "introspection_timeout"),
        ("introspection_timeout = \"11s\"", "introspection_timeout"),
        (
            "introspection_max_in_flight = 0",
            "introspection_max_in_flight",
        ),
        ("introspection_rate_limit = 0", "introspection_rate_limit"),
    ] {
        let e = error_of(&with_issuer_lines(&format!("{OPAQUE}\n{extra}")));
        assert!(e.contains(needle), "{extra}: {e}");
    }
}

#[test]
fn loopback_introspection_endpoints_may_be_plain_http() {
    let c = parse(&with_issuer_lines(&format!(
        "{OPAQUE}\nintrospection_endpoint = \"http://127.0.0.1:9/i\"\nuserinfo = true\n\
         userinfo_endpoint = \"http://[::1]:9/me\""
    )));
    assert!(c.is_ok(), "{c:?}");
}
