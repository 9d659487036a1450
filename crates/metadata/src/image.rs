use std::collections::{BTreeMap, HashMap, HashSet};

use uuid::Uuid;

use crate::record::{ConfigRecord, MetadataRecord, PartitionRecord, RESOURCE_BROKER, RESOURCE_TOPIC};

/// The cluster as the metadata log describes it after applying every record.
#[derive(Debug, Clone, Default)]
pub struct Image {
    topics: BTreeMap<String, TopicImage>,
    names_by_id: HashMap<Uuid, String>,
    /// Ids of deleted topics: data left on disk under one of them is garbage.
    removed_ids: HashSet<Uuid>,
    next_producer_id: i64,
    /// Dynamic broker configs by resource name (a node id; "" is the cluster default).
    broker_configs: BTreeMap<String, BTreeMap<String, String>>,
}

/// One topic in the image.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicImage {
    /// The topic's name.
    pub name: String,
    /// The topic's id.
    pub id: Uuid,
    /// Partitions by index.
    pub partitions: BTreeMap<i32, PartitionImage>,
    /// Topic-level configs set explicitly (defaults are not stored).
    pub configs: BTreeMap<String, String>,
}

/// One partition in the image.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionImage {
    /// Node ids of all replicas.
    pub replicas: Vec<i32>,
    /// Node ids of the in-sync replicas.
    pub isr: Vec<i32>,
    /// The leader's node id, -1 if none.
    pub leader: i32,
    /// The leader epoch.
    pub leader_epoch: i32,
}

