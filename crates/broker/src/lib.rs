//! The Kafka-protocol broker: the network server, the request handlers and the
//! services they call (hosted partitions, topic lifecycle, fetch sessions).
//!
//! [`Broker::open`] recovers the log dirs and the metadata log; [`Broker::serve`]
//! runs the listeners until shutdown; [`Broker::shutdown`] flushes and marks the
//! log dirs clean.

pub mod alter_partition_manager;
pub mod broker_lifecycle;
mod cluster_node;
mod cluster_rpc;
mod cluster_view;
pub mod config;
pub mod controller;
mod controller_api;
pub mod controller_channel;
pub mod dynamic_config;
pub mod error;
mod fetch_session;
mod forwarding;
pub mod group;
mod group_catalog;
mod handlers;
mod log_cleaner;
mod log_dir_health;
mod log_dirs;
mod metadata_publisher;
mod metadata_recovery;
mod net;
pub mod partition;
pub mod producer_id_manager;
pub mod recompress;
mod record_batch;
pub mod replica_fetcher;
pub mod replica_fetcher_manager;
pub mod replica_manager;
mod start_offsets;
pub mod topic_config;
pub mod topics;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use metadata::{MetadataLog, MetadataLogConfig};
use parking_lot::{Mutex, RwLock};
use thiserror::Error;

pub use config::{ConfigError, ServerConfig};
pub use log_dirs::{new_cluster_id, write_meta_properties, LogDirError, META_PROPERTIES_FILE};

use fetch_session::FetchSessions;
use group::{GroupCoordinator, OFFSETS_TOPIC};
use log_dirs::LogDirs;
use replica_manager::ReplicaManager;
use start_offsets::OffsetCheckpoints;

