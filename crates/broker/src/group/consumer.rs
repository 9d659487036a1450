//! KIP-848 consumer groups (ConsumerGroupHeartbeat): server-side assignment and
//! member reconciliation, as Kafka's new group coordinator does it.
//!
//! The group epoch advances whenever membership, subscriptions or the
//! subscribed topics' partitions change. When it is ahead of the target
//! assignment's epoch, the next heartbeat runs the server assignor, which gives
//! every member a target assignment. Each member then moves towards its target
//! on its own heartbeats: first it is asked to revoke the partitions it must
//! give up (it acknowledges by no longer reporting them as owned), then it
//! moves to the new epoch and receives the partitions that are free; a
//! partition still held by its previous owner is given only once released.
//! Members that stop heartbeating for `group.consumer.session.timeout.ms`, or
//! do not revoke within their rebalance timeout, are removed.
//!
//! Every change is collected as `__consumer_offsets` records (Kafka's: the
//! group epoch, each member's metadata, target assignment and current
//! assignment, the target assignment's epoch), which the coordinator appends
//! before it answers; a restart replays them ([`ConsumerGroup::replay`]) and
//! members carry on with their epochs and partitions. Time is passed in (`now`,
//! milliseconds).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use super::assignor::{self, Assignment, MemberSpec};
use super::store::{ConsumerMemberValue, CurrentAssignmentValue, StoredKey, StoredValue};
use super::shard::{Pending, Shard};
use super::{append_error, Group, GroupCoordinator, Membership, TopicCatalog};
use crate::config::GroupConfig;

/// The member epoch of a member leaving the group.
pub(crate) const LEAVE_EPOCH: i32 = -1;
/// The member epoch of a static member leaving for a while (it keeps its
/// partitions until its session expires).
pub(crate) const LEAVE_STATIC_EPOCH: i32 = -2;
/// First ConsumerGroupHeartbeat version where the client chooses its member id (KIP-1082).
const CLIENT_MEMBER_ID_VERSION: i16 = 1;

/// Where a member is in reconciling towards its target assignment (Kafka's
/// `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberState {
    /// Has its whole target assignment at the target epoch, or is about to move to it.
    Stable,
    /// Must revoke partitions before it moves to the next epoch.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
}

impl MemberState {
    /// Kafka's stored code.
    fn code(self) -> i8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
        }
    }

    fn from_code(code: i8) -> MemberState {
        match code {
            0 => MemberState::Stable,
            1 => MemberState::UnrevokedPartitions,
            // Kafka's UNKNOWN (127), or a state of a later version: the next
            // heartbeat reconciles the member from what it holds, which it does
            // for every state but Stable.
            _ => MemberState::UnreleasedPartitions,
        }
    }
}

/// One member of a consumer group.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// Member id.
    pub(crate) id: String,
    /// Static membership id.
    pub(crate) instance_id: Option<String>,
    /// Rack id.
    pub(crate) rack_id: Option<String>,
    /// The client's id.
    pub(crate) client_id: String,
    /// The client's address.
    pub(crate) client_host: String,
    /// How long the member may take to revoke partitions.
    pub(crate) rebalance_timeout_ms: i32,
    /// Subscribed topic names.
    pub(crate) subscribed_topic_names: Vec<String>,
    /// Subscribed topic regex, as sent.
    pub(crate) subscribed_topic_regex: Option<String>,
    /// The regex, compiled to match whole topic names (as Java's `matches`).
    regex: Option<regex::Regex>,
    /// The existing topics the regex matches, as last resolved.
    regex_topics: Vec<String>,
    /// The server assignor the member asked for.
    pub(crate) server_assignor: Option<String>,
    /// Member epoch.
    pub(crate) epoch: i32,
    previous_epoch: i32,
    state: MemberState,
    /// The partitions the member owns (or is being given).
    pub(crate) assigned: Assignment,
    /// The partitions the member must revoke.
    pending_revocation: Assignment,
    session_deadline: i64,
    /// When the member must have revoked, and the epoch this applies to.
    revocation_deadline: Option<(i64, i32)>,
}

impl Member {
    fn new(id: String) -> Member {
        Member {
            id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: 0,
            subscribed_topic_names: Vec::new(),
            subscribed_topic_regex: None,
            regex: None,
            regex_topics: Vec::new(),
            server_assignor: None,
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            session_deadline: 0,
            revocation_deadline: None,
        }
    }

    /// Every topic the member subscribes to: by name and by regex.
    fn topics(&self) -> impl Iterator<Item = &String> {
        self.subscribed_topic_names.iter().chain(&self.regex_topics)
    }

    fn is_reconciled_to(&self, epoch: i32) -> bool {
        self.state == MemberState::Stable && self.epoch == epoch
    }

    fn same_assignment_state(&self, other: &Member) -> bool {
        self.epoch == other.epoch
            && self.previous_epoch == other.previous_epoch
            && self.state == other.state
            && self.assigned == other.assigned
            && self.pending_revocation == other.pending_revocation
    }

    fn update_epoch(&mut self, epoch: i32) {
        self.previous_epoch = self.epoch;
        self.epoch = epoch;
    }

    /// The member's metadata record value.
    fn metadata_value(&self) -> ConsumerMemberValue {
        ConsumerMemberValue {
            instance_id: self.instance_id.clone(),
            rack_id: self.rack_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            subscribed_topic_names: self.subscribed_topic_names.clone(),
            subscribed_topic_regex: self.subscribed_topic_regex.clone(),
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            server_assignor: self.server_assignor.clone(),
        }
    }

    fn set_metadata(&mut self, v: ConsumerMemberValue) {
        self.instance_id = v.instance_id;
        self.rack_id = v.rack_id;
        self.client_id = v.client_id;
        self.client_host = v.client_host;
        self.subscribed_topic_names = v.subscribed_topic_names;
        self.regex = v.subscribed_topic_regex.as_deref().and_then(|r| compile_topic_regex(r).ok());
        self.subscribed_topic_regex = v.subscribed_topic_regex;
        self.rebalance_timeout_ms = v.rebalance_timeout_ms;
        self.server_assignor = v.server_assignor;
    }

    /// The member's current assignment record value.
    fn assignment_value(&self) -> CurrentAssignmentValue {
        CurrentAssignmentValue {
            member_epoch: self.epoch,
            previous_member_epoch: self.previous_epoch,
            state: self.state.code(),
            assigned: self.assigned.clone(),
            pending_revocation: self.pending_revocation.clone(),
        }
    }

    fn set_assignment(&mut self, v: CurrentAssignmentValue) {
        self.epoch = v.member_epoch;
        self.previous_epoch = v.previous_member_epoch;
        self.state = MemberState::from_code(v.state);
        self.assigned = v.assigned;
        self.pending_revocation = v.pending_revocation;
    }
}

/// One `__consumer_offsets` record: key, and value (None for a tombstone).
type Record = (StoredKey, Option<StoredValue>);

/// A ConsumerGroupHeartbeat, as the group needs it. Optional fields are None
/// when the member did not send them (unchanged since its last heartbeat).
#[derive(Debug, Clone, Default)]
pub(crate) struct Heartbeat {
    /// Member id; empty for a v0 member joining.
    pub member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member leaving for a while.
    pub member_epoch: i32,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Rack id.
    pub rack_id: Option<String>,
    /// Rebalance timeout, -1 if unchanged.
    pub rebalance_timeout_ms: i32,
    /// Subscribed topic names.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// Subscribed topic regex.
    pub subscribed_topic_regex: Option<String>,
    /// Requested server assignor.
    pub server_assignor: Option<String>,
    /// The partitions the member owns.
    pub owned: Option<Assignment>,
    /// The client's id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
}

