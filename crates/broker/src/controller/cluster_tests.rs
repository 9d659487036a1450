//! The active controller's cluster decisions, with injected time, against a
//! metadata log in a temporary directory.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
use kafka_protocol::messages::broker_registration_request::Listener;
use kafka_protocol::messages::{
    AlterPartitionRequest, AlterPartitionResponse, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerId,
    BrokerRegistrationRequest,
};
use kafka_protocol::protocol::StrBytes;
use metadata::{MetadataLog, PartitionImage, Uuid};

use super::Controller;
use crate::config::ServerConfig;
use crate::topics::NewTopic;

const CLUSTER: &str = "test-cluster-id";
/// A metadata offset past everything these tests write.
const CAUGHT_UP: i64 = 1 << 40;

struct Cluster {
    _dir: tempfile::TempDir,
    c: Controller,
    /// Each broker's (incarnation, epoch).
    brokers: std::collections::BTreeMap<i32, (Uuid, i64)>,
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = MetadataLog::open(&dir.path().join("__cluster_metadata-0"), true).expect("open");
        let config = ServerConfig::from_entries(vec![("node.id".into(), "1".into(), "t".into())]).expect("config");
        let mut c = Controller::new(Box::new(log), config);
        c.set_cluster_id(CLUSTER);
        c.activate(0);
        Cluster { _dir: dir, c, brokers: Default::default() }
    }

    fn registration(id: i32, incarnation: Uuid, rack: Option<&str>) -> BrokerRegistrationRequest {
        BrokerRegistrationRequest::default()
            .with_broker_id(BrokerId(id))
            .with_cluster_id(StrBytes::from_static_str(CLUSTER))
            .with_incarnation_id(incarnation)
            .with_rack(rack.map(|r| StrBytes::from_string(r.to_string())))
            .with_listeners(vec![Listener::default()
                .with_name(StrBytes::from_static_str("PLAINTEXT"))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(9000 + id as u16)])
    }

    /// Registers `id` as a new incarnation; returns its epoch.
    fn register(&mut self, id: i32, rack: Option<&str>, now_ms: i64) -> i64 {
        let incarnation = Uuid::new_v4();
        let response = self.c.register_broker(&Self::registration(id, incarnation, rack), now_ms);
        assert_eq!(response.error_code, 0, "registration of {id}");
        self.brokers.insert(id, (incarnation, response.broker_epoch));
        response.broker_epoch
    }

    fn epoch(&self, id: i32) -> i64 {
        self.brokers[&id].1
    }

    fn heartbeat_with(&mut self, id: i32, offset: i64, fence: bool, shut_down: bool, now_ms: i64) -> BrokerHeartbeatResponse {
        let req = BrokerHeartbeatRequest::default()
            .with_broker_id(BrokerId(id))
            .with_broker_epoch(self.epoch(id))
            .with_current_metadata_offset(offset)
            .with_want_fence(fence)
            .with_want_shut_down(shut_down);
        self.c.broker_heartbeat(&req, now_ms)
    }

    fn heartbeat(&mut self, id: i32, now_ms: i64) -> BrokerHeartbeatResponse {
        self.heartbeat_with(id, CAUGHT_UP, false, false, now_ms)
    }

    /// Registers and unfences brokers `ids` at time 0.
    fn with_brokers(ids: &[i32]) -> Cluster {
        let mut cluster = Cluster::new();
        for &id in ids {
            cluster.register(id, None, 0);
        }
        for &id in ids {
            let r = cluster.heartbeat(id, 0);
            assert!(!r.is_fenced && r.is_caught_up, "{id} unfenced: {r:?}");
        }
        cluster
    }

    /// Creates `name` with these replicas per partition (and configs); returns its id.
    fn topic(&mut self, name: &str, assignments: &[&[i32]], configs: &[(&str, &str)]) -> Uuid {
        let new = NewTopic {
            name: name.into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: assignments.iter().enumerate().map(|(i, r)| (i as i32, r.to_vec())).collect(),
            configs: configs.iter().map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect(),
        };
        let change = self.c.create_topic(&new).expect("decide");
        self.c.commit(&change.records, 0).expect("commit");
        change.topic.id
    }

    fn partition(&self, name: &str, index: i32) -> PartitionImage {
        self.c.image().topic(name).and_then(|t| t.partitions.get(&index)).cloned().expect("partition")
    }

    fn fenced(&self, id: i32) -> bool {
        self.c.image().broker(id).expect("registered").fenced
    }

    fn alter(&mut self, from: i32, topic_id: Uuid, leader_epoch: i32, partition_epoch: i32, isr: &[(i32, i64)]) -> AlterPartitionResponse {
        let req = AlterPartitionRequest::default().with_broker_id(BrokerId(from)).with_broker_epoch(self.epoch(from)).with_topics(vec![
            TopicData::default().with_topic_id(topic_id).with_partitions(vec![PartitionData::default()
                .with_partition_index(0)
                .with_leader_epoch(leader_epoch)
                .with_partition_epoch(partition_epoch)
                .with_new_isr_with_epochs(
                    isr.iter().map(|&(id, epoch)| BrokerState::default().with_broker_id(BrokerId(id)).with_broker_epoch(epoch)).collect(),
                )]),
        ]);
        self.c.alter_partition(&req, 0)
    }
}

