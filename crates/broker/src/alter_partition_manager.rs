//! Sends the ISR changes a leader wants to the controller, as Kafka's
//! `AlterPartitionManager`, and applies the answers.
//!
//! The leader computes the changes ([`Partition::maybe_shrink_isr`] every
//! `replica.lag.time.max.ms / 2`, [`Partition::maybe_expand_isr`] when a
//! follower's fetch catches up) and [`AlterPartitionManager::submit`]s them.
//! A partition has at most one change queued or in flight (a later one waits
//! for the next check, as in Kafka); everything queued goes in one
//! AlterPartition request (topic ids, the leader and partition epochs, the new
//! ISR with each member's broker epoch unknown, -1), one request at a time.
//! While an expansion is in flight the high watermark already waits for the
//! new members ([`Partition::set_pending_isr`]).
//!
//! The answer for a partition is applied to it (new ISR and partition epoch,
//! [`Partition::apply_isr_update`]) if it still leads at that epoch. A
//! FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION, NOT_LEADER_OR_FOLLOWER,
//! UNKNOWN_TOPIC_OR_PARTITION, INELIGIBLE_REPLICA or INVALID_REQUEST drops the
//! change: the metadata publisher brings the committed state, and the next
//! check asks again if still needed. Any other error, a top-level one, or no
//! answer at all, sends the change again after `retry.backoff.ms`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
use kafka_protocol::messages::{AlterPartitionRequest, AlterPartitionResponse, BrokerId};
use parking_lot::Mutex;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::controller_channel::ControllerChannel;
use crate::partition::{Partition, Role};

/// The current broker epoch (None while not registered).
pub type BrokerEpoch = Arc<dyn Fn() -> Option<i64> + Send + Sync>;

/// One partition's wanted ISR.
struct Change {
    partition: Arc<Partition>,
    new_isr: Vec<i32>,
    /// The epochs the ISR was computed at (sent again unchanged on a retry,
    /// so a retry after the state moved on is refused, not applied).
    leader_epoch: i32,
    partition_epoch: i32,
}

#[derive(Default)]
struct Queue {
    /// Changes not sent yet, by (topic id, partition).
    unsent: HashMap<(Uuid, i32), Change>,
    /// Partitions whose change is in the request in flight.
    in_flight: HashMap<(Uuid, i32), ()>,
}

/// Batches ISR changes into AlterPartition requests (see the module doc).
pub struct AlterPartitionManager {
    channel: Arc<ControllerChannel>,
    broker_id: i32,
    broker_epoch: BrokerEpoch,
    /// How long one request is tried for before its changes are queued again.
    request_deadline: Duration,
    retry_backoff: Duration,
    queue: Mutex<Queue>,
    wake: Notify,
}

/// Per-partition errors after which the change is dropped, not sent again.
const DROPPED: &[ResponseError] = &[
    ResponseError::FencedLeaderEpoch,
    ResponseError::InvalidUpdateVersion,
    ResponseError::NotLeaderOrFollower,
    ResponseError::UnknownTopicOrPartition,
    ResponseError::UnknownTopicId,
    ResponseError::IneligibleReplica,
    ResponseError::InvalidRequest,
    ResponseError::NewLeaderElected,
    ResponseError::OperationNotAttempted,
];

fn key(partition: &Partition) -> (Uuid, i32) {
    (partition.topic_id, partition.index)
}

impl AlterPartitionManager {
    /// A manager sending as broker `broker_id` through `channel`.
    pub fn new(
        channel: Arc<ControllerChannel>,
        broker_id: i32,
        broker_epoch: BrokerEpoch,
        request_deadline: Duration,
        retry_backoff: Duration,
    ) -> Arc<AlterPartitionManager> {
        Arc::new(AlterPartitionManager {
            channel,
            broker_id,
            broker_epoch,
            request_deadline,
            retry_backoff,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
        })
    }

