//! Cluster mode (more than one voter in `controller.quorum.voters`): this
//! node is a voter of the metadata quorum ([`quorum::Quorum`], Raft on
//! openraft) instead of the owner of a local metadata log.
//!
//! - The CONTROLLER listener carries both the quorum's transport and the Kafka
//!   controller APIs: a connection whose first four bytes are
//!   [`quorum::PREFACE`] (never the start of a Kafka frame) is a peer
//!   controller's, every other one a Kafka client's ([`crate::controller_api`]).
//!   It is served from start-up on, before the broker is open, since the quorum
//!   must elect a leader before any node can finish starting.
//! - The controller commits through [`ActiveSink`]: only the active controller
//!   (the Raft leader) appends; any other node answers NOT_CONTROLLER.
//! - Every node, the active controller included, applies what the quorum
//!   commits through the metadata publisher, in log order, from
//!   [`quorum::Quorum::subscribe`]; a request that committed a change returns
//!   once the publisher has applied it here.
//! - The cluster id is agreed through the quorum: the first leader proposes
//!   the id `kafka-storage.sh format` wrote into this node's log dirs, or a new
//!   one; a fresh node's meta.properties then takes the agreed id, a formatted
//!   one with another id refuses to start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use metadata::{Image, ImageDelta, MetadataError, MetadataRecord, MetadataSink, PartitionChange};
use parking_lot::Mutex;
use quorum::{Committed, Quorum, QuorumOptions, QuorumSink};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::broadcast;

use crate::config::ServerConfig;
use crate::handlers::describe_quorum::QuorumView;
use crate::log_dirs::{write_meta_properties, LogDirs, Placement, META_PROPERTIES_FILE as META_PROPERTIES};
use crate::net::{self, NetLimits};
use crate::{Broker, StartError};

/// How long a connection on the CONTROLLER listener may take to send its
/// first four bytes.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);
/// How long start-up waits, once a leader is known, for this node to apply
/// what its log holds, before it opens with the image it has.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often start-up says it is still waiting for the quorum.
const WAITING_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A cluster node's quorum membership, shared by the CONTROLLER listener, the
/// publisher task and the broker.
pub(crate) struct ClusterNode {
    pub(crate) quorum: Arc<Quorum>,
    node_id: i32,
    /// Set once the broker is open: Kafka connections are served from then on.
    broker: OnceLock<Weak<Broker>>,
    /// What the publisher task starts from: the subscription and the image
    /// (at that offset) published at start. Taken when the task starts.
    start: Mutex<Option<(broadcast::Receiver<Committed>, Image, i64)>>,
    runtime: Handle,
}

/// What [`Prepared::start`] hands [`Broker::open`].
pub(crate) struct Started {
    pub(crate) node: Arc<ClusterNode>,
    pub(crate) sink: Box<dyn MetadataSink>,
    /// The image to publish at start and the offset of its last entry.
    pub(crate) image: Image,
    pub(crate) offset: i64,
}

/// Cluster mode before the log dirs are opened: the CONTROLLER listener is
/// bound (a port in use stops start-up before anything is written) and the
/// cluster id of formatted log dirs is read.
pub(crate) struct Prepared {
    /// None on a broker-only node (an observer): it listens for no quorum traffic.
    listener: Option<std::net::TcpListener>,
    formatted: Option<String>,
    runtime: Handle,
}

impl Prepared {
    /// Binds the CONTROLLER listener and reads `kafka-storage.sh format`'s cluster id.
    pub(crate) fn new(config: &ServerConfig) -> Result<Prepared, StartError> {
        let runtime = Handle::try_current()
            .map_err(|_| StartError::Cluster("cluster mode needs the server's tokio runtime (Broker::open was called outside it)".into()))?;
        let formatted = formatted_cluster_id(&config.log_dirs);
        if config.kraft.is_observer() {
            return Ok(Prepared { listener: None, formatted, runtime });
        }
        let Some(listener) = config.controller_listeners.first() else {
            return Err(StartError::Cluster("cluster mode needs a controller listener (controller.listener.names in listeners)".into()));
        };
        let host = if listener.host.is_empty() { "0.0.0.0" } else { listener.host.as_str() };
        let address = format!("{host}:{}", listener.port);
        let bind = |address: &str| -> std::io::Result<std::net::TcpListener> {
            let socket = std::net::TcpListener::bind(address)?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        };
        let listener = bind(&address).map_err(|source| StartError::Bind { address: address.clone(), source })?;
        tracing::info!(listener = %config.controller_listener_names[0], %address, "listening (metadata quorum and controller APIs)");
        Ok(Prepared { listener: Some(listener), formatted, runtime })
    }