fn partition_error(r: &AlterPartitionResponse) -> i16 {
    assert_eq!(r.error_code, 0, "request error: {r:?}");
    r.topics[0].partitions[0].error_code
}

#[test]
fn a_new_registration_is_fenced_with_a_new_epoch_and_a_retry_of_the_same_incarnation_keeps_it() {
    let mut cluster = Cluster::new();
    let incarnation = Uuid::new_v4();
    let first = cluster.c.register_broker(&Cluster::registration(2, incarnation, Some("r1")), 0);
    assert_eq!((first.error_code, first.broker_epoch), (0, 1));
    let b = cluster.c.image().broker(2).cloned().expect("registered");
    assert!(b.fenced && !b.in_controlled_shutdown);
    assert_eq!((b.rack.as_deref(), b.listeners[0].port, b.incarnation_id), (Some("r1"), 9002, incarnation));
    let retry = cluster.c.register_broker(&Cluster::registration(2, incarnation, Some("r1")), 10);
    assert_eq!((retry.error_code, retry.broker_epoch), (0, 1), "idempotent");
    let other = cluster.c.register_broker(&Cluster::registration(3, Uuid::new_v4(), None), 10);
    assert_eq!(other.broker_epoch, 2, "epochs are unique");
}

#[test]
fn a_registration_naming_another_cluster_is_inconsistent() {
    let mut cluster = Cluster::new();
    let req = Cluster::registration(2, Uuid::new_v4(), None).with_cluster_id(StrBytes::from_static_str("other"));
    let r = cluster.c.register_broker(&req, 0);
    assert_eq!((r.error_code, r.broker_epoch), (code(ResponseError::InconsistentClusterId), -1));
    assert!(cluster.c.image().broker(2).is_none());
}

#[test]
fn a_second_process_with_a_live_broker_id_is_a_duplicate_until_the_first_session_expires() {
    let mut cluster = Cluster::with_brokers(&[1, 2]);
    let old_epoch = cluster.epoch(2);
    let impostor = Cluster::registration(2, Uuid::new_v4(), None);
    let r = cluster.c.register_broker(&impostor, 1_000);
    assert_eq!(r.error_code, code(ResponseError::DuplicateBrokerRegistration));
    // 2 falls silent; once its session is over, a new process may take the id.
    cluster.heartbeat(1, 8_000);
    let r = cluster.c.register_broker(&impostor, 9_001);
    assert_eq!(r.error_code, 0);
    assert!(r.broker_epoch > old_epoch);
    assert!(cluster.fenced(2), "a new incarnation starts fenced");
}

#[test]
fn a_heartbeat_with_a_stale_or_unknown_epoch_is_refused() {
    let mut cluster = Cluster::with_brokers(&[1]);
    let stale = BrokerHeartbeatRequest::default().with_broker_id(BrokerId(1)).with_broker_epoch(cluster.epoch(1) + 5);
    assert_eq!(cluster.c.broker_heartbeat(&stale, 0).error_code, code(ResponseError::StaleBrokerEpoch));
    let unknown = BrokerHeartbeatRequest::default().with_broker_id(BrokerId(7)).with_broker_epoch(1);
    assert_eq!(cluster.c.broker_heartbeat(&unknown, 0).error_code, code(ResponseError::StaleBrokerEpoch));
}

