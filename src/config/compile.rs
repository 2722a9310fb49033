//! Compilation of a config file into [`Config`]: defaults filled in, paths
//! resolved, and every value that would switch a check off, or could never
//! work, reported with its position. Errors are collected, not stopped at.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_spanned::Spanned;

use super::file::{ConfigFile, FloodFile, NatsFile, SystemFile, TlsFile};
use super::{
    AccountConfig, AuditConfig, Config, FloodConfig, HttpConfig, NatsConfig, PolicyRef,
    RevocationConfig, SigningConfig, SystemConfig, TlsConfig, TokenConfig, TokenSource,
    DEFAULT_REVOCATION_BUCKET,
};
use crate::location::{LocatedError, Location};
use crate::subject::validate_subject;

pub(super) struct Compiler<'a> {
    path: &'a Path,
    source: &'a str,
    base_dir: PathBuf,
    errors: Vec<LocatedError>,
}

impl Compiler<'_> {
    pub(super) fn error<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        self.errors.push(LocatedError {
            location: Location::from_span(self.path, self.source, at.span()),
            message: message.into(),
        });
    }

    /// An error about the file as a whole (something missing from it).
    fn error_at_start(&mut self, message: impl Into<String>) {
        self.errors.push(LocatedError {
            location: Location::from_span(self.path, self.source, 0..0),
            message: message.into(),
        });
    }

    pub(super) fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn nats(&mut self, spanned: &Spanned<NatsFile>) -> NatsConfig {
        let n = spanned.get_ref();
        let urls = match (&n.url, &n.urls) {
            (Some(u), None) => vec![u.clone()],
            (None, Some(us)) if !us.is_empty() => us.clone(),
            _ => {
                self.error(
                    spanned,
                    "[nats] needs exactly one of `url` and `urls` (a non-empty list)",
                );
                Vec::new()
            }
        };
        let secrets = [
            n.password.is_some(),
            n.password_file.is_some(),
            n.token.is_some(),
            n.nkey_seed_file.is_some(),
            n.creds_file.is_some(),
        ];
        if secrets.iter().filter(|s| **s).count() > 1 {
            self.error(
                spanned,
                "[nats] takes at most one of password, password_file, token, nkey_seed_file, creds_file",
            );
        }
        if (n.password.is_some() || n.password_file.is_some()) && n.user.is_none() {
            self.error(spanned, "[nats] a password needs `user`");
        }
        let max_in_flight = match &n.max_in_flight {
            None => 512,
            Some(m) => {
                if !(1..=65_536).contains(m.get_ref()) {
                    self.error(
                        m,
                        format!("[nats] max_in_flight {} is outside 1..65536", m.get_ref()),
                    );
                }
                *m.get_ref()
            }
        };
        // Beyond the server's timeout an answer is dropped, and beyond 10 s
        // the request itself counts as expired, so the denial would be empty.
        let request_timeout = match &n.request_timeout {
            None => Duration::from_millis(1500),
            Some(t) => {
                let d = t.get_ref().0;
                if d < Duration::from_millis(10) || d > Duration::from_secs(10) {
                    self.error(t, format!("[nats] request_timeout {} is outside 10ms..10s; keep it below the server's authorization timeout", t.get_ref()));
                }
                d
            }
        };
        NatsConfig {
            urls,
            user: n.user.clone(),
            password: n.password.clone(),
            password_file: n.password_file.as_deref().map(|p| self.resolve(p)),
            token: n.token.clone(),
            nkey_seed_file: n.nkey_seed_file.as_deref().map(|p| self.resolve(p)),
            creds_file: n.creds_file.as_deref().map(|p| self.resolve(p)),
            queue_group: n
                .queue_group
                .clone()
                .unwrap_or_else(|| "nats-oidc-callout".to_owned()),
            tls: n.tls.as_ref().map(|t| self.tls(t)),
            account: n.account.clone().unwrap_or_else(|| "AUTH".to_owned()),
            max_in_flight,
            request_timeout,
        }
    }

    fn tls(&self, t: &TlsFile) -> TlsConfig {
        TlsConfig {
            ca_file: t.ca_file.as_deref().map(|p| self.resolve(p)),
            cert_file: t.cert_file.as_deref().map(|p| self.resolve(p)),
            key_file: t.key_file.as_deref().map(|p| self.resolve(p)),
        }
    }

    /// `[system]`: a user of the system account, with exactly one credential.
    fn system(&mut self, spanned: &Spanned<SystemFile>, nats_urls: &[String]) -> SystemConfig {
        let s = spanned.get_ref();
        let urls = match (&s.url, &s.urls) {
            (Some(u), None) => vec![u.clone()],
            (None, Some(us)) if !us.is_empty() => us.clone(),
            (None, None) => nats_urls.to_vec(),
            _ => {
                self.error(spanned, "[system] takes at most one of `url` and `urls` (a non-empty list); without either it uses [nats]'s");
                Vec::new()
            }
        };
        let secrets = [
            s.password.is_some(),
            s.password_file.is_some(),
            s.token.is_some(),
            s.nkey_seed_file.is_some(),
            s.creds_file.is_some(),
        ];
        match secrets.iter().filter(|x| **x).count() {
            1 => {}
            0 => self.error(spanned, "[system] needs credentials: user + password/password_file, token, nkey_seed_file or creds_file"),
            _ => self.error(spanned, "[system] takes one of password, password_file, token, nkey_seed_file, creds_file"),
        }
        if (s.password.is_some() || s.password_file.is_some()) != s.user.is_some() {
            self.error(
                spanned,
                "[system] `user` goes with `password` or `password_file`",
            );
        }
        SystemConfig {
            urls,
            user: s.user.clone(),
            password: s.password.clone(),
            password_file: s.password_file.as_deref().map(|p| self.resolve(p)),
            token: s.token.clone(),
            nkey_seed_file: s.nkey_seed_file.as_deref().map(|p| self.resolve(p)),
            creds_file: s.creds_file.as_deref().map(|p| self.resolve(p)),
            tls: s.tls.as_ref().map(|t| self.tls(t)),
        }
    }

    /// `[flood]`: a hold must end before the request's own deadline, and
    /// every table it keeps is bounded.
    fn flood(&mut self, f: &FloodFile, request_timeout: Duration) -> FloodConfig {
        let d = FloodConfig::default();
        let failures = self.number(&f.failures, d.failures, 1..=1_000_000, "[flood] failures");
        let window = self.duration(&f.window, d.window, |w| {
            (w < Duration::from_secs(1) || w > Duration::from_secs(3600))
                .then(|| "[flood] window is outside 1s..1h".to_owned())
        });
        let default_hold = if d.hold < request_timeout {
            d.hold
        } else {
            request_timeout / 2
        };
        let hold = self.duration(&f.hold, default_hold, |h| {
            (h >= request_timeout).then(|| {
                format!(
                    "[flood] hold {} must be below [nats] request_timeout {}, itself below the server's authorization timeout",
                    humantime::format_duration(h),
                    humantime::format_duration(request_timeout)
                )
            })
        });
        FloodConfig {
            enabled: f.enabled.unwrap_or(d.enabled),
            failures,
            window,
            hold,
            max_held: self.number(&f.max_held, d.max_held, 1..=65_536, "[flood] max_held"),
            max_sources: self.number(
                &f.max_sources,
                d.max_sources,
                1..=10_000_000,
                "[flood] max_sources",
            ),
        }
    }

    /// A number or its default; outside `range` it is an error.
    fn number<T>(
        &mut self,
        value: &Option<Spanned<T>>,
        default: T,
        range: std::ops::RangeInclusive<T>,
        what: &str,
    ) -> T
    where
        T: Copy + PartialOrd + std::fmt::Display,
    {
        let Some(v) = value else { return default };
        let n = *v.get_ref();
        if !range.contains(&n) {
            self.error(
                v,
                format!("{what} {n} is outside {}..{}", range.start(), range.end()),
            );
        }
        n
    }

    /// A duration or its default; `bad` says why a value is refused.
    pub(super) fn duration(
        &mut self,
        value: &Option<Spanned<crate::duration::HumanDuration>>,
        default: Duration,
        bad: impl FnOnce(Duration) -> Option<String>,
    ) -> Duration {
        let Some(v) = value else { return default };
        if let Some(why) = bad(v.get_ref().0) {
            self.error(v, why);
        }
        v.get_ref().0
    }
}

