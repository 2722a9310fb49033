//! The shared revocation bucket and its watchers on a real JetStream
//! cluster: round trips, lapses, outages and restarts.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_is_created_with_file_storage_history_one_and_message_ttls() {
    let nodes = Nodes::start(1);
    nodes.ready().await;
    let client = nodes.auth(0).await;
    let err = RevocationStore::open(&client, BUCKET).await.err().unwrap();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    nodes.store(0, 1).await;
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(format!("KV_{BUCKET}")).await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert_eq!(config.storage, StorageType::File);
    assert_eq!(config.max_messages_per_subject, 1);
    assert!(config.allow_message_ttl);
    assert_eq!(config.num_replicas, 1);
    // Opening again uses the bucket as it is.
    RevocationStore::open(&client, BUCKET).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_unrevoke_and_list_round_trip_with_any_values() {
    let nodes = Nodes::start(1);
    nodes.ready().await;
    let store = nodes.store(0, 1).await;
    let now = now_unix();
    let nkey = nkeys::KeyPair::new_user().public_key();
    let mut selectors: Vec<Selector> = awkward_subjects()
        .iter()
        .flat_map(|s| {
            [
                subject(s, Some("corp")),
                subject(s, None),
                Selector::Jti(s.clone()),
                Selector::ClientId(s.clone()),
            ]
        })
        .collect();
    selectors.push(Selector::UserNkey(nkey));
    for s in &selectors {
        store
            .revoke(&revocation(s.clone(), None), now)
            .await
            .unwrap();
    }
    // Revoking again replaces (one entry per selector).
    let mut again = revocation(selectors[0].clone(), Some(now + 3600));
    again.reason = "updated".into();
    store.revoke(&again, now).await.unwrap();
    let listed = store.list(now).await.unwrap();
    assert_eq!(listed.len(), selectors.len());
    for s in &selectors {
        assert!(listed.iter().any(|r| &r.selector == s), "{s} missing");
    }
    let first = listed.iter().find(|r| r.selector == selectors[0]).unwrap();
    assert_eq!(
        (first.reason.as_str(), first.expires_at),
        ("updated", Some(now + 3600))
    );

    assert!(store.unrevoke(&selectors[1], now).await.unwrap());
    assert!(!store.unrevoke(&selectors[1], now).await.unwrap());
    assert!(!store
        .unrevoke(&Selector::Jti("never".into()), now)
        .await
        .unwrap());
    let listed = store.list(now).await.unwrap();
    assert_eq!(listed.len(), selectors.len() - 1);
    assert!(!listed.iter().any(|r| r.selector == selectors[1]));
    // Past its expiry a revocation is not listed (and unrevoke finds none).
    assert!(!store
        .list(now + 3601)
        .await
        .unwrap()
        .iter()
        .any(|r| r.selector == selectors[0]));
    assert!(!store.unrevoke(&selectors[0], now + 3601).await.unwrap());
}

