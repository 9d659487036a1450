use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::delta::{ImageDelta, PartitionChange};
use crate::record::{ConfigRecord, MetadataRecord, PartitionRecord, TopicRecord, RESOURCE_BROKER, RESOURCE_TOPIC};

/// The cluster as the metadata log describes it after applying every record.
///
/// Topics (and with them their configs) are keyed by topic id; the name is an
/// index over them, resolved when a record names a topic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Image {
    topics: BTreeMap<Uuid, TopicImage>,
    ids_by_name: BTreeMap<String, Uuid>,
    /// Ids of deleted topics: data left on disk under one of them is garbage.
    removed_ids: BTreeSet<Uuid>,
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
    /// The image `records` build from an empty one.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a MetadataRecord>) -> Image {
        let mut image = Image::default();
        image.apply_all(records);
        image
    }

    /// Applies `records` in order and returns what they changed.
    pub fn apply_all<'a>(&mut self, records: impl IntoIterator<Item = &'a MetadataRecord>) -> ImageDelta {
        let mut delta = ImageDelta::default();
        for record in records {
            self.apply(record, &mut delta);
        }
        delta
    }

    /// Applies one record and records what it changed in `delta` (which
    /// accumulates the changes of a run of records). Records that refer to
    /// unknown topics are ignored, as a replay of a log whose topic was
    /// deleted later must still succeed.
    pub fn apply(&mut self, record: &MetadataRecord, delta: &mut ImageDelta) {
        match record {
            MetadataRecord::Topic(TopicRecord { name, topic_id }) => {
                // A name taken by another id (never written by the controller)
                // means that topic is gone.
                if let Some(&old) = self.ids_by_name.get(name).filter(|old| **old != *topic_id) {
                    self.remove_topic(old, delta);
                }
                self.ids_by_name.insert(name.clone(), *topic_id);
                self.topics.insert(
                    *topic_id,
                    TopicImage { name: name.clone(), id: *topic_id, partitions: BTreeMap::new(), configs: BTreeMap::new() },
                );
                delta.topic_created(*topic_id);
            }
            MetadataRecord::Partition(PartitionRecord { topic_id, partition, replicas, isr, leader, leader_epoch }) => {
                if let Some(topic) = self.topics.get_mut(topic_id) {
                    let new = PartitionImage {
                        replicas: replicas.clone(),
                        isr: isr.clone(),
                        leader: *leader,
                        leader_epoch: *leader_epoch,
                    };
                    let old = topic.partitions.insert(*partition, new.clone());
                    delta.partition_changed(*topic_id, *partition, PartitionChange { old, new });
                }
            }
            MetadataRecord::TopicConfig { topic, name, value } => {
                // The older record names its topic: resolved to the id here.
                if let Some(id) = self.ids_by_name.get(topic).copied() {
                    self.set_topic_config(id, name, value.as_deref(), delta);
                }
            }
            MetadataRecord::Config(ConfigRecord { resource_type, resource_name, name, value }) => match *resource_type {
                RESOURCE_TOPIC => {
                    if let Some(id) = self.ids_by_name.get(resource_name).copied() {
                        self.set_topic_config(id, name, value.as_deref(), delta);
                    }
                }
                RESOURCE_BROKER => {
                    let configs = self.broker_configs.entry(resource_name.clone()).or_default();
                    let changed = match value {
                        Some(value) => configs.insert(name.clone(), value.clone()).as_ref() != Some(value),
                        None => configs.remove(name).is_some(),
                    };
                    if configs.is_empty() {
                        self.broker_configs.remove(resource_name);
                    }
                    if changed {
                        delta.broker_configs.insert(resource_name.clone());
                    }
                }
                // Other resource types (client quotas, groups) are not kept yet.
                _ => {}
            },
            MetadataRecord::ProducerIds { next_producer_id } => {
                if *next_producer_id > self.next_producer_id {
                    self.next_producer_id = *next_producer_id;
                    delta.producer_ids = true;
                }
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                self.remove_topic(*topic_id, delta);
                self.removed_ids.insert(*topic_id);
            }
        }
    }

    fn set_topic_config(&mut self, id: Uuid, name: &str, value: Option<&str>, delta: &mut ImageDelta) {
        let Some(topic) = self.topics.get_mut(&id) else { return };
        let changed = match value {
            Some(value) => topic.configs.insert(name.to_string(), value.to_string()).as_deref() != Some(value),
            None => topic.configs.remove(name).is_some(),
        };
        if changed {
            delta.topic_configs.insert(id);
        }
    }

    fn remove_topic(&mut self, id: Uuid, delta: &mut ImageDelta) {
        if let Some(topic) = self.topics.remove(&id) {
            if self.ids_by_name.get(&topic.name) == Some(&id) {
                self.ids_by_name.remove(&topic.name);
            }
            delta.topic_deleted(id, topic.name);
        }
    }

    /// Everything in the image as a change from the empty image: what a
    /// publisher applies at start, so start-up and live changes take one path.
    pub fn delta_from_empty(&self) -> ImageDelta {
        let mut delta = ImageDelta::default();
        for (&id, topic) in &self.topics {
            delta.topic_created(id);
            for (&index, partition) in &topic.partitions {
                delta.partition_changed(id, index, PartitionChange { old: None, new: partition.clone() });
            }
            if !topic.configs.is_empty() {
                delta.topic_configs.insert(id);
            }
        }
        delta.broker_configs.extend(self.broker_configs.keys().cloned());
        delta.producer_ids = self.next_producer_id > 0;
        delta
    }

    /// Records that rebuild this image from an empty one (the content of a
    /// snapshot): deleted ids, producer ids, broker configs, then each topic
    /// with its partitions and configs.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut records: Vec<MetadataRecord> =
            self.removed_ids.iter().map(|&topic_id| MetadataRecord::RemoveTopic { topic_id }).collect();
        if self.next_producer_id > 0 {
            records.push(MetadataRecord::ProducerIds { next_producer_id: self.next_producer_id });
        }
        let config = |resource_type, resource_name: &str, name: &str, value: &str| {
            MetadataRecord::Config(ConfigRecord {
                resource_type,
                resource_name: resource_name.to_string(),
                name: name.to_string(),
                value: Some(value.to_string()),
            })
        };
        for (resource, configs) in &self.broker_configs {
            records.extend(configs.iter().map(|(k, v)| config(RESOURCE_BROKER, resource, k, v)));
        }
        for topic in self.topics() {
            records.push(MetadataRecord::Topic(TopicRecord { name: topic.name.clone(), topic_id: topic.id }));
            records.extend(topic.partitions.iter().map(|(&partition, p)| {
                MetadataRecord::Partition(PartitionRecord {
                    topic_id: topic.id,
                    partition,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                })
            }));
            records.extend(topic.configs.iter().map(|(k, v)| config(RESOURCE_TOPIC, &topic.name, k, v)));
        }
        records
    }

    /// The topic with this name.
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.ids_by_name.get(name).and_then(|id| self.topics.get(id))
    }

    /// The topic with this id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicImage> {
        self.topics.get(&id)
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
        self.ids_by_name.values().filter_map(|id| self.topics.get(id))
    }

    /// The number of partitions of all topics.
    pub fn partition_count(&self) -> u64 {
        self.topics.values().map(|t| t.partitions.len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> (Uuid, MetadataRecord) {
        let id = Uuid::new_v4();
        (id, MetadataRecord::Topic(TopicRecord { name: name.into(), topic_id: id }))
    }

    fn partition(topic_id: Uuid, partition: i32, leader: i32, leader_epoch: i32) -> MetadataRecord {
        MetadataRecord::Partition(PartitionRecord {
            topic_id,
            partition,
            replicas: vec![1],
            isr: vec![1],
            leader,
            leader_epoch,
        })
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
    fn removing_a_topic_forgets_its_name_and_id() {
        let mut image = Image::default();
        let (id, record) = topic("a");
        image.apply_all([&record, &MetadataRecord::RemoveTopic { topic_id: id }]);
        assert!(image.topic("a").is_none());
        assert!(image.topic_by_id(id).is_none());
        assert!(image.was_removed(id));
    }

    #[test]
    fn partitions_and_configs_attach_to_their_topic() {
        let mut image = Image::default();
        let (id, record) = topic("a");
        image.apply_all([
            &record,
            &partition(id, 0, 1, 0),
            &MetadataRecord::TopicConfig { topic: "a".into(), name: "retention.ms".into(), value: Some("1000".into()) },
        ]);
        let t = image.topic_by_id(id).expect("topic");
        assert_eq!(t.partitions.len(), 1);
        assert_eq!(t.configs.get("retention.ms").map(String::as_str), Some("1000"));
    }

    #[test]
    fn config_records_set_and_remove_topic_and_broker_configs() {
        let mut image = Image::default();
        let (_, record) = topic("a");
        image.apply_all([
            &record,
            &config(RESOURCE_TOPIC, "a", "cleanup.policy", Some("compact")),
            &config(RESOURCE_TOPIC, "missing", "cleanup.policy", Some("compact")),
            &config(RESOURCE_BROKER, "", "log.retention.ms", Some("5")),
            &config(RESOURCE_BROKER, "1", "message.max.bytes", Some("100")),
        ]);
        assert_eq!(image.topic("a").and_then(|t| t.configs.get("cleanup.policy")).map(String::as_str), Some("compact"));
        assert!(image.topic("missing").is_none());
        assert_eq!(image.broker_configs("").and_then(|c| c.get("log.retention.ms")).map(String::as_str), Some("5"));
        assert_eq!(image.broker_configs("1").and_then(|c| c.get("message.max.bytes")).map(String::as_str), Some("100"));
        image.apply_all([
            &config(RESOURCE_TOPIC, "a", "cleanup.policy", None),
            &config(RESOURCE_BROKER, "1", "message.max.bytes", None),
        ]);
        assert!(image.topic("a").is_some_and(|t| t.configs.is_empty()));
        assert!(image.broker_configs("1").is_none());
    }

    #[test]
    fn old_topic_config_records_still_read_and_key_the_config_by_id() {
        let old = r#"{"type":"TopicConfig","topic":"a","name":"retention.ms","value":"7"}"#;
        let record: MetadataRecord = serde_json::from_str(old).expect("parse");
        let mut image = Image::default();
        let (id, created) = topic("a");
        image.apply_all([&created]);
        let delta = image.apply_all([&record]);
        assert_eq!(image.topic("a").and_then(|t| t.configs.get("retention.ms")).map(String::as_str), Some("7"));
        assert_eq!(delta.topic_configs, BTreeSet::from([id]));
    }

    #[test]
    fn a_config_of_a_deleted_name_does_not_reach_the_topic_recreated_under_it() {
        let mut image = Image::default();
        let (old, first) = topic("a");
        let (new, second) = topic("a");
        image.apply_all([
            &first,
            &config(RESOURCE_TOPIC, "a", "retention.ms", Some("1")),
            &MetadataRecord::RemoveTopic { topic_id: old },
            &second,
        ]);
        assert!(image.topic_by_id(new).is_some_and(|t| t.configs.is_empty()));
        image.apply_all([&config(RESOURCE_TOPIC, "a", "retention.ms", Some("2"))]);
        assert_eq!(image.topic_by_id(new).and_then(|t| t.configs.get("retention.ms")).map(String::as_str), Some("2"));
    }

    #[test]
    fn the_delta_names_created_deleted_and_changed_things() {
        let mut image = Image::default();
        let (kept, kept_record) = topic("kept");
        let (gone, gone_record) = topic("gone");
        image.apply_all([&kept_record, &partition(kept, 0, 1, 0), &gone_record, &partition(gone, 0, 1, 0)]);

        let (new, new_record) = topic("new");
        let (brief, brief_record) = topic("brief");
        let delta = image.apply_all([
            &new_record,
            &partition(new, 0, 1, 0),
            &partition(kept, 0, 1, 1),
            &partition(kept, 0, 1, 2),
            &partition(kept, 1, 1, 0),
            &MetadataRecord::RemoveTopic { topic_id: gone },
            &brief_record,
            &partition(brief, 0, 1, 0),
            &MetadataRecord::RemoveTopic { topic_id: brief },
            &config(RESOURCE_TOPIC, "kept", "retention.ms", Some("9")),
            &config(RESOURCE_BROKER, "", "log.retention.ms", Some("9")),
            &config(RESOURCE_BROKER, "1", "log.retention.ms", None),
            &MetadataRecord::ProducerIds { next_producer_id: 1000 },
        ]);
        assert_eq!(delta.created_topics, BTreeSet::from([new]));
        // A topic created and deleted within the delta never existed for its reader.
        assert_eq!(delta.deleted_topics, BTreeMap::from([(gone, "gone".to_string())]));
        let changes: Vec<_> = delta.partitions.keys().copied().collect();
        assert_eq!(changes, {
            let mut expected = vec![(new, 0), (kept, 0), (kept, 1)];
            expected.sort();
            expected
        });
        // Two changes of one partition: the old side is before the first, the new after the last.
        let kept0 = &delta.partitions[&(kept, 0)];
        assert_eq!(kept0.old.as_ref().map(|p| p.leader_epoch), Some(0));
        assert_eq!(kept0.new.leader_epoch, 2);
        assert!(kept0.leader_changed());
        assert!(delta.partitions[&(kept, 1)].old.is_none());
        assert_eq!(delta.topic_configs, BTreeSet::from([kept]));
        // Removing a config that was never set changes nothing.
        assert_eq!(delta.broker_configs, BTreeSet::from([String::new()]));
        assert!(delta.producer_ids);

        // Setting a value it already has is no change.
        let again = image.apply_all([&config(RESOURCE_TOPIC, "kept", "retention.ms", Some("9")), &partition(kept, 1, 1, 0)]);
        assert!(again.topic_configs.is_empty());
        assert!(!again.partitions[&(kept, 1)].leader_changed());
    }

    #[test]
    fn the_delta_from_empty_and_the_records_rebuild_the_image() {
        let mut image = Image::default();
        let (a, a_record) = topic("a");
        let (b, b_record) = topic("b");
        image.apply_all([
            &a_record,
            &partition(a, 0, 1, 3),
            &partition(a, 1, 1, 0),
            &config(RESOURCE_TOPIC, "a", "cleanup.policy", Some("compact")),
            &b_record,
            &MetadataRecord::RemoveTopic { topic_id: b },
            &config(RESOURCE_BROKER, "", "log.retention.ms", Some("5")),
            &MetadataRecord::ProducerIds { next_producer_id: 2000 },
        ]);
        let rebuilt = Image::from_records(&image.to_records());
        assert_eq!(rebuilt, image);
        assert!(rebuilt.was_removed(b));

        let delta = image.delta_from_empty();
        assert_eq!(delta.created_topics, BTreeSet::from([a]));
        assert!(delta.deleted_topics.is_empty());
        assert_eq!(delta.partitions.len(), 2);
        assert!(delta.partitions.values().all(|c| c.old.is_none()));
        assert_eq!(delta.topic_configs, BTreeSet::from([a]));
        assert_eq!(delta.broker_configs, BTreeSet::from([String::new()]));
        // Applying the records to an empty image yields the same delta.
        assert_eq!(Image::default().apply_all(&image.to_records()), delta);
    }
}
