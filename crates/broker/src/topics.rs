//! Topic lifecycle: Kafka's topic naming rules and limits, and the requests
//! that create, delete and grow topics, carried out by the controller
//! ([`crate::controller`]) and applied by the metadata publisher.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use metadata::TopicImage;
use uuid::Uuid;

use crate::controller::{Controller, TopicChange};
use crate::error::{BrokerError, Result};
use crate::log_dirs::{Placement, METADATA_TOPIC};
use crate::{now_ms, Broker};

/// Kafka's longest legal topic name.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// How long a topic this node creates through the active controller may take
/// (Kafka's default `request.timeout.ms`).
const FORWARD_TIMEOUT_MS: u64 = 30_000;

/// Checks a topic name against Kafka's rules.
pub fn validate_topic_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, topic name: {name}"
        ));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return Err(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// True for Kafka's internal topics, and for `__cluster_metadata`, the
/// metadata log's name, which no client topic may take.
pub fn is_internal(name: &str) -> bool {
    name == "__consumer_offsets" || name == "__transaction_state" || name == METADATA_TOPIC
}

/// A request to create one topic.
pub struct NewTopic {
    /// The name.
    pub name: String,
    /// Partition count; -1 for `num.partitions`.
    pub num_partitions: i32,
    /// Replication factor; -1 for `default.replication.factor`.
    pub replication_factor: i16,
    /// Explicit replica assignment by partition, if any.
    pub assignments: Vec<(i32, Vec<i32>)>,
    /// Topic configs.
    pub configs: Vec<(String, Option<String>)>,
}

/// Kafka's controller refuses requests that add more partitions than this
/// (`MAX_PARTITIONS_PER_BATCH`), with POLICY_VIOLATION.
pub const MAX_PARTITIONS_PER_REQUEST: u64 = 10_000;

/// Kafka's message for a CreateTopics over [`MAX_PARTITIONS_PER_REQUEST`].
pub const TOO_MANY_PARTITIONS_PER_REQUEST: &str = "Excessively large number of partitions per request.";

/// Kafka's message for any other request that would write more than
/// [`MAX_PARTITIONS_PER_REQUEST`] metadata records (e.g. a CreatePartitions).
pub const EXCESSIVE_BATCH: &str = "Unable to perform excessively large batch operation.";

/// How many partitions creating `new` adds (before any other validation;
/// nonsense counts add none and are refused later).
pub fn partitions_requested(new_partitions: i32, assignments: usize, default_partitions: i32) -> u64 {
    if assignments > 0 {
        return assignments as u64;
    }
    let n = if new_partitions == -1 { default_partitions } else { new_partitions };
    u64::try_from(n).unwrap_or(0)
}

impl Broker {
    /// Creates a topic (or only checks it, with `validate_only`) and returns
    /// it: the controller decides, the logs are prepared, the controller
    /// appends, the publisher hosts the prepared logs. A failure before the
    /// append (no file descriptors, full disk) leaves no directory and no record.
    pub fn create_topic(&self, new: NewTopic, validate_only: bool) -> Result<TopicImage> {
        if !validate_only && self.cluster.is_some() && !self.is_active_controller() {
            return self.create_topic_through_controller(new);
        }
        let mut controller = self.controller.lock();
        let change = controller.create_topic(&new)?;
        if validate_only {
            return Ok(change.topic);
        }
        self.prepare_and_commit(&mut controller, &change)?;
        tracing::info!(topic = %change.topic.name, partitions = change.topic.partitions.len(), "created topic");
        Ok(change.topic)
    }

    /// A topic this broker creates itself (`__consumer_offsets`, an
    /// auto-created topic) on a node that is not the active controller: sent
    /// as CreateTopics to the active controller, as Kafka's brokers do
    /// (`AutoTopicCreationManager`), through the path a client's forwarded
    /// CreateTopics takes ([`crate::forwarding::create_topics`]), and
    /// answered once this node's metadata has it, so the caller can use it at once.
    fn create_topic_through_controller(&self, new: NewTopic) -> Result<TopicImage> {
        use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig};
        use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, TopicName};
        use kafka_protocol::protocol::StrBytes;

        let Some(channel) = self.forwarding_channel() else {
            return Err(BrokerError::kafka(ResponseError::NotController, "no controller channel on this node"));
        };
        let name = new.name.clone();
        let topic = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(new.name)))
            .with_num_partitions(new.num_partitions)
            .with_replication_factor(new.replication_factor)
            .with_assignments(
                new.assignments
                    .into_iter()
                    .map(|(index, replicas)| {
                        CreatableReplicaAssignment::default()
                            .with_partition_index(index)
                            .with_broker_ids(replicas.into_iter().map(BrokerId).collect())
                    })
                    .collect(),
            )
            .with_configs(
                new.configs
                    .into_iter()
                    .map(|(k, v)| CreatableTopicConfig::default().with_name(StrBytes::from_string(k)).with_value(v.map(StrBytes::from_string)))
                    .collect(),
            );
        let timeout = Duration::from_millis(FORWARD_TIMEOUT_MS);
        let request = CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(FORWARD_TIMEOUT_MS as i32);
        // The caller is sync (a group load, an auto-creating Metadata); the
        // shared path is async: run it here, off the async worker.
        let sent = crate::forwarding::create_topics(self, &channel, &request, None, timeout);
        let answer = crate::blocking(|| tokio::runtime::Handle::current().block_on(sent))
            .map_err(|e| BrokerError::kafka(e.response_error(), format!("creating topic {name} through the active controller: {e}")))?;
        let result = answer.topics.first();
        let code = result.map_or(ResponseError::UnknownServerError.code(), |t| t.error_code);
        if code != 0 && code != ResponseError::TopicAlreadyExists.code() {
            let message = result.and_then(|t| t.error_message.as_ref()).map_or_else(String::new, |m| m.to_string());
            let error = ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError);
            return Err(BrokerError::kafka(error, format!("the active controller refused to create topic {name}: {message}")));
        }
        match self.image().topic(&name) {
            Some(topic) => Ok(topic.clone()),
            None => Err(BrokerError::kafka(ResponseError::LeaderNotAvailable, format!("topic {name} was created but is not in this node's metadata yet"))),
        }
    }

    /// Prepares the logs of a decided topic change, commits it (removing what
    /// was prepared if that fails) and publishes it with the prepared logs.
    fn prepare_and_commit(&self, controller: &mut Controller, change: &TopicChange) -> Result<()> {
        // In cluster mode the publisher creates the logs of this node's
        // replicas once the change is committed, as for any other node's change.
        let prepared = match self.cluster {
            None => Some(self.prepare_partitions(&change.topic, Placement::New, controller.image())?),
            Some(_) => None,
        };
        let committed = match controller.commit(&change.records, now_ms()) {
            Ok(committed) => committed,
            Err(e) => {
                if let Some(prepared) = prepared {
                    prepared.roll_back();
                }
                return Err(e);
            }
        };
        self.publish_change(&committed, controller.image(), prepared);
        Ok(())
    }

    /// Deletes a topic by name; the publisher removes its data.
    pub fn delete_topic(&self, name: &str) -> Result<Uuid> {
        let mut controller = self.controller.lock();
        let (topic_id, records) = controller.delete_topic(name)?;
        let committed = controller.commit(&records, now_ms())?;
        self.publish_change(&committed, controller.image(), None);
        tracing::info!(topic = name, "deleted topic");
        Ok(topic_id)
    }

    /// Grows a topic to `count` partitions, prepared then committed as
    /// [`Broker::create_topic`].
    pub fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<()> {
        let mut controller = self.controller.lock();
        let change = controller.create_partitions(name, count)?;
        if validate_only {
            return Ok(());
        }
        self.prepare_and_commit(&mut controller, &change)?;
        tracing::info!(topic = name, from = count - change.records.len() as i32, to = count, "changed partition count");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("my-topic.v1_x").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name(".").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("bad/name").is_err());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }
}
