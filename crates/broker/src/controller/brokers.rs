//! Broker lifecycle decisions, as Kafka's `ClusterControlManager` and
//! `BrokerHeartbeatManager`: registration, heartbeats (unfencing a broker
//! that caught up, fencing on request, controlled shutdown), and fencing
//! brokers whose session expired.
//!
//! Sessions (last heartbeat, reported metadata offset, the offset of the
//! registration) live only in the active controller's memory: a node that
//! becomes active controller gives every registered broker a fresh session
//! ([`Controller::activate`]), as Kafka does.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerRegistrationRequest, BrokerRegistrationResponse,
};
use metadata::{BrokerEndpoint, BrokerImage, BrokerRegistrationChangeRecord, BrokerRegistrationRecord, MetadataRecord, Uuid};

use super::{invalid, Controller};
use crate::error::Result;

/// Kafka's producer-id block size (`ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// One registered broker's session, as the active controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrokerSession {
    /// When the broker last heartbeated (or the session started).
    last_contact_ms: i64,
    /// The metadata offset its last heartbeat reported (-1: none yet).
    metadata_offset: i64,
    /// The offset of its registration record: it is caught up once its
    /// metadata offset reaches it.
    registration_offset: i64,
    /// The offset that completes its controlled shutdown, once it is in one.
    controlled_shutdown_offset: Option<i64>,
    /// The log directories its last heartbeat reported offline.
    offline_log_dirs: Vec<Uuid>,
}

impl BrokerSession {
    fn fresh(now_ms: i64, registration_offset: i64) -> BrokerSession {
        BrokerSession {
            last_contact_ms: now_ms,
            metadata_offset: -1,
            registration_offset,
            controlled_shutdown_offset: None,
            offline_log_dirs: Vec::new(),
        }
    }
}

/// A broker's state in the heartbeat protocol (Kafka's `BrokerControlState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrokerState {
    Fenced,
    Unfenced,
    ControlledShutdown,
    ShutdownNow,
}

impl BrokerState {
    fn of(broker: &BrokerImage) -> BrokerState {
        match (broker.in_controlled_shutdown, broker.fenced) {
            (true, true) => BrokerState::ShutdownNow,
            (true, false) => BrokerState::ControlledShutdown,
            (false, true) => BrokerState::Fenced,
            (false, false) => BrokerState::Unfenced,
        }
    }

    fn fenced(self) -> bool {
        matches!(self, BrokerState::Fenced | BrokerState::ShutdownNow)
    }
}

impl Controller {
    /// Starts a fresh session for every registered broker: called when this
    /// node becomes the active controller (sessions are not in the log).
    pub fn activate(&mut self, now_ms: i64) {
        let offset = self.last_offset;
        self.sessions = self.image().brokers().map(|b| (b.id, BrokerSession::fresh(now_ms, offset))).collect();
    }

    /// The session of a registered broker, started now if this controller
    /// has none yet (it became active without [`Controller::activate`]).
    fn session(&mut self, broker_id: i32, now_ms: i64) -> &mut BrokerSession {
        let offset = self.last_offset;
        self.sessions.entry(broker_id).or_insert_with(|| BrokerSession::fresh(now_ms, offset))
    }

    /// True if the broker is unfenced and heard from within `broker.session.timeout.ms`.
    fn has_valid_session(&mut self, broker: &BrokerImage, now_ms: i64) -> bool {
        let timeout = self.config.broker_session_timeout_ms as i64;
        !broker.fenced && self.session(broker.id, now_ms).last_contact_ms.saturating_add(timeout) >= now_ms
    }

