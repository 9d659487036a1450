//! The replica fetcher tasks (Kafka's `ReplicaFetcherManager` /
//! `AbstractFetcherManager`): `num.replica.fetchers` tasks per leader broker,
//! each running a [`ReplicaFetcher`] over a [`RemoteLeader`] connection. The
//! metadata publisher adds a partition when this broker becomes its follower
//! and removes it when it leads, loses the replica or the topic is deleted;
//! a partition whose log dir fails stops on its own (its fetcher drops it).
//!
//! Additions and removals reach a task between its rounds. A round already
//! in flight for a partition that moved on cannot write its answer: the
//! partition takes the leader's batches only as a follower of the epoch they
//! were fetched at.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;

use crate::config::ReplicaFetchConfig;
use crate::partition::Partition;
use crate::replica_fetcher::endpoint::{BrokerDirectory, FetchSettings, RemoteLeader};
use crate::replica_fetcher::{ReplicaFetcher, TopicPartition};

/// A fetcher task: a leader broker and its index among that leader's tasks.
type FetcherId = (i32, usize);

enum Command {
    Add(Arc<Partition>, i32),
    Remove(TopicPartition),
}

struct Fetcher {
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Assignments {
    fetchers: HashMap<FetcherId, Fetcher>,
    /// Which task copies each followed partition.
    partitions: HashMap<TopicPartition, FetcherId>,
}

/// Every replica fetcher task of this broker.
pub struct ReplicaFetcherManager {
    node_id: i32,
    config: ReplicaFetchConfig,
    directory: RwLock<Arc<dyn BrokerDirectory>>,
    assignments: Mutex<Assignments>,
}

/// Kafka's `getFetcherId`: `abs(31 * topic.hashCode() + partition) % num.replica.fetchers`,
/// with Java's `String.hashCode`.
fn fetcher_index(topic: &str, partition: i32, fetchers: usize) -> usize {
    let hash = topic.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let mixed = hash.wrapping_mul(31).wrapping_add(partition);
    // Kafka's Utils.abs maps i32::MIN to 0.
    let abs = if mixed == i32::MIN { 0 } else { mixed.unsigned_abs() };
    abs as usize % fetchers.max(1)
}

impl ReplicaFetcherManager {
    /// No fetchers yet, for broker `node_id`, finding leaders through `directory`.
    pub fn new(node_id: i32, config: ReplicaFetchConfig, directory: Arc<dyn BrokerDirectory>) -> ReplicaFetcherManager {
        ReplicaFetcherManager { node_id, config, directory: RwLock::new(directory), assignments: Mutex::default() }
    }

    /// Finds leaders through `directory` from now on (tests give addresses
    /// directly); running fetchers keep theirs.
    pub fn set_directory(&self, directory: Arc<dyn BrokerDirectory>) {
        *self.directory.write() = directory;
    }

    /// Follows `partition` from `leader_id` at the partition's current leader
    /// epoch: it truncates as needed, then fetches. A partition followed from
    /// another leader (or by another task) moves.
    pub fn add_fetcher(&self, partition: &Arc<Partition>, leader_id: i32) {
        let key = (partition.topic.clone(), partition.index);
        let id = (leader_id, fetcher_index(&partition.topic, partition.index, self.config.num_replica_fetchers));
        let mut assignments = self.assignments.lock();
        if let Some(old) = assignments.partitions.get(&key).copied().filter(|old| *old != id) {
            remove_from(&mut assignments, old, key.clone());
        }
        if !assignments.fetchers.contains_key(&id) {
            let Some(fetcher) = self.start(id) else { return };
            assignments.fetchers.insert(id, fetcher);
        }
        if let Some(fetcher) = assignments.fetchers.get(&id) {
            // A closed channel means the task ended; the next add restarts it.
            let _ = fetcher.commands.send(Command::Add(Arc::clone(partition), partition.leader_epoch()));
        }
        assignments.partitions.insert(key, id);
    }

    /// Stops following `partition`. A task left with nothing to follow ends.
    pub fn remove_fetcher(&self, partition: &Partition) {
        let key = (partition.topic.clone(), partition.index);
        let mut assignments = self.assignments.lock();
        if let Some(id) = assignments.partitions.remove(&key) {
            remove_from(&mut assignments, id, key);
        }
    }

    /// The leader each followed partition is fetched from.
    pub fn followed(&self) -> HashMap<TopicPartition, i32> {
        self.assignments.lock().partitions.iter().map(|(k, (leader, _))| (k.clone(), *leader)).collect()
    }