impl Image {
    /// Applies one record. Records that refer to unknown topics are ignored, as a
    /// replay of a log whose topic was deleted later must still succeed.
    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::Topic(topic) => {
                self.names_by_id.insert(topic.topic_id, topic.name.clone());
                self.topics.insert(
                    topic.name.clone(),
                    TopicImage {
                        name: topic.name.clone(),
                        id: topic.topic_id,
                        partitions: BTreeMap::new(),
                        configs: BTreeMap::new(),
                    },
                );
            }
            MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
            }) => {
                if let Some(topic) = self.topic_by_id_mut(*topic_id) {
                    topic.partitions.insert(
                        *partition,
                        PartitionImage {
                            replicas: replicas.clone(),
                            isr: isr.clone(),
                            leader: *leader,
                            leader_epoch: *leader_epoch,
                        },
                    );
                }
            }
            MetadataRecord::TopicConfig { topic, name, value } => {
                if let Some(topic) = self.topics.get_mut(topic) {
                    match value {
                        Some(value) => topic.configs.insert(name.clone(), value.clone()),
                        None => topic.configs.remove(name),
                    };
                }
            }
            MetadataRecord::Config(ConfigRecord { resource_type, resource_name, name, value }) => {
                let configs = match *resource_type {
                    RESOURCE_TOPIC => match self.topics.get_mut(resource_name) {
                        Some(topic) => &mut topic.configs,
                        None => return,
                    },
                    RESOURCE_BROKER => self.broker_configs.entry(resource_name.clone()).or_default(),
                    // Other resource types (client quotas, groups) are not kept yet.
                    _ => return,
                };
                match value {
                    Some(value) => configs.insert(name.clone(), value.clone()),
                    None => configs.remove(name),
                };
                if *resource_type == RESOURCE_BROKER && configs.is_empty() {
                    self.broker_configs.remove(resource_name);
                }
            }
            MetadataRecord::ProducerIds { next_producer_id } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(name) = self.names_by_id.remove(topic_id) {
                    self.topics.remove(&name);
                }
                self.removed_ids.insert(*topic_id);
            }
        }
    }

    /// The topic with this name.
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    /// The topic with this id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicImage> {
        self.names_by_id.get(&id).and_then(|name| self.topics.get(name))
    }

    fn topic_by_id_mut(&mut self, id: Uuid) -> Option<&mut TopicImage> {
        let name = self.names_by_id.get(&id)?;
        self.topics.get_mut(name)
    }

    /// True if a topic with this id existed and was deleted.
    pub fn was_removed(&self, id: Uuid) -> bool {
        self.removed_ids.contains(&id)
    }

    /// The first producer id not yet handed out.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// The dynamic configs of a broker resource: a node id, or "" for the
    /// cluster-wide default.
    pub fn broker_configs(&self, resource_name: &str) -> Option<&BTreeMap<String, String>> {
        self.broker_configs.get(resource_name)
    }

    /// All topics, ordered by name.
    pub fn topics(&self) -> impl Iterator<Item = &TopicImage> {
        self.topics.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TopicRecord;

    fn topic(name: &str) -> (Uuid, MetadataRecord) {
        let id = Uuid::new_v4();
        (id, MetadataRecord::Topic(TopicRecord { name: name.into(), topic_id: id }))
    }

    #[test]
    fn removing_a_topic_forgets_its_name_and_id() {
        let mut image = Image::default();
        let (id, record) = topic("a");
        image.apply(&record);
        image.apply(&MetadataRecord::RemoveTopic { topic_id: id });
        assert!(image.topic("a").is_none());
        assert!(image.topic_by_id(id).is_none());
        assert!(image.was_removed(id));
    }

    #[test]
    fn partitions_and_configs_attach_to_their_topic() {
        let mut image = Image::default();
        let (id, record) = topic("a");
        image.apply(&record);
        image.apply(&MetadataRecord::Partition(PartitionRecord {
            topic_id: id,
            partition: 0,
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
        }));
        image.apply(&MetadataRecord::TopicConfig {
            topic: "a".into(),
            name: "retention.ms".into(),
            value: Some("1000".into()),
        });
        let t = image.topic_by_id(id).expect("topic");
        assert_eq!(t.partitions.len(), 1);
        assert_eq!(t.configs.get("retention.ms").map(String::as_str), Some("1000"));
    }

    fn config(resource_type: i8, resource_name: &str, name: &str, value: Option<&str>) -> MetadataRecord {
        MetadataRecord::Config(ConfigRecord {
            resource_type,
            resource_name: resource_name.into(),
            name: name.into(),
            value: value.map(Into::into),
        })
    }

    #[test]
    fn config_records_set_and_remove_topic_and_broker_configs() {
        let mut image = Image::default();
        let (_, record) = topic("a");
        image.apply(&record);
        image.apply(&config(RESOURCE_TOPIC, "a", "cleanup.policy", Some("compact")));
        image.apply(&config(RESOURCE_TOPIC, "missing", "cleanup.policy", Some("compact")));
        image.apply(&config(RESOURCE_BROKER, "", "log.retention.ms", Some("5")));
        image.apply(&config(RESOURCE_BROKER, "1", "message.max.bytes", Some("100")));
        assert_eq!(image.topic("a").and_then(|t| t.configs.get("cleanup.policy")).map(String::as_str), Some("compact"));
        assert!(image.topic("missing").is_none());
        assert_eq!(image.broker_configs("").and_then(|c| c.get("log.retention.ms")).map(String::as_str), Some("5"));
        assert_eq!(image.broker_configs("1").and_then(|c| c.get("message.max.bytes")).map(String::as_str), Some("100"));
        image.apply(&config(RESOURCE_TOPIC, "a", "cleanup.policy", None));
        image.apply(&config(RESOURCE_BROKER, "1", "message.max.bytes", None));
        assert!(image.topic("a").is_some_and(|t| t.configs.is_empty()));
        assert!(image.broker_configs("1").is_none());
    }

    #[test]
    fn old_topic_config_records_still_read() {
        let old = r#"{"type":"TopicConfig","topic":"a","name":"retention.ms","value":"7"}"#;
        let record: MetadataRecord = serde_json::from_str(old).expect("parse");
        let mut image = Image::default();
        image.apply(&topic("a").1);
        image.apply(&record);
        assert_eq!(image.topic("a").and_then(|t| t.configs.get("retention.ms")).map(String::as_str), Some("7"));
    }
}
