//! A cluster-mode broker's life as the controller sees it, as Kafka's
//! `BrokerLifecycleManager`: register (BrokerRegistration, with an
//! incarnation id new to this process, the advertised listeners, the rack,
//! the log dirs and the features it supports), then heartbeat every
//! `broker.heartbeat.interval.ms` with the last metadata offset applied here
//! and the failed log dirs. The controller answers whether the broker has
//! caught up with the metadata and whether it is fenced; the broker is ready
//! (serves as a replica) once unfenced.
//!
//! States (Kafka's `BrokerState`): STARTING until registered and caught up,
//! RECOVERY while fenced, RUNNING once unfenced, PENDING_CONTROLLED_SHUTDOWN
//! while heartbeating with `want_shut_down` after SIGTERM, SHUTTING_DOWN once
//! the controller says `should_shut_down` (it leads nothing any more).
//! STALE_BROKER_EPOCH (the controller fenced and forgot this registration)
//! starts over with a new registration.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::broker_registration_request::{Feature, Listener};
use kafka_protocol::messages::{BrokerHeartbeatRequest, BrokerId, BrokerRegistrationRequest};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::config::ServerConfig;
use crate::controller_channel::ControllerChannel;

/// Where the broker is in its life (Kafka's `BrokerState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BrokerState {
    /// Registering, or registered and catching up with the metadata.
    Starting,
    /// Caught up, still fenced by the controller.
    Recovery,
    /// Unfenced: a full member of the cluster.
    Running,
    /// Asking the controller to move leadership away (`want_shut_down`).
    PendingControlledShutdown,
    /// The controller agreed: the broker may stop.
    ShuttingDown,
}

/// What the lifecycle reads from the broker it runs for.
pub trait LifecycleHost: Send + Sync {
    /// The offset of the last metadata record applied here (-1: none).
    fn current_metadata_offset(&self) -> i64;
    /// The directory ids of the log dirs that failed.
    fn offline_log_dirs(&self) -> Vec<Uuid>;
}

/// The static part of the registration.
#[derive(Debug, Clone)]
pub struct Registration {
    /// `node.id`.
    pub broker_id: i32,
    /// The cluster id the broker's log dirs belong to.
    pub cluster_id: String,
    /// The advertised listeners: name, host, port, security protocol id.
    pub listeners: Vec<(String, String, u16, i16)>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// The directory ids of the log dirs.
    pub log_dirs: Vec<Uuid>,
}

/// Kafka's security protocol ids (`SecurityProtocol.id`).
fn security_protocol_id(name: &str) -> i16 {
    match name {
        "SSL" => 1,
        "SASL_PLAINTEXT" => 2,
        "SASL_SSL" => 3,
        _ => 0,
    }
}

/// The supported range of each feature, as a Kafka 4.0 broker registers it:
/// `metadata.version` from 3.3-IV3 (7) to 4.0-IV3 (25), `kraft.version` 0-1.
const FEATURES: &[(&str, i16, i16)] = &[("metadata.version", 7, 25), ("kraft.version", 0, 1)];

impl Registration {
    /// The registration of the broker of `config` (advertised listeners with
    /// the security protocols of `listener.security.protocol.map`; an empty
    /// host is advertised as localhost, as the Metadata response does).
    pub fn from_config(config: &ServerConfig, cluster_id: &str, log_dirs: Vec<Uuid>) -> Registration {
        let listeners = config
            .advertised_listeners
            .iter()
            .map(|l| {
                let protocol = config.kraft.security_protocol_map.get(&l.name).map_or("PLAINTEXT", String::as_str);
                let host = if l.host.is_empty() { "localhost".to_string() } else { l.host.clone() };
                (l.name.clone(), host, l.port, security_protocol_id(protocol))
            })
            .collect();
        Registration {
            broker_id: config.node_id,
            cluster_id: cluster_id.to_string(),
            listeners,
            rack: config.rpc.rack.clone(),
            log_dirs,
        }
    }
}

/// Timing of the lifecycle.
#[derive(Debug, Clone, Copy)]
pub struct LifecycleTiming {
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `broker.session.timeout.ms`: how long one request is tried for.
    pub session_timeout: Duration,
    /// The first pause after a failed request (doubled up to half the session timeout).
    pub initial_backoff: Duration,
}

impl LifecycleTiming {
    /// The timing `config` sets.
    pub fn from_config(config: &ServerConfig) -> LifecycleTiming {
        LifecycleTiming {
            heartbeat_interval: Duration::from_millis(config.broker_heartbeat_interval_ms),
            session_timeout: Duration::from_millis(config.broker_session_timeout_ms),
            initial_backoff: Duration::from_millis(100),
        }
    }
}

