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
