//! End to end: three `potok server` processes started as in issue 9's example
//! (`process.roles=broker,controller`, three `controller.quorum.voters`, a
//! PLAINTEXT and a CONTROLLER listener each, OS-chosen ports on 127.0.0.1)
//! form one cluster with one metadata log: a topic created on the active
//! controller appears on every node, its log only on its replica; after a
//! `kill -9` of the active controller another is elected and creates topics.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use client::{Admin, Client, ClientConfig, Connection, ConnectionConfig, Error};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{DescribeQuorumRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

/// Long enough for any election and start-up on a loaded machine; waiting
/// ends as soon as the condition holds.
const PATIENCE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

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

/// Starts three combined nodes of one cluster in `root`.
fn start_cluster(root: &Path) -> Vec<Node> {
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
            let data = root.join(format!("n{id}"));
            let log = root.join(format!("n{id}.log"));
            let out = std::fs::File::create(&log).expect("log file");
            let err = out.try_clone().expect("log file");
            let bootstrap = format!("127.0.0.1:{client}");
            let settings = [
                format!("node.id={id}"),
                "process.roles=broker,controller".to_string(),
                format!("controller.quorum.voters={voters}"),
                format!("listeners=PLAINTEXT://{bootstrap},CONTROLLER://127.0.0.1:{controller}"),
                format!("advertised.listeners=PLAINTEXT://{bootstrap}"),
                "controller.listener.names=CONTROLLER".to_string(),
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".to_string(),
                "inter.broker.listener.name=PLAINTEXT".to_string(),
                format!("log.dirs={}", data.display()),
            ];
            let mut cmd = Command::new(common::potok_bin());
            cmd.arg("server");
            for setting in &settings {
                cmd.arg("--override").arg(setting);
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .spawn()
                .expect("spawn potok server");
            Node { id, child: Some(child), bootstrap, data, log }
        })
        .collect()
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

/// Waits until `node`'s Metadata shows `topic` with one partition led by `leader`
/// whose only replica is `leader`.
async fn until_visible(nodes: &[Node], node: &Node, topic: &str, leader: i32) {
    until(&format!("topic {topic} on node {}", node.id), nodes, || async {
        let client = Client::connect(ClientConfig::new(&node.bootstrap).ok()?).await.ok()?;
        let described = client.fetch_topic(topic).await.ok()?;
        let partition = described.partition(0)?;
        (described.partitions.len() == 1 && partition.leader == leader && partition.replicas == vec![leader]).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_one_cluster_and_survive_the_loss_of_the_active_controller() {
    let root = tempfile::tempdir().expect("temp dir");
    let mut nodes = start_cluster(root.path());
    let all = [1, 2, 3];

    let first = active_controller(&nodes, &all).await;
    let first_id = first.id;
    let admin = Admin::connect(&first.bootstrap).await.expect("admin on the active controller");
    admin.create_topic("first", 1, 1, Vec::new(), false).await.expect("create on the active controller");
    for node in &nodes {
        until_visible(&nodes, node, "first", first_id).await;
    }
    // The log lives on its one replica only.
    for node in &nodes {
        assert_eq!(node.data.join("first-0").is_dir(), node.id == first_id, "first-0 on node {}", node.id);
    }
    // Every node agreed on one cluster id.
    let ids: Vec<String> = nodes
        .iter()
        .map(|n| {
            let meta = std::fs::read_to_string(n.data.join("meta.properties")).expect("meta.properties");
            meta.lines().find_map(|l| l.strip_prefix("cluster.id=")).expect("cluster.id").to_string()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "cluster ids {ids:?}");

    // Another node is not the active controller: NOT_CONTROLLER, nothing created.
    let follower = nodes.iter().find(|n| n.id != first_id).expect("a follower");
    let on_follower = Admin::connect(&follower.bootstrap).await.expect("admin on a follower");
    match on_follower.create_topic("refused", 1, 1, Vec::new(), false).await {
        Err(Error::Kafka(e)) => assert_eq!(e.code, ResponseError::NotController, "{e:?}"),
        other => panic!("a follower created a topic: {other:?}"),
    }

    // kill -9 of the active controller: the other two elect a new one.
    let index = nodes.iter().position(|n| n.id == first_id).expect("index");
    nodes[index].kill_9();
    let rest: Vec<i32> = all.iter().copied().filter(|&id| id != first_id).collect();
    let second = active_controller(&nodes, &rest).await;
    let second_id = second.id;
    assert_ne!(second_id, first_id);
    let admin = Admin::connect(&second.bootstrap).await.expect("admin on the new active controller");
    admin.create_topic("second", 1, 1, Vec::new(), false).await.expect("create after the failover");
    for node in nodes.iter().filter(|n| n.id != first_id) {
        until_visible(&nodes, node, "second", second_id).await;
        // What the old controller created is still there.
        until_visible(&nodes, node, "first", first_id).await;
        let client = Client::connect(ClientConfig::new(&node.bootstrap).expect("config")).await.expect("client");
        match client.fetch_topic("refused").await {
            Err(Error::Kafka(e)) => assert_eq!(e.code, ResponseError::UnknownTopicOrPartition),
            other => panic!("the refused topic exists: {other:?}"),
        }
    }
}