    /// Queues `new_isr` for `partition` (which this broker leads); false if
    /// a change of that partition is queued or in flight already.
    pub fn submit(&self, partition: &Arc<Partition>, new_isr: Vec<i32>) -> bool {
        let k = key(partition);
        {
            let mut queue = self.queue.lock();
            if queue.unsent.contains_key(&k) || queue.in_flight.contains_key(&k) {
                return false;
            }
            let Some((leader_epoch, partition_epoch)) = partition.alter_partition_epochs() else { return false };
            partition.set_pending_isr(Some(&new_isr));
            queue.unsent.insert(k, Change { partition: Arc::clone(partition), new_isr, leader_epoch, partition_epoch });
        }
        self.wake.notify_one();
        true
    }

    /// The expansion `partition` wants now, if any: the first assigned
    /// follower outside the ISR that has caught up and is `eligible` (what a
    /// follower's fetch makes worth checking).
    pub fn expansion_wanted(&self, partition: &Arc<Partition>, eligible: &dyn Fn(i32) -> bool) {
        let Role::Leader(leader) = partition.role() else { return };
        for &id in leader.followers.keys().filter(|id| !leader.isr.contains(id) && eligible(**id)) {
            if let Some(isr) = partition.maybe_expand_isr(id) {
                self.submit(partition, isr);
                return;
            }
        }
    }

    /// One periodic check: the shrinks `partitions` (the hosted ones) want
    /// with followers lagging more than `lag_max_ms`.
    pub fn check_shrinks(&self, partitions: &[Arc<Partition>], now_ms: i64, lag_max_ms: i64) {
        for partition in partitions {
            if let Some(isr) = partition.maybe_shrink_isr(now_ms, lag_max_ms) {
                tracing::info!(topic = %partition.topic, partition = partition.index, new_isr = ?isr, "shrinking the ISR: followers out of sync for longer than replica.lag.time.max.ms");
                self.submit(partition, isr);
            }
        }
    }

    /// Sends the queued changes, one request at a time, forever.
    pub async fn run(self: Arc<Self>) {
        loop {
            let batch: Vec<Change> = {
                let mut queue = self.queue.lock();
                let batch: Vec<Change> = queue.unsent.drain().map(|(_, c)| c).collect();
                for c in &batch {
                    queue.in_flight.insert(key(&c.partition), ());
                }
                batch
            };
            if batch.is_empty() {
                self.wake.notified().await;
                continue;
            }
            let retry = self.send(batch).await;
            let again = !retry.is_empty();
            {
                let mut queue = self.queue.lock();
                queue.in_flight.clear();
                for c in retry {
                    queue.unsent.entry(key(&c.partition)).or_insert(c);
                }
            }
            if again {
                tokio::time::sleep(self.retry_backoff).await;
            }
        }
    }