    /// Stops every task.
    pub fn shutdown(&self) {
        let mut assignments = self.assignments.lock();
        for (_, fetcher) in assignments.fetchers.drain() {
            fetcher.task.abort();
        }
        assignments.partitions.clear();
    }

    fn start(&self, (leader_id, index): FetcherId) -> Option<Fetcher> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(leader = leader_id, "cannot start a replica fetcher outside the async runtime");
            return None;
        };
        let settings = FetchSettings {
            max_wait_ms: self.config.wait_max_ms,
            min_bytes: self.config.min_bytes,
            response_max_bytes: self.config.response_max_bytes,
            socket_timeout_ms: self.config.socket_timeout_ms,
            ..FetchSettings::default()
        };
        let endpoint = RemoteLeader::new(self.node_id, leader_id, Arc::clone(&self.directory.read()), settings);
        let backoff_ms = self.config.backoff_ms;
        let fetcher = ReplicaFetcher::new(self.node_id, leader_id, self.config.max_bytes).with_backoff(backoff_ms as i64);
        let (commands, received) = mpsc::unbounded_channel();
        tracing::info!(leader = leader_id, fetcher = index, "starting a replica fetcher");
        let task = runtime.spawn(run(fetcher, endpoint, received, backoff_ms));
        Some(Fetcher { commands, task })
    }
}

impl Drop for ReplicaFetcherManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Takes `key` off task `id`, ending the task if it follows nothing more.
fn remove_from(assignments: &mut Assignments, id: FetcherId, key: TopicPartition) {
    if let Some(fetcher) = assignments.fetchers.get(&id) {
        let _ = fetcher.commands.send(Command::Remove(key));
    }
    if !assignments.partitions.values().any(|other| *other == id) {
        // Dropping the sender ends the task once it has drained its commands.
        if let Some(fetcher) = assignments.fetchers.remove(&id) {
            drop(fetcher.commands);
        }
    }
}

fn apply(fetcher: &mut ReplicaFetcher, command: Command) {
    match command {
        Command::Add(partition, epoch) => fetcher.add_partition(partition, epoch),
        Command::Remove((topic, index)) => fetcher.remove_partition(&topic, index),
    }
}

