//! Wires the group coordinator to the broker's topics: the hosted topics, as
//! the coordinator's [`TopicCatalog`]. Kept out of both `group/` and
//! `replica_manager.rs`, so that neither knows the other.

use uuid::Uuid;

use crate::group::TopicCatalog;
use crate::replica_manager::ReplicaManager;
use crate::topics::is_internal;

impl TopicCatalog for ReplicaManager {
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
        self.topic(name).map(|t| (t.id, t.partition_count))
    }

    fn by_id(&self, id: Uuid) -> Option<(String, i32)> {
        let name = self.topic_name(id)?;
        self.by_name(&name).map(|(_, count)| (name, count))
    }

    fn names(&self) -> Vec<String> {
        self.topic_names().into_iter().filter(|n| !is_internal(n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica_manager::HostedTopic;

    #[test]
    fn regex_subscriptions_see_every_hosted_topic_but_the_internal_ones() {
        let replicas = ReplicaManager::new(0);
        let id = Uuid::from_bytes([1; 16]);
        replicas.put_topic("orders".into(), HostedTopic::new(id, 0, []));
        replicas.put_topic("__consumer_offsets".into(), HostedTopic::new(Uuid::from_bytes([2; 16]), 0, []));
        assert_eq!(replicas.names(), ["orders"]);
        assert_eq!(replicas.by_name("orders"), Some((id, 0)));
        assert_eq!(replicas.by_id(id), Some(("orders".into(), 0)));
        assert_eq!(TopicCatalog::by_name(&replicas, "missing"), None);
    }
}