    /// STALE_BROKER_EPOCH unless `broker_id` is registered with `broker_epoch`.
    pub(crate) fn check_broker_epoch(&self, broker_id: i32, broker_epoch: i64) -> Result<()> {
        match self.image().broker(broker_id) {
            None => Err(invalid(ResponseError::StaleBrokerEpoch, format!("No broker registration found for broker id {broker_id}"))),
            Some(b) if b.epoch != broker_epoch => Err(invalid(
                ResponseError::StaleBrokerEpoch,
                format!("Expected broker epoch {}, but got broker epoch {broker_epoch}", b.epoch),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Registers a broker (BrokerRegistration), as Kafka's controller: the
    /// cluster id must match; a live registration of the id by another
    /// incarnation is DUPLICATE_BROKER_REGISTRATION; the same incarnation
    /// again (a retry) keeps its epoch and state; a new incarnation gets a
    /// new epoch, starts fenced and leaves every ISR and ELR (it may have
    /// lost records it had).
    pub fn register_broker(&mut self, req: &BrokerRegistrationRequest, now_ms: i64) -> BrokerRegistrationResponse {
        match self.try_register_broker(req, now_ms) {
            Ok(epoch) => BrokerRegistrationResponse::default().with_broker_epoch(epoch),
            Err(e) => {
                tracing::warn!(broker = req.broker_id.0, error = %e, "broker registration refused");
                BrokerRegistrationResponse::default().with_error_code(e.code()).with_broker_epoch(-1)
            }
        }
    }

    fn try_register_broker(&mut self, req: &BrokerRegistrationRequest, now_ms: i64) -> Result<i64> {
        if let Some(cluster_id) = &self.cluster_id {
            if cluster_id.as_str() != req.cluster_id.as_str() {
                return Err(invalid(
                    ResponseError::InconsistentClusterId,
                    format!("Expected cluster ID {cluster_id}, but got cluster ID {}", req.cluster_id.as_str()),
                ));
            }
        }
        if req.is_migrating_zk_broker {
            return Err(invalid(ResponseError::BrokerIdNotRegistered, "Controller does not support registering ZK brokers."));
        }
        let id = req.broker_id.0;
        let existing = self.image().broker(id).cloned();
        if let Some(existing) = &existing {
            if self.has_valid_session(existing, now_ms) && existing.incarnation_id != req.incarnation_id {
                return Err(invalid(ResponseError::DuplicateBrokerRegistration, "Another broker is registered with that broker id."));
            }
        }
        let listeners = req
            .listeners
            .iter()
            .map(|l| BrokerEndpoint {
                name: l.name.to_string(),
                host: l.host.to_string(),
                port: l.port,
                security_protocol: l.security_protocol,
            })
            .collect();
        let same_incarnation = existing.as_ref().filter(|e| e.incarnation_id == req.incarnation_id);
        let mut records = Vec::new();
        let (epoch, fenced, in_controlled_shutdown) = match same_incarnation {
            Some(e) => {
                tracing::info!(broker = id, epoch = e.epoch, "amending the registration of broker {id}: its epoch stays");
                (e.epoch, e.fenced, e.in_controlled_shutdown)
            }
            None => {
                let epoch = self.image().next_broker_epoch();
                // A new process: whatever it held may be gone; it leaves ISRs and ELRs.
                let held: Vec<_> = self.partitions_where(|p| p.isr.contains(&id) || p.elr.contains(&id)).collect();
                records.extend(self.leader_and_isr_updates(held, super::election::Change::uncleanly_shut_down(id)));
                tracing::info!(broker = id, epoch, incarnation = %req.incarnation_id, previous = ?existing.as_ref().map(|e| e.incarnation_id), "registering broker {id}");
                (epoch, true, false)
            }
        };
        records.push(MetadataRecord::RegisterBroker(BrokerRegistrationRecord {
            broker_id: id,
            broker_epoch: epoch,
            incarnation_id: req.incarnation_id,
            listeners,
            rack: req.rack.as_ref().map(|r| r.to_string()),
            fenced,
            in_controlled_shutdown,
        }));
        let committed = self.commit(&records, now_ms)?;
        if same_incarnation.is_none() {
            self.sessions.remove(&id);
        }
        let session = self.session(id, now_ms);
        session.last_contact_ms = now_ms;
        session.registration_offset = committed.last_offset;
        Ok(epoch)
    }

    /// Answers a broker's heartbeat (BrokerHeartbeat), as Kafka's controller:
    /// STALE_BROKER_EPOCH for an unknown registration; a fenced broker whose
    /// metadata offset reached its registration is unfenced (and leads the
    /// leaderless partitions it can); `want_fence` fences; `want_shut_down`
    /// starts a controlled shutdown (leaderships move to other ISR members,
    /// the broker leaves every ISR) that completes, `should_shut_down`, once
    /// it leads nothing and every active broker has seen that.
    pub fn broker_heartbeat(&mut self, req: &BrokerHeartbeatRequest, now_ms: i64) -> BrokerHeartbeatResponse {
        match self.try_broker_heartbeat(req, now_ms) {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(broker = req.broker_id.0, error = %e, "broker heartbeat refused");
                BrokerHeartbeatResponse::default().with_error_code(e.code()).with_is_fenced(true)
            }
        }
    }

    fn try_broker_heartbeat(&mut self, req: &BrokerHeartbeatRequest, now_ms: i64) -> Result<BrokerHeartbeatResponse> {
        let id = req.broker_id.0;
        self.check_broker_epoch(id, req.broker_epoch)?;
        let broker = self.image().broker(id).cloned().ok_or_else(|| invalid(ResponseError::StaleBrokerEpoch, "not registered"))?;
        let registration_offset = self.session(id, now_ms).registration_offset;
        let caught_up = req.current_metadata_offset >= registration_offset;
        let current = BrokerState::of(&broker);
        let next = self.next_state(&broker, current, req, caught_up, now_ms);
        let records = if current == next {
            Vec::new()
        } else {
            match next {
                BrokerState::Fenced | BrokerState::ShutdownNow => {
                    tracing::info!(broker = id, ?current, ?next, "broker {id} is fenced at its request");
                    self.fence_records(&broker)
                }
                BrokerState::Unfenced => {
                    tracing::info!(broker = id, registration_offset, "broker {id} caught up with its registration: unfenced");
                    self.unfence_records(&broker)
                }
                BrokerState::ControlledShutdown => {
                    tracing::info!(broker = id, "broker {id} starts a controlled shutdown");
                    self.controlled_shutdown_records(&broker)
                }
            }
        };
        let offset = if records.is_empty() { self.last_offset } else { self.commit(&records, now_ms)?.last_offset };
        let session = self.session(id, now_ms);
        session.last_contact_ms = now_ms;
        session.metadata_offset = req.current_metadata_offset;
        match next {
            BrokerState::ControlledShutdown => {
                session.controlled_shutdown_offset.get_or_insert(offset);
            }
            _ => session.controlled_shutdown_offset = None,
        }
        if session.offline_log_dirs != req.offline_log_dirs {
            // Replicas are not assigned to directories in the metadata (no
            // JBOD directory ids): a Potok broker in a cluster stops on a
            // failed log dir (log_dir_health.rs), so its session expires and
            // fencing moves its leaderships; this report is for operators.
            tracing::warn!(broker = id, dirs = ?req.offline_log_dirs, "broker {id} reports offline log directories");
            session.offline_log_dirs = req.offline_log_dirs.clone();
        }
        Ok(BrokerHeartbeatResponse::default()
            .with_is_caught_up(caught_up)
            .with_is_fenced(next.fenced())
            .with_should_shut_down(next == BrokerState::ShutdownNow))
    }

    /// Kafka's `calculateNextBrokerState`.
    fn next_state(&mut self, broker: &BrokerImage, current: BrokerState, req: &BrokerHeartbeatRequest, caught_up: bool, now_ms: i64) -> BrokerState {
        match current {
            BrokerState::Fenced if req.want_shut_down => BrokerState::ShutdownNow,
            BrokerState::Fenced if !req.want_fence && caught_up => BrokerState::Unfenced,
            BrokerState::Fenced => BrokerState::Fenced,
            BrokerState::Unfenced if req.want_fence && req.want_shut_down => BrokerState::ShutdownNow,
            BrokerState::Unfenced if req.want_fence => BrokerState::Fenced,
            BrokerState::Unfenced if req.want_shut_down => {
                if self.has_leaderships(broker.id) {
                    BrokerState::ControlledShutdown
                } else {
                    BrokerState::ShutdownNow
                }
            }
            BrokerState::Unfenced => BrokerState::Unfenced,
            BrokerState::ControlledShutdown => {
                if self.has_leaderships(broker.id) {
                    return BrokerState::ControlledShutdown;
                }
                let last = self.last_offset;
                let done_at = *self.session(broker.id, now_ms).controlled_shutdown_offset.get_or_insert(last);
                // Every active broker must have seen the leaderships move.
                if done_at <= self.lowest_active_offset(now_ms) {
                    BrokerState::ShutdownNow
                } else {
                    BrokerState::ControlledShutdown
                }
            }
            BrokerState::ShutdownNow => BrokerState::ShutdownNow,
        }
    }

    /// The lowest metadata offset the active (unfenced, not shutting down)
    /// brokers reported; `i64::MAX` with none.
    fn lowest_active_offset(&mut self, now_ms: i64) -> i64 {
        let active: Vec<i32> = self.image().brokers().filter(|b| b.is_usable()).map(|b| b.id).collect();
        active.into_iter().map(|id| self.session(id, now_ms).metadata_offset).min().unwrap_or(i64::MAX)
    }

    /// True if the broker leads a partition.
    fn has_leaderships(&self, broker_id: i32) -> bool {
        self.partitions_where(|p| p.leader == broker_id).next().is_some()
    }

    /// Kafka's `handleBrokerFenced`: out of every ISR (leaderships move), then fenced.
    fn fence_records(&self, broker: &BrokerImage) -> Vec<MetadataRecord> {
        let id = broker.id;
        let in_isr: Vec<_> = self.partitions_where(|p| p.isr.contains(&id)).collect();
        let mut records = self.leader_and_isr_updates(in_isr, super::election::Change::removing(id));
        if !broker.fenced {
            records.push(MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                broker_id: id,
                broker_epoch: broker.epoch,
                fenced: Some(true),
                in_controlled_shutdown: None,
            }));
        }
        records
    }

    /// Kafka's `handleBrokerUnfenced`: unfenced, and leads the leaderless
    /// partitions it can.
    fn unfence_records(&self, broker: &BrokerImage) -> Vec<MetadataRecord> {
        let id = broker.id;
        let mut records = vec![MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
            broker_id: id,
            broker_epoch: broker.epoch,
            fenced: Some(false),
            in_controlled_shutdown: None,
        })];
        let leaderless: Vec<_> = self.partitions_where(|p| p.leader < 0 && p.replicas.contains(&id)).collect();
        records.extend(self.leader_and_isr_updates(leaderless, super::election::Change::adding(id)));
        records
    }

    /// Kafka's `handleBrokerInControlledShutdown`: marked shutting down, out
    /// of every ISR, its leaderships moved to other ISR members.
    fn controlled_shutdown_records(&self, broker: &BrokerImage) -> Vec<MetadataRecord> {
        let id = broker.id;
        let mut records = Vec::new();
        if !broker.in_controlled_shutdown {
            records.push(MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                broker_id: id,
                broker_epoch: broker.epoch,
                fenced: None,
                in_controlled_shutdown: Some(true),
            }));
        }
        let in_isr: Vec<_> = self.partitions_where(|p| p.isr.contains(&id)).collect();
        records.extend(self.leader_and_isr_updates(in_isr, super::election::Change::removing(id)));
        records
    }

    /// Fences every broker not heard from for `broker.session.timeout.ms`
    /// (called periodically on the active controller), one change per
    /// broker as Kafka does; returns their ids.
    pub fn fence_expired_brokers(&mut self, now_ms: i64) -> Vec<i32> {
        let registered: Vec<i32> = self.image().brokers().map(|b| b.id).collect();
        self.sessions.retain(|id, _| registered.contains(id));
        let mut fenced = Vec::new();
        loop {
            let unfenced: Vec<BrokerImage> = self.image().brokers().filter(|b| !b.fenced).cloned().collect();
            let Some(stale) = unfenced.into_iter().find(|b| !self.has_valid_session(b, now_ms)) else { break };
            tracing::info!(broker = stale.id, "Fencing broker {} because its session has timed out.", stale.id);
            let records = self.fence_records(&stale);
            if let Err(e) = self.commit(&records, now_ms) {
                tracing::warn!(broker = stale.id, error = %e, "fencing broker {} failed", stale.id);
                break;
            }
            fenced.push(stale.id);
        }
        fenced
    }

    /// Hands a registered broker a block of producer ids (AllocateProducerIds):
    /// STALE_BROKER_EPOCH unless `broker_epoch` is its registration's.
    pub fn allocate_producer_ids(&mut self, broker_id: i32, broker_epoch: i64, now_ms: i64) -> Result<std::ops::Range<i64>> {
        self.check_broker_epoch(broker_id, broker_epoch)?;
        self.allocate_producer_id_block(PRODUCER_ID_BLOCK_SIZE, now_ms)
    }
}
