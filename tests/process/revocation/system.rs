//! The system connection against real servers: CONNZ and KICK on one and
//! three nodes.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connz_shows_the_issued_name_and_nothing_else_of_the_user_jwt() {
    let nodes = Nodes::start(1);
    let sys = nodes.ready().await;
    let _callout = responder(&nodes).await;
    let mut clients = Vec::new();
    for sub in awkward_subjects() {
        let name = user_name("corp", &sub);
        let tok = json!({"iss": "corp", "sub": sub, "tags": ["jti:tok-1", "client:web"]});
        let (client, server_id, cid) = user(&nodes, 0, &tok.to_string()).await;
        clients.push(client);
        // The `user` filter matches the issued name exactly.
        let query = ConnzQuery {
            user: Some(name.clone()),
            account: None,
        };
        let gather = sys.connz(&query).await.unwrap();
        assert!(gather.complete(), "{gather:?}");
        assert_eq!(gather.connections.len(), 1, "{name:?}: {gather:?}");
        assert_eq!(gather.servers.len(), 1);
        let conn = &gather.connections[0];
        assert_eq!(
            (conn.server_id.as_str(), conn.cid),
            (server_id.as_str(), cid)
        );
        assert_eq!(conn.authorized_user, name);
        assert_eq!(conn.account, "APP");
        // What the user JWT carried besides its name does not show.
        assert!(conn.tags.is_empty(), "{conn:?}");
        assert!(conn.jwt.is_empty(), "{conn:?}");
        // Both name the target account (config mode: its name), not the service.
        assert_eq!(
            (conn.issuer_key.as_str(), conn.name_tag.as_str()),
            ("APP", "APP")
        );
        let facts = SessionFacts::from_connz(conn, &["corp"]).unwrap();
        assert_eq!(
            (facts.issuer.as_str(), facts.subject.as_str()),
            ("corp", sub.as_str())
        );
        assert!(facts.start.is_some());
    }
    // The raw reply, for the record (cargo test -- --nocapture).
    let reply = sys
        .client()
        .request(
            format!(
                "$SYS.REQ.SERVER.{}.CONNZ",
                sys.servers().await.unwrap()[0].server.id
            ),
            json!({"auth": true, "user": "corp/alice"})
                .to_string()
                .into(),
        )
        .await
        .unwrap();
    eprintln!("CONNZ: {}", String::from_utf8_lossy(&reply.payload));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connz_gathers_connections_from_all_three_servers() {
    let nodes = Nodes::start(3);
    let sys = nodes.ready().await;
    let _callout = responder(&nodes).await;
    let mut clients = Vec::new();
    for i in 0..3 {
        for k in 0..2 {
            clients.push(user(&nodes, i, &token("corp", &format!("u{i}-{k}"))).await);
        }
    }
    let gather = sys.connz(&ConnzQuery::default()).await.unwrap();
    assert!(gather.complete(), "{gather:?}");
    assert_eq!(gather.servers.len(), 3);
    for (_, server_id, cid) in &clients {
        assert!(
            gather
                .connections
                .iter()
                .any(|c| &c.server_id == server_id && c.cid == *cid),
            "cid {cid} on {server_id} missing"
        );
    }
    let sessions: Vec<SessionFacts> = gather
        .connections
        .iter()
        .filter_map(|c| SessionFacts::from_connz(c, &["corp"]))
        .collect();
    assert_eq!(sessions.len(), 6, "{sessions:?}");
    let names: std::collections::HashSet<&str> =
        sessions.iter().map(|s| s.server_name.as_str()).collect();
    assert_eq!(names.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connz_pages_through_more_connections_than_one_page() {
    let nodes = Nodes::start(1);
    let sys = nodes.ready().await;
    let _callout = responder(&nodes).await;
    // 1100 connections: more than one 1024-entry page.
    let mut clients = Vec::new();
    for _ in 0..1100 {
        let opts =
            async_nats::ConnectOptions::with_user_and_password("auth".into(), "authpw".into());
        clients.push(opts.connect(nodes.url(0)).await.unwrap());
    }
    let gather = sys.connz(&ConnzQuery::default()).await.unwrap();
    assert!(gather.complete(), "{:?}", gather.errors);
    let mut cids: Vec<u64> = gather.connections.iter().map(|c| c.cid).collect();
    cids.sort_unstable();
    cids.dedup();
    assert_eq!(
        cids.len(),
        gather.connections.len(),
        "duplicates across pages"
    );
    for c in &clients {
        let cid = c.server_info().client_id;
        assert!(cids.contains(&cid), "cid {cid} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_closes_a_client_on_another_server_and_reports_gone_ones() {
    let nodes = Nodes::start(3);
    let sys = nodes.ready().await;
    let _callout = responder(&nodes).await;
    let (mut victim, server_id, cid) = user(&nodes, 2, &token("corp", "alice")).await;
    let (bystander, _, _) = user(&nodes, 2, &token("corp", "bob")).await;
    assert_eq!(sys.kick(&server_id, cid).await, Kick::Closed);
    victim
        .expect_error("disconnected", Duration::from_secs(5))
        .await;
    round_trip(&bystander.nats, "bystander.still.here").await;
    // Racing closers: the second one finds it gone, which is not a failure.
    let again = sys.kick(&server_id, cid).await;
    assert_eq!(again, Kick::NoSuchClient);
    assert!(again.is_gone());
    let nobody = nkeys::KeyPair::new_server().public_key();
    assert_eq!(sys.kick(&nobody, 1).await, Kick::Unreachable);
}

/// Not a timing assertion: every kick must close its connection; the
/// timings are printed for notes/BENCHMARKS.md (`-- --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicks_and_gathers_on_three_nodes_repeatedly() {
    let nodes = Nodes::start(3);
    let sys = nodes.ready().await;
    let _callout = responder(&nodes).await;
    let (mut kicks, mut closes, mut gathers) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..20 {
        let node = 1 + round % 2;
        let (mut victim, server_id, cid) =
            user(&nodes, node, &token("corp", &format!("r{round}"))).await;
        let started = Instant::now();
        let gather = sys.connz(&ConnzQuery::default()).await.unwrap();
        gathers.push(started.elapsed());
        assert!(gather.complete(), "{gather:?}");
        assert!(gather
            .connections
            .iter()
            .any(|c| c.cid == cid && c.server_id == server_id));
        let started = Instant::now();
        assert_eq!(sys.kick(&server_id, cid).await, Kick::Closed);
        kicks.push(started.elapsed());
        victim
            .expect_error("disconnected", Duration::from_secs(5))
            .await;
        closes.push(started.elapsed());
    }
    for (what, mut v) in [
        ("kick reply", kicks),
        ("client saw close", closes),
        ("connz gather", gathers),
    ] {
        v.sort();
        eprintln!(
            "measure: {what}: p50 {:?} max {:?} (n={})",
            v[v.len() / 2],
            v[v.len() - 1],
            v.len()
        );
    }
}