/// Why the broker could not start or stopped with an error; each names what and where.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    /// A log directory problem.
    #[error(transparent)]
    LogDir(#[from] LogDirError),
    /// The metadata log could not be recovered.
    #[error(transparent)]
    Metadata(#[from] metadata::MetadataError),
    /// The metadata log is missing or shorter than its committed end while
    /// partition data exists (the message names the files and the way out).
    #[error("{0}")]
    MetadataLost(String),
    /// A topic's partitions could not be opened.
    #[error("cannot open the partitions of topic {topic}: {source}")]
    Topic {
        /// Topic name.
        topic: String,
        /// The cause (names the file).
        source: error::BrokerError,
    },
    /// A log dir's offset checkpoint (`log-start-offset-checkpoint`,
    /// `replication-offset-checkpoint`, `recovery-point-offset-checkpoint`)
    /// could not be written.
    #[error("cannot write an offset checkpoint: {0}")]
    Checkpoint(#[source] error::BrokerError),
    /// The `replication-offset-checkpoint` of the log dir holding the
    /// metadata log cannot be read (another dir's goes offline instead).
    #[error("cannot read the high watermarks of the log dir holding the metadata log: {0} (repair or remove the file: a partition without an entry starts its high watermark at its log start)")]
    HighWatermarks(#[source] storage::StorageError),
    /// Cluster mode could not start (the metadata quorum, the cluster id).
    #[error("{0}")]
    Cluster(String),
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The configured client listeners, bound, with their names. Bind them before
/// [`Broker::open`], so that a port in use stops start-up before anything is
/// written to disk.
pub struct Listeners(Vec<(Arc<str>, tokio::net::TcpListener)>);

impl Listeners {
    /// Binds every client listener of `config`.
    pub async fn bind(config: &ServerConfig) -> Result<Listeners, StartError> {
        let mut bound = Vec::new();
        for listener in &config.listeners {
            let host = if listener.host.is_empty() { "0.0.0.0" } else { listener.host.as_str() };
            let address = format!("{host}:{}", listener.port);
            let socket = tokio::net::TcpListener::bind(&address)
                .await
                .map_err(|source| StartError::Bind { address: address.clone(), source })?;
            tracing::info!(listener = %listener.name, %address, "listening");
            bound.push((Arc::from(listener.name.as_str()), socket));
        }
        Ok(Listeners(bound))
    }
}

/// A running broker's state, shared by every connection.
pub struct Broker {
    /// The configuration it was started with.
    pub config: ServerConfig,
    /// `config` with the dynamic broker configs applied ([`Broker::effective_config`]).
    effective: RwLock<Arc<ServerConfig>>,
    /// The cluster id (from meta.properties).
    pub cluster_id: String,
    log_dirs: LogDirs,
    /// The per-log-dir offset checkpoints (log start offsets, high
    /// watermarks, recovery points).
    checkpoints: OffsetCheckpoints,
    /// Decides metadata changes and appends them; held while a change is
    /// decided, committed and published, so changes publish in commit order.
    controller: Mutex<controller::Controller>,
    /// Applies committed metadata changes to this broker; holds the image readers see.
    publisher: metadata_publisher::MetadataPublisher,
    /// The partitions this broker hosts.
    pub replicas: ReplicaManager,
    /// The tasks copying the partitions this broker follows from their leaders.
    pub replica_fetchers: replica_fetcher_manager::ReplicaFetcherManager,
    fetch_sessions: Mutex<FetchSessions>,
    /// Producer ids reserved in the metadata log and not yet handed out.
    producer_ids: Mutex<std::ops::Range<i64>>,
    /// Consumer groups and their committed offsets.
    pub groups: GroupCoordinator,
    /// Held while `__consumer_offsets` is being created.
    offsets_topic_creation: Mutex<()>,
    /// Cluster mode: the metadata quorum this node is a voter of (None: a
    /// cluster of one with a local metadata log).
    cluster: Option<Arc<cluster_node::ClusterNode>>,
    /// Cluster mode: registration, heartbeats, ISR changes and producer id
    /// blocks through the active controller (set once open).
    rpc: std::sync::OnceLock<Arc<cluster_rpc::ClusterRpc>>,
}

/// Producer ids reserved per metadata record.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Runs disk work that can take long (fsync, creating or deleting segments and
/// logs) so that it does not stall the other tasks of this async worker: on a
/// multi-threaded runtime the worker hands its tasks to another thread first.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Broker {
    /// Locks and checks the log dirs, replays the metadata log, checks it
    /// against the data on disk, opens every hosted partition and sets aside
    /// partition directories the metadata does not know. No partition file
    /// is written before the checks pass (a refused start leaves them as they
    /// were, clean-shutdown markers included; only a torn tail of the metadata
    /// log itself may have been cut).
    pub fn open(mut config: ServerConfig) -> Result<Arc<Broker>, StartError> {
        if config.kraft.is_observer() && config.kraft.voters.is_empty() {
            cluster_node::discover_voters(&mut config)?;
        }
        let cluster = config.kraft.is_cluster().then(|| cluster_node::Prepared::new(&config)).transpose()?;
        let mut log_dirs = LogDirs::open(&config.log_dirs, config.node_id)?;
        if cluster.is_some() {
            log_dirs.health().stop_broker_on_any_failure();
        }
        // Before anything is written: an unreadable high watermark file takes
        // its dir offline (or refuses to start; in a cluster it stops the broker,
        // as any failed dir does) before any log there is opened.
        let checkpoints = OffsetCheckpoints::load(log_dirs.health()).map_err(StartError::HighWatermarks)?;
        if !log_dirs.clean_shutdown {
            tracing::info!("log dirs were not shut down cleanly: recovering active segments");
        }
        let (sink, image, published, cluster): (Box<dyn metadata::MetadataSink>, _, _, _) = match cluster {
            Some(prepared) => {
                let started = prepared.start(&config, &mut log_dirs)?;
                log_dirs.consume_clean_shutdown_markers()?;
                (started.sink, started.image, started.offset, Some(started.node))
            }
            None => {
                let metadata = Broker::open_metadata_log(&config, &log_dirs)?;
                let image = metadata.image().clone();
                let end = metadata.end_offset() - 1;
                (Box::new(metadata), image, end, None)
            }
        };
        let groups = GroupCoordinator::new(config.groups.clone());
        let node_id = config.node_id;
        let mut controller = controller::Controller::new(sink, config.clone());
        controller.set_cluster_id(log_dirs.cluster_id.clone());
        let broker = Arc::new_cyclic(|me| Broker {
            replica_fetchers: replica_fetcher_manager::ReplicaFetcherManager::new(
                node_id,
                config.replica_fetch.clone(),
                Arc::new(replica_fetcher_manager::ImageDirectory { broker: me.clone(), listener: config.kraft.inter_broker_listener_name.clone() }),
            ),
            cluster_id: log_dirs.cluster_id.clone(),
            // The publisher applies the dynamic levels below.
            effective: RwLock::new(Arc::new(config.clone())),
            config,
            log_dirs,
            checkpoints,
            controller: Mutex::new(controller),
            publisher: metadata_publisher::MetadataPublisher::default(),
            replicas: ReplicaManager::new(node_id),
            fetch_sessions: Mutex::new(FetchSessions::default()),
            producer_ids: Mutex::new(0..0),
            groups,
            offsets_topic_creation: Mutex::new(()),
            cluster,
            rpc: std::sync::OnceLock::new(),
        });
        if let Some(rpc) = cluster_rpc::ClusterRpc::new(&broker) {
            let _ = broker.rpc.set(rpc);
        }
        // Start-up is the whole image published as one change from empty.
        broker
            .publish(&image.delta_from_empty(), &image, None, log_dirs::Placement::Existing)
            .map_err(|(topic, source)| StartError::Topic { topic, source })?;
        broker.publisher.set_published(published);
        if broker.cluster.is_none() {
            // In cluster mode the image may still lag the quorum here: a
            // directory it does not know yet may be a replica created since.
            let known: std::collections::HashSet<(String, i32)> = image
                .topics()
                .filter(|t| t.name != log_dirs::METADATA_TOPIC)
                .flat_map(|t| t.partitions.keys().map(|&p| (t.name.clone(), p)))
                .collect();
            broker.log_dirs.sweep_strays(&known, &|id| image.was_removed(id))?;
        }
        // Entries of topics deleted meanwhile must not reach a topic created later.
        broker.checkpoints.finish_restore();
        broker.checkpoint_log_start_offsets().map_err(StartError::Checkpoint)?;
        broker.checkpoint_replication_offsets(true).map_err(StartError::Checkpoint)?;
        // The publisher started the loads of the group shards this broker leads.
        broker.groups.wait_loaded().map_err(|source| StartError::Topic { topic: OFFSETS_TOPIC.to_string(), source })?;
        cluster_node::start_publishing(&broker);
        tracing::info!(topics = image.topics().count(), cluster_id = %broker.cluster_id, "broker opened");
        Ok(broker)
    }

    /// The single node's metadata log, recovered and checked against the
    /// partition data on disk (or the topics rebuilt from it with
    /// `potok.metadata.recover`).
    fn open_metadata_log(config: &ServerConfig, log_dirs: &LogDirs) -> Result<MetadataLog, StartError> {
        let metadata_dir = log_dirs.metadata_dir();
        let on_disk = log_dirs.partition_dirs()?;
        if !metadata_dir.exists() && !config.metadata_recover {
            // Refuse before opening would create an empty log in its place.
            if let Some(problem) = metadata_recovery::missing_metadata(log_dirs, &metadata_dir, 0, &on_disk) {
                return Err(StartError::MetadataLost(problem));
            }
        }
        let metadata_config = MetadataLogConfig {
            segment_bytes: config.metadata_log_segment_bytes,
            snapshot_bytes: config.metadata_snapshot_bytes,
        };
        let mut metadata = MetadataLog::open_configured(&metadata_dir, &metadata_config, log_dirs.clean_shutdown, config.metadata_recover)
            .map_err(|e| match e {
                metadata::MetadataError::CorruptRecord { .. } | metadata::MetadataError::Snapshot { .. } => {
                    StartError::MetadataLost(format!("{e}; {}", metadata_recovery::way_out()))
                }
                e => e.into(),
            })?;
        if let Some(problem) = metadata_recovery::missing_metadata(log_dirs, &metadata_dir, metadata.end_offset(), &on_disk) {
            if !config.metadata_recover {
                return Err(StartError::MetadataLost(problem));
            }
            tracing::warn!(%problem, "{}=true: rebuilding topics from the partition directories", metadata_recovery::RECOVER_SETTING);
        }
        log_dirs.consume_clean_shutdown_markers()?;
        if config.metadata_recover {
            let groups = &config.groups;
            let extra = |name: &str| if name == OFFSETS_TOPIC { offsets_topic_configs(groups) } else { Vec::new() };
            let rebuilt = metadata_recovery::rebuild_topics(&mut metadata, &on_disk, config.node_id, &extra, now_ms())?;
            tracing::warn!(topics = rebuilt.len(), "rebuilt topics from partition directories");
        }
        metadata.set_log_dir_watch(Arc::new(log_dirs.health().clone()));
        metadata.set_checkpoints(log_dirs.checkpoint_paths(), log_dirs.cluster_id.clone())?;
        Ok(metadata)
    }

    /// Serves clients on the bound listeners until `shutdown` completes.
    pub async fn serve(
        self: &Arc<Self>,
        listeners: Listeners,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), StartError> {
        let Listeners(listeners) = listeners;
        let mut tasks = tokio::task::JoinSet::new();
        let limits = net::NetLimits::new(&self.config.limits);
        for (name, socket) in listeners {
            tasks.spawn(net::accept_loop(Arc::clone(self), name, socket, Arc::clone(&limits)));
        }
        tasks.spawn(flush_by_time(Arc::clone(self)));
        tasks.spawn(checkpoint_offsets(Arc::clone(self)));
        tasks.spawn(enforce_retention(Arc::clone(self)));
        tasks.spawn(run_group_timers(Arc::clone(self)));
        if self.config.log_cleaner_enable {
            tasks.spawn(clean_compacted_topics(Arc::clone(self)));
        }
        if let Some(rpc) = self.rpc.get() {
            rpc.spawn(self, &mut tasks);
        }
        shutdown.await;
        if let Some(rpc) = self.rpc.get() {
            // Kafka's controlled shutdown: still serving while leadership moves away.
            rpc.controlled_shutdown(self).await;
        }
        tasks.abort_all();
        Ok(())
    }

    /// Flushes every partition and the metadata log, checkpoints the high
    /// watermarks and recovery points, and marks the log dirs clean.
    pub fn shutdown(&self) -> Result<(), StartError> {
        self.replica_fetchers.shutdown();
        let mut ok = true;
        for partition in self.replicas.all_partitions() {
            if let Err(e) = partition.flush() {
                ok = false;
                tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "cannot flush partition");
            }
        }
        if let Err(e) = self.checkpoint_replication_offsets(true) {
            ok = false;
            tracing::error!(error = %e, "cannot write the offset checkpoints");
        }
        for partition in self.replicas.all_partitions() {
            if let Err(e) = partition.close() {
                ok = false;
                tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "cannot close partition");
            }
        }
        if ok {
            self.log_dirs.mark_clean_shutdown()?;
        }
        tracing::info!("broker shut down");
        Ok(())
    }

    /// Follows `partition` from `leader_id` (it became a follower; Kafka's
    /// `ReplicaFetcherManager.addFetcherForPartitions`).
    pub fn add_fetcher(&self, partition: &Arc<partition::Partition>, leader_id: i32) {
        self.replica_fetchers.add_fetcher(partition, leader_id);
    }

    /// Stops fetching `partition` (it leads, lost its replica, was deleted).
    pub fn remove_fetcher(&self, partition: &partition::Partition) {
        self.replica_fetchers.remove_fetcher(partition);
    }

    /// The log dirs that failed since start: what the broker heartbeat will
    /// report to the controller (Kafka's `OfflineLogDirs`) so that leadership
    /// of their partitions moves to other replicas.
    pub fn offline_log_dirs(&self) -> Vec<std::path::PathBuf> {
        self.log_dirs.health().offline_dirs()
    }

    /// The host and port clients are told to connect to: the first advertised
    /// listener (an empty host, meaning all interfaces, is advertised as localhost).
    pub fn advertised_endpoint(&self) -> (String, i32) {
        self.advertised_endpoint_for("")
    }

    /// This broker's advertised host and port for the listener named
    /// `listener` (the first advertised listener if it has none of that name).
    pub fn advertised_endpoint_for(&self, listener: &str) -> (String, i32) {
        let advertised = &self.config.advertised_listeners;
        match advertised.iter().find(|l| l.name == listener).or(advertised.first()) {
            Some(l) if !l.host.is_empty() => (l.host.clone(), i32::from(l.port)),
            Some(l) => ("localhost".to_string(), i32::from(l.port)),
            None => ("localhost".to_string(), 9092),
        }
    }

    /// Hands out a new producer id, reserving a block in the metadata log when
    /// the current one is used up, so ids are never reused after a restart.
    pub fn allocate_producer_id(&self) -> Result<i64, error::BrokerError> {
        if let Some(rpc) = self.rpc.get() {
            // Cluster mode: blocks from the active controller (AllocateProducerIds).
            return rpc.producer_ids.generate();
        }
        let mut ids = self.producer_ids.lock();
        if ids.is_empty() {
            *ids = self.controller.lock().allocate_producer_id_block(PRODUCER_ID_BLOCK, now_ms())?;
        }
        let id = ids.start;
        ids.start += 1;
        Ok(id)
    }

    /// Creates `__consumer_offsets` on first use, as Kafka does, with
    /// `offsets.topic.num.partitions` compacted partitions; the publisher
    /// then makes the coordinator load the partitions this broker leads.
    /// Any failure is COORDINATOR_NOT_AVAILABLE for the client (it retries),
    /// logged here once with its cause.
    pub fn ensure_offsets_topic(&self) -> Result<(), error::BrokerError> {
        if self.image().topic(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        self.create_offsets_topic().map_err(|e| {
            tracing::error!(error = %e, "cannot create {OFFSETS_TOPIC}");
            error::BrokerError::kafka(
                kafka_protocol::error::ResponseError::CoordinatorNotAvailable,
                format!("the group coordinator cannot create {OFFSETS_TOPIC}: {e}"),
            )
        })
    }

    fn create_offsets_topic(&self) -> Result<(), error::BrokerError> {
        let _creating = self.offsets_topic_creation.lock();
        if self.image().topic(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let g = &self.config.groups;
        let replication_factor = self.offsets_topic_replication_factor();
        self.create_topic(
            topics::NewTopic {
                name: OFFSETS_TOPIC.to_string(),
                num_partitions: g.offsets_topic_num_partitions,
                replication_factor,
                assignments: Vec::new(),
                configs: offsets_topic_configs(g).into_iter().map(|(k, v)| (k, Some(v))).collect(),
            },
            false,
        )?;
        tracing::info!(partitions = g.offsets_topic_num_partitions, replication_factor, "created {OFFSETS_TOPIC}");
        Ok(())
    }

    /// The replication factor `__consumer_offsets` is created with:
    /// `offsets.topic.replication.factor` when set (too few brokers is then
    /// the controller's INVALID_REPLICATION_FACTOR, as Kafka); at its default
    /// capped by the registered unfenced brokers (one on a single node, which
    /// registers none), with a WARN, so that a lone broker serves groups.
    fn offsets_topic_replication_factor(&self) -> i16 {
        let g = &self.config.groups;
        if g.offsets_topic_replication_factor_given {
            return g.offsets_topic_replication_factor;
        }
        let alive = self.image().brokers().filter(|b| b.is_usable()).count();
        let brokers = i16::try_from(alive).unwrap_or(i16::MAX).max(1);
        let capped = g.offsets_topic_replication_factor.min(brokers);
        if capped < g.offsets_topic_replication_factor {
            tracing::warn!(
                "offsets.topic.replication.factor is left at its default {} but only {brokers} broker(s) are alive: creating {OFFSETS_TOPIC} with replication factor {capped}; set it explicitly to require more",
                g.offsets_topic_replication_factor
            );
        }
        capped
    }
}

/// The topic configs `__consumer_offsets` is created with.
fn offsets_topic_configs(g: &config::GroupConfig) -> Vec<(String, String)> {
    vec![
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("compression.type".to_string(), "producer".to_string()),
        ("segment.bytes".to_string(), g.offsets_topic_segment_bytes.to_string()),
    ]
}

/// Runs blocking disk work (fsync, segment deletion, compaction) on tokio's
/// blocking threads, off the async workers that serve connections; `None`
/// if it panicked (logged).
async fn off_workers<T: Send + 'static>(what: &'static str, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(done) => Some(done),
        Err(e) => {
            tracing::error!(task = what, error = %e, "background disk task failed");
            None
        }
    }
}

/// Deletes old segments every `log.retention.check.interval.ms`, by each topic's
/// `retention.ms` and `retention.bytes` (topics with `cleanup.policy=delete`).
async fn enforce_retention(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_millis(broker.config.log_retention_check_interval_ms));
    loop {
        tick.tick().await;
        let broker = Arc::clone(&broker);
        off_workers("retention", move || broker.apply_retention_once()).await;
    }
}

