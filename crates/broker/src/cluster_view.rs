//! What clients are told of the cluster, as Kafka's `KRaftMetadataCache`
//! builds it from the metadata image: the brokers a client can reach through
//! the listener its request came in on (their advertised endpoint of that
//! listener), each partition's leader, replicas, ISR and offline replicas, and
//! the controller id. In cluster mode the brokers are the registered ones; on
//! a single node (no registrations in the image) this broker alone, as before
//! registration existed.

use std::hash::{BuildHasher, Hasher};

use kafka_protocol::error::ResponseError;
use metadata::{Image, PartitionImage};

/// A broker as a response names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// Its node id.
    pub id: i32,
    /// The advertised host of the request's listener.
    pub host: String,
    /// The advertised port of the request's listener.
    pub port: i32,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Fenced by the controller (it leads nothing and is in no ISR).
    pub fenced: bool,
}

/// One partition as Metadata and DescribeTopicPartitions describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionView {
    /// LEADER_NOT_AVAILABLE, LISTENER_NOT_FOUND, REPLICA_NOT_AVAILABLE, or none.
    pub error: Option<ResponseError>,
    /// The leader, -1 when it cannot be reached.
    pub leader: i32,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// The replicas.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// Replicas on fenced or unregistered brokers, brokers without the
    /// request's listener, or (this broker's) failed log dirs.
    pub offline: Vec<i32>,
    /// The eligible leader replicas (KIP-966).
    pub elr: Vec<i32>,
    /// The last known ELR (KIP-966).
    pub last_known_elr: Vec<i32>,
}

/// How a Metadata request version wants unreachable brokers reported.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Reporting {
    /// Metadata v0: leave unreachable brokers out of replicas and ISR, with
    /// REPLICA_NOT_AVAILABLE (Kafka's `errorUnavailableEndpoints`).
    pub filter_unavailable: bool,
    /// Metadata v6+ and DescribeTopicPartitions: LISTENER_NOT_FOUND when the
    /// leader is registered without the request's listener.
    pub listener_not_found: bool,
}

/// The cluster as seen through one listener, for one request.
pub(crate) struct ClusterView<'a> {
    image: &'a Image,
    listener: &'a str,
    /// This broker on the request's listener: the whole cluster while no
    /// broker is registered.
    this: Node,
}