/// A successful heartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeartbeatReply {
    /// Member id (generated for v0 members joining).
    pub member_id: String,
    /// The member's epoch.
    pub member_epoch: i32,
    /// How often the member should heartbeat; 0 when it left.
    pub heartbeat_interval_ms: i32,
    /// The member's full assignment, when it changed or was asked for.
    pub assignment: Option<Assignment>,
}

/// Compiles a subscription regex to match whole topic names, as Kafka's
/// `Pattern.matcher(topic).matches()` does.
fn compile_topic_regex(regex: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{regex})$"))
}

/// A heartbeat's or describe's failure: a Kafka error and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupError {
    /// The error code.
    pub error: ResponseError,
    /// The message, as Kafka words it.
    pub message: String,
}

fn fail<T>(error: ResponseError, message: impl Into<String>) -> Result<T, GroupError> {
    Err(GroupError { error, message: message.into() })
}

impl Heartbeat {
    /// Checks the request as Kafka does before it looks at the group.
    pub(crate) fn validate(&self, version: i16, cfg: &GroupConfig) -> Result<(), GroupError> {
        let invalid = |message: &str| fail(ResponseError::InvalidRequest, message);
        if (version >= CLIENT_MEMBER_ID_VERSION || self.member_epoch > 0 || self.member_epoch == LEAVE_EPOCH)
            && self.member_id.is_empty()
        {
            return invalid("MemberId can't be empty.");
        }
        if self.instance_id.as_deref() == Some("") {
            return invalid("InstanceId can't be empty.");
        }
        if self.rack_id.as_deref() == Some("") {
            return invalid("RackId can't be empty.");
        }
        if let Some(Err(e)) = self.subscribed_topic_regex.as_deref().map(compile_topic_regex) {
            return fail(ResponseError::InvalidRegularExpression, format!("SubscribedTopicRegex is not a valid regular expression: {e}"));
        }
        match self.member_epoch {
            0 => {
                if self.rebalance_timeout_ms == -1 {
                    return invalid("RebalanceTimeoutMs must be provided in first request.");
                }
                if !self.owned.as_ref().is_some_and(BTreeMap::is_empty) {
                    return invalid("TopicPartitions must be empty when (re-)joining.");
                }
                let regex = self.subscribed_topic_regex.as_deref().is_some_and(|r| !r.is_empty());
                if self.subscribed_topic_names.as_ref().is_none_or(Vec::is_empty) && !regex {
                    return invalid("SubscribedTopicNames or SubscribedTopicRegex must be set in first request.");
                }
            }
            LEAVE_STATIC_EPOCH => {
                if self.member_id.is_empty() {
                    return invalid("MemberId can't be empty.");
                }
                if self.instance_id.is_none() {
                    return invalid("InstanceId can't be null.");
                }
            }
            e if e < LEAVE_STATIC_EPOCH => return invalid("MemberEpoch is invalid."),
            _ => {}
        }
        if let Some(name) = &self.server_assignor {
            if !cfg.consumer_assignors.contains(name) {
                return fail(
                    ResponseError::UnsupportedAssignor,
                    format!(
                        "ServerAssignor {name} is not supported. Supported assignors: {}.",
                        cfg.consumer_assignors.join(", ")
                    ),
                );
            }
        }
        Ok(())
    }
}

/// A consumer group as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone)]
pub(crate) struct Description {
    /// Kafka's state name.
    pub state: &'static str,
    /// Group epoch.
    pub epoch: i32,
    /// Target assignment epoch.
    pub assignment_epoch: i32,
    /// The assignor the group uses.
    pub assignor: String,
    /// Members with their target assignments.
    pub members: Vec<(Member, Assignment)>,
}

/// One KIP-848 consumer group.
#[derive(Clone)] // the coordinator keeps a copy to undo a change it could not store
pub(crate) struct ConsumerGroup {
    /// The group id (the records' keys name it).
    id: String,
    epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    /// Static members: instance id to member id.
    statics: HashMap<String, String>,
    /// Target assignment by member id.
    target: HashMap<String, Assignment>,
    /// The subscribed topics as last assigned: name to id and partition count.
    subscribed: BTreeMap<String, (Uuid, i32)>,
    empty_since: i64,
    /// False after a load until the first heartbeat: `subscribed` is not
    /// stored, so it is rebuilt then.
    subscribed_known: bool,
    /// The records describing the changes not yet written, in order.
    pending_records: Vec<Record>,
}

impl ConsumerGroup {
    /// A new, empty group.
    pub(crate) fn new(id: &str, now: i64) -> ConsumerGroup {
        ConsumerGroup {
            id: id.to_string(),
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            statics: HashMap::new(),
            target: HashMap::new(),
            subscribed: BTreeMap::new(),
            empty_since: now,
            subscribed_known: true,
            pending_records: Vec::new(),
        }
    }

    /// Applies one replayed record of the group: key version 3 (not a
    /// tombstone: that deletes the group, which the caller does) or 5 to 8.
    /// Records for members not seen yet create them.
    pub(crate) fn replay(&mut self, key: StoredKey, value: Option<StoredValue>) {
        match (key, value) {
            (StoredKey::ConsumerGroup(_), Some(StoredValue::ConsumerGroup { epoch })) => self.epoch = epoch,
            (StoredKey::ConsumerMember { member, .. }, Some(StoredValue::ConsumerMember(v))) => {
                self.members.entry(member.clone()).or_insert_with(|| Member::new(member)).set_metadata(v);
            }
            (StoredKey::ConsumerMember { member, .. }, None) => {
                self.members.remove(&member);
            }
            (StoredKey::TargetAssignmentEpoch(_), value) => {
                self.assignment_epoch = match value {
                    Some(StoredValue::TargetAssignmentEpoch { epoch }) => epoch,
                    _ => 0,
                };
            }
            (StoredKey::TargetAssignment { member, .. }, Some(StoredValue::TargetAssignment(a))) => {
                self.target.insert(member, a);
            }
            (StoredKey::TargetAssignment { member, .. }, None) => {
                self.target.remove(&member);
            }
            (StoredKey::CurrentAssignment { member, .. }, Some(StoredValue::CurrentAssignment(v))) => {
                self.members.entry(member.clone()).or_insert_with(|| Member::new(member)).set_assignment(v);
            }
            (StoredKey::CurrentAssignment { member, .. }, None) => {
                if let Some(m) = self.members.get_mut(&member) {
                    m.set_assignment(Member::new(String::new()).assignment_value());
                }
            }
            (key, value) => tracing::warn!(?key, ?value, "consumer group record with a mismatched value skipped"),
        }
    }

    /// Finishes a load: every member gets a fresh session (and, when it has
    /// partitions to revoke, a fresh rebalance timeout), as after a coordinator
    /// failover in Kafka.
    pub(crate) fn loaded(&mut self, cfg: &GroupConfig, now: i64) {
        self.statics.clear();
        for m in self.members.values_mut() {
            m.session_deadline = now + i64::from(cfg.consumer_session_timeout_ms);
            m.revocation_deadline = (m.state == MemberState::UnrevokedPartitions)
                .then(|| (now + i64::from(m.rebalance_timeout_ms), m.epoch));
            if let Some(instance) = &m.instance_id {
                self.statics.insert(instance.clone(), m.id.clone());
            }
        }
        self.subscribed_known = false;
        self.empty_since = now;
    }

