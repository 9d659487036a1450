//! Topic administration: create, delete, list, describe, configs, partitions.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::cluster::{Client, ClientConfig, TopicMetadata};
use crate::error::{check, Error, KafkaError, Result};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Number of partitions; -1 for the broker's `num.partitions`.
    pub num_partitions: i32,
    /// Replication factor; -1 for the broker's `default.replication.factor`.
    pub replication_factor: i16,
    /// Topic configs, e.g. `("cleanup.policy", "compact")`.
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with the given partitions and replication factor (-1: broker default).
    pub fn new(name: impl Into<String>, num_partitions: i32, replication_factor: i16) -> NewTopic {
        NewTopic {
            name: name.into(),
            num_partitions,
            replication_factor,
            configs: Vec::new(),
        }
    }

    /// Adds a topic config.
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }
}

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// Partition index.
    pub partition: i32,
    /// Leader node id, `None` when there is no leader.
    pub leader: Option<i32>,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
    /// Offline replica node ids.
    pub offline_replicas: Vec<i32>,
    /// The eligible leader replicas (KIP-966); `None` when the broker did not
    /// say (described through Metadata).
    pub elr: Option<Vec<i32>>,
    /// The last known ELR (KIP-966); `None` as `elr`.
    pub last_known_elr: Option<Vec<i32>>,
}

/// A described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Topic name.
    pub name: String,
    /// Topic id (nil if the broker reports none).
    pub id: Uuid,
    /// Whether it is an internal topic.
    pub is_internal: bool,
    /// Partitions by index.
    pub partitions: Vec<PartitionDescription>,
}

impl TopicDescription {
    /// The replication factor: the replica count of partition 0 (as Kafka's tools show it).
    pub fn replication_factor(&self) -> usize {
        self.partitions.first().map_or(0, |p| p.replicas.len())
    }
}

impl From<TopicMetadata> for TopicDescription {
    fn from(t: TopicMetadata) -> Self {
        TopicDescription {
            name: t.name,
            id: t.id,
            is_internal: t.is_internal,
            partitions: t
                .partitions
                .into_iter()
                .map(|p| PartitionDescription {
                    partition: p.partition,
                    leader: (p.leader >= 0).then_some(p.leader),
                    replicas: p.replicas,
                    isr: p.isr,
                    offline_replicas: p.offline_replicas,
                    elr: None,
                    last_known_elr: None,
                })
                .collect(),
        }
    }
}

/// Where a config value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigSource {
    /// Set on the topic.
    DynamicTopic,
    /// Set dynamically for this broker.
    DynamicBroker,
    /// Set dynamically for all brokers.
    DynamicDefaultBroker,
    /// Set in the broker's configuration file.
    StaticBroker,
    /// The built-in default.
    Default,
    /// Any other or unknown source.
    Other(i8),
}

impl ConfigSource {
    /// Kafka's name of the source, as `kafka-configs.sh` prints it.
    pub fn kafka_name(&self) -> String {
        match self {
            ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG".into(),
            ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG".into(),
            ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG".into(),
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG".into(),
            ConfigSource::Default => "DEFAULT_CONFIG".into(),
            ConfigSource::Other(6) => "DYNAMIC_BROKER_LOGGER_CONFIG".into(),
            ConfigSource::Other(_) => "UNKNOWN".into(),
        }
    }
}

impl From<i8> for ConfigSource {
    fn from(v: i8) -> Self {
        match v {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            other => ConfigSource::Other(other),
        }
    }
}

/// One config of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Config name, e.g. `retention.ms`.
    pub name: String,
    /// Value; `None` if unset or sensitive.
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Whether the config cannot be changed.
    pub read_only: bool,
    /// Whether the value is hidden because it is sensitive.
    pub sensitive: bool,
    /// Where else the value is set, highest precedence first (Kafka's synonyms).
    pub synonyms: Vec<ConfigSynonym>,
}