impl<'a> ClusterView<'a> {
    /// The view of `image` from listener `listener` of broker `this`.
    pub(crate) fn new(image: &'a Image, listener: &'a str, this: Node) -> ClusterView<'a> {
        ClusterView { image, listener, this }
    }

    /// The view a request to `broker` on `listener` gets.
    pub(crate) fn of(broker: &crate::Broker, image: &'a Image, listener: &'a str) -> ClusterView<'a> {
        let (host, port) = broker.advertised_endpoint_for(listener);
        let this = Node { id: broker.config.node_id, host, port, rack: None, fenced: false };
        ClusterView::new(image, listener, this)
    }

    /// True once brokers register (cluster mode).
    fn registered(&self) -> bool {
        self.image.brokers().next().is_some()
    }

    /// The brokers a client may connect to (Kafka's `getAliveBrokerNodes`):
    /// the unfenced registered brokers with an endpoint on this listener, by
    /// id; with `include_fenced` the fenced ones too (DescribeCluster v2).
    pub(crate) fn brokers(&self, include_fenced: bool) -> Vec<Node> {
        if !self.registered() {
            return vec![self.this.clone()];
        }
        self.image
            .brokers()
            .filter(|b| include_fenced || !b.fenced)
            .filter_map(|b| self.endpoint(b.id))
            .collect()
    }

    /// Broker `id`'s endpoint on this listener, fenced or not (Kafka's
    /// `getAliveEndpoint`); None if it is not registered or lacks the listener.
    pub(crate) fn endpoint(&self, id: i32) -> Option<Node> {
        if !self.registered() {
            return (id == self.this.id).then(|| self.this.clone());
        }
        let broker = self.image.broker(id)?;
        let endpoint = broker.listener(self.listener)?;
        Some(Node {
            id,
            host: endpoint.host.clone(),
            port: i32::from(endpoint.port),
            rack: broker.rack.clone(),
            fenced: broker.fenced,
        })
    }

    /// True if broker `id` can serve clients on this listener: registered,
    /// unfenced, with the listener.
    fn reachable(&self, id: i32) -> bool {
        self.endpoint(id).is_some_and(|n| !n.fenced)
    }

    /// The node id Metadata and DescribeCluster name as controller. On a single
    /// node, this node. In cluster mode Kafka names a random unfenced broker
    /// (KIP-590: a broker forwards controller requests); the active controller
    /// is named when it is such a broker, so that requests reach it directly.
    pub(crate) fn controller_id(&self, active_controller: Option<i32>) -> i32 {
        if !self.registered() {
            return self.this.id;
        }
        let alive: Vec<i32> = self.image.brokers().filter(|b| !b.fenced).map(|b| b.id).collect();
        match active_controller {
            Some(id) if alive.contains(&id) => id,
            _ if alive.is_empty() => -1,
            _ => {
                let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
                alive[(random % alive.len() as u64) as usize]
            }
        }
    }

    /// Partition `p` as reported; `local_offline` says this broker's replica of
    /// it is in a failed log dir (leader -1 if it leads, and offline).
    pub(crate) fn partition(&self, p: &PartitionImage, local_offline: bool, reporting: Reporting) -> PartitionView {
        let filtered = |ids: &[i32]| -> Vec<i32> {
            if reporting.filter_unavailable {
                ids.iter().copied().filter(|&id| self.reachable(id)).collect()
            } else {
                ids.to_vec()
            }
        };
        let (replicas, isr) = (filtered(&p.replicas), filtered(&p.isr));
        let mut offline: Vec<i32> = if self.registered() {
            p.replicas.iter().copied().filter(|&id| !self.reachable(id)).collect()
        } else {
            Vec::new()
        };
        if local_offline && !offline.contains(&self.this.id) {
            offline.push(self.this.id);
        }
        let leader_here_offline = local_offline && p.leader == self.this.id;
        let leader = self.endpoint(p.leader).filter(|_| !leader_here_offline);
        let error = match leader {
            None if reporting.listener_not_found && !leader_here_offline && self.registered() && self.image.broker(p.leader).is_some() => {
                Some(ResponseError::ListenerNotFound)
            }
            None => Some(ResponseError::LeaderNotAvailable),
            Some(_) if replicas.len() < p.replicas.len() || isr.len() < p.isr.len() => Some(ResponseError::ReplicaNotAvailable),
            Some(_) => None,
        };
        PartitionView {
            error,
            leader: leader.map_or(-1, |n| n.id),
            leader_epoch: p.leader_epoch,
            replicas,
            isr,
            offline,
            elr: p.elr.clone(),
            last_known_elr: p.last_known_elr.clone(),
        }
    }

    /// The leader of `p` and its endpoint, for the current-leader hints of
    /// KIP-951 and for FindCoordinator: (leader id, leader epoch, endpoint).
    pub(crate) fn leader(&self, p: &PartitionImage) -> (i32, i32, Option<Node>) {
        (p.leader, p.leader_epoch, self.endpoint(p.leader).filter(|n| !n.fenced))
    }

    /// The current leader of `topic`-`partition` as Kafka's `getCurrentLeader`
    /// answers it for KIP-951 hints: (-1, -1, None) for a partition the
    /// metadata does not have.
    pub(crate) fn current_leader(&self, topic: &str, partition: i32) -> (i32, i32, Option<Node>) {
        match self.image.topic(topic).and_then(|t| t.partitions.get(&partition)) {
            Some(p) => self.leader(p),
            None => (-1, -1, None),
        }
    }
}

/// The errors a KIP-951 current-leader hint goes with (Produce v10+, Fetch v16+).
pub(crate) fn wants_leader_hint(error: ResponseError) -> bool {
    matches!(error, ResponseError::NotLeaderOrFollower | ResponseError::FencedLeaderEpoch)
}