    /// Sends one request with `batch`; the changes to send again.
    async fn send(&self, batch: Vec<Change>) -> Vec<Change> {
        let Some(broker_epoch) = (self.broker_epoch)() else { return batch };
        let mut sent: Vec<Change> = Vec::new();
        for change in batch {
            match change.partition.alter_partition_epochs() {
                Some((leader_epoch, _)) if leader_epoch == change.leader_epoch => sent.push(change),
                // No longer the leader of that epoch: the change is moot.
                _ => change.partition.set_pending_isr(None),
            }
        }
        if sent.is_empty() {
            return Vec::new();
        }
        let request = self.request(broker_epoch, &sent);
        let response = match self.channel.send(&request, self.request_deadline).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, partitions = sent.len(), "AlterPartition not answered: sending it again");
                return sent;
            }
        };
        if response.error_code != 0 {
            tracing::warn!(error = ?ResponseError::try_from_code(response.error_code), "the controller refused AlterPartition: sending it again");
            return sent;
        }
        self.apply(&response, sent)
    }

    fn request(&self, broker_epoch: i64, sent: &[Change]) -> AlterPartitionRequest {
        let mut topics: Vec<TopicData> = Vec::new();
        for change in sent {
            // Each member's broker epoch as its last fetch gave it (KIP-903: a
            // follower that restarted since is refused), this broker's own for
            // itself, -1 where unknown (a fetch before v15).
            let followers = match change.partition.role() {
                Role::Leader(leader) => leader.followers,
                _ => Default::default(),
            };
            let epoch_of = |id: i32| if id == self.broker_id { broker_epoch } else { followers.get(&id).map_or(-1, |f| f.broker_epoch) };
            let data = PartitionData::default()
                .with_partition_index(change.partition.index)
                .with_leader_epoch(change.leader_epoch)
                .with_partition_epoch(change.partition_epoch)
                // v3 (Kafka 3.6+ controllers): the ISR with broker epochs only.
                .with_new_isr_with_epochs(
                    change.new_isr.iter().map(|&id| BrokerState::default().with_broker_id(BrokerId(id)).with_broker_epoch(epoch_of(id))).collect(),
                );
            match topics.iter_mut().find(|t| t.topic_id == change.partition.topic_id) {
                Some(t) => t.partitions.push(data),
                None => topics.push(TopicData::default().with_topic_id(change.partition.topic_id).with_partitions(vec![data])),
            }
        }
        AlterPartitionRequest::default().with_broker_id(BrokerId(self.broker_id)).with_broker_epoch(broker_epoch).with_topics(topics)
    }

    /// Applies the per-partition answers; the changes to send again.
    fn apply(&self, response: &AlterPartitionResponse, sent: Vec<Change>) -> Vec<Change> {
        let mut retry = Vec::new();
        for change in sent {
            let p = &change.partition;
            let answer = response
                .topics
                .iter()
                .filter(|t| t.topic_id == p.topic_id)
                .flat_map(|t| t.partitions.iter())
                .find(|d| d.partition_index == p.index);
            let Some(answer) = answer else {
                tracing::warn!(topic = %p.topic, partition = p.index, "AlterPartition answer left the partition out: sending it again");
                retry.push(change);
                continue;
            };
            if answer.error_code == 0 {
                let isr: Vec<i32> = answer.isr.iter().map(|b| b.0).collect();
                if p.apply_isr_update(answer.leader_epoch, answer.partition_epoch, &isr) {
                    tracing::info!(topic = %p.topic, partition = p.index, isr = ?isr, partition_epoch = answer.partition_epoch, "ISR updated");
                } else {
                    p.set_pending_isr(None);
                }
                continue;
            }
            let error = ResponseError::try_from_code(answer.error_code);
            if error.is_some_and(|e| DROPPED.contains(&e)) {
                tracing::info!(topic = %p.topic, partition = p.index, ?error, "the controller refused the ISR change: waiting for the metadata");
                p.set_pending_isr(None);
            } else {
                tracing::warn!(topic = %p.topic, partition = p.index, ?error, "the ISR change failed: sending it again");
                retry.push(change);
            }
        }
        retry
    }
}