/// The broker's registration and heartbeats (see the module doc).
pub struct BrokerLifecycle {
    registration: Registration,
    timing: LifecycleTiming,
    channel: Arc<ControllerChannel>,
    host: Arc<dyn LifecycleHost>,
    incarnation_id: Uuid,
    /// The epoch of the current registration (-1: not registered).
    broker_epoch: AtomicI64,
    /// The last heartbeat said fenced.
    fenced: AtomicBool,
    want_shut_down: AtomicBool,
    /// Wakes the heartbeat loop at once (a controlled shutdown began).
    wake: Notify,
    state: watch::Sender<BrokerState>,
}

impl BrokerLifecycle {
    /// A lifecycle for `registration`, talking through `channel`; [`BrokerLifecycle::run`] drives it.
    pub fn new(
        registration: Registration,
        timing: LifecycleTiming,
        channel: Arc<ControllerChannel>,
        host: Arc<dyn LifecycleHost>,
    ) -> Arc<BrokerLifecycle> {
        Arc::new(BrokerLifecycle {
            registration,
            timing,
            channel,
            host,
            incarnation_id: Uuid::new_v4(),
            broker_epoch: AtomicI64::new(-1),
            fenced: AtomicBool::new(true),
            want_shut_down: AtomicBool::new(false),
            wake: Notify::new(),
            state: watch::Sender::new(BrokerState::Starting),
        })
    }

    /// The epoch of the current registration, None before the first one.
    pub fn broker_epoch(&self) -> Option<i64> {
        Some(self.broker_epoch.load(Ordering::Acquire)).filter(|e| *e >= 0)
    }

    /// This process's incarnation id.
    pub fn incarnation_id(&self) -> Uuid {
        self.incarnation_id
    }

    /// The current state.
    pub fn state(&self) -> BrokerState {
        *self.state.borrow()
    }

    /// True if the last heartbeat answer said fenced (or none came yet).
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Waits until the state is `at_least` or later.
    pub async fn wait_for(&self, at_least: BrokerState) {
        let mut states = self.state.subscribe();
        // The sender lives as long as self, so this only ends by reaching the state.
        let _ = states.wait_for(|s| *s >= at_least).await;
    }

    /// Asks the controller to let this broker shut down (heartbeats with
    /// `want_shut_down`) and waits until it agrees or `timeout` passed;
    /// false on timeout (logged). `run` must be running.
    pub async fn controlled_shutdown(&self, timeout: Duration) -> bool {
        self.want_shut_down.store(true, Ordering::Release);
        self.state.send_if_modified(|s| {
            let moved = *s < BrokerState::PendingControlledShutdown;
            if moved {
                *s = BrokerState::PendingControlledShutdown;
            }
            moved
        });
        self.wake.notify_one();
        match tokio::time::timeout(timeout, self.wait_for(BrokerState::ShuttingDown)).await {
            Ok(()) => true,
            Err(_) => {
                tracing::error!(waited = ?timeout, "Timed out waiting for the controller to approve controlled shutdown");
                false
            }
        }
    }

    fn set_state(&self, to: BrokerState) {
        let from = self.state();
        if from != to {
            self.state.send_replace(to);
            tracing::info!(broker = self.registration.broker_id, ?from, ?to, "broker state changed");
        }
    }

    /// Registers and heartbeats until the task is dropped or the controller
    /// agreed to a controlled shutdown.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = self.timing.initial_backoff;
        let max_backoff = (self.timing.session_timeout / 2).max(self.timing.initial_backoff);
        loop {
            let epoch = match self.register().await {
                Ok(epoch) => epoch,
                Err(why) => {
                    tracing::warn!(broker = self.registration.broker_id, reason = %why, retry_in = ?backoff, "broker registration failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(max_backoff);
                    continue;
                }
            };
            backoff = self.timing.initial_backoff;
            self.broker_epoch.store(epoch, Ordering::Release);
            tracing::info!(broker = self.registration.broker_id, broker_epoch = epoch, incarnation_id = %self.incarnation_id, "registered with the controller");
            match self.heartbeat_until_stale(epoch).await {
                Heartbeats::Stale => {
                    tracing::info!(broker = self.registration.broker_id, broker_epoch = epoch, "the controller no longer knows this broker epoch (STALE_BROKER_EPOCH): registering again");
                    self.fenced.store(true, Ordering::Release);
                    if self.state() < BrokerState::PendingControlledShutdown {
                        self.set_state(BrokerState::Starting);
                    }
                }
                Heartbeats::ShutDown => return,
            }
        }
    }