impl Broker {
    /// One retention check over every hosted partition.
    fn apply_retention_once(&self) {
        let image = self.image();
        let topics: Vec<_> = image.topics().cloned().collect();
        let server = self.effective_config();
        let now = now_ms();
        for topic in topics {
            let setting = |name| topic_config::effective(name, &topic.configs, &server);
            if !setting("cleanup.policy").split(',').any(|p| p.trim() == "delete") {
                continue;
            }
            let limit = |name| setting(name).trim().parse::<i64>().ok().filter(|v| *v >= 0).map(|v| v as u64);
            let (retention_ms, retention_bytes) = (limit("retention.ms"), limit("retention.bytes"));
            if retention_ms.is_none() && retention_bytes.is_none() {
                continue;
            }
            let Some(hosted) = self.replicas.topic(&topic.name) else { continue };
            for partition in hosted.partitions.values().filter(|p| !p.is_offline()) {
                match partition.apply_retention(retention_ms, retention_bytes, now) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(topic = %topic.name, partition = partition.index, segments = n, "deleted segments past retention"),
                    Err(e) => tracing::error!(topic = %topic.name, partition = partition.index, error = %e, "retention failed"),
                }
            }
        }
    }

    /// One cleaner pass over the partitions of compacted topics; `cleaned_up_to`
    /// remembers per partition how far the previous pass reached.
    fn clean_once(&self, cleaned_up_to: &mut std::collections::HashMap<(Uuid, i32), i64>) {
        let image = self.image();
        let topics: Vec<_> = image.topics().cloned().collect();
        let server = self.effective_config();
        for topic in topics {
            let setting = |name| topic_config::effective(name, &topic.configs, &server);
            if !setting("cleanup.policy").split(',').any(|p| p.trim() == "compact") {
                continue;
            }
            let policy = log_cleaner::CleanPolicy {
                delete_retention_ms: setting("delete.retention.ms").trim().parse().unwrap_or(86_400_000),
                min_dirty_ratio: setting("min.cleanable.dirty.ratio").trim().parse().unwrap_or(0.5),
                segment_bytes: setting("segment.bytes").trim().parse().unwrap_or(1 << 30),
            };
            let Some(hosted) = self.replicas.topic(&topic.name) else { continue };
            for partition in hosted.partitions.values().filter(|p| !p.is_offline()) {
                let key = (topic.id, partition.index);
                let last = cleaned_up_to.get(&key).copied();
                match partition.clean(&policy, last, now_ms()) {
                    Ok((end, stats)) => {
                        cleaned_up_to.insert(key, end);
                        if stats.segments > 0 {
                            tracing::info!(topic = %topic.name, partition = partition.index, removed = stats.removed, kept = stats.kept, segments = stats.segments, "compacted");
                        }
                    }
                    Err(e) => tracing::error!(topic = %topic.name, partition = partition.index, error = %e, "compaction failed"),
                }
            }
        }
    }

    /// Fsyncs the partitions whose `flush.ms` has passed.
    fn flush_due(&self) {
        let now = now_ms();
        for partition in self.replicas.all_partitions().into_iter().filter(|p| !p.is_offline()) {
            if let Err(e) = partition.flush_if_due(now) {
                tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "flush failed");
            }
        }
    }
}