/// Runs the shrink check every `replica.lag.time.max.ms / 2` over the
/// partitions `hosted` gives.
pub async fn run_isr_checks(
    manager: Arc<AlterPartitionManager>,
    hosted: impl Fn() -> Vec<Arc<Partition>> + Send + 'static,
    lag_max_ms: i64,
) {
    let mut tick = tokio::time::interval(Duration::from_millis((lag_max_ms / 2).max(1) as u64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        manager.check_shrinks(&hosted(), crate::now_ms(), lag_max_ms);
    }
}

#[cfg(test)]
mod tests {
    use storage::{Log, LogConfig};

    use super::*;
    use crate::controller_api::testing::{eventually, TestController};
    use crate::partition::LeaderAndIsr;

    fn manager(controller: &TestController) -> Arc<AlterPartitionManager> {
        let channel = controller.channel("alter-partition");
        AlterPartitionManager::new(channel, 0, Arc::new(|| Some(1)), Duration::from_secs(30), Duration::from_millis(10))
    }

    /// Broker 0 leading replicas 0,1,2 (all in sync) at leader epoch 5 and partition epoch 0.
    fn led(dir: &std::path::Path, index: i32) -> Arc<Partition> {
        let log = Log::open(dir, LogConfig::default(), true).expect("open");
        let p = Arc::new(Partition::open("t".into(), Uuid::from_u128(9), index, log, 0));
        let state = LeaderAndIsr { leader_epoch: 5, replicas: vec![0, 1, 2], isr: vec![0, 1, 2] };
        assert!(p.make_leader(&state, 0).expect("leader"));
        p.set_partition_epoch(0);
        p
    }

    fn isr(p: &Partition) -> Vec<i32> {
        match p.role() {
            Role::Leader(l) => l.isr,
            other => panic!("not leader: {other:?}"),
        }
    }

    #[tokio::test]
    async fn lagging_followers_leave_the_isr_through_the_controller_and_a_refused_change_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let controller = TestController::start(true).await;
        // Partition 1's committed epoch is ahead of what its leader knows.
        controller.decisions.lock().partition_epochs.insert((Uuid::from_u128(9), 1), 3);
        let (p0, p1) = (led(&dir.path().join("t-0"), 0), led(&dir.path().join("t-1"), 1));
        let manager = manager(&controller);
        let task = tokio::spawn(Arc::clone(&manager).run());

        // No follower fetched for longer than replica.lag.time.max.ms.
        manager.check_shrinks(&[Arc::clone(&p0), Arc::clone(&p1)], 100_000, 30_000);
        eventually("partition 0's new ISR", || isr(&p0) == vec![0]).await;
        assert_eq!(p0.alter_partition_epochs(), Some((5, 1)));
        eventually("nothing queued or in flight", || {
            let q = manager.queue.lock();
            q.unsent.is_empty() && q.in_flight.is_empty()
        })
        .await;
        // Both went in one request, with the epochs the ISR was computed at.
        {
            let d = controller.decisions.lock();
            assert_eq!(d.alter_partitions.len(), 1);
            let sent = &d.alter_partitions[0];
            assert_eq!((sent.broker_id.0, sent.broker_epoch), (0, 1));
            let mut partitions: Vec<(i32, i32, i32, Vec<i32>)> = sent.topics[0]
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_epoch, p.partition_epoch, p.new_isr_with_epochs.iter().map(|b| b.broker_id.0).collect()))
                .collect();
            partitions.sort();
            assert_eq!(partitions, vec![(0, 5, 0, vec![0]), (1, 5, 0, vec![0])]);
        }
        // INVALID_UPDATE_VERSION: dropped, the ISR stays until the metadata says otherwise.
        assert_eq!(isr(&p1), vec![0, 1, 2]);
        assert_eq!(p1.alter_partition_epochs(), Some((5, 0)));

        // One change per partition at a time.
        assert!(manager.submit(&p1, vec![0, 1]));
        assert!(!manager.submit(&p1, vec![0]));
        task.abort();
    }

    #[tokio::test]
    async fn a_follower_that_caught_up_joins_the_isr_and_the_high_watermark_waits_for_it_meanwhile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let controller = TestController::start(true).await;
        let log = Log::open(&dir.path().join("t-0"), LogConfig::default(), true).expect("open");
        let p = Arc::new(Partition::open("t".into(), Uuid::from_u128(9), 0, log, 0));
        let state = LeaderAndIsr { leader_epoch: 5, replicas: vec![0, 1], isr: vec![0] };
        assert!(p.make_leader(&state, 0).expect("leader"));
        p.set_partition_epoch(0);
        let manager = manager(&controller);
        // Follower 1 has everything (the log is empty): it may join.
        p.fetch_records(0, 1 << 20, -1, Some(1), 0).expect("fetch");
        manager.expansion_wanted(&p, &|_| true);
        match p.role() {
            Role::Leader(l) => assert_eq!(l.pending_expansion, vec![1]),
            other => panic!("not leader: {other:?}"),
        }
        // The queued expansion counts for the high watermark before it is
        // committed: a record the follower lacks is not below it.
        let mut batch = crate::record_batch::encode([(None, Some(bytes::Bytes::from_static(b"v")), 0)], records::Compression::None)
            .expect("encode");
        p.append(&mut batch, 0).expect("append");
        assert_eq!(p.subscribe().borrow().high_watermark, 0);

        let task = tokio::spawn(Arc::clone(&manager).run());
        eventually("the expanded ISR", || isr(&p) == vec![0, 1]).await;
        match p.role() {
            Role::Leader(l) => assert_eq!((l.partition_epoch, l.pending_expansion.len()), (1, 0)),
            other => panic!("not leader: {other:?}"),
        }
        p.fetch_records(1, 1 << 20, -1, Some(1), 0).expect("fetch");
        assert_eq!(p.subscribe().borrow().high_watermark, 1);
        task.abort();
    }
}