    async fn register(&self) -> Result<i64, String> {
        let r = &self.registration;
        let request = BrokerRegistrationRequest::default()
            .with_broker_id(BrokerId(r.broker_id))
            .with_cluster_id(StrBytes::from_string(r.cluster_id.clone()))
            .with_incarnation_id(self.incarnation_id)
            .with_listeners(
                r.listeners
                    .iter()
                    .map(|(name, host, port, protocol)| {
                        Listener::default()
                            .with_name(StrBytes::from_string(name.clone()))
                            .with_host(StrBytes::from_string(host.clone()))
                            .with_port(*port)
                            .with_security_protocol(*protocol)
                    })
                    .collect(),
            )
            .with_features(
                FEATURES
                    .iter()
                    .map(|(name, min, max)| {
                        Feature::default()
                            .with_name(StrBytes::from_static_str(name))
                            .with_min_supported_version(*min)
                            .with_max_supported_version(*max)
                    })
                    .collect(),
            )
            .with_rack(r.rack.clone().map(StrBytes::from_string))
            .with_log_dirs(r.log_dirs.clone())
            .with_previous_broker_epoch(-1);
        let response = self.channel.send(&request, self.timing.session_timeout).await.map_err(|e| e.to_string())?;
        if response.error_code != 0 {
            return Err(format!("the controller answered {:?}", ResponseError::try_from_code(response.error_code)));
        }
        Ok(response.broker_epoch)
    }

