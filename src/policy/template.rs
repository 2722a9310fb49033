//! NATS subjects with `{claim.NAME}` placeholders. A template is checked
//! once at load time; interpolation only ever fills a placeholder with one
//! literal subject token, so it can never widen a permission.

use std::fmt;

use serde_json::Value;

use crate::certificate::{ClientCertificate, FieldError, TEMPLATE_FIELDS};
use crate::claims::{lookup, Ambiguous};
use crate::subject::{is_plain_token, is_reserved_first_token, validate_subject};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Claim(String),
    /// A field of the connection's verified client certificate.
    Cert(String),
}

/// A subject pattern as written in the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTemplate {
    source: String,
    pieces: Vec<Piece>,
    /// A placeholder sits in the first token, which then must not become
    /// reserved subject space (`$SYS.>`, `_INBOX.>`).
    first_token_templated: bool,
}

/// Why a template cannot become a subject for this token; the rule is skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolationError {
    /// The token lacks the claim.
    #[error("claim {0:?} is missing")]
    Missing(String),
    /// The value is not one subject token (dots, wildcards, spaces).
    #[error("claim {0:?} is not a valid subject token")]
    NotAToken(String),
    /// A list claim where one value is needed.
    #[error(transparent)]
    Ambiguous(#[from] Ambiguous),
    /// The value would make the subject start in `$…` or `_INBOX`.
    #[error("claim {0:?} would start the subject with reserved subject space ($… or _INBOX)")]
    ReservedFirstToken(String),
    /// A `{cert.…}` placeholder without a single certificate value.
    #[error("{0}")]
    Certificate(#[from] FieldError),
    /// A certificate value that is not one subject token.
    #[error("certificate field {0:?} is not a valid subject token")]
    CertificateNotAToken(String),
}

impl SubjectTemplate {
    /// Checks the placeholders' syntax; the error is the message to show.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in subject {source:?}"))?;
            let inner = &after[..close];
            if let Some(field) = inner.strip_prefix("cert.") {
                if !TEMPLATE_FIELDS.contains(&field) {
                    return Err(format!(
                        "placeholder {{{inner}}} in {source:?}: certificate fields are {}",
                        TEMPLATE_FIELDS.join(", ")
                    ));
                }
                pieces.push(Piece::Cert(field.to_owned()));
                rest = &after[close + 1..];
                continue;
            }
            let name = inner.strip_prefix("claim.").ok_or_else(|| {
                format!("placeholder {{{inner}}} in {source:?} must be {{claim.NAME}} or {{cert.FIELD}}")
            })?;
            if name.is_empty() || name.contains(['{', '}']) {
                return Err(format!(
                    "placeholder {{{inner}}} in {source:?} names no claim"
                ));
            }
            pieces.push(Piece::Claim(name.to_owned()));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("unmatched '}}' in subject {source:?}"));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_owned()));
        }
        let first_token_templated = pieces
            .iter()
            .take_while(|p| !matches!(p, Piece::Literal(l) if l.contains('.')))
            .any(|p| !matches!(p, Piece::Literal(_)));
        if first_token_templated
            && matches!(pieces.first(), Some(Piece::Literal(l)) if l.starts_with('$'))
        {
            return Err(format!(
                "subject {source:?} starts with `$` and a placeholder in its first token: it always renders into reserved subject space, so every user would be denied; keep placeholders out of a `$` token"
            ));
        }
        let template = Self {
            source: source.to_owned(),
            pieces,
            first_token_templated,
        };
        // A placeholder stands for one plain token, so "x" is a faithful
        // stand-in when checking the shape of the whole subject.
        validate_subject(
            &template.render_with(|_| Ok::<_, String>("x".to_owned()), |_| Ok("x".to_owned()))?,
        )
        .map_err(|e| format!("invalid subject {source:?}: {e}"))?;
        template.check_placeholders_are_whole_or_partial_tokens()?;
        Ok(template)
    }

    /// Placeholders may not sit inside a wildcard token (`*{claim.x}`).
    fn check_placeholders_are_whole_or_partial_tokens(&self) -> Result<(), String> {
        let joined = self.pieces.windows(2).any(|w| match w {
            [Piece::Literal(l), Piece::Claim(_) | Piece::Cert(_)] => l.ends_with(['*', '>']),
            [Piece::Claim(_) | Piece::Cert(_), Piece::Literal(l)] => l.starts_with(['*', '>']),
            _ => false,
        });
        if joined {
            return Err(format!(
                "invalid subject {:?}: a placeholder cannot be joined to a wildcard",
                self.source
            ));
        }
        Ok(())
    }

    /// The claim names its placeholders read, for load-time warnings.
    pub fn claims(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Claim(c) => Some(c.as_str()),
            Piece::Literal(_) | Piece::Cert(_) => None,
        })
    }

    /// Whether it reads the client certificate.
    pub fn reads_certificate(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Cert(_)))
    }

    /// Whether a placeholder sits in the first subject token (`validate`
    /// warns: a claim value then chooses the subject space).
    pub fn first_token_templated(&self) -> bool {
        self.first_token_templated
    }

    /// Fills every placeholder from the token's claims and the verified
    /// client certificate (when the connection has one).
    pub fn render(
        &self,
        claims: &serde_json::Map<String, Value>,
        cert: Option<&ClientCertificate>,
    ) -> Result<String, InterpolationError> {
        let subject = self.render_with(
            |name| {
                let value = lookup(claims, name)?
                    .ok_or_else(|| InterpolationError::Missing(name.to_owned()))?;
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                    _ => return Err(InterpolationError::NotAToken(name.to_owned())),
                };
                if is_plain_token(&text) {
                    Ok(text)
                } else {
                    Err(InterpolationError::NotAToken(name.to_owned()))
                }
            },
            |field| {
                let cert =
                    cert.ok_or_else(|| FieldError::Missing("verified client certificate".into()))?;
                let text = cert.field(field)?;
                if is_plain_token(&text) {
                    Ok(text)
                } else {
                    Err(InterpolationError::CertificateNotAToken(field.to_owned()))
                }
            },
        )?;
        if self.first_token_templated {
            let first = subject.split('.').next().unwrap_or_default();
            if is_reserved_first_token(first) {
                let name = self
                    .pieces
                    .iter()
                    .find_map(|p| match p {
                        Piece::Claim(c) => Some(c.clone()),
                        Piece::Cert(f) => Some(format!("cert.{f}")),
                        Piece::Literal(_) => None,
                    })
                    .unwrap_or_default();
                return Err(InterpolationError::ReservedFirstToken(name));
            }
        }
        Ok(subject)
    }

    fn render_with<E>(
        &self,
        mut claim: impl FnMut(&str) -> Result<String, E>,
        mut cert: impl FnMut(&str) -> Result<String, E>,
    ) -> Result<String, E> {
        let mut out = String::with_capacity(self.source.len());
        for piece in &self.pieces {
            match piece {
                Piece::Literal(l) => out.push_str(l),
                Piece::Claim(c) => out.push_str(&claim(c)?),
                Piece::Cert(f) => out.push_str(&cert(f)?),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for SubjectTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn renders_claims_including_nested_paths() {
        let t = SubjectTemplate::parse("tenant.{claim.org.id}.{claim.sub}.>").unwrap();
        let c = claims(json!({"sub": "alice", "org": {"id": 42}}));
        assert_eq!(t.render(&c, None).unwrap(), "tenant.42.alice.>");
        assert_eq!(t.claims().collect::<Vec<_>>(), vec!["org.id", "sub"]);
    }

    #[test]
    fn wildcards_and_dots_in_claims_are_refused() {
        let t = SubjectTemplate::parse("svc.{claim.sub}.>").unwrap();
        for bad in ["x.>", "*", ">", "a.b", "", "a b", "tab\t", "nl\n"] {
            let err = t.render(&claims(json!({ "sub": bad })), None).unwrap_err();
            assert_eq!(err, InterpolationError::NotAToken("sub".into()), "{bad:?}");
        }
        let long = "a".repeat(crate::subject::MAX_TOKEN_BYTES + 1);
        assert!(t.render(&claims(json!({ "sub": long })), None).is_err());
        assert!(t.render(&claims(json!({ "sub": ["a"] })), None).is_err());
        assert!(t.render(&claims(json!({ "sub": true })), None).is_err());
        assert_eq!(
            t.render(&claims(json!({})), None).unwrap_err(),
            InterpolationError::Missing("sub".into())
        );
    }

    #[test]
    fn a_dollar_first_token_with_a_placeholder_is_refused_at_load() {
        for bad in ["${claim.x}.a", "$JS{claim.x}.API", "${cert.cn}"] {
            let e = SubjectTemplate::parse(bad).unwrap_err();
            assert!(e.contains("reserved subject space"), "{bad}: {e}");
        }
        assert!(SubjectTemplate::parse("$JS.API.CONSUMER.INFO.S.{claim.sub}").is_ok());
    }

    #[test]
    fn a_claim_in_the_first_token_cannot_reach_reserved_subject_space() {
        let t = SubjectTemplate::parse("{claim.tenant}.>").unwrap();
        assert!(t.first_token_templated());
        for bad in ["$SYS", "$JS", "$KV", "$G", "_INBOX"] {
            let err = t
                .render(&claims(json!({ "tenant": bad })), None)
                .unwrap_err();
            assert_eq!(
                err,
                InterpolationError::ReservedFirstToken("tenant".into()),
                "{bad}"
            );
        }
        assert_eq!(
            t.render(&claims(json!({"tenant": "acme"})), None).unwrap(),
            "acme.>"
        );
        assert_eq!(
            t.render(&claims(json!({"tenant": "_INBOX_acme"})), None)
                .unwrap(),
            "_INBOX_acme.>"
        );
        // A literal prefix in the first token keeps it out of reserved space.
        let t = SubjectTemplate::parse("t-{claim.tenant}.>").unwrap();
        assert!(t.first_token_templated());
        assert_eq!(
            t.render(&claims(json!({"tenant": "$SYS"})), None).unwrap(),
            "t-$SYS.>"
        );
        for later in ["tenant.{claim.tenant}.>", "_INBOX.{claim.sub}.>"] {
            let t = SubjectTemplate::parse(later).unwrap();
            assert!(!t.first_token_templated(), "{later}");
        }
    }

    #[test]
    fn an_ambiguous_claim_is_not_interpolated() {
        let t = SubjectTemplate::parse("a.{claim.org.id}").unwrap();
        let err = t
            .render(&claims(json!({"org.id": "x", "org": {"id": "y"}})), None)
            .unwrap_err();
        assert!(matches!(err, InterpolationError::Ambiguous(_)), "{err:?}");
    }

    #[test]
    fn template_syntax_is_checked() {
        assert!(SubjectTemplate::parse("a.{claim.sub").is_err());
        assert!(SubjectTemplate::parse("a.{sub}").is_err());
        assert!(SubjectTemplate::parse("a.}").is_err());
        assert!(SubjectTemplate::parse("a.>.b").is_err());
        assert!(SubjectTemplate::parse("a..b").is_err());
        assert!(SubjectTemplate::parse("a.b*").is_err());
        assert!(SubjectTemplate::parse("a.*{claim.x}").is_err());
        assert!(SubjectTemplate::parse("a.svc-{claim.x}.*").is_ok());
        assert!(SubjectTemplate::parse("_INBOX.>").is_ok());
    }
}