    /// The records describing the changes since the last call.
    pub(crate) fn take_records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.pending_records)
    }

    /// Puts records that could not be written back in front of the pending
    /// ones, so the next write stores them first.
    pub(crate) fn requeue_records(&mut self, mut records: Vec<Record>) {
        records.append(&mut self.pending_records);
        self.pending_records = records;
    }

    /// Records of the group's whole stored state, in Kafka's order: the group
    /// epoch, each member's metadata, the target assignment and its epoch,
    /// each member's current assignment (moving the group to another
    /// `__consumer_offsets` partition).
    pub(crate) fn snapshot_records(&self) -> Vec<Record> {
        let group = || self.id.clone();
        let mut records = vec![(StoredKey::ConsumerGroup(group()), Some(StoredValue::ConsumerGroup { epoch: self.epoch }))];
        for (id, m) in &self.members {
            records.push((StoredKey::ConsumerMember { group: group(), member: id.clone() }, Some(StoredValue::ConsumerMember(m.metadata_value()))));
        }
        let targets: BTreeMap<&String, &Assignment> = self.target.iter().collect();
        for (id, a) in targets {
            records.push((StoredKey::TargetAssignment { group: group(), member: id.clone() }, Some(StoredValue::TargetAssignment(a.clone()))));
        }
        records.push((StoredKey::TargetAssignmentEpoch(group()), Some(StoredValue::TargetAssignmentEpoch { epoch: self.assignment_epoch })));
        for (id, m) in &self.members {
            records.push((StoredKey::CurrentAssignment { group: group(), member: id.clone() }, Some(StoredValue::CurrentAssignment(m.assignment_value()))));
        }
        records
    }

    /// Tombstones for every record of the group, the group epoch's last (DeleteGroups).
    pub(crate) fn tombstones(&self) -> Vec<Record> {
        let ids: BTreeSet<&String> = self.members.keys().chain(self.target.keys()).collect();
        let mut records: Vec<Record> = ids.into_iter().flat_map(|id| self.member_tombstones(id)).collect();
        records.push((StoredKey::TargetAssignmentEpoch(self.id.clone()), None));
        records.push((StoredKey::ConsumerGroup(self.id.clone()), None));
        records
    }

    /// Tombstones for a member's current assignment, target and metadata, in
    /// Kafka's order.
    fn member_tombstones(&self, member: &str) -> [Record; 3] {
        let (group, member) = (self.id.clone(), member.to_string());
        [
            (StoredKey::CurrentAssignment { group: group.clone(), member: member.clone() }, None),
            (StoredKey::TargetAssignment { group: group.clone(), member: member.clone() }, None),
            (StoredKey::ConsumerMember { group, member }, None),
        ]
    }

    fn record_member_metadata(&mut self, member_id: &str) {
        if let Some(m) = self.members.get(member_id) {
            let key = StoredKey::ConsumerMember { group: self.id.clone(), member: member_id.to_string() };
            self.pending_records.push((key, Some(StoredValue::ConsumerMember(m.metadata_value()))));
        }
    }

    fn record_current_assignment(&mut self, member_id: &str) {
        if let Some(m) = self.members.get(member_id) {
            let key = StoredKey::CurrentAssignment { group: self.id.clone(), member: member_id.to_string() };
            self.pending_records.push((key, Some(StoredValue::CurrentAssignment(m.assignment_value()))));
        }
    }

    fn record_target(&mut self, member_id: &str) {
        let key = StoredKey::TargetAssignment { group: self.id.clone(), member: member_id.to_string() };
        let value = self.target.get(member_id).cloned().map(StoredValue::TargetAssignment);
        self.pending_records.push((key, value));
    }

    /// True when the group has no members.
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// When the group last became empty.
    pub(crate) fn empty_since(&self) -> i64 {
        self.empty_since
    }

    /// Kafka's name for the group's state.
    pub(crate) fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.epoch > self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|m| !m.is_reconciled_to(self.assignment_epoch)) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Checks a member's epoch for OffsetCommit / OffsetFetch (v9+).
    pub(crate) fn check_member_epoch(&self, member_id: &str, epoch: i32) -> Result<(), ResponseError> {
        let member = self.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if member.epoch != epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// Topics the members subscribe to.
    pub(crate) fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members.values().flat_map(|m| m.topics().cloned()).collect()
    }

    /// The assignor the group uses: the one most members asked for, else the
    /// first configured.
    pub(crate) fn assignor(&self, cfg: &GroupConfig) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(name) = &m.server_assignor {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let rank = |name: &str| cfg.consumer_assignors.iter().position(|a| a == name).unwrap_or(usize::MAX);
        votes
            .into_iter()
            .max_by(|(a, x), (b, y)| x.cmp(y).then_with(|| rank(b).cmp(&rank(a))))
            .map(|(name, _)| name.to_string())
            .or_else(|| cfg.consumer_assignors.first().cloned())
            .unwrap_or_else(|| assignor::BUILT_IN[0].to_string())
    }

    /// The group as ConsumerGroupDescribe shows it.
    pub(crate) fn describe(&self, cfg: &GroupConfig) -> Description {
        Description {
            state: self.state_name(),
            epoch: self.epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor(cfg),
            members: self
                .members
                .values()
                .map(|m| (m.clone(), self.target.get(&m.id).cloned().unwrap_or_default()))
                .collect(),
        }
    }

    fn bump_epoch(&mut self) {
        self.epoch += 1;
        let value = StoredValue::ConsumerGroup { epoch: self.epoch };
        self.pending_records.push((StoredKey::ConsumerGroup(self.id.clone()), Some(value)));
    }

    /// Handles a ConsumerGroupHeartbeat that passed [`Heartbeat::validate`].
    pub(crate) fn heartbeat(
        &mut self,
        group_id: &str,
        req: Heartbeat,
        cfg: &GroupConfig,
        topics: &dyn TopicCatalog,
        now: i64,
    ) -> Result<HeartbeatReply, GroupError> {
        if req.member_epoch < 0 {
            return self.leave(group_id, &req, now);
        }
        let known = self.members.contains_key(&req.member_id)
            || req.instance_id.as_ref().is_some_and(|i| self.statics.contains_key(i));
        if !known && self.members.len() >= cfg.consumer_max_size {
            return fail(
                ResponseError::GroupMaxSizeReached,
                format!("The consumer group has reached its maximum capacity of {} members.", cfg.consumer_max_size),
            );
        }
        let member_id = if req.member_id.is_empty() { Uuid::new_v4().to_string() } else { req.member_id.clone() };
        let (before, replaces) = match &req.instance_id {
            None => (self.dynamic_member(group_id, &member_id, &req)?, None),
            Some(instance) => self.static_member(&member_id, instance, &req)?,
        };

        // Nothing below fails: the group changes from here on.
        let mut moved_target = false;
        if let Some(old_id) = replaces {
            tracing::info!(group = %group_id, member = %member_id, replaced = %old_id, "static member rejoins");
            self.members.remove(&old_id);
            let tombstones = self.member_tombstones(&old_id);
            self.pending_records.extend(tombstones);
            if let Some(target) = self.target.remove(&old_id) {
                self.target.insert(member_id.clone(), target);
                moved_target = true;
            }
        } else if !self.members.contains_key(&member_id) {
            tracing::info!(group = %group_id, member = %member_id, "member joins the consumer group");
        }
        let is_new = !self.members.contains_key(&member_id);
        let mut member = before.clone();
        if let Some(instance) = &req.instance_id {
            member.instance_id = Some(instance.clone());
            self.statics.insert(instance.clone(), member_id.clone());
        }
        if let Some(rack) = &req.rack_id {
            member.rack_id = Some(rack.clone());
        }
        if req.rebalance_timeout_ms != -1 {
            member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(assignor) = &req.server_assignor {
            member.server_assignor = Some(assignor.clone());
        }
        if let Some(names) = &req.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            member.subscribed_topic_names = names;
        }
        if let Some(regex) = &req.subscribed_topic_regex {
            // An empty regex means none (librdkafka sends one with topic names).
            member.subscribed_topic_regex = Some(regex.clone()).filter(|r| !r.is_empty());
            member.regex = member.subscribed_topic_regex.as_deref().and_then(|r| compile_topic_regex(r).ok());
        }
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_deadline = now + i64::from(cfg.consumer_session_timeout_ms);
        let mut bump = member.subscribed_topic_names != before.subscribed_topic_names
            || member.subscribed_topic_regex != before.subscribed_topic_regex
            || member.server_assignor != before.server_assignor;
        let metadata_changed = is_new || member.metadata_value() != before.metadata_value();
        self.members.insert(member_id.clone(), member);
        if metadata_changed {
            self.record_member_metadata(&member_id);
        }
        if moved_target {
            self.record_target(&member_id);
        }

        // New topics, new partitions and deleted topics change the assignment too.
        self.resolve_regexes(topics);
        let subscribed = self.subscription_metadata(topics);
        if !self.subscribed_known {
            self.subscribed_known = true;
            // The subscribed topics are not stored: after a load they are taken
            // as they are now if the target assignment covers exactly their
            // partitions (the assignors give out every partition); otherwise they
            // changed while the broker was down and the group rebalances.
            if self.target_covers(&subscribed) {
                self.subscribed = subscribed.clone();
            }
        }
        if subscribed != self.subscribed {
            self.subscribed = subscribed;
            bump = true;
        }
        if bump {
            self.bump_epoch();
            tracing::info!(group = %group_id, epoch = self.epoch, "bumped group epoch");
        }
        if self.epoch > self.assignment_epoch {
            self.compute_target_assignment(cfg);
        }

        let taken = self.owned_partitions();
        let target = self.target.get(&member_id).cloned().unwrap_or_default();
        let assignment_epoch = self.assignment_epoch;
        let Some(member) = self.members.get_mut(&member_id) else {
            return fail(ResponseError::UnknownServerError, "member vanished");
        };
        let mut assignment_changed = is_new;
        if !member.is_reconciled_to(assignment_epoch) {
            let next = reconcile(member, assignment_epoch, &target, &taken, req.owned.as_ref());
            if !next.same_assignment_state(member) {
                let deadline = (next.state == MemberState::UnrevokedPartitions)
                    .then(|| (now + i64::from(next.rebalance_timeout_ms), next.epoch));
                *member = Member { revocation_deadline: deadline, ..next };
                assignment_changed = true;
            }
        }
        let reply_epoch = member.epoch;
        let reply_assignment = (full_request(&req) || member.assigned != before.assigned).then(|| member.assigned.clone());
        if assignment_changed {
            self.record_current_assignment(&member_id);
        }
        Ok(HeartbeatReply {
            member_id,
            member_epoch: reply_epoch,
            heartbeat_interval_ms: cfg.consumer_heartbeat_interval_ms,
            assignment: reply_assignment,
        })
    }

    /// True when the target assignment gives out exactly the partitions of `subscribed`.
    fn target_covers(&self, subscribed: &BTreeMap<String, (Uuid, i32)>) -> bool {
        let expected: HashSet<(Uuid, i32)> =
            subscribed.values().flat_map(|(id, count)| (0..*count).map(move |p| (*id, p))).collect();
        let targeted: Vec<(Uuid, i32)> =
            self.target.values().flat_map(|a| a.iter().flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))).collect();
        targeted.len() == expected.len() && targeted.iter().all(|tp| expected.contains(tp))
    }

    fn dynamic_member(&self, group_id: &str, member_id: &str, req: &Heartbeat) -> Result<Member, GroupError> {
        match self.members.get(member_id) {
            Some(m) => {
                check_heartbeat_epoch(m, req.member_epoch, req.owned.as_ref())?;
                Ok(m.clone())
            }
            None if req.member_epoch == 0 => Ok(Member::new(member_id.to_string())),
            None => fail(ResponseError::UnknownMemberId, format!("Member {member_id} is not a member of group {group_id}.")),
        }
    }

    /// The static member for `instance`, and the member id it replaces when a
    /// new instance takes over one that left with epoch -2.
    fn static_member(&self, member_id: &str, instance: &str, req: &Heartbeat) -> Result<(Member, Option<String>), GroupError> {
        let existing = self.statics.get(instance).and_then(|id| self.members.get(id));
        if req.member_epoch == 0 {
            return match existing {
                None => Ok((Member::new(member_id.to_string()), None)),
                Some(e) if e.id == member_id => Ok((e.clone(), None)),
                Some(e) if e.epoch != LEAVE_STATIC_EPOCH => fail(
                    ResponseError::UnreleasedInstanceId,
                    format!(
                        "Static member {member_id} with instance id {instance} cannot join the group because the instance id is owned by {} member.",
                        e.id
                    ),
                ),
                Some(e) => {
                    let mut m = e.clone();
                    m.id = member_id.to_string();
                    m.epoch = 0;
                    m.previous_epoch = 0;
                    m.state = MemberState::Stable;
                    m.pending_revocation.clear();
                    m.revocation_deadline = None;
                    Ok((m, Some(e.id.clone())))
                }
            };
        }
        let Some(e) = existing else {
            return fail(ResponseError::UnknownMemberId, format!("Instance id {instance} is unknown."));
        };
        if e.id != member_id {
            return fail(
                ResponseError::FencedInstanceId,
                format!("Static member {member_id} with instance id {instance} was fenced by member {}.", e.id),
            );
        }
        check_heartbeat_epoch(e, req.member_epoch, req.owned.as_ref())?;
        Ok((e.clone(), None))
    }

    /// Epoch -1: the member leaves. Epoch -2: a static member leaves for a while,
    /// keeping its partitions until its session expires.
    fn leave(&mut self, group_id: &str, req: &Heartbeat, now: i64) -> Result<HeartbeatReply, GroupError> {
        let member_id = match &req.instance_id {
            None => {
                if !self.members.contains_key(&req.member_id) {
                    return fail(
                        ResponseError::UnknownMemberId,
                        format!("Member {} is not a member of group {group_id}.", req.member_id),
                    );
                }
                req.member_id.clone()
            }
            Some(instance) => {
                let Some(existing) = self.statics.get(instance) else {
                    return fail(ResponseError::UnknownMemberId, format!("Instance id {instance} is unknown."));
                };
                if *existing != req.member_id {
                    return fail(
                        ResponseError::FencedInstanceId,
                        format!("Static member {} with instance id {instance} was fenced by member {existing}.", req.member_id),
                    );
                }
                existing.clone()
            }
        };
        if req.member_epoch == LEAVE_STATIC_EPOCH {
            if let Some(m) = self.members.get_mut(&member_id) {
                tracing::info!(group = %group_id, member = %member_id, "static member leaves for a while");
                m.epoch = LEAVE_STATIC_EPOCH;
                m.pending_revocation.clear();
                m.revocation_deadline = None;
                self.record_current_assignment(&member_id);
            }
        } else {
            tracing::info!(group = %group_id, member = %member_id, "member leaves the consumer group");
            self.remove_member(&member_id, now);
        }
        Ok(HeartbeatReply {
            member_id: req.member_id.clone(),
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    fn remove_member(&mut self, member_id: &str, now: i64) {
        let Some(m) = self.members.remove(member_id) else { return };
        if let Some(instance) = &m.instance_id {
            if self.statics.get(instance).map(String::as_str) == Some(member_id) {
                self.statics.remove(instance);
            }
        }
        self.target.remove(member_id);
        let tombstones = self.member_tombstones(member_id);
        self.pending_records.extend(tombstones);
        let still = self.subscribed_topics();
        self.subscribed.retain(|name, _| still.contains(name));
        self.bump_epoch();
        if self.members.is_empty() {
            self.empty_since = now;
        }
    }

    /// Matches every member's regex against the topics that exist now.
    fn resolve_regexes(&mut self, topics: &dyn TopicCatalog) {
        if self.members.values().all(|m| m.regex.is_none()) {
            return;
        }
        let mut names: Vec<String> = topics.names();
        names.sort();
        for m in self.members.values_mut() {
            m.regex_topics = match &m.regex {
                Some(re) => names.iter().filter(|n| re.is_match(n)).cloned().collect(),
                None => Vec::new(),
            };
        }
    }

    /// The subscribed topics that exist, with their ids and partition counts.
    fn subscription_metadata(&self, topics: &dyn TopicCatalog) -> BTreeMap<String, (Uuid, i32)> {
        self.subscribed_topics()
            .into_iter()
            .filter_map(|name| topics.by_name(&name).map(|t| (name, t)))
            .collect()
    }

    /// Every partition some member owns or has still to revoke.
    fn owned_partitions(&self) -> HashSet<(Uuid, i32)> {
        self.members
            .values()
            .flat_map(|m| m.assigned.iter().chain(&m.pending_revocation))
            .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
            .collect()
    }

    fn compute_target_assignment(&mut self, cfg: &GroupConfig) {
        let counts: BTreeMap<Uuid, i32> = self.subscribed.values().copied().collect();
        let specs: BTreeMap<String, MemberSpec> = self
            .members
            .values()
            .map(|m| {
                let subscribed = m.topics().filter_map(|n| self.subscribed.get(n).map(|(id, _)| *id)).collect();
                let current = self.target.get(&m.id).cloned().unwrap_or_default();
                (m.id.clone(), MemberSpec { subscribed, current })
            })
            .collect();
        let target = assignor::assign(&self.assignor(cfg), &specs, &counts);
        let dropped: Vec<String> = self.target.keys().filter(|id| !target.contains_key(*id)).cloned().collect();
        let changed: Vec<String> =
            target.iter().filter(|(id, a)| self.target.get(*id) != Some(a)).map(|(id, _)| id.clone()).collect();
        self.target = target.into_iter().collect();
        for id in changed.iter().chain(&dropped) {
            self.record_target(id);
        }
        self.assignment_epoch = self.epoch;
        let value = StoredValue::TargetAssignmentEpoch { epoch: self.epoch };
        self.pending_records.push((StoredKey::TargetAssignmentEpoch(self.id.clone()), Some(value)));
    }

    /// Expires members whose session ended and members that did not revoke in time.
    pub(crate) fn tick(&mut self, _cfg: &GroupConfig, now: i64) {
        let gone: Vec<(String, &'static str)> = self
            .members
            .values()
            .filter_map(|m| {
                if m.session_deadline <= now {
                    Some((m.id.clone(), "its session expired"))
                } else if m.revocation_deadline.is_some_and(|(deadline, epoch)| deadline <= now && m.epoch == epoch) {
                    Some((m.id.clone(), "it did not revoke its partitions within its rebalance timeout"))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in gone {
            tracing::info!(member = %id, "consumer group member removed: {why}");
            self.remove_member(&id, now);
        }
    }
}

/// A heartbeat that carries everything (a join, or a client resending its whole
/// state): it gets the full assignment back.
fn full_request(req: &Heartbeat) -> bool {
    req.member_epoch == 0 || (req.rebalance_timeout_ms != -1 && req.subscribed_topic_names.is_some() && req.owned.is_some())
}

/// Fences a member whose epoch is neither its current one nor (with partitions
/// it still has) its previous one, whose answer may have been lost. Epoch 0 is
/// a member rejoining after it gave up its partitions (KAFKA-19233).
fn check_heartbeat_epoch(member: &Member, received: i32, owned: Option<&Assignment>) -> Result<(), GroupError> {
    if received == 0 {
        return Ok(());
    }
    let fenced = |relation: &str| {
        fail(
            ResponseError::FencedMemberEpoch,
            format!(
                "The consumer group member has a {relation} member epoch ({received}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                member.epoch
            ),
        )
    };
    if received > member.epoch {
        return fenced("greater");
    }
    if received < member.epoch {
        let subset = owned.is_some_and(|owned| {
            owned.iter().all(|(t, ps)| member.assigned.get(t).is_some_and(|have| ps.is_subset(have)))
        });
        if received != member.previous_epoch || !subset {
            return fenced("smaller");
        }
    }
    Ok(())
}

/// True if the member (by what it reported owning) still holds any of `revoke`;
/// when it did not report, it is assumed to.
fn still_owns(owned: Option<&Assignment>, revoke: &Assignment) -> bool {
    let Some(owned) = owned else { return true };
    owned.iter().any(|(t, ps)| revoke.get(t).is_some_and(|r| !r.is_disjoint(ps)))
}

/// Moves a member one step towards its target assignment (Kafka's
/// `CurrentAssignmentBuilder`). `taken` holds every partition a member owns or
/// has still to revoke.
fn reconcile(
    member: &Member,
    target_epoch: i32,
    target: &Assignment,
    taken: &HashSet<(Uuid, i32)>,
    owned: Option<&Assignment>,
) -> Member {
    let next_epoch = match member.state {
        MemberState::Stable if member.epoch == target_epoch => return member.clone(),
        MemberState::Stable | MemberState::UnreleasedPartitions => member.epoch,
        MemberState::UnrevokedPartitions => {
            if still_owns(owned, &member.pending_revocation) {
                return member.clone();
            }
            member.epoch + 1
        }
    };

    let mut assigned = Assignment::new();
    let mut revoke = Assignment::new();
    let mut to_assign = Assignment::new();
    let mut unreleased = false;
    let topics: BTreeSet<Uuid> = target.keys().chain(member.assigned.keys()).copied().collect();
    let empty = BTreeSet::new();
    for topic in topics {
        let want = target.get(&topic).unwrap_or(&empty);
        let have = member.assigned.get(&topic).unwrap_or(&empty);
        let keep: BTreeSet<i32> = have.intersection(want).copied().collect();
        let give_up: BTreeSet<i32> = have.difference(&keep).copied().collect();
        let mut new: BTreeSet<i32> = want.difference(&keep).copied().collect();
        let before = new.len();
        new.retain(|p| !taken.contains(&(topic, *p)));
        unreleased |= new.len() != before;
        if !keep.is_empty() {
            assigned.insert(topic, keep);
        }
        if !give_up.is_empty() {
            revoke.insert(topic, give_up);
        }
        if !new.is_empty() {
            to_assign.insert(topic, new);
        }
    }

    let mut next = member.clone();
    if !revoke.is_empty() && still_owns(owned, &revoke) {
        next.state = MemberState::UnrevokedPartitions;
        next.update_epoch(next_epoch);
        next.assigned = assigned;
        next.pending_revocation = revoke;
        return next;
    }
    for (topic, partitions) in to_assign {
        assigned.entry(topic).or_default().extend(partitions);
    }
    next.state = if unreleased { MemberState::UnreleasedPartitions } else { MemberState::Stable };
    next.update_epoch(target_epoch);
    next.assigned = assigned;
    next.pending_revocation = Assignment::new();
    next
}

impl GroupCoordinator {
    /// Handles a validated ConsumerGroupHeartbeat: creates the group when a
    /// member joins (turning an empty classic group into a consumer group, its
    /// offsets kept), and stores the records of what changed; answers once
    /// they are committed (a write the ISR does not take in time is
    /// COORDINATOR_NOT_AVAILABLE, as Kafka's coordinator runtime answers).
    pub(crate) async fn consumer_heartbeat(
        &self,
        group_id: &str,
        req: Heartbeat,
        topics: &(dyn TopicCatalog + Sync),
        now: i64,
    ) -> Result<HeartbeatReply, GroupError> {
        let shard = self.shard(group_id).or_else(|e| fail(e, format!("The coordinator of group {group_id} is not available here.")))?;
        let (reply, pending) = self.consumer_heartbeat_in(&shard, group_id, req, topics, now)?;
        if let Some(pending) = pending {
            if let Err(e) = pending.committed(self.commit_timeout()).await {
                tracing::warn!(group = %group_id, error = %e, "consumer group records were not committed");
                return fail(append_error(e.response_error(), false), format!("The records of group {group_id} were not committed."));
            }
        }
        Ok(reply)
    }

    fn consumer_heartbeat_in(
        &self,
        shard: &Shard,
        group_id: &str,
        req: Heartbeat,
        topics: &dyn TopicCatalog,
        now: i64,
    ) -> Result<(HeartbeatReply, Option<Pending>), GroupError> {
        let mut groups = shard.lock().or_else(|e| fail(e, format!("The coordinator of group {group_id} is not available.")))?;
        let joining = req.member_epoch == 0;
        // What the group was before this request (None: it did not exist), to
        // undo a refused or unstored change.
        let before: Option<Membership>;
        match groups.get_mut(group_id) {
            None if joining => {
                before = None;
                groups.insert(group_id.to_string(), Group::new(Membership::Consumer(ConsumerGroup::new(group_id, now))));
            }
            None => return fail(ResponseError::GroupIdNotFound, format!("Group {group_id} not found.")),
            Some(group) => match &group.membership {
                Membership::Consumer(consumer) => before = Some(Membership::Consumer(consumer.clone())),
                Membership::Classic(classic) if joining && classic.is_empty() => {
                    let consumer = Membership::Consumer(ConsumerGroup::new(group_id, now));
                    before = Some(std::mem::replace(&mut group.membership, consumer));
                }
                Membership::Classic(_) => {
                    return fail(ResponseError::GroupIdNotFound, format!("Group {group_id} is not a consumer group."))
                }
            },
        }
        let Some(group) = groups.get_mut(group_id) else {
            return fail(ResponseError::CoordinatorNotAvailable, format!("Group {group_id} vanished."));
        };
        let Membership::Consumer(consumer) = &mut group.membership else {
            return fail(ResponseError::GroupIdNotFound, format!("Group {group_id} is not a consumer group."));
        };
        let mut result = consumer.heartbeat(group_id, req, &self.config, topics, now).map(|reply| (reply, None));
        if let Ok((_, pending)) = &mut result {
            match shard.persist_membership(group_id, group, now) {
                Ok(written) => *pending = written,
                Err(error) => result = fail(error, format!("The records of group {group_id} could not be stored.")),
            }
        }
        if result.is_err() {
            // Refused, or not stored: leave the group as it was.
            match before {
                Some(membership) => group.membership = membership,
                None => {
                    groups.remove(group_id);
                }
            }
        }
        result
    }

    /// ConsumerGroupDescribe of some groups: GROUP_ID_NOT_FOUND for groups
    /// that do not exist or are classic groups, NOT_COORDINATOR for groups
    /// another broker coordinates.
    pub(crate) fn consumer_describe(&self, ids: &[String]) -> Vec<Result<Description, GroupError>> {
        ids.iter()
            .map(|id| {
                let shard = self.shard(id).or_else(|e| fail(e, format!("The coordinator of group {id} is not available here.")))?;
                let groups = shard.lock().or_else(|e| fail(e, format!("The coordinator of group {id} is not available.")))?;
                match groups.get(id).map(|g| &g.membership) {
                    None => fail(ResponseError::GroupIdNotFound, format!("Group {id} not found.")),
                    Some(Membership::Classic(_)) => {
                        fail(ResponseError::GroupIdNotFound, format!("Group {id} is not a consumer group."))
                    }
                    Some(Membership::Consumer(g)) => Ok(g.describe(&self.config)),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    struct Topics(Vec<(String, Uuid, i32)>);

    impl TopicCatalog for Topics {
        fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
            self.0.iter().find(|t| t.0 == name).map(|t| (t.1, t.2))
        }
        fn by_id(&self, id: Uuid) -> Option<(String, i32)> {
            self.0.iter().find(|t| t.1 == id).map(|t| (t.0.clone(), t.2))
        }
        fn names(&self) -> Vec<String> {
            self.0.iter().map(|t| t.0.clone()).collect()
        }
    }

    const T: Uuid = Uuid::from_bytes([7; 16]);

    fn cfg() -> GroupConfig {
        crate::config::ServerConfig::load(None, &[]).expect("default config").groups
    }

    fn topics(partitions: i32) -> Topics {
        Topics(vec![("t".to_string(), T, partitions)])
    }

    fn join(id: &str) -> Heartbeat {
        Heartbeat {
            member_id: id.to_string(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec!["t".to_string()]),
            owned: Some(Assignment::new()),
            ..Heartbeat::default()
        }
    }

    fn beat(id: &str, epoch: i32, owned: &[i32]) -> Heartbeat {
        Heartbeat {
            member_id: id.to_string(),
            member_epoch: epoch,
            rebalance_timeout_ms: -1,
            owned: Some(parts(owned)),
            ..Heartbeat::default()
        }
    }

    fn parts(ps: &[i32]) -> Assignment {
        if ps.is_empty() {
            Assignment::new()
        } else {
            BTreeMap::from([(T, ps.iter().copied().collect())])
        }
    }

    fn owned_list(a: &Option<Assignment>) -> Vec<i32> {
        a.as_ref().and_then(|a| a.get(&T)).map(|s| s.iter().copied().collect()).unwrap_or_default()
    }

    #[test]
    fn first_member_gets_every_partition() {
        let (cfg, topics) = (cfg(), topics(4));
        let mut g = ConsumerGroup::new("g", 0);
        let r = g.heartbeat("g", join("a"), &cfg, &topics, 0).unwrap();
        assert_eq!(r.member_epoch, 1);
        assert_eq!(owned_list(&r.assignment), vec![0, 1, 2, 3]);
        assert_eq!(g.epoch, 1);
        assert!(!g.take_records().is_empty());
        assert_eq!(g.state_name(), "Stable");
        // A plain heartbeat: no change, no assignment sent.
        let r = g.heartbeat("g", beat("a", 1, &[0, 1, 2, 3]), &cfg, &topics, 10).unwrap();
        assert_eq!((r.member_epoch, r.assignment), (1, None));
        assert_eq!(g.check_member_epoch("a", 1), Ok(()));
        assert_eq!(g.check_member_epoch("a", 0), Err(ResponseError::StaleMemberEpoch));
        assert_eq!(g.check_member_epoch("x", 1), Err(ResponseError::UnknownMemberId));
    }

    #[test]
    fn v0_member_gets_a_generated_id() {
        let (cfg, topics) = (cfg(), topics(1));
        let mut g = ConsumerGroup::new("g", 0);
        let req = Heartbeat { member_id: String::new(), ..join("") };
        assert!(req.validate(0, &cfg).is_ok());
        assert_eq!(req.validate(1, &cfg).unwrap_err().error, ResponseError::InvalidRequest);
        let r = g.heartbeat("g", req, &cfg, &topics, 0).unwrap();
        assert!(!r.member_id.is_empty());
        assert_eq!(g.members.len(), 1);
    }

    #[test]
    fn second_member_gets_partitions_only_after_the_first_revokes() {
        let (cfg, topics) = (cfg(), topics(4));
        let mut g = ConsumerGroup::new("g", 0);
        g.heartbeat("g", join("a"), &cfg, &topics, 0).unwrap();
        g.heartbeat("g", beat("a", 1, &[0, 1, 2, 3]), &cfg, &topics, 1).unwrap();

        // b joins: epoch 2; a still owns everything, so b waits at epoch 2 with nothing.
        let rb = g.heartbeat("g", join("b"), &cfg, &topics, 2).unwrap();
        assert_eq!(rb.member_epoch, 2);
        assert_eq!(owned_list(&rb.assignment), Vec::<i32>::new());
        assert_eq!(g.state_name(), "Reconciling");

        // a is asked to revoke two partitions and stays at epoch 1.
        let ra = g.heartbeat("g", beat("a", 1, &[0, 1, 2, 3]), &cfg, &topics, 3).unwrap();
        assert_eq!(ra.member_epoch, 1);
        let kept = owned_list(&ra.assignment);
        assert_eq!(kept.len(), 2);

        // b still gets nothing while a has not acknowledged.
        let rb = g.heartbeat("g", beat("b", 2, &[]), &cfg, &topics, 4).unwrap();
        assert_eq!(rb.assignment, None);

        // a acknowledges (reports only what it kept): it moves to epoch 2.
        let ra = g.heartbeat("g", beat("a", 1, &kept), &cfg, &topics, 5).unwrap();
        assert_eq!(ra.member_epoch, 2);
        assert_eq!(ra.assignment, None);

        // Now b gets the released partitions.
        let rb = g.heartbeat("g", beat("b", 2, &[]), &cfg, &topics, 6).unwrap();
        let given = owned_list(&rb.assignment);
        assert_eq!(given.len(), 2);
        assert!(given.iter().all(|p| !kept.contains(p)));
        g.heartbeat("g", beat("b", 2, &given), &cfg, &topics, 7).unwrap();
        assert_eq!(g.state_name(), "Stable");
    }

    /// Members a and b of a two-partition group, a having revoked one partition
    /// for b (t=0..3): a is at epoch 2 with the partition it kept; b has nothing yet.
    fn a_revoked_for_b(cfg: &GroupConfig, topics: &Topics) -> (ConsumerGroup, Vec<i32>) {
        let mut g = ConsumerGroup::new("g", 0);
        g.heartbeat("g", join("a"), cfg, topics, 0).unwrap();
        g.heartbeat("g", join("b"), cfg, topics, 1).unwrap();
        let ra = g.heartbeat("g", beat("a", 1, &[0, 1]), cfg, topics, 2).unwrap();
        let kept = owned_list(&ra.assignment);
        assert_eq!(kept.len(), 1);
        let ra = g.heartbeat("g", beat("a", 1, &kept), cfg, topics, 3).unwrap();
        assert_eq!(ra.member_epoch, 2);
        (g, kept)
    }

    #[test]
    fn a_lost_answer_is_tolerated_with_the_previous_epoch() {
        let (cfg, topics) = (cfg(), topics(2));
        let (mut g, kept) = a_revoked_for_b(&cfg, &topics);
        // a is at epoch 2 now but did not hear it: epoch 1 with a subset still works.
        let r = g.heartbeat("g", beat("a", 1, &kept), &cfg, &topics, 4).unwrap();
        assert_eq!(r.member_epoch, 2);
    }

    #[test]
    fn stale_or_future_epochs_are_fenced_and_unknown_members_refused() {
        let (cfg, topics) = (cfg(), topics(2));
        let (mut g, _) = a_revoked_for_b(&cfg, &topics);
        let e = g.heartbeat("g", beat("a", 5, &[0]), &cfg, &topics, 4).unwrap_err();
        assert_eq!(e.error, ResponseError::FencedMemberEpoch);
        // a is at epoch 2, its previous epoch 1; epoch 1 with a partition it no longer has is fenced.
        let e = g.heartbeat("g", beat("a", 1, &[0, 1]), &cfg, &topics, 5).unwrap_err();
        assert_eq!(e.error, ResponseError::FencedMemberEpoch);
        let e = g.heartbeat("g", beat("nobody", 1, &[]), &cfg, &topics, 6).unwrap_err();
        assert_eq!(e.error, ResponseError::UnknownMemberId);
        // A fenced member rejoins with epoch 0 and gets its assignment back.
        let r = g.heartbeat("g", join("a"), &cfg, &topics, 7).unwrap();
        assert_eq!(r.member_epoch, 2);
        assert!(r.assignment.is_some());
    }

    #[test]
    fn leaving_frees_partitions_for_the_others() {
        let (cfg, topics) = (cfg(), topics(2));
        let (mut g, _) = a_revoked_for_b(&cfg, &topics);
        let rb = g.heartbeat("g", beat("b", 2, &[]), &cfg, &topics, 4).unwrap();
        assert_eq!(owned_list(&rb.assignment).len(), 1);

        let r = g.heartbeat("g", Heartbeat { member_epoch: LEAVE_EPOCH, ..beat("a", 0, &[]) }, &cfg, &topics, 5).unwrap();
        assert_eq!((r.member_id.as_str(), r.member_epoch), ("a", LEAVE_EPOCH));
        assert_eq!(g.epoch, 3);
        assert_eq!(g.state_name(), "Assigning");
        let rb = g.heartbeat("g", beat("b", 2, &owned_list(&rb.assignment)), &cfg, &topics, 6).unwrap();
        assert_eq!((rb.member_epoch, owned_list(&rb.assignment)), (3, vec![0, 1]));
        let e = g.heartbeat("g", beat("a", 2, &[]), &cfg, &topics, 7).unwrap_err();
        assert_eq!(e.error, ResponseError::UnknownMemberId);
    }

    #[test]
    fn session_expiry_removes_a_silent_member() {
        let (cfg, topics) = (cfg(), topics(2));
        let session = i64::from(cfg.consumer_session_timeout_ms);
        let mut g = ConsumerGroup::new("g", 0);
        g.heartbeat("g", join("a"), &cfg, &topics, 0).unwrap();
        g.heartbeat("g", join("b"), &cfg, &topics, 0).unwrap();
        g.take_records();
        // b keeps heartbeating; a goes silent.
        g.heartbeat("g", beat("b", 2, &[]), &cfg, &topics, session - 1).unwrap();
        g.tick(&cfg, session - 1);
        assert_eq!(g.members.len(), 2);
        g.tick(&cfg, session);
        assert_eq!(g.members.len(), 1);
        assert!(!g.take_records().is_empty());
        let r = g.heartbeat("g", beat("b", 2, &[]), &cfg, &topics, session + 1).unwrap();
        assert_eq!(owned_list(&r.assignment), vec![0, 1]);
        g.tick(&cfg, 10 * session);
        assert!(g.is_empty());
        assert_eq!(g.empty_since(), 10 * session);
        assert_eq!(g.state_name(), "Empty");
    }

    #[test]
    fn a_member_that_does_not_revoke_in_time_is_removed() {
        let (cfg, topics) = (cfg(), topics(2));
        let mut g = ConsumerGroup::new("g", 0);
        g.heartbeat("g", Heartbeat { rebalance_timeout_ms: 100, ..join("a") }, &cfg, &topics, 0).unwrap();
        g.heartbeat("g", join("b"), &cfg, &topics, 0).unwrap();
        // a learns it must revoke at t=10, then keeps heartbeating without revoking.
        g.heartbeat("g", beat("a", 1, &[0, 1]), &cfg, &topics, 10).unwrap();
        g.heartbeat("g", beat("a", 1, &[0, 1]), &cfg, &topics, 100).unwrap();
        g.tick(&cfg, 109);
        assert_eq!(g.members.len(), 2);
        g.tick(&cfg, 110);
        assert_eq!(g.members.len(), 1);
    }

    #[test]
    fn a_regex_subscription_matches_whole_topic_names_and_picks_up_new_topics() {
        let cfg = cfg();
        let u = Uuid::from_bytes([8; 16]);
        let v = Uuid::from_bytes([9; 16]);
        let mut topics = Topics(vec![("t".to_string(), T, 2), ("other-t".to_string(), u, 1)]);
        let mut g = ConsumerGroup::new("g", 0);
        let req = Heartbeat { subscribed_topic_names: None, subscribed_topic_regex: Some("t.*".into()), ..join("a") };
        assert!(req.validate(1, &cfg).is_ok(), "a regex alone is a subscription");
        let r = g.heartbeat("g", req, &cfg, &topics, 0).unwrap();
        assert_eq!(owned_list(&r.assignment), vec![0, 1]);
        assert!(!r.assignment.as_ref().unwrap().contains_key(&u), "the regex matches whole names only");
        assert_eq!(g.subscribed_topics(), BTreeSet::from(["t".to_string()]));

        topics.0.push(("t2".to_string(), v, 3));
        let r = g.heartbeat("g", beat("a", 1, &[0, 1]), &cfg, &topics, 10).unwrap();
        assert_eq!(r.member_epoch, 2, "a new matching topic bumps the epoch");
        let assigned = r.assignment.unwrap();
        assert_eq!(assigned.get(&v).map(|p| p.len()), Some(3));
    }

    #[test]
    fn new_partitions_and_new_topics_are_picked_up() {
        let cfg = cfg();
        let mut g = ConsumerGroup::new("g", 0);
        let r = g.heartbeat("g", join("a"), &cfg, &topics(2), 0).unwrap();
        assert_eq!(owned_list(&r.assignment), vec![0, 1]);
        let r = g.heartbeat("g", beat("a", 1, &[0, 1]), &cfg, &topics(3), 1).unwrap();
        assert_eq!((r.member_epoch, owned_list(&r.assignment)), (2, vec![0, 1, 2]));

        // Subscribed to a topic that does not exist yet.
        let mut g = ConsumerGroup::new("g", 0);
        let empty = Topics(Vec::new());
        let r = g.heartbeat("g", join("a"), &cfg, &empty, 0).unwrap();
        assert_eq!(owned_list(&r.assignment), Vec::<i32>::new());
        let r = g.heartbeat("g", beat("a", 1, &[]), &cfg, &topics(1), 1).unwrap();
        assert_eq!(owned_list(&r.assignment), vec![0]);
    }

    #[test]
    fn static_member_leaves_for_a_while_and_a_new_instance_takes_over() {
        let (cfg, topics) = (cfg(), topics(2));
        let mut g = ConsumerGroup::new("g", 0);
        let with_instance = |h: Heartbeat| Heartbeat { instance_id: Some("i1".to_string()), ..h };
        g.heartbeat("g", with_instance(join("a")), &cfg, &topics, 0).unwrap();
        let epoch = g.epoch;
        let r = g
            .heartbeat("g", with_instance(Heartbeat { member_epoch: LEAVE_STATIC_EPOCH, ..beat("a", 0, &[]) }), &cfg, &topics, 1)
            .unwrap();
        assert_eq!(r.member_epoch, LEAVE_STATIC_EPOCH);
        assert_eq!(g.epoch, epoch, "a temporary leave does not rebalance");
        // Another instance id holder may not join while a is still in; a new one takes over after the leave.
        let e = g.heartbeat("g", with_instance(beat("z", 1, &[])), &cfg, &topics, 2).unwrap_err();
        assert_eq!(e.error, ResponseError::FencedInstanceId);
        let r = g.heartbeat("g", with_instance(join("a2")), &cfg, &topics, 3).unwrap();
        assert_eq!(owned_list(&r.assignment), vec![0, 1]);
        assert_eq!(g.members.len(), 1);
        assert_eq!(g.epoch, epoch);
        let e = g.heartbeat("g", with_instance(join("a3")), &cfg, &topics, 4).unwrap_err();
        assert_eq!(e.error, ResponseError::UnreleasedInstanceId);
    }

    #[test]
    fn validation_follows_kafka() {
        let cfg = cfg();
        let ok = join("a");
        assert!(ok.validate(1, &cfg).is_ok());
        let code = |h: Heartbeat| h.validate(1, &cfg).unwrap_err().error;
        assert_eq!(code(Heartbeat { rebalance_timeout_ms: -1, ..ok.clone() }), ResponseError::InvalidRequest);
        assert_eq!(code(Heartbeat { owned: None, ..ok.clone() }), ResponseError::InvalidRequest);
        assert_eq!(code(Heartbeat { subscribed_topic_names: Some(vec![]), ..ok.clone() }), ResponseError::InvalidRequest);
        assert!(Heartbeat { subscribed_topic_regex: Some("t.*".into()), ..ok.clone() }.validate(1, &cfg).is_ok());
        assert_eq!(code(Heartbeat { subscribed_topic_regex: Some("t(".into()), ..ok.clone() }), ResponseError::InvalidRegularExpression);
        assert!(Heartbeat { subscribed_topic_regex: Some(String::new()), ..ok.clone() }.validate(1, &cfg).is_ok());
        assert_eq!(code(Heartbeat { member_epoch: -3, ..ok.clone() }), ResponseError::InvalidRequest);
        assert_eq!(code(Heartbeat { member_epoch: LEAVE_STATIC_EPOCH, ..ok.clone() }), ResponseError::InvalidRequest);
        assert_eq!(code(Heartbeat { server_assignor: Some("sticky".into()), ..ok.clone() }), ResponseError::UnsupportedAssignor);
        assert!(Heartbeat { server_assignor: Some("range".into()), ..ok }.validate(1, &cfg).is_ok());
    }

    #[test]
    fn the_assignor_most_members_ask_for_is_used() {
        let (cfg, topics) = (cfg(), topics(4));
        let mut g = ConsumerGroup::new("g", 0);
        assert_eq!(g.assignor(&cfg), "uniform");
        g.heartbeat("g", Heartbeat { server_assignor: Some("range".into()), ..join("b") }, &cfg, &topics, 0).unwrap();
        g.heartbeat("g", Heartbeat { server_assignor: Some("range".into()), ..join("a") }, &cfg, &topics, 0).unwrap();
        assert_eq!(g.describe(&cfg).assignor, "range");
        // Range: a (first by id) targets 0-1, b 2-3.
        let d = g.describe(&cfg);
        let target_of = |id: &str| d.members.iter().find(|(m, _)| m.id == id).map(|(_, t)| t[&T].clone()).unwrap();
        assert_eq!(target_of("a"), BTreeSet::from([0, 1]));
        assert_eq!(target_of("b"), BTreeSet::from([2, 3]));
    }

    #[test]
    fn coordinator_refuses_non_empty_classic_groups_and_converts_empty_ones() {
        use super::super::classic::ClassicGroup;
        use super::super::block_on;
        let coordinator = GroupCoordinator::new(cfg());
        let topics = topics(1);
        // Without an offsets topic there is no coordinator for any group.
        let e = block_on(coordinator.consumer_heartbeat("empty", join("a"), &topics, 0)).unwrap_err();
        assert_eq!(e.error, ResponseError::CoordinatorNotAvailable);
        let dir = tempfile::tempdir().expect("tempdir");
        let log = storage::Log::open(&dir.path().join("__consumer_offsets-0"), storage::LogConfig::default(), true).expect("log");
        let partition = crate::partition::Partition::new(super::super::OFFSETS_TOPIC.into(), Uuid::nil(), 0, log, 0);
        coordinator.load_partitions(vec![std::sync::Arc::new(partition)], 0).expect("load");
        coordinator.with_groups("empty", |groups| groups.insert("empty".into(), Group::new(Membership::Classic(ClassicGroup::new(0)))));
        // Heartbeats other than a join need an existing consumer group.
        let e = block_on(coordinator.consumer_heartbeat("nope", beat("a", 1, &[]), &topics, 0)).unwrap_err();
        assert_eq!(e.error, ResponseError::GroupIdNotFound);
        let e = block_on(coordinator.consumer_heartbeat("empty", beat("a", 1, &[]), &topics, 0)).unwrap_err();
        assert_eq!((e.error, e.message.as_str()), (ResponseError::GroupIdNotFound, "Group empty is not a consumer group."));
        // A join turns the empty classic group into a consumer group.
        let r = block_on(coordinator.consumer_heartbeat("empty", join("a"), &topics, 0)).unwrap();
        assert_eq!(r.member_epoch, 1);
        let described = coordinator.consumer_describe(&["empty".into(), "nope".into()]);
        assert_eq!(described[0].as_ref().unwrap().members.len(), 1);
        assert_eq!(described[1].as_ref().unwrap_err().error, ResponseError::GroupIdNotFound);
    }
}