/// The nodes a response lists for its leader hints: each once, by id.
pub(crate) fn hinted_nodes(nodes: impl IntoIterator<Item = Node>) -> Vec<Node> {
    let by_id: std::collections::BTreeMap<i32, Node> = nodes.into_iter().map(|n| (n.id, n)).collect();
    by_id.into_values().collect()
}

/// The `node_endpoints` of a response's KIP-951 hints, of the response's own
/// `NodeEndpoint` type (Produce's and Fetch's are distinct types with the
/// same fields): `node_endpoints!(NodeEndpoint, nodes)`.
macro_rules! node_endpoints {
    ($endpoint:ty, $nodes:expr) => {
        $crate::cluster_view::hinted_nodes($nodes)
            .into_iter()
            .map(|n| {
                <$endpoint>::default()
                    .with_node_id(kafka_protocol::messages::BrokerId(n.id))
                    .with_host($crate::handlers::str_bytes(n.host))
                    .with_port(n.port)
                    .with_rack(n.rack.map($crate::handlers::str_bytes))
            })
            .collect::<Vec<_>>()
    };
}
pub(crate) use node_endpoints;

#[cfg(test)]
pub(crate) mod tests {
    use metadata::{BrokerEndpoint, BrokerRegistrationRecord, MetadataRecord, PartitionRecord, TopicRecord};
    use uuid::Uuid;

    use super::*;

    pub(crate) fn this_node() -> Node {
        Node { id: 1, host: "localhost".into(), port: 9092, rack: None, fenced: false }
    }

    fn endpoint(name: &str, host: &str, port: u16) -> BrokerEndpoint {
        BrokerEndpoint { name: name.into(), host: host.into(), port, security_protocol: 0 }
    }

    /// Brokers 1-3 with listeners INTERNAL (10.0.0.N:9092) and EXTERNAL
    /// (broker-N.example:1909N), racks rN; broker 3 fenced; broker 2 has no
    /// EXTERNAL listener when `partial` is set.
    pub(crate) fn registrations(partial: bool) -> Vec<MetadataRecord> {
        (1..=3)
            .map(|id: i32| {
                let mut listeners = vec![endpoint("INTERNAL", &format!("10.0.0.{id}"), 9092)];
                if !(partial && id == 2) {
                    listeners.push(endpoint("EXTERNAL", &format!("broker-{id}.example"), 19090 + id as u16));
                }
                MetadataRecord::RegisterBroker(BrokerRegistrationRecord {
                    broker_id: id,
                    broker_epoch: 10 + i64::from(id),
                    incarnation_id: Uuid::from_u128(id as u128),
                    listeners,
                    rack: Some(format!("r{id}")),
                    fenced: id == 3,
                    in_controlled_shutdown: false,
                })
            })
            .collect()
    }

    /// Topic `t` with partitions 0 (leader 1, replicas 1,2,3, ISR 1,2),
    /// 1 (no leader, replicas 3,1, ISR empty, ELR 3), 2 (leader 2, replicas
    /// 2,3,1) and 3 (leader 2, replicas 2,3: none on broker 1).
    pub(crate) fn topic_records(id: Uuid) -> Vec<MetadataRecord> {
        let partition = |index, replicas: Vec<i32>, isr: Vec<i32>, leader, elr: Vec<i32>| {
            MetadataRecord::Partition(PartitionRecord {
                topic_id: id,
                partition: index,
                replicas,
                isr,
                leader,
                leader_epoch: 4,
                elr,
                ..Default::default()
            })
        };
        vec![
            MetadataRecord::Topic(TopicRecord { name: "t".into(), topic_id: id }),
            partition(0, vec![1, 2, 3], vec![1, 2], 1, vec![]),
            partition(1, vec![3, 1], vec![], -1, vec![3]),
            partition(2, vec![2, 3, 1], vec![2, 1], 2, vec![]),
            partition(3, vec![2, 3], vec![2], 2, vec![]),
        ]
    }