/// Drives the group coordinator's timers (sessions, rebalance deadlines,
/// offset expiry).
async fn run_group_timers(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        broker.groups.tick(now_ms());
    }
}

/// Compacts topics with `cleanup.policy=compact` every `log.cleaner.backoff.ms`,
/// each partition once a segment has rolled since its last pass.
async fn clean_compacted_topics(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_millis(broker.config.log_cleaner_backoff_ms));
    let mut cleaned_up_to = std::collections::HashMap::new();
    loop {
        tick.tick().await;
        let broker = Arc::clone(&broker);
        let pass = off_workers("log cleaner", move || {
            broker.clean_once(&mut cleaned_up_to);
            cleaned_up_to
        });
        cleaned_up_to = pass.await.unwrap_or_default();
    }
}

/// Fsyncs partitions whose `flush.ms` has passed.
/// Writes the high watermarks every `replica.high.watermark.checkpoint.interval.ms`
/// and the recovery points every `log.flush.offset.checkpoint.interval.ms`
/// (fsyncs, so off the async workers).
async fn checkpoint_offsets(broker: Arc<Broker>) {
    let every = |ms: u64| {
        let mut tick = tokio::time::interval(Duration::from_millis(ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    };
    let mut high_watermarks = every(broker.config.replica_high_watermark_checkpoint_interval_ms);
    let mut recovery_points = every(broker.config.log_flush_offset_checkpoint_interval_ms);
    // Both were written at start.
    high_watermarks.tick().await;
    recovery_points.tick().await;
    loop {
        let with_recovery_points = tokio::select! {
            _ = high_watermarks.tick() => false,
            _ = recovery_points.tick() => true,
        };
        let b = Arc::clone(&broker);
        match tokio::task::spawn_blocking(move || b.checkpoint_replication_offsets(with_recovery_points)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the offset checkpoints"),
            Err(e) => tracing::error!(error = %e, "offset checkpoint task failed"),
        }
    }
}

async fn flush_by_time(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let broker = Arc::clone(&broker);
        off_workers("flusher", move || broker.flush_due()).await;
    }
}