/// One level a config is set at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    /// The name at that level (e.g. `log.retention.ms` for a topic's `retention.ms`).
    pub name: String,
    /// The value there.
    pub value: Option<String>,
    /// The level.
    pub source: ConfigSource,
}

/// A resource with configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    /// A topic by name.
    Topic(String),
    /// A broker by node id, or `""` for the cluster-wide broker default.
    Broker(String),
    /// A broker's loggers, by node id.
    BrokerLogger(String),
}

impl ConfigResource {
    fn wire(&self) -> (i8, &str) {
        match self {
            ConfigResource::Topic(n) => (RESOURCE_TOPIC, n),
            ConfigResource::Broker(n) => (RESOURCE_BROKER, n),
            ConfigResource::BrokerLogger(n) => (RESOURCE_BROKER_LOGGER, n),
        }
    }
}

/// One change of IncrementalAlterConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    /// Set the value.
    Set(String),
    /// Remove the setting (back to the inherited value).
    Delete,
    /// Add items to a list config.
    Append(String),
    /// Remove items from a list config.
    Subtract(String),
}

impl ConfigEntry {
    /// Whether the value is the built-in default (Kafka's tools hide these).
    pub fn is_default(&self) -> bool {
        self.source == ConfigSource::Default
    }
}

/// The admin client.
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

/// `ConfigResource.Type.TOPIC`.
const RESOURCE_TOPIC: i8 = 2;
/// `ConfigResource.Type.BROKER`.
const RESOURCE_BROKER: i8 = 4;
/// `ConfigResource.Type.BROKER_LOGGER`.
const RESOURCE_BROKER_LOGGER: i8 = 8;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

impl Admin {
    /// Connects to the cluster at `bootstrap` (`host:port[,host:port]`).
    pub async fn connect(bootstrap: &str) -> Result<Admin> {
        Ok(Admin::new(
            Client::connect(ClientConfig::new(bootstrap)?).await?,
        ))
    }

    /// An admin client sharing an existing cluster client.
    pub fn new(client: Client) -> Admin {
        Admin { client }
    }