pub(super) fn compile(path: &Path, source: &str) -> Result<Config, Vec<LocatedError>> {
    let file: ConfigFile =
        toml::from_str(source).map_err(|e| vec![LocatedError::from_toml(path, source, &e)])?;
    // Absolute, so a path resolved here and again by a caller (a config
    // given as `deploy/callout.toml`) is not prefixed twice.
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let base_dir = parent.unwrap_or(Path::new("."));
    let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
    let mut c = Compiler {
        path,
        source,
        base_dir,
        errors: Vec::new(),
    };
    let nats = c.nats(&file.nats);

    let sources = match &file.token.sources {
        None => vec![TokenSource::AuthToken, TokenSource::Password],
        Some(s) => {
            if s.get_ref().is_empty() {
                c.error(s, "[token] sources must name at least one field");
            }
            s.get_ref().clone()
        }
    };
    if let Some(subject) = &file.audit.subject {
        let s = subject.get_ref();
        if validate_subject(s).is_err() || s.contains(['*', '>']) {
            c.error(
                subject,
                format!("[audit] subject {s:?} is not a plain NATS subject"),
            );
        }
    }

    if file.issuers.is_empty() {
        c.error_at_start("at least one [[issuer]] is required");
    }
    let mut names: HashMap<&str, &Spanned<String>> = HashMap::new();
    let mut urls: HashMap<&str, &Spanned<String>> = HashMap::new();
    for i in &file.issuers {
        let i = i.get_ref();
        if names.insert(i.name.get_ref(), &i.name).is_some() {
            c.error(
                &i.name,
                format!("issuer name {:?} is used twice", i.name.get_ref()),
            );
        }
        // Tokens are matched to the first issuer with their `iss`: a second
        // one would be configured but never used.
        if let Some(first) = urls.insert(i.issuer.get_ref(), &i.issuer) {
            let at = Location::from_span(path, source, first.span());
            c.error(&i.issuer, format!("issuer {:?} is already configured at {at}; the second [[issuer]] would never see a token", i.issuer.get_ref()));
        }
    }
    let issuers = file.issuers.iter().map(|i| c.issuer(i)).collect();

    let mut accounts = Vec::new();
    let mut account_names = HashMap::new();
    for a in &file.accounts {
        if account_names.insert(a.name.get_ref(), ()).is_some() {
            c.error(
                &a.name,
                format!("account name {:?} is used twice", a.name.get_ref()),
            );
        }
        if !nkeys::KeyPair::from_public_key(a.public_key.get_ref())
            .is_ok_and(|k| k.key_pair_type() == nkeys::KeyPairType::Account)
        {
            c.error(
                &a.public_key,
                format!(
                    "account {:?}: public_key {:?} is not an account public key (A…)",
                    a.name.get_ref(),
                    a.public_key.get_ref()
                ),
            );
        }
        accounts.push(AccountConfig {
            name: a.name.get_ref().clone(),
            public_key: a.public_key.get_ref().clone(),
            signing_key_file: c.resolve(&a.signing_key_file),
        });
    }

    let system = file.system.as_ref().map(|s| c.system(s, &nats.urls));
    let bucket = match &file.revocation.bucket {
        None => DEFAULT_REVOCATION_BUCKET.to_owned(),
        Some(b) => {
            let name = b.get_ref();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|x| x.is_ascii_alphanumeric() || x == b'_' || x == b'-')
            {
                c.error(b, format!("[revocation] bucket {name:?} is not a KV bucket name (letters, digits, `_`, `-`)"));
            }
            name.clone()
        }
    };
    let watch_interval = c.duration(&file.policy.watch_interval, Duration::from_secs(2), |d| {
        (d < Duration::from_millis(100))
            .then(|| "[policy] watch_interval below 100ms re-reads the file in a loop".to_owned())
    });
    let flood = c.flood(&file.flood, nats.request_timeout);
    let config = Config {
        path: path.to_path_buf(),
        nats,
        signing: SigningConfig {
            issuer_seed_file: c.resolve(&file.signing.issuer_seed_file),
            xkey_seed_file: file.signing.xkey_seed_file.as_deref().map(|p| c.resolve(p)),
        },
        token: TokenConfig {
            sources,
            max_ttl: file
                .token
                .max_ttl
                .map_or(Duration::from_secs(3600), Duration::from),
            max_token_bytes: file.token.max_token_bytes.unwrap_or(64 * 1024),
            cache_size: file.token.cache_size.unwrap_or(100_000),
        },
        issuers,
        accounts,
        policy: PolicyRef {
            file: c.resolve(&file.policy.file),
            watch: file.policy.watch.unwrap_or(true),
            watch_interval,
        },
        http: file.http.map(|h| HttpConfig { listen: h.listen }),
        audit: AuditConfig {
            subject: file.audit.subject.map(Spanned::into_inner),
        },
        flood,
        system,
        revocation: RevocationConfig {
            bucket,
            on_policy_change: file.revocation.on_policy_change.unwrap_or_default(),
        },
        base_dir: c.base_dir.clone(),
    };
    if c.errors.is_empty() {
        Ok(config)
    } else {
        Err(c.errors)
    }
}
