//! The classic rebalance protocol (JoinGroup / SyncGroup / Heartbeat /
//! LeaveGroup) for one group: member ids (KIP-394), generations, leader
//! election, client-side assignments passed through untouched, session and
//! rebalance timeouts, the initial rebalance delay, and static membership
//! (KIP-345).
//!
//! Time is passed in (`now`, milliseconds), so the state machine is tested
//! without sleeping; the coordinator's timer calls [`ClassicGroup::tick`].

use std::collections::HashMap;

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;

use super::store::{ClassicGroupValue, StoredMember};
use crate::config::GroupConfig;

/// The states of a classic group, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClassicState {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assigned.
    Stable,
}

impl ClassicState {
    /// Kafka's name for the state.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
        }
    }
}

/// An answer now, or one that comes when the rebalance gets there.
pub(crate) enum Answer<T> {
    /// Answer at once.
    Now(T),
    /// Wait for it.
    Later(oneshot::Receiver<T>),
}

/// A JoinGroup request, as the group needs it.
pub(crate) struct JoinRequest {
    /// The member id; empty for a new member.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// The client's id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Protocol type, e.g. `consumer`.
    pub protocol_type: String,
    /// Supported protocols (assignors) in preference order, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394: v4+ clients must first get a member id.
    pub require_known_member_id: bool,
}

/// A member of a classic group.
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    awaiting_join: Option<oneshot::Sender<JoinGroupResponse>>,
    awaiting_sync: Option<oneshot::Sender<SyncGroupResponse>>,
    session_deadline: i64,
}

impl Member {
    /// The member's metadata for a protocol.
    pub(crate) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(name, _)| name == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

/// One classic group's membership state.
pub(crate) struct ClassicGroup {
    pub(crate) state: ClassicState,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) generation: i32,
    pub(crate) leader: Option<String>,
    pub(crate) members: IndexMap<String, Member>,
    /// KIP-394 member ids handed out but not yet used, with their expiry.
    pending: HashMap<String, i64>,
    /// Static members: instance id to member id.
    statics: HashMap<String, String>,
    join_deadline: i64,
    /// During the initial rebalance delay: how much longer it may still grow.
    initial_delay_left: Option<i64>,
    new_member_joined: bool,
    sync_deadline: i64,
    pub(crate) state_timestamp: i64,
    /// Set when the stored group record no longer matches.
    pub(crate) dirty: bool,
}

/// A JoinGroup answer carrying only an error.
pub(crate) fn join_error(error: ResponseError, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(error.code())
        .with_generation_id(-1)
        .with_protocol_name(Some(StrBytes::from_static_str("")))
        .with_leader(StrBytes::from_static_str(""))
        .with_member_id(StrBytes::from_string(member_id.to_owned()))
}

fn sync_error(error: ResponseError) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(error.code())
}

fn new_member_id(client_id: &str, instance_id: Option<&str>) -> String {
    format!("{}-{}", instance_id.unwrap_or(client_id), uuid::Uuid::new_v4())
}

impl ClassicGroup {
    /// A new, empty group.
    pub(crate) fn new(now: i64) -> ClassicGroup {
        ClassicGroup {
            state: ClassicState::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: IndexMap::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            join_deadline: 0,
            initial_delay_left: None,
            new_member_joined: false,
            sync_deadline: 0,
            state_timestamp: now,
            dirty: false,
        }
    }