#[test]
fn a_fenced_broker_is_unfenced_only_once_caught_up_with_its_registration() {
    let mut cluster = Cluster::new();
    cluster.register(2, None, 0);
    let behind = cluster.heartbeat_with(2, -1, false, false, 100);
    assert!(behind.is_fenced && !behind.is_caught_up, "{behind:?}");
    assert!(cluster.fenced(2));
    let registered_at = cluster.c.last_offset;
    let caught_up = cluster.heartbeat_with(2, registered_at, false, false, 200);
    assert!(!caught_up.is_fenced && caught_up.is_caught_up, "{caught_up:?}");
    assert!(!cluster.fenced(2));
    // want_fence fences it again.
    let r = cluster.heartbeat_with(2, CAUGHT_UP, true, false, 300);
    assert!(r.is_fenced && !r.should_shut_down, "{r:?}");
    assert!(cluster.fenced(2));
}

#[test]
fn a_broker_silent_past_its_session_is_fenced_and_its_leaderships_move_to_the_isr() {
    let mut cluster = Cluster::with_brokers(&[1, 2, 3]);
    cluster.topic("t", &[&[1, 2, 3]], &[]);
    assert_eq!(cluster.partition("t", 0).leader, 1);
    cluster.heartbeat(2, 5_000);
    cluster.heartbeat(3, 5_000);
    assert!(cluster.c.fence_expired_brokers(9_000).is_empty(), "a session lasts broker.session.timeout.ms");
    assert_eq!(cluster.c.fence_expired_brokers(9_001), vec![1]);
    assert!(cluster.fenced(1));
    let p = cluster.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch), (2, vec![2, 3], 1, 1));
    // 1 comes back (same process): caught up, it is unfenced but does not lead or rejoin the ISR by itself.
    assert!(!cluster.heartbeat(1, 9_500).is_fenced);
    assert_eq!(cluster.partition("t", 0).isr, vec![2, 3]);
}

#[test]
fn fencing_the_last_isr_member_leaves_the_partition_leaderless_until_it_returns() {
    for elr in [false, true] {
        let mut cluster = Cluster::with_brokers(&[1, 2]);
        cluster.c.set_elr_enabled(elr);
        cluster.topic("t", &[&[1, 2]], &[]);
        cluster.heartbeat_with(2, CAUGHT_UP, true, false, 10);
        let p = cluster.partition("t", 0);
        assert_eq!((p.leader, p.isr.clone(), p.elr.clone()), (1, vec![1], vec![]), "elr {elr}");
        cluster.heartbeat_with(1, CAUGHT_UP, true, false, 20);
        let p = cluster.partition("t", 0);
        if elr {
            // KIP-966: the ISR may empty; its last member is an eligible leader.
            assert_eq!((p.leader, p.isr.clone(), p.elr.clone()), (-1, vec![], vec![1]));
        } else {
            assert_eq!((p.leader, p.isr.clone(), p.elr.clone()), (-1, vec![1], vec![]));
        }
        // 2 returns first: it was not in sync, it may not lead (no unclean election).
        cluster.heartbeat(2, 30);
        assert_eq!(cluster.partition("t", 0).leader, -1, "elr {elr}");
        cluster.heartbeat(1, 40);
        let p = cluster.partition("t", 0);
        assert_eq!((p.leader, p.isr.clone(), p.elr.clone()), (1, vec![1], vec![]), "elr {elr}");
    }
}

#[test]
fn with_unclean_leader_election_enabled_a_live_out_of_sync_replica_takes_over() {
    let mut cluster = Cluster::with_brokers(&[1, 2]);
    let id = cluster.topic("t", &[&[1, 2]], &[("unclean.leader.election.enable", "true")]);
    let e1 = cluster.epoch(1);
    assert_eq!(partition_error(&cluster.alter(1, id, 0, 0, &[(1, e1)])), 0, "shrink to [1]");
    cluster.heartbeat_with(1, CAUGHT_UP, true, false, 10);
    let p = cluster.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone(), p.elr.clone()), (2, vec![2], vec![]));
}

