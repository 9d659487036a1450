//! The broker side of the broker <-> controller RPCs in cluster mode, put
//! together for one [`Broker`]: its [`BrokerLifecycle`] (registration and
//! heartbeats), its [`AlterPartitionManager`] (ISR changes, with the periodic
//! shrink check), its [`ProducerIdManager`] (producer id blocks), the
//! forwarding of admin requests ([`crate::forwarding`]), each over
//! its own [`ControllerChannel`] as Kafka's channel managers are, and the
//! active controller's timer that fences brokers whose session expired.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinSet;
use uuid::Uuid;

use crate::alter_partition_manager::{run_isr_checks, AlterPartitionManager, BrokerEpoch};
use crate::broker_lifecycle::{BrokerLifecycle, LifecycleHost, LifecycleTiming, Registration};
use crate::controller_channel::{ChannelConfig, ControllerChannel, LeaderHint};
use crate::producer_id_manager::ProducerIdManager;
use crate::replica_manager::IsrChangeListener;
use crate::{blocking, now_ms, Broker};

/// How often the active controller looks for expired broker sessions.
const FENCE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The RPC parts of a cluster-mode broker (see the module doc).
pub(crate) struct ClusterRpc {
    pub(crate) lifecycle: Arc<BrokerLifecycle>,
    pub(crate) alter_partitions: Arc<AlterPartitionManager>,
    pub(crate) producer_ids: Arc<ProducerIdManager>,
    /// Admin requests forwarded to the active controller ([`crate::forwarding`]),
    /// and the topics this node creates itself (`__consumer_offsets`,
    /// auto-created ones) when it is not the active controller.
    pub(crate) forwarding: Arc<ControllerChannel>,
}

/// What the lifecycle reads from the broker.
struct Host {
    broker: Weak<Broker>,
    /// The log dirs' directory ids.
    directory_ids: Vec<(PathBuf, Uuid)>,
}

impl LifecycleHost for Host {
    fn current_metadata_offset(&self) -> i64 {
        self.broker.upgrade().map_or(-1, |b| b.publisher.published_offset())
    }

    fn offline_log_dirs(&self) -> Vec<Uuid> {
        let Some(broker) = self.broker.upgrade() else { return Vec::new() };
        let offline = broker.offline_log_dirs();
        self.directory_ids.iter().filter(|(dir, _)| offline.contains(dir)).map(|(_, id)| *id).collect()
    }
}

impl ClusterRpc {
    /// The RPC parts of `broker`, None unless it runs in cluster mode.
    pub(crate) fn new(broker: &Arc<Broker>) -> Option<Arc<ClusterRpc>> {
        let node = broker.cluster.as_ref()?;
        let config = &broker.config;
        let quorum = Arc::clone(&node.quorum);
        let hint: LeaderHint = Arc::new(move || quorum.leader().and_then(|id| i32::try_from(id).ok()));
        let channel = |purpose: &str| Arc::new(ControllerChannel::new(ChannelConfig::from_server(config, purpose), Arc::clone(&hint)));
        let directory_ids = broker.log_dirs.directory_ids();
        let registration =
            Registration::from_config(config, &broker.cluster_id, directory_ids.iter().map(|(_, id)| *id).collect());
        let host = Arc::new(Host { broker: Arc::downgrade(broker), directory_ids });
        let timing = LifecycleTiming::from_config(config);
        let lifecycle = BrokerLifecycle::new(registration, timing, channel("heartbeat"), host);
        let epoch_of = Arc::clone(&lifecycle);
        let broker_epoch: BrokerEpoch = Arc::new(move || epoch_of.broker_epoch());
        let retry_backoff = ChannelConfig::from_server(config, "alter-partition").retry_backoff;
        let deadline = Duration::from_millis(config.broker_session_timeout_ms);
        let alter_partitions = AlterPartitionManager::new(
            channel("alter-partition"),
            config.node_id,
            Arc::clone(&broker_epoch),
            deadline,
            retry_backoff,
        );
        let producer_ids = ProducerIdManager::new(channel("producer-id"), config.node_id, broker_epoch, deadline);
        // Follower fetches that catch a replica up ask for its ISR expansion here.
        let expansions = IsrExpansions { broker: Arc::downgrade(broker), manager: Arc::clone(&alter_partitions) };
        broker.replicas.set_isr_change_listener(Arc::new(expansions));
        let forwarding = channel("forwarding");
        Some(Arc::new(ClusterRpc { lifecycle, alter_partitions, producer_ids, forwarding }))
    }

