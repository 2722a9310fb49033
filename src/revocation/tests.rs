use async_nats::jetstream::kv::Operation;
use serde_json::json;

use super::*;

fn subject(s: &str, issuer: Option<&str>) -> Selector {
    Selector::Subject {
        subject: s.into(),
        issuer: issuer.map(Into::into),
    }
}

fn revocation(selector: Selector, expires_at: Option<i64>) -> Revocation {
    Revocation {
        selector,
        reason: "laptop stolen".into(),
        created_at: 1_000,
        expires_at,
        by: "ops@host".into(),
    }
}

fn awkward() -> Vec<String> {
    vec![
        "alice".into(),
        "a/b/c".into(),
        "with spaces".into(),
        "dots.and>wild*cards".into(),
        "ünï/cödé 名前 🚀".into(),
        "x".repeat(300),
        "\"quotes\" and \\backslashes\\".into(),
        "\n".into(),
    ]
}

fn is_kv_key(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with('.')
        && !k.ends_with('.')
        && !k.contains("..")
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
}

#[test]
fn keys_fit_the_kv_alphabet_whatever_the_value() {
    let nkey = nkeys::KeyPair::new_user().public_key();
    let mut keys = std::collections::HashSet::new();
    for v in awkward() {
        for s in [
            subject(&v, None),
            subject(&v, Some("corp")),
            subject(&v, Some(&v)),
            Selector::Jti(v.clone()),
            Selector::ClientId(v.clone()),
        ] {
            let k = s.key();
            assert!(is_kv_key(&k), "{k:?}");
            assert!(k.len() < 80, "{k:?}");
            assert!(keys.insert(k), "duplicate key for {s:?}");
        }
    }
    assert!(is_kv_key(&Selector::UserNkey(nkey).key()));
}

#[test]
fn key_derivation_is_stable() {
    // The key is the storage format: changing it strands every stored
    // revocation (unrevoke could no longer find it).
    assert_eq!(
        subject("alice", Some("corp")).key(),
        "rev.subject.vRHoE65B8tBAZVv90WyPNExCWjhnmEgXO4Ggd2sPyuo"
    );
    assert_eq!(
        Selector::Jti("abc".into()).key(),
        "rev.jti.UUcE7IF2nKib6SZCohOwWEUdlRFDPnkYOa3dDxLWRlg"
    );
}

#[test]
fn selectors_round_trip_as_the_cli_flags() {
    let nkey = nkeys::KeyPair::new_user().public_key();
    for s in [
        subject("a/b", Some("corp")),
        subject("ü ber", None),
        Selector::Jti("j-1".into()),
        Selector::ClientId("ci".into()),
        Selector::UserNkey(nkey),
    ] {
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(
            serde_json::from_str::<Selector>(&text).unwrap(),
            s,
            "{text}"
        );
    }
    assert_eq!(
        serde_json::to_value(subject("alice", Some("corp"))).unwrap(),
        json!({"subject": "alice", "issuer": "corp"})
    );
    assert_eq!(
        serde_json::to_value(Selector::ClientId("c".into())).unwrap(),
        json!({"client_id": "c"})
    );
}

#[test]
fn malformed_selectors_are_refused_with_the_reason() {
    let long = "x".repeat(MAX_VALUE_BYTES + 1);
    let cases = [
        (json!({}), "exactly one"),
        (json!({"subject": "a", "jti": "b"}), "exactly one"),
        (json!({"jti": "b", "issuer": "corp"}), "exactly one"),
        (json!({"issuer": "corp"}), "exactly one"),
        (json!({"subject": ""}), "subject is empty"),
        (json!({"subject": "a", "issuer": ""}), "issuer is empty"),
        (json!({"jti": long}), "longer than"),
        (json!({"user_nkey": "alice"}), "not a user public key"),
        (
            json!({"user_nkey": nkeys::KeyPair::new_account().public_key()}),
            "not a user public key",
        ),
        (json!({"subject": "a", "sub": "b"}), "unknown field"),
    ];
    for (value, needle) in cases {
        let err = serde_json::from_value::<Selector>(value.clone()).unwrap_err();
        assert!(err.to_string().contains(needle), "{value}: {err}");
    }
}

#[test]
fn presented_identity_comes_from_the_token_claims() {
    let claims = json!({"sub": "alice", "jti": "t-1", "azp": "web", "cid": "web2", "client_id": 7})
        .as_object()
        .unwrap()
        .clone();
    let who = Presented::from_claims("corp", &claims, Some("UABC"));
    assert_eq!(who.subject, "alice");
    assert_eq!(who.jti, Some("t-1"));
    // A non-string client_id is not an identity.
    assert_eq!(who.client_ids, vec!["web", "web2"]);
    assert_eq!(who.user_nkey, Some("UABC"));
}

fn put(set: &RevocationSet, r: &Revocation, revision: u64) {
    let body = serde_json::to_vec(r).unwrap();
    set.apply(&r.selector.key(), revision, Operation::Put, &body);
}