    /// Starts the quorum on the CONTROLLER listener, waits until it has a
    /// leader and a cluster id and this node has applied its log, settles the
    /// cluster id with meta.properties, and answers the controller's sink
    /// and the image to open with.
    pub(crate) fn start(self, config: &ServerConfig, log_dirs: &mut LogDirs) -> Result<Started, StartError> {
        let Prepared { listener, formatted, runtime } = self;
        let node_id = config.node_id;
        let voters: Vec<(u64, String)> =
            config.kraft.voters.iter().map(|v| (v.id as u64, format!("{}:{}", v.host, v.port))).collect();
        let proposed = formatted.clone().unwrap_or_else(|| log_dirs.cluster_id.clone());
        let options = QuorumOptions { new_cluster_id: Arc::new(move || proposed.clone()), ..QuorumOptions::default() };
        let dir = log_dirs.metadata_dir();
        let started = match listener {
            Some(_) => runtime.block_on(Quorum::start_without_listener(node_id as u64, voters, &dir, options)),
            // A broker-only node follows the voters as an observer.
            None => runtime.block_on(Quorum::start_observer(node_id as u64, voters, &dir, options)),
        };
        let quorum = started.map_err(|e| StartError::Cluster(format!("cannot start the metadata quorum in {}: {e}", dir.display())))?;
        let quorum = Arc::new(quorum);
        let node = Arc::new(ClusterNode {
            quorum: Arc::clone(&quorum),
            node_id,
            broker: OnceLock::new(),
            start: Mutex::new(None),
            runtime: runtime.clone(),
        });
        if let Some(listener) = listener {
            let listener = {
                let _entered = runtime.enter();
                TcpListener::from_std(listener)
                    .map_err(|e| StartError::Cluster(format!("cannot serve the controller listener: {e}")))?
            };
            let limits = NetLimits::new(&config.limits);
            runtime.spawn(accept_controller_connections(Arc::clone(&node), listener, limits));
        }

        let agreed = runtime.block_on(wait_for_quorum(&quorum));
        settle_cluster_id(log_dirs, formatted.as_deref(), &agreed, node_id)?;
        // Subscribed before the image is read: what is applied in between is
        // in both, and the publisher skips events up to the image's offset.
        let events = quorum.subscribe();
        let (image, applied) = quorum.image();
        let offset = applied.map_or(-1, |o| o as i64);
        *node.start.lock() = Some((events, image.clone(), offset));
        let sink = ActiveSink { inner: QuorumSink::leader_only(Arc::clone(&quorum), runtime), node_id: node_id as u64 };
        let role = if quorum.is_observer() { "observer" } else { "voter" };
        tracing::info!(leader = ?quorum.leader(), epoch = quorum.epoch(), offset, cluster_id = %agreed, role, "joined the metadata quorum");
        Ok(Started { node, sink: Box::new(sink), image, offset })
    }
}

