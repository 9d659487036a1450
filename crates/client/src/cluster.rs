//! The client's view of a cluster: bootstrap, metadata, one connection per broker.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    FindCoordinatorRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::connection::{Connection, ConnectionConfig};
use crate::error::{Error, KafkaError, Result};

/// Where and how to reach the cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `bootstrap.servers`: `host:port` addresses tried in order to learn the cluster.
    pub bootstrap_servers: Vec<String>,
    /// Settings for every broker connection.
    pub connection: ConnectionConfig,
    /// Whether Metadata requests may create missing topics (`allow.auto.create.topics`).
    pub allow_auto_topic_creation: bool,
}

impl ClientConfig {
    /// A configuration for `bootstrap`, written as Kafka does: `host:port[,host:port...]`.
    /// A host without a port gets 9092.
    pub fn new(bootstrap: &str) -> Result<ClientConfig> {
        Ok(ClientConfig {
            bootstrap_servers: parse_bootstrap(bootstrap)?,
            connection: ConnectionConfig::default(),
            allow_auto_topic_creation: false,
        })
    }
}

/// Splits `host:port[,host:port...]` into addresses, defaulting the port to 9092.
pub fn parse_bootstrap(bootstrap: &str) -> Result<Vec<String>> {
    let servers: Vec<String> = bootstrap
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            // Accept Kafka listener syntax too (PLAINTEXT://host:port).
            let s = s.split_once("://").map_or(s, |(_, rest)| rest);
            let has_port = match s.rsplit_once(':') {
                Some((host, port)) => {
                    port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']'))
                }
                None => false,
            };
            if has_port {
                s.to_owned()
            } else if s.contains(':') && !s.starts_with('[') {
                format!("[{s}]:9092")
            } else {
                format!("{s}:9092")
            }
        })
        .collect();
    if servers.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "no bootstrap servers in {bootstrap:?}"
        )));
    }
    Ok(servers)
}

/// A broker as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// `node.id`.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
}

impl Broker {
    /// `host:port`, with IPv6 hosts in brackets.
    pub fn addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// FindCoordinator's key type for consumer groups.
pub const COORDINATOR_GROUP: i8 = 0;

/// One partition's placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: i32,
    /// Leader's node id, -1 when there is none.
    pub leader: i32,
    /// Leader epoch, -1 when unknown.
    pub leader_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
    /// Replicas that are offline.
    pub offline_replicas: Vec<i32>,
    /// Partition-level error, e.g. LEADER_NOT_AVAILABLE.
    pub error: Option<KafkaError>,
}

/// One topic as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Topic id (nil if the broker sent none).
    pub id: Uuid,
    /// Whether it is an internal topic such as `__consumer_offsets`.
    pub is_internal: bool,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionMetadata>,
    /// Topic-level error, e.g. UNKNOWN_TOPIC_OR_PARTITION.
    pub error: Option<KafkaError>,
}

impl TopicMetadata {
    /// The partition with index `partition`.
    pub fn partition(&self, partition: i32) -> Option<&PartitionMetadata> {
        self.partitions.iter().find(|p| p.partition == partition)
    }
}

/// A snapshot of what the client knows about the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetadata {
    /// Cluster id, if the broker sent one.
    pub cluster_id: Option<String>,
    /// The node id the broker named as controller, -1 if none.
    pub controller_id: i32,
    /// Brokers by node id.
    pub brokers: BTreeMap<i32, Broker>,
    /// Topics by name (only those fetched so far).
    pub topics: BTreeMap<String, TopicMetadata>,
}

/// A cluster client: bootstraps, keeps metadata, and holds a connection per broker.
///
/// Cheap to clone; clones share connections and metadata.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    metadata: RwLock<Arc<ClusterMetadata>>,
    /// Connections keyed by broker node id.
    connections: Mutex<HashMap<i32, Arc<Connection>>>,
    /// A connection to a bootstrap address, used until a broker's node id is known.
    bootstrap: Mutex<Option<Arc<Connection>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.inner.config.bootstrap_servers)
            .finish()
    }
}