    /// Rebuilds a group from its stored record: its members stay until their
    /// sessions expire, as if they had just heartbeated.
    pub(crate) fn restore(value: ClassicGroupValue, now: i64) -> ClassicGroup {
        let mut group = ClassicGroup::new(value.state_timestamp.max(0));
        group.protocol_type = Some(value.protocol_type).filter(|t| !t.is_empty());
        group.generation = value.generation;
        group.protocol = value.protocol;
        group.leader = value.leader;
        for m in value.members {
            if let Some(instance) = &m.group_instance_id {
                group.statics.insert(instance.clone(), m.member_id.clone());
            }
            let protocol = group.protocol.clone().unwrap_or_default();
            group.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocols: vec![(protocol, m.subscription)],
                    assignment: m.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    session_deadline: now + i64::from(m.session_timeout_ms),
                },
            );
        }
        group.state = if group.members.is_empty() { ClassicState::Empty } else { ClassicState::Stable };
        group
    }

    /// The group was loaded by a new coordinator, done at `now`: every
    /// member's session starts then, as Kafka's `onLoaded` reschedules their
    /// heartbeat expiry (they could not heartbeat while the load ran).
    pub(crate) fn loaded(&mut self, now: i64) {
        for m in self.members.values_mut() {
            m.session_deadline = now + i64::from(m.session_timeout_ms);
        }
    }

    /// The record that stores this group.
    pub(crate) fn to_stored(&self) -> ClassicGroupValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        let stable = self.state == ClassicState::Stable;
        ClassicGroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_timestamp,
            members: if stable {
                self.members
                    .values()
                    .map(|m| StoredMember {
                        member_id: m.id.clone(),
                        group_instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        rebalance_timeout_ms: m.rebalance_timeout_ms,
                        session_timeout_ms: m.session_timeout_ms,
                        subscription: m.metadata(&protocol),
                        assignment: m.assignment.clone(),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// True when the group has no members and none joining.
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    fn set_state(&mut self, state: ClassicState, now: i64) {
        self.state = state;
        self.state_timestamp = now;
    }

    /// The protocols every member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else { return Vec::new() };
        let mut candidates: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            candidates.retain(|c| m.protocols.iter().any(|(n, _)| n == c));
        }
        candidates
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        let candidates = self.candidate_protocols();
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(n, _)| candidates.contains(n))
    }

    /// Each member votes for its most preferred protocol all members support.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: IndexMap<&str, usize> = IndexMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes.into_iter().find(|(_, v)| *v == best).map(|(n, _)| n.to_string())
    }

    /// Checks a static member's instance id against its member id.
    fn check_instance(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ResponseError> {
        if let Some(instance) = instance_id {
            match self.statics.get(instance) {
                Some(known) if known != member_id => return Err(ResponseError::FencedInstanceId),
                Some(_) => {}
                None => return Err(ResponseError::UnknownMemberId),
            }
        }
        Ok(())
    }

    /// Checks that a member of the current generation sent a request.
    pub(crate) fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        self.check_instance(member_id, instance_id)?;
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Handles a JoinGroup.
    pub(crate) fn join(&mut self, req: JoinRequest, cfg: &GroupConfig, now: i64) -> Answer<JoinGroupResponse> {
        if req.session_timeout_ms < cfg.min_session_timeout_ms || req.session_timeout_ms > cfg.max_session_timeout_ms {
            return Answer::Now(join_error(ResponseError::InvalidSessionTimeout, &req.member_id));
        }
        if !self.supports(&req.protocol_type, &req.protocols) {
            return Answer::Now(join_error(ResponseError::InconsistentGroupProtocol, &req.member_id));
        }
        if req.member_id.is_empty() {
            self.join_new_member(req, cfg, now)
        } else {
            self.join_known_member(req, cfg, now)
        }
    }

    fn join_new_member(&mut self, req: JoinRequest, cfg: &GroupConfig, now: i64) -> Answer<JoinGroupResponse> {
        let new_id = new_member_id(&req.client_id, req.group_instance_id.as_deref());
        if let Some(instance) = req.group_instance_id.clone() {
            if let Some(old_id) = self.statics.get(&instance).cloned() {
                return self.replace_static_member(old_id, new_id, req, cfg, now);
            }
        } else if req.require_known_member_id {
            if self.members.len() + self.pending.len() >= cfg.max_size {
                return Answer::Now(join_error(ResponseError::GroupMaxSizeReached, ""));
            }
            self.pending.insert(new_id.clone(), now + i64::from(req.session_timeout_ms));
            return Answer::Now(join_error(ResponseError::MemberIdRequired, &new_id));
        }
        if self.members.len() >= cfg.max_size {
            return Answer::Now(join_error(ResponseError::GroupMaxSizeReached, ""));
        }
        self.add_member_and_rebalance(new_id, req, cfg, now)
    }

    fn join_known_member(&mut self, req: JoinRequest, cfg: &GroupConfig, now: i64) -> Answer<JoinGroupResponse> {
        let member_id = req.member_id.clone();
        if self.pending.remove(&member_id).is_some() {
            if self.members.len() >= cfg.max_size {
                return Answer::Now(join_error(ResponseError::GroupMaxSizeReached, &member_id));
            }
            return self.add_member_and_rebalance(member_id, req, cfg, now);
        }
        if let Err(e) = self.check_instance(&member_id, req.group_instance_id.as_deref()) {
            return Answer::Now(join_error(e, &member_id));
        }
        if !self.members.contains_key(&member_id) {
            return Answer::Now(join_error(ResponseError::UnknownMemberId, &member_id));
        }
        let unchanged = self.members.get(&member_id).is_some_and(|m| m.protocols == req.protocols);
        match self.state {
            ClassicState::PreparingRebalance => {
                let rx = self.update_member(&member_id, req);
                self.try_complete_join(now);
                Answer::Later(rx)
            }
            ClassicState::CompletingRebalance if unchanged => {
                // The member lost the join response: send it again.
                Answer::Now(self.current_join_response(&member_id))
            }
            ClassicState::Stable if unchanged && self.leader.as_deref() != Some(&member_id) => {
                Answer::Now(self.current_join_response(&member_id))
            }
            ClassicState::CompletingRebalance | ClassicState::Stable => {
                let rx = self.update_member(&member_id, req);
                self.prepare_rebalance(cfg, now);
                Answer::Later(rx)
            }
            ClassicState::Empty => Answer::Now(join_error(ResponseError::UnknownMemberId, &member_id)),
        }
    }

    /// KIP-345: a static member rejoined with a new member id; the old one is fenced.
    fn replace_static_member(
        &mut self,
        old_id: String,
        new_id: String,
        req: JoinRequest,
        cfg: &GroupConfig,
        now: i64,
    ) -> Answer<JoinGroupResponse> {
        let Some(mut member) = self.members.shift_remove(&old_id) else {
            return self.add_member_and_rebalance(new_id, req, cfg, now);
        };
        if let Some(tx) = member.awaiting_join.take() {
            let _ = tx.send(join_error(ResponseError::FencedInstanceId, &old_id));
        }
        if let Some(tx) = member.awaiting_sync.take() {
            let _ = tx.send(sync_error(ResponseError::FencedInstanceId));
        }
        let unchanged = member.protocols == req.protocols;
        member.id = new_id.clone();
        member.session_deadline = now + i64::from(req.session_timeout_ms);
        self.members.insert(new_id.clone(), member);
        if let Some(instance) = &req.group_instance_id {
            self.statics.insert(instance.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            ClassicState::Stable if unchanged => {
                // Same subscription: no rebalance, the member gets its assignment
                // back through SyncGroup.
                self.dirty = true;
                let mut resp = self.current_join_response(&new_id);
                resp.members.clear();
                Answer::Now(resp)
            }
            ClassicState::PreparingRebalance => {
                let rx = self.update_member(&new_id, req);
                self.try_complete_join(now);
                Answer::Later(rx)
            }
            _ => {
                let rx = self.update_member(&new_id, req);
                self.prepare_rebalance(cfg, now);
                Answer::Later(rx)
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        req: JoinRequest,
        cfg: &GroupConfig,
        now: i64,
    ) -> Answer<JoinGroupResponse> {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            self.statics.insert(instance.clone(), member_id.clone());
        }
        self.members.insert(
            member_id.clone(),
            Member {
                id: member_id.clone(),
                instance_id: None,
                client_id: String::new(),
                client_host: String::new(),
                rebalance_timeout_ms: 0,
                session_timeout_ms: 0,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                awaiting_join: None,
                awaiting_sync: None,
                session_deadline: now + i64::from(req.session_timeout_ms),
            },
        );
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        self.new_member_joined = true;
        let rx = self.update_member(&member_id, req);
        match self.state {
            ClassicState::PreparingRebalance => self.try_complete_join(now),
            _ => self.prepare_rebalance(cfg, now),
        }
        Answer::Later(rx)
    }

    fn update_member(&mut self, member_id: &str, req: JoinRequest) -> oneshot::Receiver<JoinGroupResponse> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(member_id) {
            if let Some(old) = m.awaiting_join.replace(tx) {
                // A second join from the same member replaces the first.
                let _ = old.send(join_error(ResponseError::RebalanceInProgress, member_id));
            }
            m.instance_id = req.group_instance_id;
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
            m.protocols = req.protocols;
        }
        rx
    }

    fn current_join_response(&self, member_id: &str) -> JoinGroupResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinGroupResponse::default()
            .with_generation_id(self.generation)
            .with_protocol_type(self.protocol_type.clone().map(StrBytes::from_string))
            .with_protocol_name(Some(StrBytes::from_string(protocol.clone())))
            .with_leader(StrBytes::from_string(self.leader.clone().unwrap_or_default()))
            .with_member_id(StrBytes::from_string(member_id.to_owned()))
            .with_members(if is_leader { self.member_list(&protocol) } else { Vec::new() })
    }

    fn member_list(&self, protocol: &str) -> Vec<JoinGroupResponseMember> {
        self.members
            .values()
            .map(|m| {
                JoinGroupResponseMember::default()
                    .with_member_id(StrBytes::from_string(m.id.clone()))
                    .with_group_instance_id(m.instance_id.clone().map(StrBytes::from_string))
                    .with_metadata(m.metadata(protocol))
            })
            .collect()
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members.values().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0)
    }

    /// Starts a rebalance: members must rejoin before the rebalance timeout.
    fn prepare_rebalance(&mut self, cfg: &GroupConfig, now: i64) {
        if self.state == ClassicState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(tx) = m.awaiting_sync.take() {
                    let _ = tx.send(sync_error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let timeout = self.max_rebalance_timeout();
        if self.state == ClassicState::Empty && cfg.initial_rebalance_delay_ms > 0 {
            let delay = cfg.initial_rebalance_delay_ms.min(timeout.max(1));
            self.join_deadline = now + delay;
            self.initial_delay_left = Some((timeout - delay).max(0));
            self.new_member_joined = false;
        } else {
            self.join_deadline = now + timeout;
            self.initial_delay_left = None;
        }
        self.set_state(ClassicState::PreparingRebalance, now);
        self.try_complete_join(now);
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn try_complete_join(&mut self, now: i64) {
        if self.state == ClassicState::PreparingRebalance && self.initial_delay_left.is_none() && self.all_joined() {
            self.complete_join(now);
        }
    }

    /// Ends the join phase: members that did not rejoin are dropped, the
    /// generation advances and every joined member gets its answer.
    fn complete_join(&mut self, now: i64) {
        let gone: Vec<String> =
            self.members.values().filter(|m| m.awaiting_join.is_none()).map(|m| m.id.clone()).collect();
        for id in gone {
            self.drop_member(&id);
        }
        self.generation += 1;
        self.initial_delay_left = None;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(ClassicState::Empty, now);
            self.dirty = true;
            return;
        }
        self.protocol = self.select_protocol();
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(ClassicState::CompletingRebalance, now);
        self.sync_deadline = now + self.max_rebalance_timeout();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let resp = self.current_join_response(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.session_deadline = now + i64::from(m.session_timeout_ms);
                if let Some(tx) = m.awaiting_join.take() {
                    let _ = tx.send(resp);
                }
            }
        }
    }

    fn drop_member(&mut self, member_id: &str) {
        if let Some(mut m) = self.members.shift_remove(member_id) {
            if let Some(instance) = &m.instance_id {
                if self.statics.get(instance).map(String::as_str) == Some(member_id) {
                    self.statics.remove(instance);
                }
            }
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(join_error(ResponseError::UnknownMemberId, member_id));
            }
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(sync_error(ResponseError::UnknownMemberId));
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// Removes a member (left or expired) and rebalances the rest.
    fn remove_member(&mut self, member_id: &str, cfg: &GroupConfig, now: i64) {
        self.drop_member(member_id);
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => self.prepare_rebalance(cfg, now),
            ClassicState::PreparingRebalance => self.try_complete_join(now),
            ClassicState::Empty => {}
        }
    }

    /// Handles a SyncGroup.
    pub(crate) fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol: (Option<&str>, Option<&str>),
        assignments: Vec<(String, Bytes)>,
        now: i64,
    ) -> Answer<SyncGroupResponse> {
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return Answer::Now(sync_error(e));
        }
        let (protocol_type, protocol_name) = protocol;
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return Answer::Now(sync_error(ResponseError::InconsistentGroupProtocol));
        }
        match self.state {
            ClassicState::Empty => Answer::Now(sync_error(ResponseError::UnknownMemberId)),
            ClassicState::PreparingRebalance => Answer::Now(sync_error(ResponseError::RebalanceInProgress)),
            ClassicState::Stable => Answer::Now(self.sync_response(member_id)),
            ClassicState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    m.awaiting_sync = Some(tx);
                    m.session_deadline = now + i64::from(m.session_timeout_ms);
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.set_state(ClassicState::Stable, now);
                    // The members get their assignments once it is stored
                    // (`release_syncs`), never before.
                    self.dirty = true;
                }
                Answer::Later(rx)
            }
        }
    }

    /// Answers the members waiting for their assignment, once the stable
    /// generation is stored.
    pub(crate) fn release_syncs(&mut self) {
        if self.state != ClassicState::Stable {
            return;
        }
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let resp = self.sync_response(&id);
            if let Some(tx) = self.members.get_mut(&id).and_then(|m| m.awaiting_sync.take()) {
                let _ = tx.send(resp);
            }
        }
    }

    /// Answers every waiting JoinGroup and SyncGroup with `error`: what the
    /// group decided could not be stored.
    pub(crate) fn fail_waiting(&mut self, error: ResponseError) {
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(join_error(error, &m.id));
            }
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(sync_error(error));
            }
        }
    }

    /// A stored change that did not become committed: the waiting members get
    /// `error` and a group past its join phase rebalances (Kafka's
    /// `resetAndPropagateAssignmentError` then `maybePrepareRebalance`).
    pub(crate) fn store_failed(&mut self, error: ResponseError, cfg: &GroupConfig, now: i64) {
        self.fail_waiting(error);
        if matches!(self.state, ClassicState::Stable | ClassicState::CompletingRebalance) {
            self.prepare_rebalance(cfg, now);
        }
    }

    fn sync_response(&self, member_id: &str) -> SyncGroupResponse {
        SyncGroupResponse::default()
            .with_protocol_type(self.protocol_type.clone().map(StrBytes::from_string))
            .with_protocol_name(self.protocol.clone().map(StrBytes::from_string))
            .with_assignment(self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default())
    }

    /// Handles a Heartbeat.
    pub(crate) fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), ResponseError> {
        if self.state == ClassicState::Empty {
            return Err(ResponseError::UnknownMemberId);
        }
        self.check_member(member_id, instance_id, generation)?;
        if let Some(m) = self.members.get_mut(member_id) {
            m.session_deadline = now + i64::from(m.session_timeout_ms);
        }
        match self.state {
            ClassicState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Handles one member of a LeaveGroup: by member id, or by instance id when
    /// the member id is empty. Returns the member id to answer with: the one
    /// the request named (empty when it named only the instance id), as Kafka,
    /// so clients can match the answer to what they asked.
    pub(crate) fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        cfg: &GroupConfig,
        now: i64,
    ) -> (String, Result<(), ResponseError>) {
        let resolved = match (member_id, instance_id) {
            ("", Some(instance)) => match self.statics.get(instance) {
                Some(id) => id.clone(),
                None => return (String::new(), Err(ResponseError::UnknownMemberId)),
            },
            (id, Some(instance)) => match self.statics.get(instance) {
                Some(known) if known != id => return (id.to_string(), Err(ResponseError::FencedInstanceId)),
                _ => id.to_string(),
            },
            (id, None) => id.to_string(),
        };
        if self.pending.remove(&resolved).is_some() {
            self.try_complete_join(now);
            return (member_id.to_string(), Ok(()));
        }
        if !self.members.contains_key(&resolved) {
            return (member_id.to_string(), Err(ResponseError::UnknownMemberId));
        }
        self.remove_member(&resolved, cfg, now);
        (member_id.to_string(), Ok(()))
    }

    /// Expires sessions, ends join phases at their deadline and drops members
    /// that did not sync in time.
    pub(crate) fn tick(&mut self, cfg: &GroupConfig, now: i64) {
        let expired_pending: Vec<String> =
            self.pending.iter().filter(|(_, deadline)| **deadline <= now).map(|(id, _)| id.clone()).collect();
        for id in expired_pending {
            self.pending.remove(&id);
            self.try_complete_join(now);
        }
        // Members blocked in a join or sync are governed by the rebalance
        // deadlines below, not their session: their heartbeats queue behind it.
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none() && m.session_deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(member = %id, "group member session expired");
            self.remove_member(&id, cfg, now);
        }
        match self.state {
            ClassicState::PreparingRebalance if now >= self.join_deadline => match self.initial_delay_left {
                Some(left) if self.new_member_joined && left > 0 => {
                    let extra = cfg.initial_rebalance_delay_ms.min(left);
                    self.join_deadline = now + extra;
                    self.initial_delay_left = Some(left - extra);
                    self.new_member_joined = false;
                }
                Some(_) => {
                    self.initial_delay_left = None;
                    if self.all_joined() {
                        self.complete_join(now);
                    } else {
                        let left = self.max_rebalance_timeout();
                        self.join_deadline = now + left;
                    }
                }
                None => self.complete_join(now),
            },
            ClassicState::CompletingRebalance if now >= self.sync_deadline => {
                let late: Vec<String> =
                    self.members.values().filter(|m| m.awaiting_sync.is_none()).map(|m| m.id.clone()).collect();
                for id in late {
                    tracing::info!(member = %id, "group member did not sync in time");
                    self.drop_member(&id);
                }
                self.prepare_rebalance(cfg, now);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(initial_delay_ms: i64) -> GroupConfig {
        let mut cfg = crate::config::ServerConfig::from_entries(vec![]).expect("defaults").groups;
        cfg.initial_rebalance_delay_ms = initial_delay_ms;
        cfg
    }

    fn request(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member_id.to_string(),
            group_instance_id: instance.map(str::to_string),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 10_000,
            session_timeout_ms: 6_000,
            protocol_type: "consumer".into(),
            protocols: protocols.iter().map(|p| (p.to_string(), Bytes::from(p.to_string()))).collect(),
            require_known_member_id: true,
        }
    }

    fn now_answer<T>(answer: Answer<T>) -> T {
        match answer {
            Answer::Now(v) => v,
            Answer::Later(_) => panic!("expected an immediate answer"),
        }
    }

    fn later<T>(answer: Answer<T>) -> oneshot::Receiver<T> {
        match answer {
            Answer::Later(rx) => rx,
            Answer::Now(_) => panic!("expected a deferred answer"),
        }
    }

    /// KIP-394: the first join gets a member id, the second really joins.
    fn join_new(group: &mut ClassicGroup, cfg: &GroupConfig, now: i64) -> (String, oneshot::Receiver<JoinGroupResponse>) {
        let first = now_answer(group.join(request("", None, &["range"]), cfg, now));
        assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
        let id = first.member_id.to_string();
        (id.clone(), later(group.join(request(&id, None, &["range"]), cfg, now)))
    }

    #[test]
    fn members_join_after_the_initial_delay_and_the_leader_gets_the_member_list() {
        let cfg = config(3_000);
        let mut group = ClassicGroup::new(0);
        let (a, mut rx_a) = join_new(&mut group, &cfg, 0);
        let (b, mut rx_b) = join_new(&mut group, &cfg, 1_000);
        group.tick(&cfg, 2_999);
        assert!(rx_a.try_recv().is_err(), "still inside the initial delay");
        // b joined during the delay: it is extended once more.
        group.tick(&cfg, 3_000);
        assert!(rx_a.try_recv().is_err());
        group.tick(&cfg, 6_000);
        let ja = rx_a.try_recv().expect("a answered");
        let jb = rx_b.try_recv().expect("b answered");
        assert_eq!(ja.generation_id, 1);
        assert_eq!(ja.leader.to_string(), a);
        assert_eq!(ja.members.len(), 2, "the leader sees every member");
        assert!(jb.members.is_empty());
        assert_eq!(jb.member_id.to_string(), b);
        assert_eq!(group.state, ClassicState::CompletingRebalance);

        let mut rx_sync_b = later(group.sync(&b, None, 1, (None, None), vec![], 6_001));
        let sync_a = group.sync(
            &a,
            None,
            1,
            (Some("consumer"), Some("range")),
            vec![(a.clone(), Bytes::from_static(b"A")), (b.clone(), Bytes::from_static(b"B"))],
            6_002,
        );
        let mut rx_sync_a = later(sync_a);
        assert!(rx_sync_a.try_recv().is_err(), "no assignment before it is stored");
        group.release_syncs();
        assert_eq!(rx_sync_a.try_recv().expect("leader synced").assignment, Bytes::from_static(b"A"));
        assert_eq!(rx_sync_b.try_recv().expect("follower synced").assignment, Bytes::from_static(b"B"));
        assert_eq!(group.state, ClassicState::Stable);
        assert!(group.dirty, "a stable generation is stored");
    }

    fn stable_pair(cfg: &GroupConfig) -> (ClassicGroup, String, String) {
        let mut group = ClassicGroup::new(0);
        let (a, _) = join_new(&mut group, cfg, 0);
        let (b, _) = join_new(&mut group, cfg, 0);
        // b's arrival started a new rebalance: a rejoins, as clients do.
        assert_eq!(group.state, ClassicState::PreparingRebalance);
        let _ = group.join(request(&a, None, &["range"]), cfg, 0);
        let gen = group.generation;
        assert_eq!(gen, 2);
        let _ = group.sync(&b, None, gen, (None, None), vec![], 1);
        let _ = group.sync(&a, None, gen, (None, None), vec![], 1);
        assert_eq!(group.state, ClassicState::Stable);
        group.release_syncs(); // as the coordinator does once the generation is stored
        (group, a, b)
    }

    #[test]
    fn a_member_whose_session_expires_is_removed_and_the_rest_must_rejoin() {
        let cfg = config(0);
        let (mut group, a, b) = stable_pair(&cfg);
        let gen = group.generation;
        assert_eq!(group.heartbeat(&a, None, gen, 5_000), Ok(()));
        group.tick(&cfg, 7_000);
        assert!(!group.members.contains_key(&b), "b never heartbeated");
        assert_eq!(group.state, ClassicState::PreparingRebalance);
        assert_eq!(group.heartbeat(&a, None, gen, 7_001), Err(ResponseError::RebalanceInProgress));
        let mut rx = later(group.join(request(&a, None, &["range"]), &cfg, 7_002));
        let joined = rx.try_recv().expect("sole member completes the join at once");
        assert_eq!(joined.generation_id, gen + 1);
        assert_eq!(group.heartbeat(&a, None, gen, 7_003), Err(ResponseError::IllegalGeneration));
        assert_eq!(group.heartbeat("nobody", None, gen + 1, 7_003), Err(ResponseError::UnknownMemberId));
    }

    #[test]
    fn leaving_member_triggers_a_rebalance_and_the_last_one_empties_the_group() {
        let cfg = config(0);
        let (mut group, a, b) = stable_pair(&cfg);
        assert_eq!(group.leave(&b, None, &cfg, 10).1, Ok(()));
        assert_eq!(group.state, ClassicState::PreparingRebalance);
        assert_eq!(group.leave(&b, None, &cfg, 11).1, Err(ResponseError::UnknownMemberId));
        assert_eq!(group.leave(&a, None, &cfg, 12).1, Ok(()));
        assert_eq!(group.state, ClassicState::Empty);
        assert!(group.is_empty());
    }

    #[test]
    fn leave_by_instance_id_removes_the_static_member_and_answers_with_the_empty_member_id() {
        let cfg = config(0);
        let mut group = ClassicGroup::new(0);
        let mut rx = later(group.join(request("", Some("inst-1"), &["range"]), &cfg, 0));
        let id = rx.try_recv().expect("static member joined").member_id.to_string();
        // Kafka echoes the identity as requested: admin clients match answers by it.
        assert_eq!(group.leave("", Some("inst-1"), &cfg, 1), (String::new(), Ok(())));
        assert!(!group.members.contains_key(&id));
        assert!(group.is_empty());
        assert_eq!(group.leave("", Some("inst-1"), &cfg, 2), (String::new(), Err(ResponseError::UnknownMemberId)));
    }

    #[test]
    fn sync_timeout_drops_members_that_never_synced() {
        let cfg = config(0);
        let mut group = ClassicGroup::new(0);
        let (a, _) = join_new(&mut group, &cfg, 0);
        assert_eq!(group.state, ClassicState::CompletingRebalance);
        group.tick(&cfg, 10_001);
        assert!(!group.members.contains_key(&a));
        assert_eq!(group.state, ClassicState::Empty);
    }

    #[test]
    fn static_member_rejoining_with_a_new_id_fences_the_old_one_without_rebalance() {
        let cfg = config(0);
        let mut group = ClassicGroup::new(0);
        let mut rx = later(group.join(request("", Some("inst-1"), &["range"]), &cfg, 0));
        let old = rx.try_recv().expect("static members join without MEMBER_ID_REQUIRED").member_id.to_string();
        let gen = group.generation;
        let _ = group.sync(&old, Some("inst-1"), gen, (None, None), vec![(old.clone(), Bytes::from_static(b"X"))], 1);
        assert_eq!(group.state, ClassicState::Stable);

        let rejoined = now_answer(group.join(request("", Some("inst-1"), &["range"]), &cfg, 2));
        let new = rejoined.member_id.to_string();
        assert_ne!(new, old);
        assert_eq!(rejoined.generation_id, gen, "no rebalance for an unchanged static member");
        assert_eq!(group.state, ClassicState::Stable);
        assert_eq!(group.heartbeat(&old, Some("inst-1"), gen, 3), Err(ResponseError::FencedInstanceId));
        let sync = now_answer(group.sync(&new, Some("inst-1"), gen, (None, None), vec![], 4));
        assert_eq!(sync.assignment, Bytes::from_static(b"X"), "the assignment survives the restart");
    }

    #[test]
    fn protocols_are_chosen_among_those_every_member_supports() {
        let cfg = config(0);
        let mut group = ClassicGroup::new(0);
        let first = now_answer(group.join(request("", None, &["roundrobin", "range"]), &cfg, 0));
        let a = first.member_id.to_string();
        let _ = group.join(request(&a, None, &["roundrobin", "range"]), &cfg, 0);
        let bad = now_answer(group.join(request("", None, &["sticky"]), &cfg, 1));
        assert_eq!(bad.error_code, ResponseError::InconsistentGroupProtocol.code());
        assert_eq!(group.protocol.as_deref(), Some("roundrobin"));
    }

    #[test]
    fn stored_group_restores_its_members_and_generation() {
        let cfg = config(0);
        let (group, a, _) = stable_pair(&cfg);
        let restored = ClassicGroup::restore(group.to_stored(), 100);
        assert_eq!(restored.generation, group.generation);
        assert_eq!(restored.state, ClassicState::Stable);
        assert_eq!(restored.leader.as_deref(), Some(a.as_str()));
        assert_eq!(restored.members.len(), 2);
    }
}
