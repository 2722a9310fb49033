//! High availability: several instances in one queue group, and a cluster
//! of nats-servers with the callout on every node.

use std::time::Duration;

use crate::support::*;
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_the_load_and_survive_one_dying() {
    let env = Env::start(EnvOptions::default()).await;
    let mut second = ServiceProcess::start(&env.config_path());
    let third = ServiceProcess::start(&env.config_path());
    let url = env.nats.url();
    let token = env.token("nina", "nats");
    let (mut ok, mut failed) = (0, 0);
    // One connect at a time, so at most one request is in flight at the kill.
    for i in 0..300 {
        if i == 150 {
            second.kill();
        }
        match connect_token(&url, &token).await {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    assert!(failed <= 1, "{failed} connects lost (ok {ok})");
    for (name, log) in [("first", env.service().log()), ("third", third.log())] {
        let served = log.matches("authorization decision").count();
        assert!(served > 0, "{name} instance served nothing");
    }
    assert!(
        second.log().contains("authorization decision"),
        "second served nothing before the kill:\n{}",
        second.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_of_three_with_the_callout_on_every_node() {
    // Every listener on a port the server picks (-1) and reports in its log.
    let seed = "server_name: n1\ncluster { name: c, listen: 127.0.0.1:-1 }";
    let env = Env::start(EnvOptions {
        nats_extra: seed,
        ..Default::default()
    })
    .await;
    let route = env.nats.logged_port("Listening for route connections on ");
    // Nodes 2 and 3 join through node 1; the service is connected to node 1 only.
    let mut nodes = Vec::new();
    for n in 2..=3 {
        let cluster = format!(
            "server_name: n{n}\ncluster {{ name: c, listen: 127.0.0.1:-1, routes: [nats-route://127.0.0.1:{route}] }}"
        );
        nodes.push(NatsServer::start_any_port(&format!(
            "{}\n{cluster}",
            env.nats_config
        )));
    }
    let token = env.token("omar", "nats");
    // A node serves callouts once its route to node 1 is up.
    let mut clients = Vec::new();
    for node in &nodes {
        let client = connect_token_eventually(&node.url(), &token).await;
        clients
            .push(client.unwrap_or_else(|| {
                panic!("node {} never authorized:\n{}", node.url(), node.log())
            }));
    }
    // Across nodes: subscribe on node 3, publish on node 2.
    let mut sub = clients[1].nats.subscribe("app.omar.cluster").await.unwrap();
    clients[1].nats.flush().await.unwrap();
    let mut delivered = false;
    for _ in 0..40 {
        clients[0]
            .nats
            .publish("app.omar.cluster", "hi".into())
            .await
            .unwrap();
        clients[0].nats.flush().await.unwrap();
        if tokio::time::timeout(Duration::from_millis(250), sub.next())
            .await
            .is_ok()
        {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "no delivery across the cluster");
    // Each decision was addressed to the node that asked.
    let servers: std::collections::HashSet<String> = env
        .service()
        .decisions()
        .iter()
        .filter(|d| d.get("decision").and_then(|v| v.as_str()) == Some("allow"))
        .map(|d| d["server_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(servers.len() >= 2, "decisions for {servers:?}");
}