fn alice<'a>(client_ids: Vec<&'a str>, nkey: Option<&'a str>) -> Presented<'a> {
    Presented {
        issuer: "corp",
        subject: "alice",
        jti: Some("tok-1"),
        client_ids,
        user_nkey: nkey,
    }
}

#[test]
fn each_selector_kind_matches_exactly_its_identities() {
    let nkey = nkeys::KeyPair::new_user().public_key();
    let other_nkey = nkeys::KeyPair::new_user().public_key();
    let cases: Vec<(Selector, Presented, bool)> = vec![
        (subject("alice", Some("corp")), alice(vec![], None), true),
        (subject("alice", None), alice(vec![], None), true),
        (subject("alice", Some("github")), alice(vec![], None), false),
        (subject("alic", None), alice(vec![], None), false),
        (subject("Alice", None), alice(vec![], None), false),
        (Selector::Jti("tok-1".into()), alice(vec![], None), true),
        (Selector::Jti("tok-2".into()), alice(vec![], None), false),
        (
            Selector::ClientId("web".into()),
            alice(vec!["x", "web"], None),
            true,
        ),
        (
            Selector::ClientId("web".into()),
            alice(vec!["webx"], None),
            false,
        ),
        (
            Selector::UserNkey(nkey.clone()),
            alice(vec![], Some(&nkey)),
            true,
        ),
        (
            Selector::UserNkey(nkey.clone()),
            alice(vec![], Some(&other_nkey)),
            false,
        ),
        (Selector::UserNkey(nkey.clone()), alice(vec![], None), false),
    ];
    for (selector, who, expected) in cases {
        assert_eq!(selector.covers(&who), expected, "{selector} vs {who:?}");
        let set = RevocationSet::new();
        put(&set, &revocation(selector.clone(), None), 1);
        assert_eq!(
            set.matching(&who, 2_000).is_some(),
            expected,
            "{selector} vs {who:?}"
        );
    }
}

#[test]
fn revocations_lapse_at_expiry_without_any_update() {
    let set = RevocationSet::new();
    put(&set, &revocation(subject("alice", None), Some(1_005)), 1);
    let who = alice(vec![], None);
    assert_eq!(set.matching(&who, 1_004).unwrap().reason, "laptop stolen");
    assert_eq!(set.active(1_004), 1);
    assert!(set.matching(&who, 1_005).is_none());
    assert_eq!(set.active(1_005), 0);
    assert!(set.snapshot(1_005).is_empty());
}

#[test]
fn a_lapsed_revocation_does_not_hide_a_live_one() {
    let set = RevocationSet::new();
    put(
        &set,
        &revocation(subject("alice", Some("corp")), Some(1_005)),
        1,
    );
    put(&set, &revocation(Selector::Jti("tok-1".into()), None), 2);
    let hit = set.matching(&alice(vec![], None), 2_000).unwrap();
    assert_eq!(hit.selector, Selector::Jti("tok-1".into()));
}

#[test]
fn updates_apply_in_revision_order_and_deletes_remove() {
    let set = RevocationSet::new();
    let who = alice(vec![], None);
    let mut r = revocation(subject("alice", None), None);
    put(&set, &r, 5);
    // An older value (from the initial load racing the watch) is ignored.
    r.reason = "old".into();
    put(&set, &r, 3);
    assert_eq!(set.matching(&who, 2_000).unwrap().reason, "laptop stolen");
    r.reason = "newer".into();
    put(&set, &r, 7);
    assert_eq!(set.matching(&who, 2_000).unwrap().reason, "newer");
    set.apply(&r.selector.key(), 8, Operation::Purge, b"");
    assert!(set.matching(&who, 2_000).is_none());
    assert_eq!(set.active(0), 0);
}

#[test]
fn entries_that_are_not_revocations_never_match() {
    let set = RevocationSet::new();
    let r = revocation(subject("alice", None), None);
    // A valid record under another selector's key, and garbage.
    let body = serde_json::to_vec(&r).unwrap();
    set.apply(&Selector::Jti("x".into()).key(), 1, Operation::Put, &body);
    set.apply(&subject("bob", None).key(), 2, Operation::Put, b"{not json");
    set.apply("other.key", 3, Operation::Put, &body);
    assert!(set.matching(&alice(vec![], None), 2_000).is_none());
    assert_eq!(set.invalid(), 2);
    assert_eq!(set.active(2_000), 0);
}

#[test]
fn a_fresh_load_replaces_everything_and_reports_loaded() {
    let set = RevocationSet::new();
    assert_eq!(set.health(), Health::NeverLoaded);
    put(&set, &revocation(subject("bob", None), None), 1);
    let r = revocation(subject("alice", None), None);
    set.replace(vec![(r.selector.key(), 9, Some(r))], 1_234);
    assert_eq!(set.health(), Health::Loaded { since: 1_234 });
    let bob = Presented {
        subject: "bob",
        ..alice(vec![], None)
    };
    assert!(set.matching(&bob, 2_000).is_none());
    assert!(set.matching(&alice(vec![], None), 2_000).is_some());
}