    /// Starts the lifecycle, the AlterPartition sender, the ISR check and the
    /// fencing timer on `tasks`.
    /// A controller-only node runs only the fencing timer (it is never a
    /// registered broker); a broker-only node all but that (it is never the
    /// active controller).
    pub(crate) fn spawn(&self, broker: &Arc<Broker>, tasks: &mut JoinSet<()>) {
        let roles = broker.config.kraft.roles;
        if roles.broker {
            tasks.spawn(Arc::clone(&self.lifecycle).run());
            tasks.spawn(Arc::clone(&self.alter_partitions).run());
            let hosted = Arc::downgrade(broker);
            let partitions = move || hosted.upgrade().map(|b| b.replicas.all_partitions()).unwrap_or_default();
            tasks.spawn(run_isr_checks(Arc::clone(&self.alter_partitions), partitions, broker.config.rpc.replica_lag_time_max_ms));
        }
        if roles.controller {
            tasks.spawn(fence_expired_brokers(Arc::downgrade(broker)));
        }
    }

    /// On shutdown with `controlled.shutdown.enable`: asks the controller to
    /// move leadership away and waits for its approval, at most
    /// `controlled.shutdown.max.retries` × `controlled.shutdown.retry.backoff.ms`.
    pub(crate) async fn controlled_shutdown(&self, broker: &Broker) {
        let rpc = &broker.config.rpc;
        if !rpc.controlled_shutdown_enable || self.lifecycle.broker_epoch().is_none() {
            return;
        }
        tracing::info!("controlled shutdown: waiting for the controller to move leadership away");
        let timeout = Duration::from_millis(rpc.controlled_shutdown_timeout_ms());
        if self.lifecycle.controlled_shutdown(timeout).await {
            tracing::info!("controlled shutdown approved by the controller");
        }
    }
}

/// Hears of follower fetches that caught a replica up and asks for its ISR
/// expansion when the metadata says it may join (Kafka's
/// `isReplicaIsrEligible`): registered, unfenced and not shutting down. The
/// controller would refuse anything else with INELIGIBLE_REPLICA, and the
/// next fetch would ask again at once.
struct IsrExpansions {
    broker: Weak<Broker>,
    manager: Arc<AlterPartitionManager>,
}

impl IsrChangeListener for IsrExpansions {
    fn isr_change_wanted(&self, partition: &Arc<crate::partition::Partition>) {
        let Some(broker) = self.broker.upgrade() else { return };
        let image = broker.image();
        let eligible = |id: i32| image.broker(id).is_some_and(|b| b.is_usable());
        self.manager.expansion_wanted(partition, &eligible);
    }
}

/// On the active controller, fences the brokers whose session expired
/// (`broker.session.timeout.ms`), every second. Sessions live in memory only:
/// a node that becomes the active controller starts every broker's session
/// afresh ([`crate::controller::Controller::activate`]), so sessions it kept
/// from an earlier term cannot fence brokers that heartbeat to another.
async fn fence_expired_brokers(broker: Weak<Broker>) {
    let mut tick = tokio::time::interval(FENCE_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_active = false;
    loop {
        tick.tick().await;
        let Some(broker) = broker.upgrade() else { return };
        let active = broker.active_controller() == Some(broker.config.node_id);
        let became_active = active && !was_active;
        was_active = active;
        if !active {
            continue;
        }
        // Fencing commits records (a blocking quorum write).
        let fencing = Arc::clone(&broker);
        let _ = tokio::task::spawn_blocking(move || {
            blocking(|| {
                let mut controller = fencing.controller.lock();
                if became_active {
                    controller.activate(now_ms());
                }
                controller.fence_expired_brokers(now_ms())
            })
        })
        .await;
    }
}