fn alice_presented() -> Presented<'static> {
    Presented {
        issuer: "corp",
        subject: "alice",
        ..Presented::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_another_node_sees_revocations_and_their_removal() {
    let nodes = Nodes::start(3);
    let sys = nodes.ready().await;
    let servers = sys.servers().await.unwrap();
    assert_eq!(replicas_for(&servers), 3);
    let a = nodes.store(0, 3).await;
    // An existing revocation is loaded; later ones arrive by the watch.
    let now = now_unix();
    a.revoke(&revocation(subject("bob", None), None), now)
        .await
        .unwrap();
    let b = nodes.store(2, 3).await;
    let set = RevocationSet::new();
    assert_eq!(set.health(), Health::NeverLoaded);
    let _watcher = set.watch(b);
    let bob = Presented {
        subject: "bob",
        ..alice_presented()
    };
    let loaded = wait_until_async(Duration::from_secs(10), || async {
        matches!(set.health(), Health::Loaded { .. })
    })
    .await;
    assert!(loaded, "{:?}", set.health());
    assert!(set.matching(&bob, now_unix()).is_some());
    assert!(set.matching(&alice_presented(), now_unix()).is_none());

    a.revoke(
        &revocation(subject("alice", Some("corp")), None),
        now_unix(),
    )
    .await
    .unwrap();
    let seen = wait_until_async(Duration::from_secs(10), || async {
        set.matching(&alice_presented(), now_unix()).is_some()
    })
    .await;
    assert!(seen, "instance B never saw A's revocation");
    assert_eq!(
        set.matching(&alice_presented(), now_unix())
            .unwrap()
            .denial(),
        "revoked: laptop stolen"
    );
    assert_eq!(set.active(now_unix()), 2);

    assert!(a
        .unrevoke(&subject("alice", Some("corp")), now_unix())
        .await
        .unwrap());
    let lifted = wait_until_async(Duration::from_secs(10), || async {
        set.matching(&alice_presented(), now_unix()).is_none()
    })
    .await;
    assert!(lifted, "instance B never saw the unrevoke");
    assert_eq!(set.active(now_unix()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_for_a_duration_lapses_and_the_server_removes_it() {
    let nodes = Nodes::start(1);
    nodes.ready().await;
    let store = nodes.store(0, 1).await;
    let set = RevocationSet::new();
    let _watcher = set.watch(store.clone());
    let now = now_unix();
    store
        .revoke(&revocation(subject("alice", None), Some(now + 2)), now)
        .await
        .unwrap();
    let seen = wait_until_async(Duration::from_secs(10), || async {
        set.matching(&alice_presented(), now).is_some()
    })
    .await;
    assert!(seen, "the watcher never saw the revocation");
    // At expiry it stops matching whatever the bucket says.
    assert!(set.matching(&alice_presented(), now + 2).is_none());
    // The server removes it (per-message TTL) and watchers see the marker.
    let removed = wait_until_async(Duration::from_secs(15), || async {
        set.active(0) == 0 && store.list(0).await.is_ok_and(|l| l.is_empty())
    })
    .await;
    assert!(removed, "the expired revocation is still in the bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_serves_the_last_known_set_while_the_server_is_away_and_reloads_after() {
    let mut nodes = Nodes::start(1);
    nodes.ready().await;
    let store = nodes.store(0, 1).await;
    store
        .revoke(&revocation(subject("alice", None), None), now_unix())
        .await
        .unwrap();
    let set = RevocationSet::new();
    let _watcher = set.watch(store);
    let loaded = wait_until_async(Duration::from_secs(10), || async {
        set.matching(&alice_presented(), now_unix()).is_some()
    })
    .await;
    assert!(loaded, "{:?}", set.health());
    let Health::Loaded { since: first } = set.health() else {
        panic!("{:?}", set.health())
    };

    nodes.servers[0].stop();
    let stale = wait_until_async(Duration::from_secs(10), || async {
        matches!(set.health(), Health::Stale { .. })
    })
    .await;
    assert!(stale, "{:?}", set.health());
    let Health::Stale { loaded, reason, .. } = set.health() else {
        unreachable!()
    };
    assert_eq!(loaded, Some(first));
    assert!(reason.contains("disconnected"), "{reason}");
    // The last known revocations still apply.
    assert!(set.matching(&alice_presented(), now_unix()).is_some());

    nodes.servers[0].restart();
    nodes.ready().await;
    // A change made by another instance while this one reconnects is seen.
    let other = nodes.store(0, 1).await;
    other
        .revoke(&revocation(subject("bob", None), None), now_unix())
        .await
        .unwrap();
    let bob = Presented {
        subject: "bob",
        ..alice_presented()
    };
    let back = wait_until_async(Duration::from_secs(20), || async {
        matches!(set.health(), Health::Loaded { .. }) && set.matching(&bob, now_unix()).is_some()
    })
    .await;
    assert!(back, "{:?}", set.health());
    assert!(set.matching(&alice_presented(), now_unix()).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_survive_a_restart_of_every_server() {
    let mut nodes = Nodes::start(3);
    nodes.ready().await;
    let store = nodes.store(1, 3).await;
    let now = now_unix();
    let kept = revocation(subject("ü ber/alice", Some("corp")), None);
    store.revoke(&kept, now).await.unwrap();
    drop(store);
    for s in &mut nodes.servers {
        s.stop();
    }
    for s in &mut nodes.servers {
        s.restart();
    }
    nodes.ready().await;
    let client = nodes.auth(2).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = match RevocationStore::open(&client, BUCKET).await {
            Ok(s) => s.list(now).await.ok(),
            Err(_) => None,
        };
        match listed {
            Some(l) if !l.is_empty() => break l,
            _ if Instant::now() > deadline => panic!("bucket not back:\n{}", nodes.logs()),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    assert_eq!(listed, vec![kept]);
}
