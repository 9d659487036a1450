//! End to end: three `potok server` processes started as in issue 9's example
//! (`process.roles=broker,controller`, three `controller.quorum.voters`, a
//! PLAINTEXT and a CONTROLLER listener each, test ports on 127.0.0.1)
//! form one cluster with one metadata log: a topic created on the active
//! controller appears on every node, its log only on its replica; after a
//! `kill -9` of the active controller another is elected and creates topics.
//! The brokers register with the active controller and heartbeat: a topic
//! replicated three times is placed on all of them, a leader's ISR change goes
//! through AlterPartition, producer ids come from the controller, and SIGTERM
//! is a controlled shutdown. Admin requests sent to a node that is not the
//! active controller are forwarded to it (KIP-590).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use client::{Admin, Client, ClientConfig, Connection, ConnectionConfig, Error};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{DescribeQuorumRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

/// Long enough for any election and start-up on a loaded machine; waiting
/// ends as soon as the condition holds.
const PATIENCE: Duration = Duration::from_secs(60);

/// One node's process; killed when dropped.
struct Node {
    id: i32,
    child: Option<Child>,
    /// Its PLAINTEXT listener, `127.0.0.1:PORT`.
    bootstrap: String,
    data: PathBuf,
    log: PathBuf,
}

impl Node {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// Writes the server.properties of three combined nodes of one cluster into
/// `root` (`n1.properties`...), as the example sets them, with `extra` settings.
fn write_cluster_properties(root: &Path, extra: &[&str]) -> Vec<PathBuf> {
    let ids = [1, 2, 3];
    let client_ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
    let controller_ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
    let voters = ids
        .iter()
        .zip(&controller_ports)
        .map(|(id, port)| format!("{id}@127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    ids.iter()
        .zip(client_ports.iter().zip(&controller_ports))
        .map(|(&id, (&client, &controller))| {
            let mut settings = vec![
                format!("node.id={id}"),
                "process.roles=broker,controller".to_string(),
                format!("controller.quorum.voters={voters}"),
                format!("listeners=PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}"),
                format!("advertised.listeners=PLAINTEXT://127.0.0.1:{client}"),
                "controller.listener.names=CONTROLLER".to_string(),
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".to_string(),
                "inter.broker.listener.name=PLAINTEXT".to_string(),
                format!("log.dirs={}", root.join(format!("n{id}")).display()),
            ];
            settings.extend(extra.iter().map(|s| s.to_string()));
            let path = root.join(format!("n{id}.properties"));
            std::fs::write(&path, settings.join("\n") + "\n").expect("write properties");
            path
        })
        .collect()
}

/// Starts `potok server` with each of `properties` (node ids 1, 2, 3).
fn start_nodes(root: &Path, properties: &[PathBuf]) -> Vec<Node> {
    properties
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let id = i as i32 + 1;
            let text = std::fs::read_to_string(path).expect("properties");
            let client = text
                .lines()
                .find_map(|l| l.strip_prefix("advertised.listeners=PLAINTEXT://"))
                .expect("advertised listener")
                .to_string();
            let log = root.join(format!("n{id}.log"));
            let out = std::fs::File::create(&log).expect("log file");
            let err = out.try_clone().expect("log file");
            let child = Command::new(common::potok_bin())
                .arg("server")
                .arg(path)
                .stdin(Stdio::null())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .spawn()
                .expect("spawn potok server");
            Node { id, child: Some(child), bootstrap: client, data: root.join(format!("n{id}")), log }
        })
        .collect()
}

/// Starts three combined nodes of one cluster in `root`, with `extra` settings.
fn start_cluster(root: &Path, extra: &[&str]) -> Vec<Node> {
    let properties = write_cluster_properties(root, extra);
    start_nodes(root, &properties)
}

/// The `cluster.id` in a node's meta.properties.
fn stored_cluster_id(node: &Node) -> Option<String> {
    let meta = std::fs::read_to_string(node.data.join("meta.properties")).ok()?;
    meta.lines().find_map(|l| l.strip_prefix("cluster.id=")).map(str::to_string)
}

/// Polls `f` until it answers `Some`, failing with the nodes' logs after [`PATIENCE`].
async fn until<T, F: std::future::Future<Output = Option<T>>>(what: &str, nodes: &[Node], mut f: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = f().await {
            return found;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = nodes.iter().map(|n| format!("--- node {} ---\n{}", n.id, n.log())).collect();
            panic!("{what}: not within {PATIENCE:?}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The node id DescribeQuorum on `bootstrap` names as leader, if that node
/// is the leader (another node answers NOT_LEADER_OR_FOLLOWER).
async fn leader_says(bootstrap: &str) -> Option<i32> {
    let conn = Connection::connect(bootstrap, ConnectionConfig::default()).await.ok()?;
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let response = conn.send(&request).await.ok()?;
    let partition = response.topics.first()?.partitions.first()?;
    (partition.error_code == 0).then_some(partition.leader_id.0)
}

/// The active controller among `nodes`, once one of them leads.
async fn active_controller<'a>(nodes: &'a [Node], among: &[i32]) -> &'a Node {
    let id = until("an active controller", nodes, || async {
        for node in nodes.iter().filter(|n| among.contains(&n.id)) {
            if let Some(leader) = leader_says(&node.bootstrap).await {
                return Some(leader);
            }
        }
        None
    })
    .await;
    nodes.iter().find(|n| n.id == id).expect("the leader is one of the nodes")
}

/// Creates `topic` with one partition of `replication_factor` replicas once
/// enough brokers are registered and unfenced (INVALID_REPLICATION_FACTOR
/// until then, as Kafka's controller answers).
async fn create_when_placeable(nodes: &[Node], admin: &Admin, topic: &str, replication_factor: i16) {
    until(&format!("topic {topic} created"), nodes, || async {
        match admin.create_topic(topic, 1, replication_factor, Vec::new(), false).await {
            Ok(_) => Some(()),
            Err(Error::Kafka(e)) if e.code == ResponseError::InvalidReplicationFactor => None,
            Err(e) => panic!("create {topic}: {e:?}"),
        }
    })
    .await;
}

/// Waits until `node`'s Metadata shows `topic` with one partition whose only
/// replica is `replica`, and (if `led`) led by it.
async fn until_visible(nodes: &[Node], node: &Node, topic: &str, replica: i32, led: bool) {
    until(&format!("topic {topic} on node {}", node.id), nodes, || async {
        let partition = partition_on(node, topic).await?;
        (partition.replicas == vec![replica] && (!led || partition.leader == replica)).then_some(())
    })
    .await;
}

/// Partition 0 of `topic` as `node`'s Metadata shows it.
async fn partition_on(node: &Node, topic: &str) -> Option<client::cluster::PartitionMetadata> {
    let client = Client::connect(ClientConfig::new(&node.bootstrap).ok()?).await.ok()?;
    let described = client.fetch_topic(topic).await.ok()?;
    described.partition(0).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_one_cluster_and_survive_the_loss_of_the_active_controller() {
    let root = tempfile::tempdir().expect("temp dir");
    let mut nodes = start_cluster(root.path(), &[]);
    let all = [1, 2, 3];

    let first = active_controller(&nodes, &all).await;
    let first_id = first.id;
    let admin = Admin::connect(&first.bootstrap).await.expect("admin on the active controller");
    create_when_placeable(&nodes, &admin, "first", 1).await;
    // Placed on one of the registered brokers.
    let placed = until("first placed", &nodes, || async { partition_on(first, "first").await?.replicas.first().copied() }).await;
    for node in &nodes {
        until_visible(&nodes, node, "first", placed, true).await;
    }
    // The log lives on its one replica only.
    for node in &nodes {
        assert_eq!(node.data.join("first-0").is_dir(), node.id == placed, "first-0 on node {}", node.id);
    }
    // Every node agreed on one cluster id.
    let ids: Vec<Option<String>> = nodes.iter().map(stored_cluster_id).collect();
    assert!(ids[0].is_some() && ids.iter().all(|id| *id == ids[0]), "cluster ids {ids:?}");
    let client = Client::connect(ClientConfig::new(&nodes[2].bootstrap).expect("config")).await.expect("client");
    client.fetch_topic("first").await.expect("metadata");
    assert_eq!(client.metadata().cluster_id, ids[0], "Metadata's cluster id is the stored one");

    // Another node is not the active controller: it forwards the creation to it.
    let follower = nodes.iter().find(|n| n.id != first_id).expect("a follower");
    let on_follower = Admin::connect(&follower.bootstrap).await.expect("admin on a follower");
    on_follower.create_topic("forwarded", 1, 1, Vec::new(), false).await.expect("created through a follower");
    let placed_forwarded =
        until("forwarded placed", &nodes, || async { partition_on(follower, "forwarded").await?.replicas.first().copied() }).await;

    // kill -9 of the active controller: the other two elect a new one.
    let index = nodes.iter().position(|n| n.id == first_id).expect("index");
    nodes[index].kill_9();
    let rest: Vec<i32> = all.iter().copied().filter(|&id| id != first_id).collect();
    let second = active_controller(&nodes, &rest).await;
    let second_id = second.id;
    assert_ne!(second_id, first_id);
    let admin = Admin::connect(&second.bootstrap).await.expect("admin on the new active controller");
    create_when_placeable(&nodes, &admin, "second", 1).await;
    let placed_second =
        until("second placed", &nodes, || async { partition_on(second, "second").await?.replicas.first().copied() }).await;
    for node in nodes.iter().filter(|n| n.id != first_id) {
        // Its replica may be the killed broker, not fenced yet: only where it is placed.
        until_visible(&nodes, node, "second", placed_second, false).await;
        // What the old controller created is still there.
        until_visible(&nodes, node, "first", placed, false).await;
        until_visible(&nodes, node, "forwarded", placed_forwarded, false).await;
    }
}

/// Runs `potok kafka-storage args...`, failing the test unless it succeeds.
fn kafka_storage(args: &[&str]) -> String {
    let mut all = vec!["kafka-storage"];
    all.extend_from_slice(args);
    common::potok_ok(&all, b"").stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_formatted_with_kafka_storage_keep_its_cluster_id() {
    let root = tempfile::tempdir().expect("temp dir");
    let properties = write_cluster_properties(root.path(), &[]);
    let cluster_id = kafka_storage(&["random-uuid"]).trim().to_string();
    for path in &properties {
        let out = kafka_storage(&["format", "-t", &cluster_id, "-c", &path.display().to_string()]);
        assert!(out.contains("Formatting metadata directory"), "{out}");
    }
    let nodes = start_nodes(root.path(), &properties);
    let leader = active_controller(&nodes, &[1, 2, 3]).await;
    let client = Client::connect(ClientConfig::new(&leader.bootstrap).expect("config")).await.expect("client");
    client.refresh_metadata(None).await.expect("metadata");
    assert_eq!(client.metadata().cluster_id.as_deref(), Some(cluster_id.as_str()));
    for node in &nodes {
        assert_eq!(stored_cluster_id(node).as_deref(), Some(cluster_id.as_str()), "node {}", node.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_formatted_for_another_cluster_refuses_to_join() {
    let root = tempfile::tempdir().expect("temp dir");
    let properties = write_cluster_properties(root.path(), &[]);
    let (ours, other) = (kafka_storage(&["random-uuid"]).trim().to_string(), kafka_storage(&["random-uuid"]).trim().to_string());
    for (path, id) in properties.iter().zip([&ours, &ours, &other]) {
        kafka_storage(&["format", "-t", id, "-c", &path.display().to_string()]);
    }
    let mut nodes = start_nodes(root.path(), &properties);
    // Whichever id the first leader proposed is the cluster's; the nodes
    // formatted with the other one stop, saying why.
    let deadline = Instant::now() + PATIENCE;
    let exited = loop {
        let exited: Vec<i32> = nodes
            .iter_mut()
            .filter_map(|n| matches!(n.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_)))).then_some(n.id))
            .collect();
        if !exited.is_empty() {
            break exited;
        }
        let logs: Vec<String> = nodes.iter().map(|n| format!("--- node {} ---\n{}", n.id, n.log())).collect();
        assert!(Instant::now() < deadline, "no node stopped within {PATIENCE:?}\n{}", logs.join("\n"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let agreed = if exited.contains(&3) { &ours } else { &other };
    for node in &nodes {
        let formatted = if node.id == 3 { &other } else { &ours };
        if formatted != agreed && exited.contains(&node.id) {
            let log = node.log();
            assert!(
                log.contains(&format!("were formatted with cluster.id {formatted}, but the metadata quorum's cluster id is {agreed}")),
                "node {}: {log}",
                node.id
            );
        }
        assert!(formatted != agreed || !exited.contains(&node.id), "node {} of the agreed cluster stopped: {}", node.id, node.log());
        assert_eq!(stored_cluster_id(node).as_ref(), Some(formatted), "meta.properties is left as formatted");
    }
}

/// Sends `signal` (`STOP`, `CONT`, `TERM`) to `node`'s process.
fn signal(node: &Node, signal: &str) {
    let pid = node.child.as_ref().expect("running").id().to_string();
    let status = Command::new("kill").arg(format!("-{signal}")).arg(&pid).status().expect("kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_register_isr_changes_go_through_the_controller_and_sigterm_is_a_controlled_shutdown() {
    let root = tempfile::tempdir().expect("temp dir");
    // Followers out of sync for a second leave the ISR; sessions outlast the test's pauses.
    let mut nodes = start_cluster(root.path(), &["replica.lag.time.max.ms=1000", "broker.session.timeout.ms=60000"]);
    let all = [1, 2, 3];
    let controller = active_controller(&nodes, &all).await;
    let controller_id = controller.id;
    let admin = Admin::connect(&controller.bootstrap).await.expect("admin on the active controller");

    // Every broker registers and is unfenced once caught up with the metadata.
    for node in &nodes {
        until(&format!("node {} ready", node.id), &nodes, || async {
            node.log().contains("the broker has been unfenced: ready").then_some(())
        })
        .await;
    }
    // Three replicas need the three brokers registered.
    create_when_placeable(&nodes, &admin, "replicated", 3).await;
    let created = until("replicated placed", &nodes, || async {
        partition_on(controller, "replicated").await.filter(|p| p.leader >= 0)
    })
    .await;
    let mut replicas = created.replicas.clone();
    replicas.sort();
    assert_eq!(replicas, vec![1, 2, 3]);

    // A follower that is neither the leader nor the active controller stops:
    // the leader asks the controller (AlterPartition) to drop it from the ISR.
    let leader_id = created.leader;
    let stopped = nodes.iter().find(|n| n.id != leader_id && n.id != controller_id).expect("a third node");
    let stopped_id = stopped.id;
    signal(stopped, "STOP");
    let shrunk = until("the ISR without the stopped follower", &nodes, || async {
        partition_on(controller, "replicated").await.filter(|p| !p.isr.contains(&stopped_id))
    })
    .await;
    assert!(shrunk.isr.contains(&leader_id), "the leader stays in sync: {shrunk:?}");
    assert_eq!(shrunk.leader, leader_id, "no election: {shrunk:?}");
    let leader = nodes.iter().find(|n| n.id == leader_id).expect("leader node");
    until("the leader applied the controller's answer", &nodes, || async { leader.log().contains("ISR updated").then_some(()) }).await;
    signal(stopped, "CONT");

    // Producer ids come from blocks the controller hands each broker.
    let mut ids = Vec::new();
    for node in &nodes {
        let id = until(&format!("a producer id from node {}", node.id), &nodes, || async {
            let conn = Connection::connect(&node.bootstrap, ConnectionConfig::default()).await.ok()?;
            let request =
                kafka_protocol::messages::InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000);
            let response = conn.send(&request).await.ok()?;
            (response.error_code == 0).then_some(response.producer_id.0)
        })
        .await;
        ids.push(id);
    }
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "one block per broker: {ids:?}");

    // SIGTERM: the controller agrees to the shutdown, the process exits cleanly.
    let index = nodes.iter().position(|n| n.id == stopped_id).expect("index");
    signal(&nodes[index], "TERM");
    let mut child = nodes[index].child.take().expect("running");
    let status = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait");
    let log = nodes[index].log();
    assert!(status.success(), "exit status {status:?}:\n{log}");
    assert!(log.contains("controlled shutdown approved by the controller"), "{log}");
}

/// `topic` as `node`'s Metadata shows it, None if unknown there (never auto-created).
async fn topic_on(node: &Node, topic: &str) -> Option<client::cluster::TopicMetadata> {
    let mut config = ClientConfig::new(&node.bootstrap).ok()?;
    config.allow_auto_topic_creation = false;
    let client = Client::connect(config).await.ok()?;
    client.fetch_topic(topic).await.ok()
}

/// The value of `topic`'s config `name` as `node` describes it.
async fn topic_config_on(node: &Node, topic: &str, name: &str) -> Option<String> {
    let admin = Admin::connect(&node.bootstrap).await.ok()?;
    admin.describe_configs(topic).await.ok()?.into_iter().find(|c| c.name == name)?.value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requests_sent_to_a_node_that_is_not_the_active_controller_are_forwarded_and_visible_there_at_once() {
    use kafka_protocol::messages::{
        alter_configs_request, create_partitions_request, create_topics_request, delete_topics_request,
        incremental_alter_configs_request, AlterConfigsRequest, CreatePartitionsRequest, CreateTopicsRequest,
        DeleteTopicsRequest, IncrementalAlterConfigsRequest,
    };
    let root = tempfile::tempdir().expect("temp dir");
    let nodes = start_cluster(root.path(), &[]);
    let controller = active_controller(&nodes, &[1, 2, 3]).await;
    let follower = nodes.iter().find(|n| n.id != controller.id).expect("a node that is not the active controller");
    // Requests on one connection to that node only, at the versions given.
    let conn = Connection::connect(&follower.bootstrap, ConnectionConfig::default()).await.expect("connect");
    let name = |s: &str| TopicName(StrBytes::from_string(s.to_string()));
    let create = |topic: &str, validate_only: bool| {
        CreateTopicsRequest::default().with_timeout_ms(30_000).with_validate_only(validate_only).with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(1)
                .with_replication_factor(3),
        ])
    };

    // Three replicas need the three brokers registered: INVALID_REPLICATION_FACTOR until then.
    let created = until("forwarded CreateTopics", &nodes, || async {
        let answer = conn.send_version(&create("fwd", false), 7).await.expect("CreateTopics v7");
        let topic = answer.topics.first().expect("one result").clone();
        (topic.error_code != ResponseError::InvalidReplicationFactor.code()).then_some(topic)
    })
    .await;
    assert_eq!((created.error_code, created.num_partitions, created.replication_factor), (0, 1, 3), "{created:?}");
    assert!(!created.topic_id.is_nil() && created.configs.is_some(), "a v7 answer: {created:?}");
    // Answered only once this node's metadata has it.
    let seen = topic_on(follower, "fwd").await.expect("visible on the forwarding node at once");
    assert_eq!((seen.id, seen.partitions.len()), (created.topic_id, 1));

    // An older client version gets its version's answer; validate_only creates nothing.
    let answer = conn.send_version(&create("fwd-v4", true), 4).await.expect("CreateTopics v4");
    assert_eq!(answer.topics[0].error_code, 0, "{answer:?}");
    let answer = conn.send_version(&create("fwd", false), 4).await.expect("CreateTopics v4");
    assert_eq!(answer.topics[0].error_code, ResponseError::TopicAlreadyExists.code(), "{answer:?}");
    assert!(topic_on(follower, "fwd-v4").await.is_none(), "validate_only created a topic");

    let alter = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("fwd"))
            .with_configs(vec![incremental_alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_static_str("3600000")))]),
    ]);
    let answer = conn.send_version(&alter, 1).await.expect("IncrementalAlterConfigs");
    assert_eq!(answer.responses[0].error_code, 0, "{answer:?}");
    assert_eq!(topic_config_on(follower, "fwd", "retention.ms").await.as_deref(), Some("3600000"));