/// One fetcher task: rounds while a partition is ready, waiting for
/// commands or the next partition's backoff otherwise; after a failed
/// request (the connection) it backs off `replica.fetch.backoff.ms`.
async fn run(mut fetcher: ReplicaFetcher, endpoint: RemoteLeader, mut commands: mpsc::UnboundedReceiver<Command>, backoff_ms: u64) {
    let leader = fetcher.leader_id();
    loop {
        loop {
            match commands.try_recv() {
                Ok(command) => apply(&mut fetcher, command),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    tracing::info!(leader, "replica fetcher stopped");
                    return;
                }
            }
        }
        let now = crate::now_ms();
        match fetcher.next_work_at() {
            Some(at) if at <= now => {}
            next => {
                let wait = next.map_or(Duration::from_secs(3600), |at| Duration::from_millis((at - now) as u64));
                tokio::select! {
                    command = commands.recv() => match command {
                        Some(command) => apply(&mut fetcher, command),
                        None => {
                            tracing::info!(leader, "replica fetcher stopped");
                            return;
                        }
                    },
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
        }
        if let Err(e) = fetcher.do_work(&endpoint, now).await {
            tracing::warn!(leader, error = %e, backoff_ms, "replica fetch failed; retrying after replica.fetch.backoff.ms");
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        }
    }
}

/// The leaders' inter-broker listeners from the metadata image's broker
/// registrations (`inter.broker.listener.name`).
pub(crate) struct ImageDirectory {
    pub(crate) broker: std::sync::Weak<crate::Broker>,
    pub(crate) listener: String,
}

impl BrokerDirectory for ImageDirectory {
    fn endpoint(&self, broker_id: i32) -> Option<(String, u16)> {
        let broker = self.broker.upgrade()?;
        let image = broker.image();
        let listener = image.broker(broker_id)?.listener(&self.listener)?;
        Some((listener.host.clone(), listener.port))
    }

    fn broker_epoch(&self, broker_id: i32) -> i64 {
        let Some(broker) = self.broker.upgrade() else { return -1 };
        let image = broker.image();
        image.broker(broker_id).map_or(-1, |b| b.epoch)
    }
}

#[cfg(test)]
mod tests {
    //! Brokers in this process replicating over real TCP on 127.0.0.1: each
    //! is told the partition's leadership as its controller's records would
    //! tell it (the metadata publisher makes it leader or follower and adds
    //! or removes the fetcher).
    use std::time::Duration;

    use bytes::Bytes;
    use kafka_protocol::error::ResponseError;
    use metadata::{MetadataRecord, PartitionRecord, TopicRecord};
    use records::Compression;
    use uuid::Uuid;

    use super::*;
    use crate::replica_fetcher::local::values;
    use crate::replica_fetcher::{FetchQuery, FetchState, LeaderEndpoint};
    use crate::replica_manager::IsrChangeListener;
    use crate::{Broker, Listeners, ServerConfig};

    /// Addresses given by the test.
    #[derive(Default)]
    struct Addresses(Mutex<HashMap<i32, (String, u16)>>);

    impl BrokerDirectory for Addresses {
        fn endpoint(&self, broker_id: i32) -> Option<(String, u16)> {
            self.0.lock().get(&broker_id).cloned()
        }
    }

    struct Node {
        id: i32,
        broker: Arc<Broker>,
        _stop: tokio::sync::oneshot::Sender<()>,
        _dir: tempfile::TempDir,
    }

    /// Broker `id` serving on 127.0.0.1 (a port the OS chose), finding the
    /// others through `addresses`.
    async fn start(id: i32, addresses: &Arc<Addresses>) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let entry = |k: &str, v: &str| (k.to_string(), v.to_string(), "test".to_string());
        let config = ServerConfig::from_entries(vec![
            entry("node.id", &id.to_string()),
            entry("log.dirs", &dir.path().display().to_string()),
            entry("listeners", "PLAINTEXT://127.0.0.1:0"),
            entry("replica.fetch.wait.max.ms", "50"),
            entry("replica.fetch.backoff.ms", "50"),
        ])
        .expect("config");
        let listeners = Listeners::bind(&config).await.expect("bind");
        let port = listeners.0[0].1.local_addr().expect("address").port();
        addresses.0.lock().insert(id, ("127.0.0.1".to_string(), port));
        let broker = Broker::open(config).expect("open");
        broker.replica_fetchers.set_directory(Arc::clone(addresses) as Arc<dyn BrokerDirectory>);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = Arc::clone(&broker);
        tokio::spawn(async move {
            let _ = serving.serve(listeners, async move {
                let _ = stopped.await;
            })
            .await;
        });
        Node { id, broker, _stop: stop, _dir: dir }
    }

    const TOPIC: &str = "t";

    /// Tells `nodes` that `leader` leads t-0 at `epoch` (records committed by
    /// each node's own controller and published, as the quorum will).
    fn elect(nodes: &[&Node], topic_id: Uuid, leader: i32, epoch: i32, replicas: &[i32], isr: &[i32]) {
        for node in nodes {
            let mut records = Vec::new();
            if node.broker.image().topic(TOPIC).is_none() {
                records.push(MetadataRecord::Topic(TopicRecord { name: TOPIC.into(), topic_id }));
            }
            records.push(MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition: 0,
                replicas: replicas.to_vec(),
                isr: isr.to_vec(),
                leader,
                leader_epoch: epoch,
                ..Default::default()
            }));
            let mut controller = node.broker.controller.lock();
            let committed = controller.commit(&records, crate::now_ms()).expect("commit");
            node.broker.publish_change(&committed, controller.image(), None);
        }
    }

    fn partition(node: &Node) -> Arc<Partition> {
        node.broker.replicas.partition(TOPIC, 0).expect("hosted")
    }

    fn records(values: &[&str]) -> Bytes {
        let entries = values.iter().map(|v| (None, Some(Bytes::copy_from_slice(v.as_bytes())), 1_000));
        crate::record_batch::encode(entries, Compression::None).expect("encode").freeze()
    }

    /// Produces to t-0 on `node` with `acks`.
    async fn produce(node: &Node, acks: i16, values: &[&str]) -> crate::error::Result<i64> {
        let topics = vec![(TOPIC.to_string(), vec![(0, Ok(records(values)))])];
        let results = node.broker.replicas.append_records(acks, Duration::from_secs(60), topics, crate::now_ms(), 1 << 20).await;
        results.into_iter().next().expect("topic").1.into_iter().next().expect("partition").1.map(|info| info.base_offset)
    }

    /// Waits until `condition` holds (a test that never gets there fails after a minute).
    async fn until(what: &str, condition: impl Fn() -> bool) {
        for _ in 0..12_000 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("never: {what}");
    }

    /// Every batch in `p`'s log from `from`, whatever the high watermark.
    fn log(p: &Partition, from: i64) -> Bytes {
        p.reading(|l| Ok(l.read(from, 1 << 24)?)).expect("read")
    }

    /// Until `follower` has all of `leader`'s log and both agree on the offsets.
    async fn converged(leader: &Partition, follower: &Partition) {
        until("the follower caught up", || leader.offsets() == follower.offsets() && leader.high_watermark() == leader.log_end_offset()).await;
        assert_eq!(log(follower, follower.log_start_offset()), log(leader, leader.log_start_offset()), "byte for byte");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_copies_the_leader_byte_for_byte_and_acks_all_waits_for_it() {
        let addresses = Arc::new(Addresses::default());
        let (one, two) = (start(1, &addresses).await, start(2, &addresses).await);
        let id = Uuid::new_v4();
        // Only the leader knows yet: the follower in its ISR does not fetch.
        elect(&[&one], id, 1, 1, &[1, 2], &[1, 2]);
        let leader = partition(&one);
        produce(&one, 1, &["a", "b"]).await.expect("acks=1");
        let waiting = {
            let node = Arc::clone(&one.broker);
            tokio::spawn(async move {
                let topics = vec![(TOPIC.to_string(), vec![(0, Ok(records(&["c"])))])];
                node.replicas.append_records(-1, Duration::from_secs(60), topics, crate::now_ms(), 1 << 20).await
            })
        };
        until("the acks=all records are appended", || leader.log_end_offset() == 3).await;
        assert_eq!(leader.high_watermark(), 0);
        assert!(!waiting.is_finished(), "acks=all waits for the follower");
        elect(&[&two], id, 1, 1, &[1, 2], &[1, 2]);
        assert_eq!(two.broker.replica_fetchers.followed(), HashMap::from([((TOPIC.to_string(), 0), 1)]));
        let acked = waiting.await.expect("join");
        assert_eq!(acked[0].1[0].1.as_ref().map(|i| i.base_offset).ok(), Some(2), "acknowledged once the follower had it");
        let follower = partition(&two);
        converged(&leader, &follower).await;
        assert_eq!(values(&log(&follower, 0)), ["a", "b", "c"]);
        assert_eq!(follower.end_offset_for_epoch(1).expect("epochs"), (1, 3));

        // A broker that is no replica is refused.
        let stranger = RemoteLeader::new(3, 1, Arc::clone(&addresses) as Arc<dyn BrokerDirectory>, FetchSettings::default());
        let query = |epoch| FetchQuery {
            partition: (TOPIC.into(), 0),
            topic_id: id,
            fetch_offset: 0,
            current_leader_epoch: epoch,
            last_fetched_epoch: -1,
            log_start_offset: 0,
        };
        for (epoch, error) in [(1, ResponseError::UnknownLeaderEpoch), (-1, ResponseError::NotLeaderOrFollower)] {
            let answers = stranger.fetch(&[query(epoch)], 1 << 20).await.expect("fetch");
            assert_eq!(answers[0].error, Some(error), "current leader epoch {epoch}");
        }

        // Becoming leader stops the fetcher.
        elect(&[&one, &two], id, 2, 2, &[1, 2], &[1, 2]);
        assert_eq!(two.broker.replica_fetchers.followed(), HashMap::new());
        assert_eq!(one.broker.replica_fetchers.followed(), HashMap::from([((TOPIC.to_string(), 0), 2)]));
        produce(&two, -1, &["d"]).await.expect("acks=all at the new leader");
        converged(&follower, &leader).await;
        assert_eq!(values(&log(&leader, 0)), ["a", "b", "c", "d"]);
    }

    /// Epoch 1 led by 1 with a-b on both; 1 appends lost-1 and lost-2 that 2
    /// never gets, as 2 leads epoch 2 (and appends x, y); then 1 learns of epoch 2.
    async fn diverge(one: &Node, two: &Node, id: Uuid) {
        elect(&[one, two], id, 1, 1, &[1, 2], &[1, 2]);
        produce(one, -1, &["a", "b"]).await.expect("acks=all");
        elect(&[two], id, 2, 2, &[1, 2], &[2]);
        produce(one, 1, &["lost-1"]).await.expect("the old leader still takes acks=1");
        produce(one, 1, &["lost-2"]).await.expect("the old leader still takes acks=1");
        produce(two, 1, &["x", "y"]).await.expect("acks=1");
        assert_eq!((partition(one).log_end_offset(), partition(two).log_end_offset()), (4, 4));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_divergent_tail_is_truncated_by_the_diverging_epoch_of_a_fetch() {
        let addresses = Arc::new(Addresses::default());
        let (one, two) = (start(1, &addresses).await, start(2, &addresses).await);
        let id = Uuid::new_v4();
        diverge(&one, &two, id).await;
        elect(&[&one], id, 2, 2, &[1, 2], &[2]);
        let (old, new) = (partition(&one), partition(&two));
        converged(&new, &old).await;
        assert_eq!(values(&log(&old, 0)), ["a", "b", "x", "y"]);
        assert_eq!(old.end_offset_for_epoch(1).expect("epochs"), (1, 2), "epoch 1 ends where 2 began");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_divergent_tail_is_truncated_through_offset_for_leader_epoch_below_fetch_v12() {
        let addresses = Arc::new(Addresses::default());
        let (one, two) = (start(1, &addresses).await, start(2, &addresses).await);
        let id = Uuid::new_v4();
        diverge(&one, &two, id).await;
        // Node 1 follows epoch 2 by hand, fetching with Fetch v11.
        let (old, new) = (partition(&one), partition(&two));
        let leadership = crate::partition::LeaderAndIsr { leader_epoch: 2, replicas: vec![1, 2], isr: vec![2] };
        old.make_follower(2, &leadership).expect("follower");
        let settings = FetchSettings { max_fetch_version: 11, max_wait_ms: 10, ..FetchSettings::default() };
        let endpoint = RemoteLeader::new(1, 2, Arc::clone(&addresses) as Arc<dyn BrokerDirectory>, settings);
        assert!(!endpoint.truncation_on_fetch());
        let mut fetcher = ReplicaFetcher::new(1, 2, 1 << 20);
        fetcher.add_partition(Arc::clone(&old), 2);
        fetcher.do_work(&endpoint, 0).await.expect("round");
        assert_eq!(fetcher.state(TOPIC, 0), Some((FetchState::Fetching, None)));
        for round in 1..100 {
            if old.offsets() == new.offsets() {
                break;
            }
            fetcher.do_work(&endpoint, round).await.expect("round");
        }
        assert_eq!(old.offsets(), new.offsets());
        assert_eq!(log(&old, 0), log(&new, 0), "byte for byte");
        assert_eq!(values(&log(&old, 0)), ["a", "b", "x", "y"]);
    }

    /// Counts the ISR expansions asked for.
    #[derive(Default)]
    struct Expansions(Mutex<Vec<(String, i32, Option<Vec<i32>>)>>);

    impl IsrChangeListener for Expansions {
        fn isr_change_wanted(&self, partition: &Arc<Partition>) {
            self.0.lock().push((partition.topic.clone(), partition.index, partition.maybe_expand_isr(2)));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_behind_the_leaders_log_start_starts_there_and_asks_to_join_the_isr() {
        let addresses = Arc::new(Addresses::default());
        let (one, two) = (start(1, &addresses).await, start(2, &addresses).await);
        let id = Uuid::new_v4();
        elect(&[&one], id, 1, 1, &[1, 2], &[1]);
        let expansions = Arc::new(Expansions::default());
        one.broker.replicas.set_isr_change_listener(Arc::clone(&expansions) as Arc<dyn IsrChangeListener>);
        for v in ["a", "b", "c"] {
            produce(&one, -1, &[v, v]).await.expect("acks=all with the leader alone in the ISR");
        }
        let leader = partition(&one);
        // DeleteRecords (as retention would) moves the leader's log start past the follower's end.
        assert_eq!(leader.delete_records_before(4).expect("delete"), 4);
        elect(&[&two], id, 1, 1, &[1, 2], &[1]);
        let follower = partition(&two);
        converged(&leader, &follower).await;
        assert_eq!(follower.log_start_offset(), 4);
        assert_eq!(values(&log(&follower, 4)), ["c", "c"]);
        until("the leader asked for the follower in its ISR", || !expansions.0.lock().is_empty()).await;
        assert_eq!(expansions.0.lock()[0], (TOPIC.to_string(), 0, Some(vec![1, 2])));
        assert_eq!(one.id + 1, two.id);
    }
}