    /// Heartbeats with `epoch` until the controller forgets it or agrees to a shutdown.
    async fn heartbeat_until_stale(&self, epoch: i64) -> Heartbeats {
        let mut backoff = self.timing.initial_backoff;
        let max_backoff = (self.timing.session_timeout / 2).max(self.timing.initial_backoff);
        loop {
            let want_shut_down = self.want_shut_down.load(Ordering::Acquire);
            let request = BrokerHeartbeatRequest::default()
                .with_broker_id(BrokerId(self.registration.broker_id))
                .with_broker_epoch(epoch)
                .with_current_metadata_offset(self.host.current_metadata_offset())
                .with_want_fence(false)
                .with_want_shut_down(want_shut_down)
                .with_offline_log_dirs(self.host.offline_log_dirs());
            let mut pause = self.timing.heartbeat_interval;
            match self.channel.send(&request, self.timing.session_timeout).await {
                Err(e) => {
                    tracing::warn!(broker = self.registration.broker_id, error = %e, "broker heartbeat failed");
                    pause = backoff;
                    backoff = (backoff * 2).min(max_backoff);
                }
                Ok(r) if r.error_code == ResponseError::StaleBrokerEpoch.code() => return Heartbeats::Stale,
                Ok(r) if r.error_code != 0 => {
                    tracing::warn!(broker = self.registration.broker_id, error = ?ResponseError::try_from_code(r.error_code), "the controller refused a broker heartbeat");
                    pause = backoff;
                    backoff = (backoff * 2).min(max_backoff);
                }
                Ok(r) => {
                    backoff = self.timing.initial_backoff;
                    self.fenced.store(r.is_fenced, Ordering::Release);
                    let state = self.state();
                    if state == BrokerState::Starting && r.is_caught_up {
                        self.set_state(BrokerState::Recovery);
                        // Kafka asks again at once: unfencing may follow.
                        pause = Duration::ZERO;
                    }
                    if self.state() == BrokerState::Recovery && !r.is_fenced {
                        self.set_state(BrokerState::Running);
                        tracing::info!(broker = self.registration.broker_id, broker_epoch = epoch, "the broker has been unfenced: ready");
                    }
                    if want_shut_down && r.should_shut_down {
                        self.set_state(BrokerState::ShuttingDown);
                        return Heartbeats::ShutDown;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.wake.notified() => {}
            }
        }
    }
}

/// How a run of heartbeats ended.
enum Heartbeats {
    /// STALE_BROKER_EPOCH: register again.
    Stale,
    /// The controller agreed to the controlled shutdown.
    ShutDown,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicI64;

    use super::*;
    use crate::controller_api::testing::{eventually, TestController};

    struct Host {
        offset: AtomicI64,
        offline: parking_lot::Mutex<Vec<Uuid>>,
    }

    impl LifecycleHost for Host {
        fn current_metadata_offset(&self) -> i64 {
            self.offset.load(Ordering::SeqCst)
        }
        fn offline_log_dirs(&self) -> Vec<Uuid> {
            self.offline.lock().clone()
        }
    }

    fn lifecycle(controller: &TestController, host: &Arc<Host>) -> Arc<BrokerLifecycle> {
        let channel = controller.channel("heartbeat");
        let registration = Registration {
            broker_id: 4,
            cluster_id: "cluster".into(),
            listeners: vec![("PLAINTEXT".into(), "127.0.0.1".into(), 9092, 0)],
            rack: Some("r1".into()),
            log_dirs: vec![Uuid::from_u128(1)],
        };
        let timing = LifecycleTiming {
            heartbeat_interval: Duration::from_millis(20),
            session_timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(10),
        };
        let host: Arc<dyn LifecycleHost> = Arc::clone(host) as Arc<dyn LifecycleHost>;
        BrokerLifecycle::new(registration, timing, channel, host)
    }

    #[tokio::test]
    async fn a_broker_registers_heartbeats_and_is_ready_once_unfenced_then_registers_again_after_a_stale_epoch() {
        let controller = TestController::start(true).await;
        controller.decisions.lock().caught_up_at = 5;
        let host = Arc::new(Host { offset: AtomicI64::new(0), offline: parking_lot::Mutex::new(Vec::new()) });
        let lifecycle = lifecycle(&controller, &host);
        let task = tokio::spawn(Arc::clone(&lifecycle).run());

        // Registered with what the broker is, then heartbeating while behind.
        eventually("three heartbeats", || controller.decisions.lock().heartbeats.len() >= 3).await;
        {
            let d = controller.decisions.lock();
            let r = &d.registrations[0];
            assert_eq!((r.broker_id.0, r.cluster_id.as_str(), r.incarnation_id), (4, "cluster", lifecycle.incarnation_id()));
            assert_eq!(r.rack.as_deref(), Some("r1"));
            assert_eq!(r.log_dirs, vec![Uuid::from_u128(1)]);
            let l = &r.listeners[0];
            assert_eq!((l.name.as_str(), l.host.as_str(), l.port, l.security_protocol), ("PLAINTEXT", "127.0.0.1", 9092, 0));
            let features: Vec<(&str, i16, i16)> =
                r.features.iter().map(|f| (f.name.as_str(), f.min_supported_version, f.max_supported_version)).collect();
            assert_eq!(features, vec![("metadata.version", 7, 25), ("kraft.version", 0, 1)]);
            assert!(d.heartbeats.iter().all(|h| h.broker_epoch == 1 && !h.want_fence && !h.want_shut_down));
        }
        assert_eq!(lifecycle.state(), BrokerState::Starting);
        assert!(lifecycle.is_fenced());

        // Caught up: unfenced, ready; a failed log dir is reported.
        host.offline.lock().push(Uuid::from_u128(1));
        host.offset.store(5, Ordering::SeqCst);
        lifecycle.wait_for(BrokerState::Running).await;
        assert!(!lifecycle.is_fenced());
        assert_eq!(lifecycle.broker_epoch(), Some(1));
        let seen = controller.decisions.lock().heartbeats.len();
        eventually("a heartbeat with the failed dir", || controller.decisions.lock().heartbeats.len() > seen).await;
        assert_eq!(controller.decisions.lock().heartbeats.last().map(|h| h.offline_log_dirs.clone()), Some(vec![Uuid::from_u128(1)]));

        // The controller forgets the registration: the broker registers again.
        controller.decisions.lock().brokers.clear();
        eventually("a second registration", || controller.decisions.lock().registrations.len() == 2).await;
        eventually("the new epoch", || lifecycle.broker_epoch() == Some(2)).await;
        let d = controller.decisions.lock();
        assert_eq!(d.registrations[1].incarnation_id, lifecycle.incarnation_id(), "same process, same incarnation");
        drop(d);
        task.abort();
    }

    #[tokio::test]
    async fn a_controlled_shutdown_heartbeats_want_shut_down_until_the_controller_agrees() {
        let controller = TestController::start(true).await;
        let host = Arc::new(Host { offset: AtomicI64::new(0), offline: parking_lot::Mutex::new(Vec::new()) });
        let lifecycle = lifecycle(&controller, &host);
        let task = tokio::spawn(Arc::clone(&lifecycle).run());
        lifecycle.wait_for(BrokerState::Running).await;
        assert!(lifecycle.controlled_shutdown(Duration::from_secs(60)).await);
        assert_eq!(lifecycle.state(), BrokerState::ShuttingDown);
        task.await.expect("the lifecycle ends after the shutdown was agreed");
        assert!(controller.decisions.lock().heartbeats.last().is_some_and(|h| h.want_shut_down));
    }

    #[tokio::test]
    async fn a_controlled_shutdown_without_an_answer_gives_up_after_its_timeout() {
        let controller = TestController::start(true).await;
        let host = Arc::new(Host { offset: AtomicI64::new(0), offline: parking_lot::Mutex::new(Vec::new()) });
        let lifecycle = lifecycle(&controller, &host);
        let task = tokio::spawn(Arc::clone(&lifecycle).run());
        lifecycle.wait_for(BrokerState::Running).await;
        // The controller stops being active: nobody agrees.
        controller.active.store(false, Ordering::SeqCst);
        assert!(!lifecycle.controlled_shutdown(Duration::from_millis(100)).await);
        assert_eq!(lifecycle.state(), BrokerState::PendingControlledShutdown);
        task.abort();
    }
}