    /// A broker with node id 1 whose committed metadata holds
    /// [`registrations`] and [`topic_records`] (`partial`: broker 2 without
    /// EXTERNAL), as if a quorum had written them.
    pub(crate) fn cluster_broker(dir: &std::path::Path, partial: bool, extra: Vec<MetadataRecord>) -> std::sync::Arc<crate::Broker> {
        let entry = |k: &str, v: &str| (k.to_string(), v.to_string(), "test".to_string());
        let config = crate::ServerConfig::from_entries(vec![entry("node.id", "1"), entry("log.dirs", &dir.display().to_string())])
            .expect("config");
        let broker = crate::Broker::open(config).expect("open");
        let mut records = registrations(partial);
        records.extend(topic_records(Uuid::from_u128(7)));
        records.extend(extra);
        let mut controller = broker.controller.lock();
        let committed = controller.commit(&records, 0).expect("commit");
        broker.publish_change(&committed, controller.image(), None);
        drop(controller);
        broker
    }

    fn image(partial: bool) -> Image {
        let mut records = registrations(partial);
        records.extend(topic_records(Uuid::from_u128(7)));
        Image::from_records(&records)
    }

    #[test]
    fn brokers_are_the_unfenced_registered_ones_on_the_request_listener() {
        let image = image(false);
        let external = ClusterView::new(&image, "EXTERNAL", this_node());
        let ids_and_addresses: Vec<_> = external.brokers(false).into_iter().map(|n| (n.id, n.host, n.port, n.rack)).collect();
        assert_eq!(
            ids_and_addresses,
            [(1, "broker-1.example".into(), 19091, Some("r1".into())), (2, "broker-2.example".into(), 19092, Some("r2".into()))]
        );
        let internal = ClusterView::new(&image, "INTERNAL", this_node());
        let hosts: Vec<_> = internal.brokers(false).into_iter().map(|n| (n.host, n.port)).collect();
        assert_eq!(hosts, [("10.0.0.1".into(), 9092), ("10.0.0.2".into(), 9092)]);
        let all: Vec<_> = internal.brokers(true).into_iter().map(|n| (n.id, n.fenced)).collect();
        assert_eq!(all, [(1, false), (2, false), (3, true)]);
    }

    #[test]
    fn a_single_node_without_registrations_is_this_broker_alone() {
        let image = Image::from_records(&topic_records(Uuid::from_u128(7)));
        let view = ClusterView::new(&image, "PLAINTEXT", this_node());
        assert_eq!(view.brokers(false), [this_node()]);
        assert_eq!(view.controller_id(Some(5)), 1);
        let p = &image.topic("t").expect("t").partitions[&0];
        let shown = view.partition(p, false, Reporting::default());
        assert_eq!((shown.error, shown.leader, shown.offline.clone()), (None, 1, vec![]));
        // Its own failed log dir: no leader, itself offline.
        let shown = view.partition(p, true, Reporting::default());
        assert_eq!((shown.error, shown.leader, shown.offline), (Some(ResponseError::LeaderNotAvailable), -1, vec![1]));
    }

