//! The revocation bucket unreachable: an instance that has read it keeps
//! serving the last known set (a revoked subject stays out, others get
//! in); an instance that has never read it denies every connect with
//! `revocations_unavailable`, until the bucket is back.

use std::time::Duration;

use crate::support::*;

const REFUSED: &str = "Auth callout service returned an error: ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_bucket_keeps_the_last_known_set_and_a_new_instance_denies_until_it_reads_it() {
    let mut cluster = Cluster::start(ClusterOptions {
        instances: 1,
        ..Default::default()
    })
    .await;
    let (alice, bob) = (cluster.token("alice", "nats"), cluster.token("bob", "nats"));
    let o = cluster.cli("revoke", &["--subject", "alice", "--reason", "lost badge"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Two of three JetStream servers gone: no quorum, the bucket cannot be
    // read or watched.
    cluster.nodes[1].stop();
    cluster.nodes[2].stop();
    let url = cluster.url(0);
    let in_again = connect_token_eventually(&url, &bob).await;
    assert!(
        in_again.is_some(),
        "bob was kept out while the bucket was away:\n{}",
        cluster.services[0].log()
    );
    assert!(connect_token(&url, &alice).await.is_err(), "alice got in");
    let revoked = format!("{REFUSED}revoked: lost badge");
    assert!(
        wait_until(Duration::from_secs(5), || cluster.count(&revoked) >= 1),
        "{}",
        cluster.logs()
    );

    // A fresh instance alone, while the bucket is still away.
    cluster.services[0].stop().expect("stops");
    cluster.services.clear();
    let fresh = Service::start(&cluster.config_path());
    let unavailable = format!("{REFUSED}revocations unavailable");
    assert!(
        connect_token(&url, &bob).await.is_err(),
        "bob got in unchecked"
    );
    assert!(
        wait_until(Duration::from_secs(5), || cluster.count(&unavailable) >= 1),
        "{}\nservice:\n{}",
        cluster.logs(),
        fresh.log()
    );
    let denied: Vec<_> = fresh
        .decisions()
        .into_iter()
        .filter(|d| d["decision"] == "deny")
        .collect();
    assert!(
        denied
            .iter()
            .any(|d| d["reason_class"] == "revocations_unavailable"),
        "{denied:#?}"
    );

    // The servers come back: the instance reads the bucket; the revocation
    // held through all of it.
    cluster.nodes[1].restart();
    cluster.nodes[2].restart();
    assert!(
        wait_until(Duration::from_secs(60), || fresh
            .log()
            .contains("revocations loaded")),
        "{}",
        fresh.log()
    );
    let bob_back = connect_token_eventually(&url, &bob)
        .await
        .expect("bob back in once the bucket was read");
    round_trip(&bob_back.nats, "app.bob.x").await;
    assert!(connect_token(&url, &alice).await.is_err(), "alice got in");
    assert!(
        wait_until(Duration::from_secs(5), || cluster.count(&revoked) >= 2),
        "{}",
        cluster.logs()
    );
    cluster.services.push(fresh);
}