/// A broker-only node given only `controller.quorum.bootstrap.servers`: asks
/// them for the voters and their controller endpoints (DescribeQuorum v2,
/// KIP-853's `nodes`), in turn until one answers, and takes them as
/// `controller.quorum.voters` for this run.
pub(crate) fn discover_voters(config: &mut ServerConfig) -> Result<(), StartError> {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::{DescribeQuorumRequest, TopicName};
    let runtime = Handle::try_current()
        .map_err(|_| StartError::Cluster("cluster mode needs the server's tokio runtime (Broker::open was called outside it)".into()))?;
    let listener = config.controller_listener_names.first().cloned().unwrap_or_default();
    let servers: Vec<String> = config.kraft.bootstrap_servers.iter().map(|(host, port)| format!("{host}:{port}")).collect();
    let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(kafka_protocol::protocol::StrBytes::from_static_str(crate::log_dirs::METADATA_TOPIC)))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let voters = runtime.block_on(async {
        let mut said = tokio::time::Instant::now();
        loop {
            for addr in &servers {
                let answer = tokio::time::timeout(FIRST_BYTES_TIMEOUT, forward(addr, &req, 2)).await;
                let nodes = match answer {
                    Ok(Ok(response)) => response.nodes,
                    Ok(Err(e)) => {
                        tracing::debug!(%addr, error = %e, "asking a bootstrap controller for the voters");
                        continue;
                    }
                    Err(_) => continue,
                };
                let voters: Vec<crate::config::QuorumVoter> = nodes
                    .iter()
                    .filter_map(|node| {
                        let endpoint = node.listeners.iter().find(|l| l.name.as_str() == listener).or(node.listeners.first())?;
                        Some(crate::config::QuorumVoter { id: node.node_id.0, host: endpoint.host.to_string(), port: endpoint.port })
                    })
                    .collect();
                if !voters.is_empty() {
                    return voters;
                }
            }
            if said.elapsed() >= WAITING_LOG_INTERVAL {
                said = tokio::time::Instant::now();
                tracing::info!(bootstrap = ?servers, "waiting for a controller of controller.quorum.bootstrap.servers to name the voters");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    if voters.iter().any(|v| v.id == config.node_id) {
        return Err(StartError::Cluster(format!("node.id {} is a voter of the quorum, but process.roles has no controller", config.node_id)));
    }
    tracing::info!(voters = ?voters.iter().map(|v| format!("{}@{}:{}", v.id, v.host, v.port)).collect::<Vec<_>>(), "the bootstrap controllers named the voters");
    config.kraft.voters = voters;
    Ok(())
}

/// The cluster id `kafka-storage.sh format` wrote into the log dirs, if any.
fn formatted_cluster_id(dirs: &[PathBuf]) -> Option<String> {
    dirs.iter().find_map(|dir| {
        let text = std::fs::read_to_string(dir.join(META_PROPERTIES)).ok()?;
        text.lines().find_map(|line| line.trim().strip_prefix("cluster.id=").map(|id| id.trim().to_string()))
    })
}

/// Makes meta.properties name the quorum's cluster id: a fresh log dir takes
/// it; one formatted with another id refuses to start (as Kafka does).
fn settle_cluster_id(log_dirs: &mut LogDirs, formatted: Option<&str>, agreed: &str, node_id: i32) -> Result<(), StartError> {
    if log_dirs.cluster_id == agreed {
        return Ok(());
    }
    if let Some(formatted) = formatted {
        let path: &Path = log_dirs.dirs().first().map_or(Path::new(""), |d| d.as_path());
        return Err(StartError::Cluster(format!(
            "the log dirs ({}) were formatted with cluster.id {formatted}, but the metadata quorum's cluster id is {agreed}: format them with -t {agreed} (or wipe them)",
            path.join(META_PROPERTIES).display()
        )));
    }
    for dir in log_dirs.dirs() {
        write_meta_properties(dir, agreed, node_id)?;
    }
    log_dirs.cluster_id = agreed.to_string();
    Ok(())
}

/// Waits until the quorum has a leader and a cluster id, then (at most
/// [`CATCH_UP_TIMEOUT`]) until this node has applied the log it holds (an
/// observer: what the leader had committed when it first answered); answers
/// the cluster id.
async fn wait_for_quorum(quorum: &Quorum) -> String {
    let mut metrics = quorum.metrics();
    let mut said = tokio::time::Instant::now();
    let mut target: Option<(u64, tokio::time::Instant)> = None;
    loop {
        metrics.borrow_and_update();
        let (leader, last_log, applied) = (quorum.leader(), quorum.catch_up_target(), quorum.applied());
        if let (Some(_), Some(cluster_id)) = (leader, quorum.cluster_id()) {
            let (goal, since) = *target.get_or_insert((last_log.unwrap_or(0), tokio::time::Instant::now()));
            if applied >= Some(goal) {
                return cluster_id;
            }
            if since.elapsed() >= CATCH_UP_TIMEOUT {
                tracing::warn!(applied = ?applied, goal, "opening before this node applied its whole metadata log; the rest follows");
                return cluster_id;
            }
        }
        if said.elapsed() >= WAITING_LOG_INTERVAL {
            said = tokio::time::Instant::now();
            tracing::info!(leader = ?leader, observer = quorum.is_observer(), "waiting for the metadata quorum (a majority of controller.quorum.voters must be up)");
        }
        // An observer's metrics never change: this is a poll there.
        let _ = tokio::time::timeout(Duration::from_millis(100), metrics.changed()).await;
    }
}

/// Accepts connections on the CONTROLLER listener and tells quorum peers from
/// Kafka clients by their first four bytes.
async fn accept_controller_connections(node: Arc<ClusterNode>, listener: TcpListener, limits: Arc<NetLimits>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let node = Arc::clone(&node);
                let limits = Arc::clone(&limits);
                tokio::spawn(async move {
                    if let Err(reason) = serve_controller_connection(&node, stream, peer, &limits).await {
                        tracing::debug!(%peer, %reason, "controller listener connection closed");
                    }
                });
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "controller listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_controller_connection(node: &ClusterNode, mut stream: TcpStream, peer: SocketAddr, limits: &NetLimits) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let mut first = [0u8; 4];
    match tokio::time::timeout(FIRST_BYTES_TIMEOUT, stream.read_exact(&mut first)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("sent nothing in time".into()),
    }
    if first == quorum::PREFACE {
        return node.quorum.serve_connection(stream).await.map_err(|e| e.to_string());
    }
    let Some(broker) = node.broker.get().and_then(Weak::upgrade) else {
        return Err("a Kafka request before the broker has opened".into());
    };
    net::serve_controller_connection(broker, stream, peer, limits, &first).await
}

/// Gives the cluster node the open broker and starts the publisher task.
pub(crate) fn start_publishing(broker: &Arc<Broker>) {
    let Some(node) = &broker.cluster else { return };
    let _ = node.broker.set(Arc::downgrade(broker));
    let Some((events, image, offset)) = node.start.lock().take() else { return };
    node.runtime.spawn(publish_committed(Arc::downgrade(broker), Arc::clone(node), events, image, offset));
}

/// Applies what the quorum commits to the broker, in log order: a batch of
/// records as its delta; a snapshot (or a subscription that lagged) as the
/// difference between the images.
async fn publish_committed(broker: Weak<Broker>, node: Arc<ClusterNode>, mut events: broadcast::Receiver<Committed>, mut image: Image, mut at: i64) {
    loop {
        let event = events.recv().await;
        let Some(broker) = broker.upgrade() else { return };
        let (delta, offset) = match event {
            Ok(Committed::Records { offset, records, .. }) => {
                let offset = offset as i64;
                if offset <= at {
                    continue;
                }
                (image.apply_all(records.iter()), offset)
            }
            Ok(Committed::ClusterId { offset, .. }) => {
                at = at.max(offset as i64);
                broker.publisher.set_published(at);
                continue;
            }
            Ok(Committed::Snapshot { .. }) | Err(broadcast::error::RecvError::Lagged(_)) => {
                let (now, applied) = node.quorum.image();
                let delta = image_diff(&image, &now);
                image = now;
                (delta, applied.map_or(-1, |o| o as i64))
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let published = image.clone();
        let publishing = Arc::clone(&broker);
        // Creating and deleting logs is blocking disk work.
        let done = tokio::task::spawn_blocking(move || publishing.publish(&delta, &published, None, Placement::New)).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err((topic, e))) => tracing::error!(%topic, error = %e, "cannot apply a committed metadata change to the topic's partitions"),
            Err(e) => tracing::error!(error = %e, "the metadata publisher failed"),
        }
        at = at.max(offset);
        broker.publisher.set_published(at);
        // The controller decides on its sink's image: keep it current. A
        // request holding the controller refreshes it after its own commit.
        if let Some(mut controller) = broker.controller.try_lock() {
            controller.refresh();
        };
    }
}

/// The change from image `old` to image `new`, as a delta the publisher applies.
fn image_diff(old: &Image, new: &Image) -> ImageDelta {
    let mut delta = ImageDelta::default();
    for topic in old.topics() {
        if new.topic_by_id(topic.id).is_none() {
            delta.deleted_topics.insert(topic.id, topic.name.clone());
        }
    }
    for topic in new.topics() {
        let before = old.topic_by_id(topic.id);
        if before.is_none() {
            delta.created_topics.insert(topic.id);
        }
        if before.map_or(!topic.configs.is_empty(), |b| b.configs != topic.configs) {
            delta.topic_configs.insert(topic.id);
        }
        for (&index, partition) in &topic.partitions {
            let was = before.and_then(|b| b.partitions.get(&index));
            if was != Some(partition) {
                delta.partitions.insert((topic.id, index), PartitionChange { old: was.cloned(), new: partition.clone() });
            }
        }
    }
    let registrations = |image: &Image| image.brokers().map(|b| (b.id, b.clone())).collect::<std::collections::BTreeMap<_, _>>();
    let (before, after) = (registrations(old), registrations(new));
    delta.brokers.extend(before.keys().chain(after.keys()).filter(|id| before.get(id) != after.get(id)));
    // The publisher rebuilds the effective broker config from the whole image.
    delta.broker_configs.insert(String::new());
    delta.producer_ids = new.next_producer_id() != old.next_producer_id();
    delta
}

/// The controller's sink in cluster mode: commits through the quorum, but
/// only on the active controller (the leader) and only while it leads;
/// elsewhere NOT_CONTROLLER, so that no node decides on an image that may be
/// behind the leader's, and a decision of a leader that lost its election
/// mid-commit (a paused controller resuming) is not forwarded to the new one.
struct ActiveSink {
    inner: QuorumSink,
    node_id: u64,
}

impl MetadataSink for ActiveSink {
    fn image(&self) -> &Image {
        MetadataSink::image(&self.inner)
    }

    fn refresh(&mut self) {
        self.inner.refresh();
    }

    fn append_and_commit(&mut self, records: &[MetadataRecord], now_ms: i64) -> metadata::Result<metadata::Committed> {
        let leader = self.inner.quorum().leader();
        if leader != Some(self.node_id) {
            let active = leader.map_or_else(|| "none is elected".to_string(), |id| format!("it is node {id}"));
            return Err(MetadataError::NotController(format!("node {} is not the active controller ({active})", self.node_id)));
        }
        self.inner.append_and_commit(records, now_ms)
    }
}

impl ClusterNode {
    /// Waits (blocking) until the publisher has applied the change committed
    /// at `offset` here; a request answers only then, so that what it created
    /// is hosted and visible.
    pub(crate) fn await_published(&self, broker: &Broker, offset: i64) {
        let timeout = QuorumOptions::default().propose_timeout;
        if !crate::blocking(|| broker.publisher.wait_published(offset, timeout)) {
            tracing::warn!(offset, "a committed metadata change was not published here within {timeout:?}");
        }
    }
}

impl Broker {
    /// The node id of the active controller: this node on a single node; in
    /// cluster mode the quorum's leader, if one is known.
    pub fn active_controller(&self) -> Option<i32> {
        match &self.cluster {
            None => Some(self.config.node_id),
            Some(node) => node.quorum.leader().and_then(|id| i32::try_from(id).ok()),
        }
    }

    /// True if this node decides metadata changes: always on a single node;
    /// in cluster mode when it is the quorum's leader. Controller requests
    /// reaching another node are answered NOT_CONTROLLER.
    pub fn is_active_controller(&self) -> bool {
        self.active_controller() == Some(self.config.node_id)
    }

    /// Cluster mode: the channel admin requests are forwarded on to the
    /// active controller ([`crate::forwarding`]).
    pub(crate) fn forwarding_channel(&self) -> Option<Arc<crate::controller_channel::ControllerChannel>> {
        self.rpc.get().map(|rpc| Arc::clone(&rpc.forwarding))
    }

    /// True in cluster mode (several voters).
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// A DescribeQuorum forwarded to the active controller's CONTROLLER
    /// listener, if this node is in cluster mode and not the active
    /// controller; None when it is, or the active one cannot be reached
    /// (then this node answers itself).
    pub(crate) async fn forward_to_active_controller(
        &self,
        req: &kafka_protocol::messages::DescribeQuorumRequest,
        version: i16,
    ) -> Option<kafka_protocol::messages::DescribeQuorumResponse> {
        let node = self.cluster.as_ref()?;
        let leader = i32::try_from(node.quorum.leader()?).ok().filter(|&id| id != node.node_id)?;
        let voter = self.config.kraft.voters.iter().find(|v| v.id == leader)?;
        let addr = format!("{}:{}", voter.host, voter.port);
        match tokio::time::timeout(FIRST_BYTES_TIMEOUT, forward(&addr, req, version)).await {
            Ok(Ok(response)) => Some(response),
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = %e, "cannot forward DescribeQuorum to the active controller");
                None
            }
            Err(_) => None,
        }
    }

    /// The offset past the last metadata change published here.
    pub(crate) fn metadata_end_offset(&self) -> i64 {
        self.publisher.published_offset() + 1
    }

    /// DescribeQuorum's view from the quorum, in cluster mode.
    pub(crate) fn cluster_quorum_view(&self) -> Option<QuorumView> {
        let node = self.cluster.as_ref()?;
        let described = node.quorum.describe();
        let to_i32 = |id: u64| i32::try_from(id).unwrap_or(-1);
        let replicas = |states: &[quorum::VoterState]| states.iter().map(|v| (to_i32(v.id), v.log_end_offset, v.last_fetch_ms, v.last_caught_up_ms)).collect();
        Some(QuorumView {
            leading: described.leader == Some(node.node_id as u64),
            epoch: i32::try_from(described.epoch).unwrap_or(i32::MAX),
            high_watermark: described.high_watermark,
            voters: replicas(&described.voters),
            observers: replicas(&described.observers),
            endpoints: self.config.kraft.voters.iter().map(|v| (v.id, v.host.clone(), v.port)).collect(),
        })
    }
}

/// Sends one request to a controller listener and reads its answer.
async fn forward(
    addr: &str,
    req: &kafka_protocol::messages::DescribeQuorumRequest,
    version: i16,
) -> std::io::Result<kafka_protocol::messages::DescribeQuorumResponse> {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable};
    use tokio::io::AsyncWriteExt;
    let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let key = ApiKey::DescribeQuorum;
    let header = RequestHeader::default().with_request_api_key(key as i16).with_request_api_version(version).with_correlation_id(1);
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    header.encode(&mut frame, key.request_header_version(version)).map_err(|e| bad(e.to_string()))?;
    req.encode(&mut frame, version).map_err(|e| bad(e.to_string()))?;
    let len = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(&frame).await?;
    let size = stream.read_i32().await?;
    let size = usize::try_from(size).map_err(|_| bad(format!("negative response size {size}")))?;
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body).await?;
    let mut body = bytes::Bytes::from(body);
    ResponseHeader::decode(&mut body, key.response_header_version(version)).map_err(|e| bad(e.to_string()))?;
    kafka_protocol::messages::DescribeQuorumResponse::decode(&mut body, version).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use metadata::{PartitionRecord, TopicRecord};
    use uuid::Uuid;

    use super::*;

    fn topic(name: &str, id: Uuid, partitions: i32, leader: i32) -> Vec<MetadataRecord> {
        let mut records = vec![MetadataRecord::Topic(TopicRecord { name: name.into(), topic_id: id })];
        records.extend((0..partitions).map(|partition| {
            MetadataRecord::Partition(PartitionRecord { topic_id: id, partition, replicas: vec![1, 2], isr: vec![1, 2], leader, leader_epoch: 0, ..Default::default() })
        }));
        records
    }

    /// What a snapshot or a lagged subscription publishes: applying the diff
    /// must do what the records in between did.
    #[test]
    fn an_image_diff_is_the_delta_of_the_records_between_the_images() {
        let (kept, gone, new) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let old = Image::from_records(&[topic("kept", kept, 2, 1), topic("gone", gone, 1, 1)].concat());
        let mut changed = old.clone();
        let between = [
            vec![MetadataRecord::RemoveTopic { topic_id: gone }],
            topic("new", new, 1, 2),
            vec![MetadataRecord::Partition(PartitionRecord { topic_id: kept, partition: 1, replicas: vec![1, 2], isr: vec![2], leader: 2, leader_epoch: 1, ..Default::default() })],
        ]
        .concat();
        let expected = changed.apply_all(between.iter());
        let diff = image_diff(&old, &changed);
        assert_eq!(diff.deleted_topics, expected.deleted_topics);
        assert_eq!(diff.created_topics, expected.created_topics);
        assert_eq!(diff.partitions, expected.partitions);
        assert!(diff.partitions[&(kept, 1)].leader_changed() && !diff.partitions.contains_key(&(kept, 0)));
        assert!(image_diff(&changed, &changed).partitions.is_empty(), "nothing changed, nothing to publish");
    }
}