#[test]
fn a_controlled_shutdown_moves_leaderships_away_and_completes_once_others_have_seen_it() {
    let mut cluster = Cluster::with_brokers(&[1, 2, 3]);
    cluster.topic("a", &[&[1, 2, 3]], &[]);
    cluster.topic("b", &[&[1]], &[]);
    let now = cluster.c.last_offset;
    cluster.heartbeat_with(2, now, false, false, 100);
    cluster.heartbeat_with(3, now, false, false, 100);
    let r = cluster.heartbeat_with(1, now, false, true, 200);
    assert!(!r.should_shut_down && !r.is_fenced, "{r:?}");
    assert!(cluster.c.image().broker(1).expect("1").in_controlled_shutdown);
    let a = cluster.partition("a", 0);
    assert_eq!((a.leader, a.isr.clone()), (2, vec![2, 3]));
    // Its only replica is shutting down: leaderless, it is the one eligible leader.
    let b = cluster.partition("b", 0);
    assert_eq!((b.leader, b.isr.clone(), b.elr.clone()), (-1, vec![], vec![1]));
    // Not before every active broker saw the change.
    let r = cluster.heartbeat_with(1, now, false, true, 300);
    assert!(!r.should_shut_down, "{r:?}");
    let seen = cluster.c.last_offset;
    cluster.heartbeat_with(2, seen, false, false, 400);
    cluster.heartbeat_with(3, seen, false, false, 400);
    let r = cluster.heartbeat_with(1, seen, false, true, 500);
    assert!(r.should_shut_down && r.is_fenced, "{r:?}");
    assert!(cluster.fenced(1));
    // No new replicas go to a broker shutting down or fenced.
    let err = cluster
        .c
        .create_topic(&NewTopic { name: "c".into(), num_partitions: 1, replication_factor: 3, assignments: vec![], configs: vec![] })
        .err()
        .expect("rf 3 over 2 usable brokers");
    assert_eq!(err.response_error(), ResponseError::InvalidReplicationFactor);
}

#[test]
fn a_broker_leading_nothing_may_shut_down_at_once() {
    let mut cluster = Cluster::with_brokers(&[1, 2]);
    cluster.topic("t", &[&[1, 2]], &[]);
    let r = cluster.heartbeat_with(2, CAUGHT_UP, false, true, 10);
    assert!(r.should_shut_down && r.is_fenced, "{r:?}");
    assert_eq!(cluster.partition("t", 0).isr, vec![1], "fenced: out of the ISR");
}

#[test]
fn a_restarted_broker_leaves_the_isrs_its_old_process_was_in() {
    let mut cluster = Cluster::with_brokers(&[1, 2, 3]);
    cluster.topic("t", &[&[1, 2, 3]], &[]);
    let old = cluster.epoch(2);
    cluster.heartbeat(1, 9_500);
    cluster.heartbeat(3, 9_500);
    // 2 crashed and restarted before the controller fenced it.
    let new = cluster.register(2, None, 10_000);
    assert!(new > old);
    let p = cluster.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone()), (1, vec![1, 3]));
    assert!(cluster.fenced(2));
}

#[test]
fn new_topics_are_placed_over_the_registered_brokers_with_leaders_spread() {
    let mut cluster = Cluster::with_brokers(&[1, 2, 3]);
    let new = |name: &str, partitions: i32, rf: i16| NewTopic {
        name: name.into(),
        num_partitions: partitions,
        replication_factor: rf,
        assignments: vec![],
        configs: vec![],
    };
    let change = cluster.c.create_topic(&new("t", 3, 3)).expect("decide");
    let mut leaders: Vec<i32> = change.topic.partitions.values().map(|p| p.leader).collect();
    leaders.sort_unstable();
    assert_eq!(leaders, vec![1, 2, 3]);
    for p in change.topic.partitions.values() {
        let mut replicas = p.replicas.clone();
        replicas.sort_unstable();
        assert_eq!(replicas, vec![1, 2, 3]);
        assert_eq!((p.isr.clone(), p.leader), (p.replicas.clone(), p.replicas[0]));
    }
    let err = cluster.c.create_topic(&new("u", 3, 4)).err().expect("rf 4");
    assert_eq!(err.response_error(), ResponseError::InvalidReplicationFactor);
    assert!(err.to_string().contains("only 3 broker(s) are registered"), "{err}");
    // A fenced broker holds a follower, never the leader, and is out of the ISR.
    cluster.heartbeat_with(3, CAUGHT_UP, true, false, 10);
    let change = cluster.c.create_topic(&new("v", 6, 3)).expect("decide");
    for p in change.topic.partitions.values() {
        assert_ne!(p.leader, 3);
        assert!(!p.isr.contains(&3) && p.replicas.contains(&3), "{p:?}");
    }
}

