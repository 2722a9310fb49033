//! The closed set of reason classes: one stable snake_case name for every
//! kind of denial. Metrics label decisions with it, the audit event and
//! `check` print it, and alerts are written against it, so a name never
//! changes once released. The README's list is kept equal to this one by a
//! test.

use std::fmt;

macro_rules! classes {
    ($($variant:ident => $name:literal: $doc:literal,)*) => {
        /// Why a connection was denied, as a class.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ReasonClass {
            $(#[doc = $doc] $variant,)*
        }

        impl ReasonClass {
            /// Every class, in the order the README lists them.
            pub const ALL: &'static [ReasonClass] = &[$(ReasonClass::$variant,)*];

            /// The stable name.
            pub fn as_str(self) -> &'static str {
                match self { $(ReasonClass::$variant => $name,)* }
            }

            /// One line on what the class means, for `--help`-like listings.
            pub fn description(self) -> &'static str {
                match self { $(ReasonClass::$variant => $doc,)* }
            }
        }
    };
}

classes! {
    NoToken => "no_token": "the client presented no token in the configured CONNECT fields",
    TokenMalformed => "token_malformed": "not a JWT (and no issuer takes opaque tokens), not a bearer token, too large, a claim of the wrong type, a required claim or `typ` missing, an introspected `token_type` that is not an access token",
    TokenAlgorithm => "token_algorithm": "`alg` none, HMAC, unsupported or not allowed for the issuer; `jku`/`x5u`/`jwk`/`crit` headers",
    UnknownIssuer => "unknown_issuer": "no `iss`, an `iss` no `[[issuer]]` names, or a JWT from an issuer whose `token_types` has no `jwt`",
    KeysUnavailable => "keys_unavailable": "the issuer's keys were never fetched, or are older than `jwks_max_stale`",
    UnknownKey => "unknown_key": "no published key has the token's `kid` (or fits its algorithm)",
    BadSignature => "bad_signature": "the signature does not verify",
    TokenExpired => "token_expired": "`exp` passed, or `iat` older than `max_token_age`",
    TokenNotYetValid => "token_not_yet_valid": "`nbf` in the future",
    Audience => "audience": "no configured audience in `aud`",
    IssuerMismatch => "issuer_mismatch": "`iss` differs from the issuer the key belongs to",
    TokenInactive => "token_inactive": "the introspection endpoint answered `active: false` (revoked, expired or unknown at the IdP)",
    IdpUnavailable => "idp_unavailable": "the introspection endpoint (or its discovery) could not be reached or answered with an error",
    IdpTimeout => "idp_timeout": "the introspection call took longer than `introspection_timeout`",
    IdpSaturated => "idp_saturated": "`introspection_max_in_flight` calls to the issuer were already under way",
    IdpRateLimited => "idp_rate_limited": "`introspection_rate_limit` calls to the issuer were made in the last second",
    IdpBadResponse => "idp_bad_response": "the introspection answer is not RFC 7662 JSON (no boolean `active`, claims of the wrong type)",
    UserinfoFailed => "userinfo_failed": "`userinfo = true` and the userinfo call failed or named another subject",
    NoRule => "no_rule": "no policy rule matches",
    AccountConflict => "account_conflict": "matching rules name different accounts",
    ClaimNotAToken => "claim_not_a_token": "a claim put into a subject is missing or not one plain subject token",
    ClaimAmbiguous => "claim_ambiguous": "a claim the policy reads is both a dotted key and a nested path, with different values",
    ClaimReservedSubject => "claim_reserved_subject": "a claim in a subject's first token would start it with `$` or `_INBOX`",
    TokenExpiring => "token_expiring": "the token expires before a user could be issued",
    Revoked => "revoked": "a revocation in force covers the token's subject, jti, client id or the connection's user nkey",
    RevocationsUnavailable => "revocations_unavailable": "the revocation bucket has never been read since start, so no connect can be checked against it",
    CertificateInvalid => "certificate_invalid": "the verified client certificate in the request cannot be read",
    CertificateBinding => "certificate_binding": "a certificate-bound token (RFC 8705 `cnf`) over a connection without that certificate, or an unbound token where the issuer requires binding",
    StaleRequest => "stale_request": "the server's request is past its `exp` (a replay, or clock skew)",
    BadRequest => "bad_request": "the request cannot be opened, decoded or verified (answered with an empty denial)",
    Saturated => "saturated": "more requests in flight than `max_in_flight`",
    Timeout => "timeout": "the decision took longer than `request_timeout`",
    Internal => "internal": "the answer could not be built or signed",
}

impl fmt::Display for ReasonClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `reason_class` of an allowed decision in metrics and the audit event.
pub const ALLOWED: &str = "ok";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in ReasonClass::ALL {
            let n = c.as_str();
            assert!(seen.insert(n), "{n} twice");
            assert!(
                n.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'),
                "{n}"
            );
            assert_ne!(n, ALLOWED);
        }
    }

    /// The README's "Reason classes" table lists exactly these classes, in
    /// this order.
    #[test]
    fn readme_lists_every_class() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("### Reason classes")
            .nth(1)
            .expect("README has a \"### Reason classes\" section");
        let listed: Vec<&str> = section
            .lines()
            .skip_while(|l| !l.starts_with("| `"))
            .take_while(|l| l.starts_with("| `"))
            .filter_map(|l| l.split('`').nth(1))
            .collect();
        let ours: Vec<&str> = ReasonClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, ours);
    }
}