    /// The underlying cluster client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn timeout_ms(&self) -> i32 {
        i32::try_from(self.client.config().connection.request_timeout.as_millis())
            .unwrap_or(i32::MAX)
    }

    /// Creates one topic; fails with e.g. `TOPIC_ALREADY_EXISTS`.
    pub async fn create_topic(
        &self,
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
        configs: Vec<(String, String)>,
        validate_only: bool,
    ) -> Result<()> {
        let topic = NewTopic {
            name: name.to_owned(),
            num_partitions,
            replication_factor,
            configs,
        };
        let mut results = self.create_topics(vec![topic], validate_only).await?;
        match results.pop() {
            Some((_, r)) => r,
            None => Err(Error::protocol("CreateTopics response has no result")),
        }
    }

    /// Creates topics; returns each topic's own outcome.
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Result<Vec<(String, Result<()>)>> {
        let mut req = CreateTopicsRequest::default();
        req.timeout_ms = self.timeout_ms();
        req.validate_only = validate_only;
        for t in &topics {
            let mut ct = CreatableTopic::default();
            ct.name = topic_name(&t.name);
            ct.num_partitions = t.num_partitions;
            ct.replication_factor = t.replication_factor;
            for (k, v) in &t.configs {
                let mut c = CreatableTopicConfig::default();
                c.name = StrBytes::from_string(k.clone());
                c.value = Some(StrBytes::from_string(v.clone()));
                ct.configs.push(c);
            }
            req.topics.push(ct);
        }
        let conn = self.client.controller().await?;
        let resp = conn.send(&req).await?;
        let results = topics
            .iter()
            .map(|t| {
                let r = match resp.topics.iter().find(|r| r.name.0.as_str() == t.name) {
                    Some(r) => check(r.error_code, r.error_message.as_deref()),
                    None => Err(Error::protocol(format!(
                        "CreateTopics response has no result for {}",
                        t.name
                    ))),
                };
                (t.name.clone(), r)
            })
            .collect();
        Ok(results)
    }

    /// Deletes one topic; fails with `UNKNOWN_TOPIC_OR_PARTITION` if it does not exist.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let mut results = self.delete_topics(&[name.to_owned()]).await?;
        match results.pop() {
            Some((_, r)) => r,
            None => Err(Error::protocol("DeleteTopics response has no result")),
        }
    }

    /// Deletes topics by name; returns each topic's own outcome.
    pub async fn delete_topics(&self, names: &[String]) -> Result<Vec<(String, Result<()>)>> {
        let mut req = DeleteTopicsRequest::default();
        req.timeout_ms = self.timeout_ms();
        // v6+ carries names in `topics`, older versions in `topic_names`; the encoder
        // writes whichever the negotiated version has.
        req.topic_names = names.iter().map(|n| topic_name(n)).collect();
        req.topics = names
            .iter()
            .map(|n| {
                let mut s = DeleteTopicState::default();
                s.name = Some(topic_name(n));
                s
            })
            .collect();
        let conn = self.client.controller().await?;
        let resp = conn.send(&req).await?;
        let results = names
            .iter()
            .map(|n| {
                let r = match resp
                    .responses
                    .iter()
                    .find(|r| r.name.as_ref().is_some_and(|rn| rn.0.as_str() == n))
                {
                    Some(r) => check(r.error_code, r.error_message.as_deref()),
                    None => Err(Error::protocol(format!(
                        "DeleteTopics response has no result for {n}"
                    ))),
                };
                (n.clone(), r)
            })
            .collect();
        Ok(results)
    }

    /// Topic names, sorted; internal topics only if `include_internal`.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<String>> {
        let md = self.client.refresh_metadata(None).await?;
        Ok(md
            .topics
            .values()
            .filter(|t| include_internal || !t.is_internal)
            .map(|t| t.name.clone())
            .collect())
    }

    /// Describes the named topics, in the order given; fails if one does not
    /// exist. As Kafka's admin client, with DescribeTopicPartitions (with the
    /// ELR) where the broker serves it, else with Metadata.
    pub async fn describe_topics(&self, names: &[String]) -> Result<Vec<TopicDescription>> {
        if let Some(described) = self.describe_topic_partitions(Some(names)).await? {
            let mut by_name: std::collections::HashMap<String, _> = described.into_iter().collect();
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                match by_name.remove(name) {
                    Some(Ok(topic)) => out.push(topic),
                    // Missing: Metadata names the error as the Metadata path does.
                    _ => out.push(TopicDescription::from(self.client.fetch_topic(name).await?)),
                }
            }
            return Ok(out);
        }
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            out.push(TopicDescription::from(self.client.fetch_topic(name).await?));
        }
        Ok(out)
    }

    /// Describes every topic, sorted by name; internal ones only if
    /// `include_internal` (DescribeTopicPartitions where served, else Metadata).
    pub async fn describe_all_topics(
        &self,
        include_internal: bool,
    ) -> Result<Vec<TopicDescription>> {
        if let Some(described) = self.describe_topic_partitions(None).await? {
            let mut topics: Vec<TopicDescription> = described
                .into_iter()
                .filter_map(|(_, t)| t.ok())
                .filter(|t| include_internal || !t.is_internal)
                .collect();
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            return Ok(topics);
        }
        let md = self.client.refresh_metadata(None).await?;
        Ok(md
            .topics
            .values()
            .filter(|t| include_internal || !t.is_internal)
            .cloned()
            .map(TopicDescription::from)
            .collect())
    }

    /// Every config of a topic, with its source.
    pub async fn describe_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>> {
        self.describe_resource_configs(&ConfigResource::Topic(topic.to_owned())).await
    }

    /// Every config of a resource, with its source and synonyms.
    pub async fn describe_resource_configs(
        &self,
        resource: &ConfigResource,
    ) -> Result<Vec<ConfigEntry>> {
        let (resource_type, name) = resource.wire();
        let mut req = DescribeConfigsRequest::default();
        req.include_synonyms = true;
        let mut res = DescribeConfigsResource::default();
        res.resource_type = resource_type;
        res.resource_name = StrBytes::from_string(name.to_owned());
        res.configuration_keys = None;
        req.resources.push(res);
        let conn = self.client.any_connection().await?;
        let resp = conn.send(&req).await?;
        let result = resp
            .results
            .into_iter()
            .find(|r| r.resource_type == resource_type && r.resource_name.as_str() == name)
            .ok_or_else(|| {
                Error::protocol(format!("DescribeConfigs response has no result for {name}"))
            })?;
        check(result.error_code, result.error_message.as_deref())?;
        Ok(result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                source: ConfigSource::from(c.config_source),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
                synonyms: c
                    .synonyms
                    .into_iter()
                    .map(|s| ConfigSynonym {
                        name: s.name.to_string(),
                        value: s.value.map(|v| v.to_string()),
                        source: ConfigSource::from(s.source),
                    })
                    .collect(),
            })
            .collect())
    }

    /// Changes configs of a resource with IncrementalAlterConfigs; fails with the
    /// broker's error (e.g. `INVALID_CONFIG` naming the key).
    pub async fn incremental_alter_configs(
        &self,
        resource: &ConfigResource,
        ops: &[(String, AlterConfigOp)],
        validate_only: bool,
    ) -> Result<()> {
        let (resource_type, name) = resource.wire();
        let mut req = IncrementalAlterConfigsRequest::default();
        req.validate_only = validate_only;
        let mut res = AlterConfigsResource::default();
        res.resource_type = resource_type;
        res.resource_name = StrBytes::from_string(name.to_owned());
        for (key, op) in ops {
            let (code, value) = match op {
                AlterConfigOp::Set(v) => (0, Some(v)),
                AlterConfigOp::Delete => (1, None),
                AlterConfigOp::Append(v) => (2, Some(v)),
                AlterConfigOp::Subtract(v) => (3, Some(v)),
            };
            let mut c = AlterableConfig::default();
            c.name = StrBytes::from_string(key.clone());
            c.config_operation = code;
            c.value = value.map(|v| StrBytes::from_string(v.clone()));
            res.configs.push(c);
        }
        req.resources.push(res);
        let conn = self.client.any_connection().await?;
        let resp = conn.send(&req).await?;
        match resp
            .responses
            .iter()
            .find(|r| r.resource_type == resource_type && r.resource_name.as_str() == name)
        {
            Some(r) => check(r.error_code, r.error_message.as_deref()),
            None => Err(Error::protocol(format!(
                "IncrementalAlterConfigs response has no result for {name}"
            ))),
        }
    }

    /// Raises a topic's partition count to `total_count`.
    pub async fn create_partitions(
        &self,
        topic: &str,
        total_count: i32,
        validate_only: bool,
    ) -> Result<()> {
        let mut req = CreatePartitionsRequest::default();
        req.timeout_ms = self.timeout_ms();
        req.validate_only = validate_only;
        let mut t = CreatePartitionsTopic::default();
        t.name = topic_name(topic);
        t.count = total_count;
        t.assignments = None;
        req.topics.push(t);
        let conn = self.client.controller().await?;
        let resp = conn.send(&req).await?;
        match resp.results.iter().find(|r| r.name.0.as_str() == topic) {
            Some(r) => check(r.error_code, r.error_message.as_deref()),
            None => Err(Error::Kafka(KafkaError {
                code: ResponseError::UnknownServerError,
                message: Some(format!(
                    "CreatePartitions response has no result for {topic}"
                )),
            })),
        }
    }
}
