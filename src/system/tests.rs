use super::*;

#[test]
fn replicas_follow_the_jetstream_cluster_size_up_to_three() {
    let server = |js: bool, meta: Option<usize>| ServerStatus {
        server: ServerInfo {
            jetstream: js,
            ..ServerInfo::default()
        },
        stats: ServerStats {
            jetstream: meta.map(|n| JetStreamStats {
                meta: Some(MetaCluster { cluster_size: n }),
            }),
            ..ServerStats::default()
        },
    };
    assert_eq!(replicas_for(&[]), 1);
    assert_eq!(replicas_for(&[server(true, None)]), 1);
    assert_eq!(replicas_for(&[server(true, None), server(true, None)]), 2);
    // One node is down, but the meta leader knows the cluster has five.
    assert_eq!(
        replicas_for(&[server(true, Some(5)), server(true, None)]),
        3
    );
    assert_eq!(replicas_for(&[server(false, None), server(false, None)]), 1);
}