    #[test]
    fn fenced_replicas_are_offline_and_a_missing_leader_is_leader_not_available() {
        let image = image(false);
        let view = ClusterView::new(&image, "EXTERNAL", this_node());
        let t = image.topic("t").expect("t");
        let p0 = view.partition(&t.partitions[&0], false, Reporting::default());
        assert_eq!(
            p0,
            PartitionView {
                error: None,
                leader: 1,
                leader_epoch: 4,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2],
                offline: vec![3],
                elr: vec![],
                last_known_elr: vec![],
            }
        );
        let p1 = view.partition(&t.partitions[&1], false, Reporting::default());
        assert_eq!((p1.error, p1.leader, p1.leader_epoch), (Some(ResponseError::LeaderNotAvailable), -1, 4));
        assert_eq!((p1.replicas, p1.offline, p1.elr), (vec![3, 1], vec![3], vec![3]));
        // Metadata v0 leaves unreachable replicas out.
        let v0 = Reporting { filter_unavailable: true, ..Reporting::default() };
        let p0 = view.partition(&t.partitions[&0], false, v0);
        assert_eq!((p0.error, p0.replicas, p0.isr), (Some(ResponseError::ReplicaNotAvailable), vec![1, 2], vec![1, 2]));
    }

    #[test]
    fn a_leader_without_the_listener_is_listener_not_found_from_v6() {
        let image = image(true);
        let view = ClusterView::new(&image, "EXTERNAL", this_node());
        let p2 = &image.topic("t").expect("t").partitions[&2];
        let old = view.partition(p2, false, Reporting::default());
        assert_eq!((old.error, old.leader, old.offline), (Some(ResponseError::LeaderNotAvailable), -1, vec![2, 3]));
        let new = view.partition(p2, false, Reporting { listener_not_found: true, ..Reporting::default() });
        assert_eq!(new.error, Some(ResponseError::ListenerNotFound));
        // Through INTERNAL broker 2 leads it.
        let internal = ClusterView::new(&image, "INTERNAL", this_node());
        assert_eq!(internal.partition(p2, false, Reporting::default()).leader, 2);
    }

    #[tokio::test]
    async fn a_fetch_from_a_partition_led_elsewhere_gets_the_current_leader_from_v16() {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use kafka_protocol::messages::FetchRequest;

        let dir = tempfile::tempdir().expect("tempdir");
        let broker = cluster_broker(dir.path(), false, Vec::new());
        let memory = std::sync::Arc::new(tokio::sync::Semaphore::new(1 << 24));
        // 0: led here; 3: no replica here; 9: does not exist.
        let fetch = || {
            let partitions = [0, 3, 9]
                .map(|p| FetchPartition::default().with_partition(p).with_partition_max_bytes(1 << 20).with_current_leader_epoch(-1));
            FetchRequest::default()
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_topics(vec![FetchTopic::default().with_topic_id(Uuid::from_u128(7)).with_partitions(partitions.to_vec())])
        };
        let (resp, _) = crate::handlers::fetch::handle(&broker, fetch(), 16, "EXTERNAL", &memory).await;
        let partitions = &resp.responses[0].partitions;
        let answers: Vec<_> = partitions.iter().map(|p| (p.partition_index, p.error_code, p.current_leader.leader_id.0, p.current_leader.leader_epoch)).collect();
        let not_leader = ResponseError::NotLeaderOrFollower.code();
        assert_eq!(answers[1], (3, not_leader, 2, 4), "KIP-951 hint");
        assert_eq!((answers[0].0, answers[0].1), (0, 0));
        assert_eq!((answers[2].0, answers[2].1), (9, ResponseError::UnknownTopicOrPartition.code()));
        let endpoints: Vec<_> = resp.node_endpoints.iter().map(|n| (n.node_id.0, n.host.to_string(), n.port)).collect();
        assert_eq!(endpoints, [(2, "broker-2.example".to_string(), 19092)]);
        let (resp, _) = crate::handlers::fetch::handle(&broker, fetch(), 15, "EXTERNAL", &memory).await;
        assert_eq!(resp.responses[0].partitions[1].error_code, not_leader);
        assert!(resp.node_endpoints.is_empty(), "no hints before v16");
    }

    #[test]
    fn the_controller_id_is_the_active_controller_if_it_is_an_unfenced_broker() {
        let image = image(false);
        let view = ClusterView::new(&image, "EXTERNAL", this_node());
        assert_eq!(view.controller_id(Some(2)), 2);
        // Fenced or not a broker: some unfenced broker, as Kafka picks one.
        for active in [Some(3), Some(9), None] {
            assert!([1, 2].contains(&view.controller_id(active)));
        }
        let fenced_all = Image::from_records(&registrations(false)[2..]);
        assert_eq!(ClusterView::new(&fenced_all, "EXTERNAL", this_node()).controller_id(Some(3)), -1);
    }
}
