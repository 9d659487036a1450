//! The partitions this broker hosts, found by topic name or id.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use uuid::Uuid;

use crate::partition::Partition;

/// A hosted topic's partitions, indexed by partition number.
pub struct HostedTopic {
    /// The topic's id.
    pub id: Uuid,
    /// Partitions in index order.
    pub partitions: Vec<Arc<Partition>>,
}

/// Every partition this broker hosts.
#[derive(Default)]
pub struct ReplicaManager {
    topics: RwLock<HashMap<String, Arc<HostedTopic>>>,
    names: RwLock<HashMap<Uuid, String>>,
}

impl ReplicaManager {
    /// A partition by topic name.
    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let topics = self.topics.read();
        let hosted = topics.get(topic)?;
        usize::try_from(index).ok().and_then(|i| hosted.partitions.get(i)).cloned()
    }

    /// A hosted topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<HostedTopic>> {
        self.topics.read().get(name).cloned()
    }

    /// A topic's name by id.
    pub fn topic_name(&self, id: Uuid) -> Option<String> {
        self.names.read().get(&id).cloned()
    }

    /// Adds or replaces a topic's partitions.
    pub fn put_topic(&self, name: String, hosted: HostedTopic) {
        self.names.write().insert(hosted.id, name.clone());
        self.topics.write().insert(name, Arc::new(hosted));
    }

    /// Removes a topic, returning its partitions.
    pub fn remove_topic(&self, name: &str) -> Option<Arc<HostedTopic>> {
        let removed = self.topics.write().remove(name)?;
        self.names.write().remove(&removed.id);
        Some(removed)
    }

    /// The names of every hosted topic.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics.read().keys().cloned().collect()
    }

    /// Every hosted partition.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.topics.read().values().flat_map(|t| t.partitions.iter().cloned()).collect()
    }
}
