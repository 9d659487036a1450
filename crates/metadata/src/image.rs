use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::delta::{ImageDelta, PartitionChange};
use crate::record::{
    BrokerEndpoint, BrokerRegistrationChangeRecord, BrokerRegistrationRecord, ConfigRecord, MetadataRecord,
    PartitionChangeRecord, PartitionRecord, TopicRecord, RESOURCE_BROKER, RESOURCE_TOPIC,
};

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
    /// Registered brokers by node id (none on a single node, which does not register).
    brokers: BTreeMap<i32, BrokerImage>,
    /// The highest broker epoch ever given out.
    last_broker_epoch: i64,
}

/// One registered broker in the image.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerImage {
    /// Its node id.
    pub id: i32,
    /// The epoch of its current registration.
    pub epoch: i64,
    /// The incarnation id of the process that registered.
    pub incarnation_id: Uuid,
    /// Its advertised listeners.
    pub listeners: Vec<BrokerEndpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Fenced: it leads nothing and is in no ISR.
    pub fenced: bool,
    /// Shutting down in a controlled way.
    pub in_controlled_shutdown: bool,
}

impl BrokerImage {
    /// The listener with this name.
    pub fn listener(&self, name: &str) -> Option<&BrokerEndpoint> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// True if it may lead and take new replicas: unfenced and not shutting down.
    pub fn is_usable(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionImage {
    /// Node ids of all replicas.
    pub replicas: Vec<i32>,
    /// Node ids of the in-sync replicas.
    pub isr: Vec<i32>,
    /// The leader's node id, -1 if none.
    pub leader: i32,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// The partition epoch: bumped on every change.
    pub partition_epoch: i32,
    /// The eligible leader replicas (KIP-966).
    pub elr: Vec<i32>,
    /// The last known ELR (KIP-966).
    pub last_known_elr: Vec<i32>,
}

impl PartitionImage {
    /// True if this node holds a replica.
    pub fn has_replica(&self, node_id: i32) -> bool {
        self.replicas.contains(&node_id)
    }
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
            MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
                elr,
                last_known_elr,
            }) => {
                if let Some(topic) = self.topics.get_mut(topic_id) {
                    let new = PartitionImage {
                        replicas: replicas.clone(),
                        isr: isr.clone(),
                        leader: *leader,
                        leader_epoch: *leader_epoch,
                        partition_epoch: *partition_epoch,
                        elr: elr.clone(),
                        last_known_elr: last_known_elr.clone(),
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
            MetadataRecord::PartitionChange(change) => self.change_partition(change, delta),
            MetadataRecord::RegisterBroker(BrokerRegistrationRecord {
                broker_id,
                broker_epoch,
                incarnation_id,
                listeners,
                rack,
                fenced,
                in_controlled_shutdown,
            }) => {
                self.last_broker_epoch = self.last_broker_epoch.max(*broker_epoch);
                self.brokers.insert(
                    *broker_id,
                    BrokerImage {
                        id: *broker_id,
                        epoch: *broker_epoch,
                        incarnation_id: *incarnation_id,
                        listeners: listeners.clone(),
                        rack: rack.clone(),
                        fenced: *fenced,
                        in_controlled_shutdown: *in_controlled_shutdown,
                    },
                );
                delta.brokers.insert(*broker_id);
            }
            MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                broker_id,
                broker_epoch,
                fenced,
                in_controlled_shutdown,
            }) => {
                // A change of an older registration is stale: the broker registered again since.
                if let Some(broker) = self.brokers.get_mut(broker_id).filter(|b| b.epoch == *broker_epoch) {
                    if let Some(fenced) = fenced {
                        broker.fenced = *fenced;
                    }
                    if let Some(shutting_down) = in_controlled_shutdown {
                        broker.in_controlled_shutdown = *shutting_down;
                    }
                    delta.brokers.insert(*broker_id);
                }
            }
            MetadataRecord::UnregisterBroker { broker_id, broker_epoch } => {
                if self.brokers.get(broker_id).is_some_and(|b| b.epoch == *broker_epoch) {
                    self.brokers.remove(broker_id);
                    delta.brokers.insert(*broker_id);
                }
            }
            MetadataRecord::BrokerEpochs { last_broker_epoch } => {
                self.last_broker_epoch = self.last_broker_epoch.max(*last_broker_epoch);
            }
        }
    }

    /// Applies a `PartitionChangeRecord`: a new leader bumps the leader
    /// epoch (as does `bump_leader_epoch`); any change bumps the partition epoch.
    fn change_partition(&mut self, change: &PartitionChangeRecord, delta: &mut ImageDelta) {
        let Some(topic) = self.topics.get_mut(&change.topic_id) else { return };
        let Some(current) = topic.partitions.get_mut(&change.partition) else { return };
        let old = current.clone();
        if let Some(isr) = &change.isr {
            current.isr = isr.clone();
        }
        if let Some(replicas) = &change.replicas {
            current.replicas = replicas.clone();
        }
        if let Some(elr) = &change.elr {
            current.elr = elr.clone();
        }
        if let Some(last_known_elr) = &change.last_known_elr {
            current.last_known_elr = last_known_elr.clone();
        }
        let new_leader = change.leader.filter(|&leader| leader != old.leader);
        if let Some(leader) = new_leader {
            current.leader = leader;
        }
        if new_leader.is_some() || change.bump_leader_epoch {
            current.leader_epoch += 1;
        }
        current.partition_epoch += 1;
        let new = current.clone();
        delta.partition_changed(change.topic_id, change.partition, PartitionChange { old: Some(old), new });
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
        delta.brokers.extend(self.brokers.keys().copied());
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
        if self.last_broker_epoch > 0 {
            records.push(MetadataRecord::BrokerEpochs { last_broker_epoch: self.last_broker_epoch });
        }
        for b in self.brokers.values() {
            records.push(MetadataRecord::RegisterBroker(BrokerRegistrationRecord {
                broker_id: b.id,
                broker_epoch: b.epoch,
                incarnation_id: b.incarnation_id,
                listeners: b.listeners.clone(),
                rack: b.rack.clone(),
                fenced: b.fenced,
                in_controlled_shutdown: b.in_controlled_shutdown,
            }));
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
                    partition_epoch: p.partition_epoch,
                    elr: p.elr.clone(),
                    last_known_elr: p.last_known_elr.clone(),
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

    /// Registered brokers, by node id.
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values()
    }

    /// The registered broker with this node id.
    pub fn broker(&self, id: i32) -> Option<&BrokerImage> {
        self.brokers.get(&id)
    }

    /// The epoch to give the next broker registration: above every epoch given so far.
    pub fn next_broker_epoch(&self) -> i64 {
        self.last_broker_epoch + 1
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
            ..Default::default()
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

    fn register(broker_id: i32, broker_epoch: i64) -> MetadataRecord {
        MetadataRecord::RegisterBroker(BrokerRegistrationRecord {
            broker_id,
            broker_epoch,
            incarnation_id: Uuid::new_v4(),
            listeners: vec![BrokerEndpoint { name: "PLAINTEXT".into(), host: "127.0.0.1".into(), port: 9092, security_protocol: 0 }],
            rack: None,
            fenced: true,
            in_controlled_shutdown: false,
        })
    }

    fn broker_change(broker_id: i32, broker_epoch: i64, fenced: bool) -> MetadataRecord {
        MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
            broker_id,
            broker_epoch,
            fenced: Some(fenced),
            in_controlled_shutdown: None,
        })
    }

    #[test]
    fn broker_changes_of_a_stale_registration_change_nothing() {
        let mut image = Image::default();
        image.apply_all([&register(1, 1), &register(1, 2)]);
        let delta = image.apply_all([&broker_change(1, 1, false), &MetadataRecord::UnregisterBroker { broker_id: 1, broker_epoch: 1 }]);
        assert!(delta.brokers.is_empty());
        assert!(image.broker(1).is_some_and(|b| b.fenced && b.epoch == 2));
        let delta = image.apply_all([&broker_change(1, 2, false)]);
        assert_eq!(delta.brokers, BTreeSet::from([1]));
        assert!(image.broker(1).is_some_and(BrokerImage::is_usable));
        assert_eq!(image.next_broker_epoch(), 3);
    }

    #[test]
    fn broker_epochs_stay_unique_after_a_snapshot_of_an_unregistered_broker() {
        let mut image = Image::default();
        image.apply_all([&register(1, 1), &register(2, 2), &MetadataRecord::UnregisterBroker { broker_id: 2, broker_epoch: 2 }]);
        let rebuilt = Image::from_records(&image.to_records());
        assert_eq!(rebuilt, image);
        assert_eq!(rebuilt.next_broker_epoch(), 3);
        assert!(rebuilt.broker(2).is_none());
    }

    #[test]
    fn a_partition_change_bumps_the_leader_epoch_only_for_a_new_leader_and_always_the_partition_epoch() {
        let mut image = Image::default();
        let (id, record) = topic("a");
        image.apply_all([&record, &partition(id, 0, 1, 0)]);
        let shrink = MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: id,
            partition: 0,
            isr: Some(vec![1]),
            ..Default::default()
        });
        let delta = image.apply_all([&shrink]);
        let p = &image.topic_by_id(id).expect("topic").partitions[&0];
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 0, 1));
        assert!(!delta.partitions[&(id, 0)].leader_changed());
        let elect = MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: id,
            partition: 0,
            leader: Some(2),
            isr: Some(vec![2]),
            elr: Some(vec![1]),
            ..Default::default()
        });
        let delta = image.apply_all([&elect]);
        let p = &image.topic_by_id(id).expect("topic").partitions[&0];
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 1, 2));
        assert_eq!(p.elr, vec![1]);
        assert!(delta.partitions[&(id, 0)].leader_changed());
        // A partition record restates everything, epochs included, so a snapshot keeps them.
        assert_eq!(Image::from_records(&image.to_records()), image);
        // A change of an unknown partition is ignored.
        let unknown = MetadataRecord::PartitionChange(PartitionChangeRecord { topic_id: id, partition: 9, ..Default::default() });
        assert!(image.apply_all([&unknown]).is_empty());
    }
}