impl Client {
    /// Connects to the first reachable bootstrap server and loads the broker list.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let client = Client {
            inner: Arc::new(Inner {
                config,
                metadata: RwLock::new(Arc::new(ClusterMetadata::default())),
                connections: Mutex::new(HashMap::new()),
                bootstrap: Mutex::new(None),
            }),
        };
        client.refresh_metadata(Some(&[])).await?;
        Ok(client)
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The metadata known right now (no request).
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        match self.inner.metadata.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Fetches metadata for `topics` (`None`: every topic) and merges it into the
    /// client's view. Returns the new view.
    pub async fn refresh_metadata(
        &self,
        topics: Option<&[String]>,
    ) -> Result<Arc<ClusterMetadata>> {
        let fetched = self.request_metadata(topics).await?;
        Ok(self.merge(fetched, topics))
    }

    async fn request_metadata(&self, topics: Option<&[String]>) -> Result<ClusterMetadata> {
        let mut req = MetadataRequest::default();
        req.topics = topics.map(|ts| {
            ts.iter()
                .map(|t| {
                    let mut rt = MetadataRequestTopic::default();
                    rt.name = Some(TopicName(StrBytes::from_string(t.clone())));
                    rt
                })
                .collect()
        });
        req.allow_auto_topic_creation = self.inner.config.allow_auto_topic_creation;
        let resp: MetadataResponse = self.send_any(&req).await?;
        crate::error::check(resp.error_code, None)?;
        Ok(convert_metadata(resp))
    }

    /// Folds a Metadata answer for `requested` topics (`None`: all) into the cached view.
    fn merge(
        &self,
        fetched: ClusterMetadata,
        requested: Option<&[String]>,
    ) -> Arc<ClusterMetadata> {
        let mut guard = match self.inner.metadata.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut merged = (**guard).clone();
        if fetched.cluster_id.is_some() {
            merged.cluster_id = fetched.cluster_id;
        }
        merged.controller_id = fetched.controller_id;
        if !fetched.brokers.is_empty() {
            merged.brokers = fetched.brokers;
        }
        match requested {
            None => merged.topics.clear(),
            // A deleted topic may be missing from the answer or carry an error.
            Some(ts) => {
                for t in ts {
                    merged.topics.remove(t);
                }
            }
        }
        for (name, topic) in fetched.topics {
            if topic.error.is_none() {
                merged.topics.insert(name, topic);
            }
        }
        let merged = Arc::new(merged);
        *guard = merged.clone();
        merged
    }

    /// Metadata for one topic: from the cache, else fetched. Fails with the topic's
    /// Kafka error (e.g. UNKNOWN_TOPIC_OR_PARTITION) if the broker reports one.
    pub async fn topic(&self, topic: &str) -> Result<TopicMetadata> {
        if let Some(t) = self.metadata().topics.get(topic) {
            if !t.partitions.is_empty() {
                return Ok(t.clone());
            }
        }
        self.fetch_topic(topic).await
    }

    /// Fetches fresh metadata for one topic, failing with its Kafka error if any.
    pub async fn fetch_topic(&self, topic: &str) -> Result<TopicMetadata> {
        let names = [topic.to_owned()];
        let fetched = self.request_metadata(Some(&names)).await?;
        let found = fetched.topics.get(topic).cloned();
        self.merge(fetched, Some(&names));
        match found {
            Some(TopicMetadata {
                error: Some(mut e), ..
            }) => {
                if e.code == kafka_protocol::error::ResponseError::UnknownTopicOrPartition
                    && e.message.is_none()
                {
                    e.message = Some(format!("Topic '{topic}' does not exist."));
                }
                Err(Error::Kafka(e))
            }
            Some(t) => Ok(t),
            None => Err(Error::Kafka(KafkaError {
                code: kafka_protocol::error::ResponseError::UnknownTopicOrPartition,
                message: Some(format!("Topic '{topic}' does not exist.")),
            })),
        }
    }

    /// The leader node id of a partition, from cached metadata (fetched if missing).
    pub async fn leader_for(&self, topic: &str, partition: i32) -> Result<i32> {
        let t = self.topic(topic).await?;
        match t.partition(partition) {
            Some(p) if p.leader >= 0 => Ok(p.leader),
            Some(_) => Err(Error::NoLeader {
                topic: topic.to_owned(),
                partition,
            }),
            None => Err(Error::Kafka(KafkaError {
                code: kafka_protocol::error::ResponseError::UnknownTopicOrPartition,
                message: Some(format!(
                    "Partition {partition} of topic '{topic}' does not exist ({} partitions).",
                    t.partitions.len()
                )),
            })),
        }
    }

    /// The open connection to broker `node_id`, opening it if needed.
    pub async fn broker(&self, node_id: i32) -> Result<Arc<Connection>> {
        let mut conns = self.inner.connections.lock().await;
        if let Some(c) = conns.get(&node_id) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
            conns.remove(&node_id);
        }
        let addr = match self.metadata().brokers.get(&node_id) {
            Some(b) => b.addr(),
            None => {
                return Err(Error::InvalidConfig(format!(
                    "broker {node_id} is not in the cluster metadata"
                )))
            }
        };
        let conn =
            Arc::new(Connection::connect(&addr, self.inner.config.connection.clone()).await?);
        conns.insert(node_id, conn.clone());
        Ok(conn)
    }

    /// The coordinator of `key` (a group id for [`COORDINATOR_GROUP`]), as FindCoordinator
    /// names it. Fails with e.g. COORDINATOR_NOT_AVAILABLE (retriable).
    pub async fn find_coordinator(&self, key_type: i8, key: &str) -> Result<Broker> {
        let conn = self.any_connection().await?;
        let version = conn.version::<FindCoordinatorRequest>()?;
        let mut req = FindCoordinatorRequest::default();
        req.key_type = key_type;
        // v4 (KIP-699) looks up a batch of keys; older versions one.
        if version >= 4 {
            req.coordinator_keys = vec![StrBytes::from_string(key.to_owned())];
        } else {
            req.key = StrBytes::from_string(key.to_owned());
        }
        let resp = conn.send_version(&req, version).await?;
        if version < 4 {
            crate::error::check(resp.error_code, resp.error_message.as_deref())?;
            return Ok(Broker {
                node_id: resp.node_id.0,
                host: resp.host.to_string(),
                port: resp.port,
                rack: None,
            });
        }
        let c = resp
            .coordinators
            .into_iter()
            .find(|c| c.key.as_str() == key)
            .ok_or_else(|| {
                Error::protocol(format!(
                    "FindCoordinator response has no result for {key:?}"
                ))
            })?;
        crate::error::check(c.error_code, c.error_message.as_deref())?;
        Ok(Broker {
            node_id: c.node_id.0,
            host: c.host.to_string(),
            port: c.port,
            rack: None,
        })
    }

    /// The coordinator of consumer group `group` and a connection to it (the shared
    /// connection when the coordinator is a broker in the metadata).
    pub async fn group_coordinator(&self, group: &str) -> Result<(Broker, Arc<Connection>)> {
        let coordinator = self.find_coordinator(COORDINATOR_GROUP, group).await?;
        if !self.metadata().brokers.contains_key(&coordinator.node_id) {
            let _ = self.refresh_metadata(Some(&[])).await;
        }
        let conn = if self.metadata().brokers.contains_key(&coordinator.node_id) {
            self.broker(coordinator.node_id).await?
        } else {
            Arc::new(
                Connection::connect(&coordinator.addr(), self.inner.config.connection.clone())
                    .await?,
            )
        };
        Ok((coordinator, conn))
    }

    /// A connection to the controller (as named by Metadata), else to any broker.
    pub async fn controller(&self) -> Result<Arc<Connection>> {
        let md = self.metadata();
        if md.controller_id >= 0 && md.brokers.contains_key(&md.controller_id) {
            if let Ok(c) = self.broker(md.controller_id).await {
                return Ok(c);
            }
        }
        self.any_connection().await
    }

    /// Any usable connection: an open broker connection, a known broker, or a bootstrap server.
    pub async fn any_connection(&self) -> Result<Arc<Connection>> {
        {
            let conns = self.inner.connections.lock().await;
            if let Some(c) = conns.values().find(|c| !c.is_closed()) {
                return Ok(c.clone());
            }
        }
        {
            let boot = self.inner.bootstrap.lock().await;
            if let Some(c) = boot.as_ref().filter(|c| !c.is_closed()) {
                return Ok(c.clone());
            }
        }
        let brokers: Vec<i32> = self.metadata().brokers.keys().copied().collect();
        for id in brokers {
            if let Ok(c) = self.broker(id).await {
                return Ok(c);
            }
        }
        let mut last_err = None;
        for addr in &self.inner.config.bootstrap_servers {
            match Connection::connect(addr, self.inner.config.connection.clone()).await {
                Ok(c) => {
                    let c = Arc::new(c);
                    *self.inner.bootstrap.lock().await = Some(c.clone());
                    return Ok(c);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "bootstrap server unreachable");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| Error::InvalidConfig("no bootstrap servers".to_owned())))
    }

    /// Sends `req` to any broker, retrying once on another connection if the first
    /// one turns out to be dead.
    pub async fn send_any<R: Request>(&self, req: &R) -> Result<R::Response> {
        let conn = self.any_connection().await?;
        match conn.send(req).await {
            Err(Error::Disconnected { .. } | Error::Io { .. }) => {
                let conn = self.any_connection().await?;
                conn.send(req).await
            }
            other => other,
        }
    }
}