    let legacy = AlterConfigsRequest::default().with_resources(vec![alter_configs_request::AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_static_str("fwd"))
        // The legacy API replaces the resource's whole set of configs.
        .with_configs(vec![
            alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("3600000"))),
            alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_static_str("segment.ms"))
                .with_value(Some(StrBytes::from_static_str("7200000"))),
        ])]);
    let answer = conn.send_version(&legacy, 1).await.expect("AlterConfigs");
    assert_eq!(answer.responses[0].error_code, 0, "{answer:?}");
    assert_eq!(topic_config_on(follower, "fwd", "segment.ms").await.as_deref(), Some("7200000"));

    let grow = CreatePartitionsRequest::default().with_timeout_ms(30_000).with_topics(vec![
        create_partitions_request::CreatePartitionsTopic::default().with_name(name("fwd")).with_count(3),
    ]);
    let answer = conn.send_version(&grow, 3).await.expect("CreatePartitions");
    assert_eq!(answer.results[0].error_code, 0, "{answer:?}");
    assert_eq!(topic_on(follower, "fwd").await.map(|t| t.partitions.len()), Some(3));

    // Every node sees every change.
    for node in &nodes {
        until(&format!("the changes on node {}", node.id), &nodes, || async {
            let partitions = topic_on(node, "fwd").await.map(|t| t.partitions.len());
            let retention = topic_config_on(node, "fwd", "retention.ms").await;
            let segment = topic_config_on(node, "fwd", "segment.ms").await;
            (partitions == Some(3) && retention.as_deref() == Some("3600000") && segment.as_deref() == Some("7200000")).then_some(())
        })
        .await;
    }

    let delete = DeleteTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![
        delete_topics_request::DeleteTopicState::default().with_name(Some(name("fwd"))),
    ]);
    let answer = conn.send_version(&delete, 6).await.expect("DeleteTopics");
    assert_eq!((answer.responses[0].error_code, answer.responses[0].topic_id), (0, created.topic_id), "{answer:?}");
    assert!(topic_on(follower, "fwd").await.is_none(), "deleted on the forwarding node at once");
    for node in &nodes {
        until(&format!("fwd gone from node {}", node.id), &nodes, || async { topic_on(node, "fwd").await.is_none().then_some(()) }).await;
    }
    // By id, a topic whose one replica may be on any node.
    let answer = conn.send_version(&create("fwd-id", false).with_topics(vec![create_topics_request::CreatableTopic::default()
        .with_name(name("fwd-id"))
        .with_num_partitions(1)
        .with_replication_factor(1)]), 7).await.expect("CreateTopics");
    let id = answer.topics[0].topic_id;
    assert_eq!(answer.topics[0].error_code, 0, "{answer:?}");
    let by_id = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![delete_topics_request::DeleteTopicState::default().with_topic_id(id)]);
    let answer = conn.send_version(&by_id, 6).await.expect("DeleteTopics by id");
    assert_eq!((answer.responses[0].error_code, answer.responses[0].topic_id), (0, id), "{answer:?}");
    assert!(topic_on(follower, "fwd-id").await.is_none(), "deleted by id");

    // A topic the node creates itself (auto-creation by Metadata) goes the
    // same way: created through the active controller, known here when answered.
    let auto = kafka_protocol::messages::MetadataRequest::default().with_allow_auto_topic_creation(true).with_topics(Some(vec![
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default().with_name(Some(name("fwd-auto"))),
    ]));
    let answer = conn.send_version(&auto, 12).await.expect("Metadata");
    assert_eq!(answer.topics[0].error_code, 0, "{answer:?}");
    let seen = topic_on(follower, "fwd-auto").await.expect("auto-created and visible on this node at once");
    assert_eq!(seen.id, answer.topics[0].topic_id);
}