#[test]
fn manual_assignments_must_name_registered_brokers_once_each() {
    let mut cluster = Cluster::with_brokers(&[1, 2]);
    let assign = |name: &str, a: Vec<Vec<i32>>| NewTopic {
        name: name.into(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: a.into_iter().enumerate().map(|(i, r)| (i as i32, r)).collect(),
        configs: vec![],
    };
    for (bad, why) in [
        (vec![vec![1, 5]], "no such broker is registered"),
        (vec![vec![1, 1]], "more than once"),
        (vec![vec![1, 2], vec![2]], "not consistent with previous partitions"),
    ] {
        let err = cluster.c.create_topic(&assign("t", bad)).err().expect("refused");
        assert_eq!(err.response_error(), ResponseError::InvalidReplicaAssignment);
        assert!(err.to_string().contains(why), "{err}");
    }
    cluster.heartbeat_with(2, CAUGHT_UP, true, false, 10);
    let change = cluster.c.create_topic(&assign("t", vec![vec![2, 1]])).expect("decide");
    let p = &change.topic.partitions[&0];
    assert_eq!((p.leader, p.isr.clone()), (1, vec![1]), "the first active replica leads");
    let err = cluster.c.create_topic(&assign("u", vec![vec![2]])).err().expect("only fenced");
    assert_eq!(err.response_error(), ResponseError::InvalidReplicaAssignment);
}

#[test]
fn an_alter_partition_shrinking_the_isr_is_committed_and_answered_with_the_new_state() {
    let mut cluster = Cluster::with_brokers(&[1, 2, 3]);
    let id = cluster.topic("t", &[&[1, 2, 3]], &[("min.insync.replicas", "2")]);
    let (e1, e2) = (cluster.epoch(1), cluster.epoch(2));
    let r = cluster.alter(1, id, 0, 0, &[(1, e1), (2, e2)]);
    assert_eq!(partition_error(&r), 0);
    let answer = &r.topics[0].partitions[0];
    assert_eq!((answer.leader_id.0, answer.leader_epoch, answer.partition_epoch), (1, 0, 1));
    assert_eq!(answer.isr.iter().map(|b| b.0).collect::<Vec<_>>(), vec![1, 2]);
    let p = cluster.partition("t", 0);
    assert_eq!((p.isr.clone(), p.partition_epoch, p.elr.clone()), (vec![1, 2], 1, vec![]));
    // Below min.insync.replicas, replicas leaving the ISR become eligible leaders.
    let r = cluster.alter(1, id, 0, 1, &[(1, -1)]);
    assert_eq!(partition_error(&r), 0);
    let p = cluster.partition("t", 0);
    assert_eq!((p.isr.clone(), p.elr.clone()), (vec![1], vec![2]));
    // Back to two: the ELR is cleared.
    assert_eq!(partition_error(&cluster.alter(1, id, 0, 2, &[(1, -1), (3, -1)])), 0);
    let p = cluster.partition("t", 0);
    assert_eq!((p.isr.clone(), p.elr.clone(), p.partition_epoch), (vec![1, 3], vec![], 3));
}

#[test]
fn an_alter_partition_with_a_stale_partition_epoch_is_rejected() {
    let mut cluster = Cluster::with_brokers(&[1, 2, 3]);
    let id = cluster.topic("t", &[&[1, 2, 3]], &[]);
    assert_eq!(partition_error(&cluster.alter(1, id, 0, 0, &[(1, -1), (2, -1)])), 0);
    let r = cluster.alter(1, id, 0, 0, &[(1, -1)]);
    assert_eq!(partition_error(&r), code(ResponseError::InvalidUpdateVersion));
    assert_eq!(cluster.partition("t", 0).isr, vec![1, 2], "nothing changed");
}

#[test]
fn an_alter_partition_failing_kafkas_checks_gets_kafkas_error() {
    let mut cluster = Cluster::with_brokers(&[1, 2, 3]);
    let id = cluster.topic("t", &[&[1, 2, 3]], &[]);
    assert_eq!(partition_error(&cluster.alter(1, id, 0, 0, &[(1, -1), (2, -1)])), 0);
    let cases: Vec<(i32, i32, i32, Vec<(i32, i64)>, ResponseError)> = vec![
        (1, -1, 1, vec![(1, -1)], ResponseError::FencedLeaderEpoch),
        (1, 1, 1, vec![(1, -1)], ResponseError::NotController),
        (2, 0, 1, vec![(2, -1)], ResponseError::InvalidRequest),
        (1, 0, 1, vec![(2, -1)], ResponseError::InvalidRequest),
        (1, 0, 1, vec![(1, -1), (4, -1)], ResponseError::InvalidRequest),
        (1, 0, 1, vec![(1, -1), (1, -1)], ResponseError::InvalidRequest),
        (1, 0, 1, vec![(1, -1), (3, 99)], ResponseError::IneligibleReplica),
    ];
    for (from, leader_epoch, partition_epoch, isr, expected) in cases {
        let r = cluster.alter(from, id, leader_epoch, partition_epoch, &isr);
        assert_eq!(partition_error(&r), code(expected), "from {from} epochs {leader_epoch}/{partition_epoch} isr {isr:?}");
    }
    // A fenced or shutting-down replica may not join.
    cluster.heartbeat_with(3, CAUGHT_UP, true, false, 10);
    let r = cluster.alter(1, id, 0, 1, &[(1, -1), (2, -1), (3, -1)]);
    assert_eq!(partition_error(&r), code(ResponseError::IneligibleReplica));
    // Unknown topic id; stale broker epoch for the whole request.
    let r = cluster.alter(1, Uuid::new_v4(), 0, 1, &[(1, -1)]);
    assert_eq!(partition_error(&r), code(ResponseError::UnknownTopicId));
    cluster.brokers.get_mut(&1).expect("1").1 += 10;
    let r = cluster.alter(1, id, 0, 1, &[(1, -1)]);
    assert_eq!(r.error_code, code(ResponseError::StaleBrokerEpoch));
    assert_eq!(cluster.partition("t", 0).isr, vec![1, 2], "nothing changed");
}

#[test]
fn producer_id_blocks_go_only_to_a_broker_with_its_current_epoch() {
    let mut cluster = Cluster::with_brokers(&[2]);
    let epoch = cluster.epoch(2);
    let err = cluster.c.allocate_producer_ids(2, epoch + 1, 0).err().expect("stale");
    assert_eq!(err.response_error(), ResponseError::StaleBrokerEpoch);
    assert_eq!(cluster.c.allocate_producer_ids(2, epoch, 0).expect("block"), 0..1000);
    assert_eq!(cluster.c.allocate_producer_ids(2, epoch, 0).expect("block"), 1000..2000);
}

#[test]
fn a_new_active_controller_gives_every_broker_a_fresh_session() {
    let mut cluster = Cluster::with_brokers(&[1, 2]);
    // Long silent, but this controller just took over: nobody is fenced yet.
    cluster.c.activate(50_000);
    assert!(cluster.c.fence_expired_brokers(59_000).is_empty());
    cluster.heartbeat(1, 58_000);
    assert_eq!(cluster.c.fence_expired_brokers(59_001), vec![2]);
}

#[test]
fn a_single_replica_partition_is_led_again_by_its_broker_after_an_unclean_restart() {
    let mut cluster = Cluster::with_brokers(&[1, 2]);
    cluster.topic("t", &[&[2]], &[]);
    cluster.heartbeat(1, 9_000);
    assert_eq!(cluster.c.fence_expired_brokers(9_001), vec![2]);
    let p = cluster.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone(), p.elr.clone(), p.last_known_elr.clone()), (-1, vec![], vec![2], vec![2]));
    // A new process of 2 may have lost records: out of the ELR, but still the last known leader.
    cluster.register(2, None, 9_500);
    let p = cluster.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone(), p.elr.clone(), p.last_known_elr.clone()), (-1, vec![], vec![], vec![2]));
    assert!(!cluster.heartbeat(2, 9_600).is_fenced);
    let p = cluster.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone(), p.elr.clone(), p.last_known_elr.clone()), (2, vec![2], vec![], vec![]));
}