fn opt_string(s: Option<StrBytes>) -> Option<String> {
    s.map(|s| s.to_string())
}

fn convert_metadata(resp: MetadataResponse) -> ClusterMetadata {
    let brokers = resp
        .brokers
        .into_iter()
        .map(|b| {
            let broker = Broker {
                node_id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: opt_string(b.rack),
            };
            (broker.node_id, broker)
        })
        .collect();
    let topics = resp
        .topics
        .into_iter()
        .filter_map(|t| {
            let name = t.name?.0.to_string();
            let mut partitions: Vec<PartitionMetadata> = t
                .partitions
                .into_iter()
                .map(|p| PartitionMetadata {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|n| n.0).collect(),
                    isr: p.isr_nodes.iter().map(|n| n.0).collect(),
                    offline_replicas: p.offline_replicas.iter().map(|n| n.0).collect(),
                    error: KafkaError::from_code(p.error_code, None),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let topic = TopicMetadata {
                error: KafkaError::from_code(t.error_code, None),
                name: name.clone(),
                id: t.topic_id,
                is_internal: t.is_internal,
                partitions,
            };
            Some((name, topic))
        })
        .collect();
    ClusterMetadata {
        cluster_id: opt_string(resp.cluster_id),
        controller_id: resp.controller_id.0,
        brokers,
        topics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_lists_parse_like_kafkas_and_default_the_port() {
        let parsed = parse_bootstrap("a:1, b ,PLAINTEXT://c:3,[::1]:4,::1").ok();
        let expected = ["a:1", "b:9092", "c:3", "[::1]:4", "[::1]:9092"]
            .map(String::from)
            .to_vec();
        assert_eq!(parsed, Some(expected));
        assert!(parse_bootstrap(" , ").is_err());
    }
}
