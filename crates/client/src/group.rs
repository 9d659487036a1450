//! Classic consumer-group membership: JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! offset commits and fetches for a member, the embedded consumer protocol and the
//! range and round-robin assignors.
//!
//! The protocol is Kafka's eager one: on every rebalance a member gives up all its
//! partitions, rejoins, and the leader (chosen by the coordinator) assigns every
//! partition again. Heartbeats run in a background task on their own connection and
//! report what they learn (a rebalance, a fenced generation) through [`Membership`];
//! the consumer acts on it in its next poll.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, GroupId, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cluster::Client;
use crate::connection::Connection;
use crate::error::{Error, KafkaError, Result};

/// The protocol type of consumer groups in JoinGroup.
pub const PROTOCOL_TYPE: &str = "consumer";

/// A topic partition: `(topic, partition)`.
pub type TopicPartition = (String, i32);

/// Version written in front of a subscription: v1 adds owned partitions (empty under
/// the eager protocol), which Kafka's and librdkafka's parsers both read.
const SUBSCRIPTION_VERSION: i16 = 1;
/// Version written in front of an assignment: every version has the same fields, and
/// v0 is the one every client, however old, parses.
const ASSIGNMENT_VERSION: i16 = 0;

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn encode_versioned<M: Encodable>(message: &M, version: i16, what: &str) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    message
        .encode(&mut buf, version)
        .map_err(|e| Error::protocol(format!("cannot encode {what}: {e:#}")))?;
    Ok(buf.freeze())
}

/// Decodes an embedded-protocol message behind its i16 version. A newer version than
/// we know is read as the newest we know: versions only append fields (Kafka's rule).
fn decode_versioned<M: Decodable + Message>(mut bytes: Bytes, what: &str) -> Result<M> {
    if bytes.len() < 2 {
        return Err(Error::protocol(format!(
            "{what} of {} bytes has no version",
            bytes.len()
        )));
    }
    let version = bytes.get_i16();
    if version < 0 {
        return Err(Error::protocol(format!("{what} has version {version}")));
    }
    M::decode(&mut bytes, version.min(M::VERSIONS.max))
        .map_err(|e| Error::protocol(format!("cannot decode {what} v{version}: {e:#}")))
}

/// Encodes a member's subscription (`ConsumerProtocolSubscription`) for JoinGroup.
pub fn encode_subscription(topics: &[String]) -> Result<Bytes> {
    let mut s = ConsumerProtocolSubscription::default();
    s.topics = topics.iter().map(|t| str_bytes(t)).collect();
    encode_versioned(&s, SUBSCRIPTION_VERSION, "subscription")
}

/// The topics of a member's subscription.
pub fn decode_subscription(bytes: Bytes) -> Result<Vec<String>> {
    let s: ConsumerProtocolSubscription = decode_versioned(bytes, "subscription")?;
    Ok(s.topics.iter().map(|t| t.to_string()).collect())
}

/// Encodes a member's assignment (`ConsumerProtocolAssignment`) for SyncGroup.
pub fn encode_assignment(partitions: &[TopicPartition]) -> Result<Bytes> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let mut a = ConsumerProtocolAssignment::default();
    for (topic, mut parts) in by_topic {
        parts.sort_unstable();
        let mut t = AssignedTopic::default();
        t.topic = TopicName(str_bytes(topic));
        t.partitions = parts;
        a.assigned_partitions.push(t);
    }
    encode_versioned(&a, ASSIGNMENT_VERSION, "assignment")
}

/// The partitions of a member's assignment, sorted; empty bytes are no partitions.
pub fn decode_assignment(bytes: Bytes) -> Result<Vec<TopicPartition>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let a: ConsumerProtocolAssignment = decode_versioned(bytes, "assignment")?;
    let mut out: Vec<TopicPartition> = a
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
        .collect();
    out.sort();
    Ok(out)
}

/// A member as the assignors see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// Member id given by the coordinator.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// Subscribed topics.
    pub topics: Vec<String>,
}

/// Kafka's member order for assignors: static members first by instance id, then
/// dynamic members by member id.
fn sorted_members<'a>(
    members: impl Iterator<Item = &'a MemberSubscription>,
) -> Vec<&'a MemberSubscription> {
    let mut v: Vec<&MemberSubscription> = members.collect();
    v.sort_by(|a, b| match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    });
    v
}

/// Kafka's `RangeAssignor`: per topic, the subscribed members in member order get
/// contiguous ranges of partitions; the first `partitions % members` get one extra.
/// `partition_counts` maps each known topic to its partition count; unknown topics
/// are skipped. Every member gets an entry, possibly empty.
pub fn range_assign(
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out: BTreeMap<String, Vec<TopicPartition>> = members
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect();
    for (topic, &count) in partition_counts {
        let subscribed = sorted_members(members.iter().filter(|m| m.topics.contains(topic)));
        if subscribed.is_empty() || count <= 0 {
            continue;
        }
        let n = subscribed.len() as i32;
        let (per, extra) = (count / n, count % n);
        for (i, m) in (0i32..).zip(subscribed) {
            let start = per * i + i.min(extra);
            let len = per + i32::from(i < extra);
            if let Some(parts) = out.get_mut(&m.member_id) {
                parts.extend((start..start + len).map(|p| (topic.clone(), p)));
            }
        }
    }
    out
}

/// Kafka's `RoundRobinAssignor`: every partition of every topic, sorted, dealt in turn
/// to the members in member order, skipping members not subscribed to its topic.
pub fn round_robin_assign(
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out: BTreeMap<String, Vec<TopicPartition>> = members
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect();
    let ordered = sorted_members(members.iter());
    if ordered.is_empty() {
        return out;
    }
    let mut next = 0usize;
    for (topic, &count) in partition_counts {
        if !ordered.iter().any(|m| m.topics.contains(topic)) {
            continue;
        }
        for p in 0..count {
            // At least one member is subscribed, so this finds one within a lap.
            for _ in 0..ordered.len() {
                let m = ordered[next % ordered.len()];
                next = (next + 1) % ordered.len();
                if m.topics.contains(topic) {
                    if let Some(parts) = out.get_mut(&m.member_id) {
                        parts.push((topic.clone(), p));
                    }
                    break;
                }
            }
        }
    }
    out
}

/// Computes the assignment for `protocol` (`range` or `roundrobin`).
fn assign(
    protocol: &str,
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
) -> Result<BTreeMap<String, Vec<TopicPartition>>> {
    match protocol {
        "range" => Ok(range_assign(members, partition_counts)),
        "roundrobin" => Ok(round_robin_assign(members, partition_counts)),
        other => Err(Error::Kafka(KafkaError {
            code: ResponseError::InconsistentGroupProtocol,
            message: Some(format!(
                "the coordinator chose assignor {other:?}, which this client does not have"
            )),
        })),
    }
}

/// The assignors this client offers in JoinGroup, preferred first.
const ASSIGNORS: [&str; 2] = ["range", "roundrobin"];

/// Group settings of a member.
#[derive(Debug, Clone)]
pub(crate) struct GroupSettings {
    pub(crate) group_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) retry_backoff: Duration,
}

/// What the heartbeat task learnt; the consumer acts on it in its next poll.
#[derive(Debug, Clone)]
pub(crate) enum GroupEvent {
    /// REBALANCE_IN_PROGRESS: the generation is still valid (commits are accepted);
    /// rejoin.
    Rebalance,
    /// ILLEGAL_GENERATION (`keep_member_id`) or UNKNOWN_MEMBER_ID, or the member
    /// left after exceeding max.poll.interval: the partitions are lost; rejoin.
    Reset { keep_member_id: bool },
    /// FENCED_INSTANCE_ID: another consumer has this group.instance.id.
    Fatal(Error),
}

#[derive(Debug, Default)]
struct Shared {
    event: Option<GroupEvent>,
    last_poll: Option<Instant>,
}

type SharedState = Arc<Mutex<Shared>>;

fn lock(shared: &SharedState) -> std::sync::MutexGuard<'_, Shared> {
    match shared.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The generation a member is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Generation {
    pub(crate) id: i32,
    pub(crate) member_id: String,
}

/// One consumer's membership in a classic group.
pub(crate) struct Membership {
    client: Client,
    settings: GroupSettings,
    coordinator: Option<Arc<Connection>>,
    /// Empty until the coordinator assigns one.
    member_id: String,
    /// The generation joined; `None` when not (or no longer) a member.
    generation: Option<i32>,
    protocol: Option<String>,
    shared: SharedState,
    heartbeat: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("group_id", &self.settings.group_id)
            .field("member_id", &self.member_id)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

fn coordinator_moved(code: ResponseError) -> bool {
    matches!(
        code,
        ResponseError::NotCoordinator
            | ResponseError::CoordinatorNotAvailable
            | ResponseError::CoordinatorLoadInProgress
    )
}

fn kafka(code: ResponseError, message: impl Into<String>) -> Error {
    Error::Kafka(KafkaError {
        code,
        message: Some(message.into()),
    })
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// How a failed JoinGroup or SyncGroup round continues.
enum Retry {
    /// Join again at once (a new member id, a rebalance restarted).
    Now,
    /// Find the coordinator again, after a pause.
    Coordinator(Error),
    /// Give up: a retry cannot fix this.
    Fatal(Error),
}

impl Membership {
    pub(crate) fn new(client: Client, settings: GroupSettings) -> Membership {
        Membership {
            client,
            settings,
            coordinator: None,
            member_id: String::new(),
            generation: None,
            protocol: None,
            shared: Arc::new(Mutex::new(Shared::default())),
            heartbeat: None,
        }
    }

    pub(crate) fn settings(&self) -> &GroupSettings {
        &self.settings
    }

    pub(crate) fn group_id(&self) -> &str {
        &self.settings.group_id
    }

    /// The current generation, when the member is in one.
    pub(crate) fn generation(&self) -> Option<Generation> {
        self.generation.map(|id| Generation {
            id,
            member_id: self.member_id.clone(),
        })
    }

    /// Records that the application polled (for max.poll.interval).
    pub(crate) fn polled(&self) {
        lock(&self.shared).last_poll = Some(Instant::now());
    }

    /// Takes what the heartbeat task reported, applying resets to the generation.
    /// A fatal error is returned as `Err`.
    pub(crate) fn take_event(&mut self) -> Result<Option<GroupEvent>> {
        let event = lock(&self.shared).event.take();
        match &event {
            Some(GroupEvent::Fatal(e)) => {
                self.stop_heartbeat();
                self.generation = None;
                return Err(e.clone());
            }
            Some(GroupEvent::Reset { keep_member_id }) => {
                self.stop_heartbeat();
                self.generation = None;
                if !keep_member_id {
                    self.member_id.clear();
                }
            }
            Some(GroupEvent::Rebalance) | None => {}
        }
        Ok(event)
    }

    /// Whether the member must (re)join before it may fetch.
    pub(crate) fn needs_join(&self) -> bool {
        self.generation.is_none() || lock(&self.shared).event.is_some()
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    async fn coordinator(&mut self) -> Result<Arc<Connection>> {
        if let Some(c) = self.coordinator.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let (_, conn) = self
            .client
            .group_coordinator(&self.settings.group_id)
            .await?;
        self.coordinator = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the coordinator and waits a retry backoff.
    async fn coordinator_lost(&mut self, why: &Error) {
        tracing::debug!(group = %self.settings.group_id, error = %why, "looking for the group coordinator again");
        self.coordinator = None;
        tokio::time::sleep(self.settings.retry_backoff).await;
    }

    /// Joins the group subscribed to `topics` and returns this member's assignment.
    /// Retries through coordinator moves and restarted rebalances; fails on errors
    /// a retry cannot fix (e.g. INCONSISTENT_GROUP_PROTOCOL, FENCED_INSTANCE_ID).
    pub(crate) async fn join(&mut self, topics: &[String]) -> Result<Vec<TopicPartition>> {
        self.stop_heartbeat();
        self.generation = None;
        lock(&self.shared).event = None;
        let metadata = encode_subscription(topics)?;
        loop {
            match self.join_once(&metadata).await {
                Ok(assignment) => return Ok(assignment),
                Err(Retry::Now) => {}
                Err(Retry::Coordinator(e)) => self.coordinator_lost(&e).await,
                Err(Retry::Fatal(e)) => return Err(e),
            }
        }
    }

    async fn join_once(&mut self, metadata: &Bytes) -> Result<Vec<TopicPartition>, Retry> {
        let conn = self.coordinator().await.map_err(Retry::Coordinator)?;
        let mut req = JoinGroupRequest::default();
        req.group_id = GroupId(str_bytes(&self.settings.group_id));
        req.session_timeout_ms = millis(self.settings.session_timeout);
        req.rebalance_timeout_ms = millis(self.settings.rebalance_timeout);
        req.member_id = str_bytes(&self.member_id);
        req.group_instance_id = self.settings.group_instance_id.as_deref().map(str_bytes);
        req.protocol_type = StrBytes::from_static_str(PROTOCOL_TYPE);
        req.protocols = ASSIGNORS
            .iter()
            .map(|name| {
                let mut p = JoinGroupRequestProtocol::default();
                p.name = StrBytes::from_static_str(name);
                p.metadata = metadata.clone();
                p
            })
            .collect();
        // The coordinator answers when every member has joined, which may take up to
        // the rebalance timeout; Kafka's client waits that long plus a margin.
        let wait = self.settings.rebalance_timeout + Duration::from_secs(5);
        let resp = match conn.send_with_timeout(&req, wait).await {
            Ok(r) => r,
            Err(e) if e.is_retriable() => return Err(Retry::Coordinator(e)),
            Err(e) => return Err(Retry::Fatal(e)),
        };
        if let Some(e) = KafkaError::from_code(resp.error_code, None) {
            return Err(match e.code {
                // KIP-394: the coordinator hands out the member id first.
                ResponseError::MemberIdRequired => {
                    self.member_id = resp.member_id.to_string();
                    Retry::Now
                }
                ResponseError::UnknownMemberId => {
                    self.member_id.clear();
                    Retry::Now
                }
                ResponseError::RebalanceInProgress => Retry::Now,
                c if coordinator_moved(c) => Retry::Coordinator(Error::Kafka(e)),
                _ => Retry::Fatal(Error::Kafka(e)),
            });
        }
        self.member_id = resp.member_id.to_string();
        let generation = resp.generation_id;
        let protocol = resp
            .protocol_name
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let assignments = if resp.leader == resp.member_id {
            let members = resp
                .members
                .iter()
                .map(|m| {
                    Ok(MemberSubscription {
                        member_id: m.member_id.to_string(),
                        group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                        topics: decode_subscription(m.metadata.clone())?,
                    })
                })
                .collect::<Result<Vec<_>>>()
                .map_err(Retry::Fatal)?;
            self.leader_assign(&protocol, &members)
                .await
                .map_err(Retry::Fatal)?
        } else {
            Vec::new()
        };
        let mut sync = SyncGroupRequest::default();
        sync.group_id = GroupId(str_bytes(&self.settings.group_id));
        sync.generation_id = generation;
        sync.member_id = str_bytes(&self.member_id);
        sync.group_instance_id = self.settings.group_instance_id.as_deref().map(str_bytes);
        sync.protocol_type = Some(StrBytes::from_static_str(PROTOCOL_TYPE));
        sync.protocol_name = Some(str_bytes(&protocol));
        sync.assignments = assignments;
        let resp = match conn.send_with_timeout(&sync, wait).await {
            Ok(r) => r,
            Err(e) if e.is_retriable() => return Err(Retry::Coordinator(e)),
            Err(e) => return Err(Retry::Fatal(e)),
        };
        if let Some(e) = KafkaError::from_code(resp.error_code, None) {
            return Err(match e.code {
                ResponseError::RebalanceInProgress => Retry::Now,
                ResponseError::UnknownMemberId => {
                    self.member_id.clear();
                    Retry::Now
                }
                ResponseError::IllegalGeneration => Retry::Now,
                c if coordinator_moved(c) => Retry::Coordinator(Error::Kafka(e)),
                _ => Retry::Fatal(Error::Kafka(e)),
            });
        }
        let assignment = decode_assignment(resp.assignment).map_err(Retry::Fatal)?;
        tracing::info!(
            group = %self.settings.group_id,
            member = %self.member_id,
            generation,
            %protocol,
            partitions = assignment.len(),
            "joined group"
        );
        self.generation = Some(generation);
        self.protocol = Some(protocol);
        self.start_heartbeat(generation);
        Ok(assignment)
    }

    /// The leader's work: partition counts of every subscribed topic, then the
    /// assignment of the chosen protocol, encoded per member.
    async fn leader_assign(
        &self,
        protocol: &str,
        members: &[MemberSubscription],
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let topics: BTreeSet<&String> = members.iter().flat_map(|m| m.topics.iter()).collect();
        let mut counts = BTreeMap::new();
        for topic in topics {
            match self.client.fetch_topic(topic).await {
                Ok(t) => {
                    counts.insert(topic.clone(), t.partitions.len() as i32);
                }
                // A topic that does not exist (yet) has no partitions to assign.
                Err(Error::Kafka(e)) => {
                    tracing::debug!(%topic, error = %e, "subscribed topic left out of the assignment");
                }
                Err(e) => return Err(e),
            }
        }
        assign(protocol, members, &counts)?
            .into_iter()
            .map(|(member, parts)| {
                let mut a = SyncGroupRequestAssignment::default();
                a.member_id = StrBytes::from_string(member);
                a.assignment = encode_assignment(&parts)?;
                Ok(a)
            })
            .collect()
    }

    fn start_heartbeat(&mut self, generation: i32) {
        self.stop_heartbeat();
        lock(&self.shared).last_poll = Some(Instant::now());
        let task = Heartbeat {
            client: self.client.clone(),
            settings: self.settings.clone(),
            generation,
            member_id: self.member_id.clone(),
            shared: self.shared.clone(),
        };
        self.heartbeat = Some(tokio::spawn(task.run()));
    }

    /// Commits `offsets` for the group: in the current generation when the member is
    /// in one, else as a member-less commit (generation -1), which Kafka accepts for
    /// groups without members (manually assigned consumers). A REBALANCE_IN_PROGRESS,
    /// ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID fails the commit and makes the member
    /// rejoin.
    pub(crate) async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let generation = self.generation.unwrap_or(-1);
        let member_id = if self.generation.is_some() {
            self.member_id.clone()
        } else {
            String::new()
        };
        let instance_id = self
            .generation
            .and(self.settings.group_instance_id.as_deref());
        let req = offset_commit_request(
            &self.settings.group_id,
            generation,
            &member_id,
            instance_id,
            offsets,
        );
        let deadline = Instant::now() + self.client.config().connection.request_timeout;
        loop {
            let result = match self.coordinator().await {
                Ok(conn) => conn.send(&req).await,
                Err(e) => Err(e),
            };
            let resp = match result {
                Ok(r) => r,
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    self.coordinator_lost(&e).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let first = resp
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
                .find(|(_, p)| p.error_code != 0);
            let Some((t, p)) = first else { return Ok(()) };
            let code = ResponseError::try_from_code(p.error_code)
                .unwrap_or(ResponseError::UnknownServerError);
            if coordinator_moved(code) && Instant::now() < deadline {
                self.coordinator_lost(&Error::Kafka(KafkaError {
                    code,
                    message: None,
                }))
                .await;
                continue;
            }
            let event = match code {
                ResponseError::RebalanceInProgress => Some(GroupEvent::Rebalance),
                ResponseError::IllegalGeneration => Some(GroupEvent::Reset {
                    keep_member_id: true,
                }),
                ResponseError::UnknownMemberId => Some(GroupEvent::Reset {
                    keep_member_id: false,
                }),
                _ => None,
            };
            if let (Some(event), Some(_)) = (event, self.generation) {
                lock(&self.shared).event = Some(event);
            }
            return Err(kafka(
                code,
                format!(
                    "Commit of {}-{} for group '{}' failed.",
                    t.name.0, p.partition_index, self.settings.group_id
                ),
            ));
        }
    }

    /// The group's committed offsets of `partitions`; partitions without a commit are
    /// left out.
    pub(crate) async fn committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>> {
        let deadline = Instant::now() + self.client.config().connection.request_timeout;
        loop {
            let result = match self.coordinator().await {
                Ok(conn) => fetch_offsets(&conn, &self.settings.group_id, Some(partitions)).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(found) => return Ok(found.into_iter().map(|(tp, o)| (tp, o.offset)).collect()),
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    self.coordinator_lost(&e).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Leaves the group (LeaveGroup), so that it rebalances at once rather than after
    /// the session timeout. Static members (group.instance.id) stay, as in Kafka: their
    /// partitions wait for them until the session times out.
    pub(crate) async fn leave(&mut self) -> Result<()> {
        self.stop_heartbeat();
        let joined = self.generation.take().is_some();
        if self.settings.group_instance_id.is_some() || self.member_id.is_empty() || !joined {
            return Ok(());
        }
        let conn = self.coordinator().await?;
        let member_id = std::mem::take(&mut self.member_id);
        send_leave_group(
            &conn,
            &self.settings.group_id,
            &member_id,
            Some("the consumer is being closed"),
        )
        .await
    }
}

/// Sends a LeaveGroup for one member (v3+ name members in a list, older versions
/// one id; the encoder refuses a field the version does not have).
async fn send_leave_group(
    conn: &Connection,
    group: &str,
    member_id: &str,
    reason: Option<&str>,
) -> Result<()> {
    let version = conn.version::<LeaveGroupRequest>()?;
    let mut req = LeaveGroupRequest::default();
    req.group_id = GroupId(str_bytes(group));
    if version < 3 {
        req.member_id = str_bytes(member_id);
    } else {
        let mut m = MemberIdentity::default();
        m.member_id = str_bytes(member_id);
        if version >= 5 {
            m.reason = reason.map(str_bytes);
        }
        req.members = vec![m];
    }
    let resp = conn.send_version(&req, version).await?;
    crate::error::check(resp.error_code, None)?;
    for m in &resp.members {
        crate::error::check(m.error_code, None)?;
    }
    Ok(())
}

/// An OffsetCommit of `offsets` (leader epoch unknown, no metadata).
pub(crate) fn offset_commit_request(
    group: &str,
    generation: i32,
    member_id: &str,
    group_instance_id: Option<&str>,
    offsets: &[(TopicPartition, i64)],
) -> OffsetCommitRequest {
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(str_bytes(group));
    req.generation_id_or_member_epoch = generation;
    req.member_id = str_bytes(member_id);
    req.group_instance_id = group_instance_id.map(str_bytes);
    req.retention_time_ms = -1;
    for ((topic, partition), offset) in offsets {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = *partition;
        p.committed_offset = *offset;
        p.committed_leader_epoch = -1;
        p.committed_metadata = Some(StrBytes::default());
        match req.topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(p),
            None => {
                let mut t = OffsetCommitRequestTopic::default();
                t.name = TopicName(str_bytes(topic));
                t.partitions.push(p);
                req.topics.push(t);
            }
        }
    }
    req
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch of the committed record, if known.
    pub leader_epoch: Option<i32>,
    /// Metadata committed with the offset.
    pub metadata: Option<String>,
}

/// OffsetFetch of `group` on the coordinator connection `conn`: the given partitions,
/// or every partition with a commit when `partitions` is `None`. Partitions without
/// a commit (offset -1) are left out.
pub(crate) async fn fetch_offsets(
    conn: &Connection,
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> Result<BTreeMap<TopicPartition, CommittedOffset>> {
    let version = conn.version::<OffsetFetchRequest>()?;
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions.unwrap_or_default() {
        by_topic.entry(t).or_default().push(*p);
    }
    let mut req = OffsetFetchRequest::default();
    // v8+ (KIP-709) carries a list of groups; older versions one group id.
    if version >= 8 {
        let mut g = OffsetFetchRequestGroup::default();
        g.group_id = GroupId(str_bytes(group));
        g.member_epoch = -1;
        g.topics = partitions.map(|_| {
            by_topic
                .iter()
                .map(|(t, ps)| {
                    let mut rt = OffsetFetchRequestTopics::default();
                    rt.name = TopicName(str_bytes(t));
                    rt.partition_indexes = ps.clone();
                    rt
                })
                .collect()
        });
        req.groups = vec![g];
    } else {
        req.group_id = GroupId(str_bytes(group));
        req.topics = partitions.map(|_| {
            by_topic
                .iter()
                .map(|(t, ps)| {
                    let mut rt = OffsetFetchRequestTopic::default();
                    rt.name = TopicName(str_bytes(t));
                    rt.partition_indexes = ps.clone();
                    rt
                })
                .collect()
        });
    }
    let resp = conn.send_version(&req, version).await?;
    offsets_of(resp, group, version)
}

fn offsets_of(
    resp: OffsetFetchResponse,
    group: &str,
    version: i16,
) -> Result<BTreeMap<TopicPartition, CommittedOffset>> {
    let mut out = BTreeMap::new();
    let mut add = |topic: &str,
                   partition: i32,
                   offset: i64,
                   epoch: i32,
                   metadata: Option<&StrBytes>,
                   code: i16| {
        crate::error::check(code, None).map_err(|e| match e {
            Error::Kafka(mut k) => {
                k.message.get_or_insert_with(|| {
                    format!("Cannot fetch the offset of {topic}-{partition} for group '{group}'.")
                });
                Error::Kafka(k)
            }
            e => e,
        })?;
        if offset >= 0 {
            out.insert(
                (topic.to_owned(), partition),
                CommittedOffset {
                    offset,
                    leader_epoch: (epoch >= 0).then_some(epoch),
                    metadata: metadata.filter(|m| !m.is_empty()).map(|m| m.to_string()),
                },
            );
        }
        Ok::<(), Error>(())
    };
    // v8+ answers per group; the fields are the same.
    let rows: Vec<(TopicName, i32, i64, i32, Option<StrBytes>, i16)> = if version >= 8 {
        let g = resp
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| {
                Error::protocol(format!(
                    "OffsetFetch response has no result for group {group}"
                ))
            })?;
        crate::error::check(g.error_code, None)?;
        g.topics
            .into_iter()
            .flat_map(|t| {
                let name = t.name;
                t.partitions.into_iter().map(move |p| {
                    (
                        name.clone(),
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.metadata,
                        p.error_code,
                    )
                })
            })
            .collect()
    } else {
        crate::error::check(resp.error_code, None)?;
        resp.topics
            .into_iter()
            .flat_map(|t| {
                let name = t.name;
                t.partitions.into_iter().map(move |p| {
                    (
                        name.clone(),
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.metadata,
                        p.error_code,
                    )
                })
            })
            .collect()
    };
    for (name, partition, offset, epoch, metadata, code) in &rows {
        add(
            &name.0,
            *partition,
            *offset,
            *epoch,
            metadata.as_ref(),
            *code,
        )?;
    }
    Ok(out)
}

/// The heartbeat task of one generation.
struct Heartbeat {
    client: Client,
    settings: GroupSettings,
    generation: i32,
    member_id: String,
    shared: SharedState,
}

impl Heartbeat {
    fn report(&self, event: GroupEvent) {
        lock(&self.shared).event = Some(event);
    }

    /// Heartbeats every `heartbeat_interval` until the coordinator says the
    /// generation is over or the application stops polling for longer than the
    /// rebalance timeout (max.poll.interval), in which case the member leaves.
    async fn run(self) {
        let mut conn: Option<Connection> = None;
        loop {
            tokio::time::sleep(self.settings.heartbeat_interval).await;
            let last_poll = lock(&self.shared).last_poll;
            if last_poll.is_some_and(|t| t.elapsed() > self.settings.rebalance_timeout) {
                tracing::warn!(
                    group = %self.settings.group_id,
                    "no poll within max.poll.interval.ms ({:?}); leaving the group",
                    self.settings.rebalance_timeout
                );
                if let Some(c) = &conn {
                    let reason = Some("consumer poll timeout has expired");
                    let _ =
                        send_leave_group(c, &self.settings.group_id, &self.member_id, reason).await;
                }
                self.report(GroupEvent::Reset {
                    keep_member_id: false,
                });
                return;
            }
            if conn.as_ref().is_none_or(Connection::is_closed) {
                conn = match self.connect().await {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::debug!(group = %self.settings.group_id, error = %e, "heartbeat: no coordinator connection");
                        continue;
                    }
                };
            }
            let Some(c) = &conn else { continue };
            let mut req = HeartbeatRequest::default();
            req.group_id = GroupId(str_bytes(&self.settings.group_id));
            req.generation_id = self.generation;
            req.member_id = str_bytes(&self.member_id);
            req.group_instance_id = self.settings.group_instance_id.as_deref().map(str_bytes);
            let resp = match c.send(&req).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(group = %self.settings.group_id, error = %e, "heartbeat failed");
                    conn = None;
                    continue;
                }
            };
            let Some(e) = KafkaError::from_code(resp.error_code, None) else {
                continue;
            };
            match e.code {
                ResponseError::RebalanceInProgress => return self.report(GroupEvent::Rebalance),
                ResponseError::IllegalGeneration => {
                    return self.report(GroupEvent::Reset {
                        keep_member_id: true,
                    })
                }
                ResponseError::UnknownMemberId => {
                    return self.report(GroupEvent::Reset {
                        keep_member_id: false,
                    })
                }
                ResponseError::FencedInstanceId => {
                    return self.report(GroupEvent::Fatal(Error::Kafka(e)))
                }
                c if coordinator_moved(c) => conn = None,
                _ => {
                    tracing::warn!(group = %self.settings.group_id, error = %e, "heartbeat failed");
                }
            }
        }
    }

    async fn connect(&self) -> Result<Connection> {
        let coordinator = self
            .client
            .find_coordinator(crate::cluster::COORDINATOR_GROUP, &self.settings.group_id)
            .await?;
        Connection::connect(&coordinator.addr(), self.client.config().connection.clone()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_owned(),
            group_instance_id: None,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    fn counts(c: &[(&str, i32)]) -> BTreeMap<String, i32> {
        c.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
    }

    fn tps(v: &[(&str, i32)]) -> Vec<TopicPartition> {
        v.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect()
    }

    #[test]
    fn range_gives_contiguous_ranges_and_the_first_members_one_extra() {
        let members = vec![
            member("c2", &["t"]),
            member("c1", &["t"]),
            member("c3", &["t"]),
        ];
        let a = range_assign(&members, &counts(&[("t", 7)]));
        assert_eq!(a["c1"], tps(&[("t", 0), ("t", 1), ("t", 2)]));
        assert_eq!(a["c2"], tps(&[("t", 3), ("t", 4)]));
        assert_eq!(a["c3"], tps(&[("t", 5), ("t", 6)]));
    }

    #[test]
    fn range_assigns_each_topic_on_its_own_among_its_subscribers() {
        let members = vec![member("a", &["x", "y"]), member("b", &["y"])];
        let a = range_assign(&members, &counts(&[("x", 2), ("y", 3), ("z", 4)]));
        assert_eq!(a["a"], tps(&[("x", 0), ("x", 1), ("y", 0), ("y", 1)]));
        assert_eq!(a["b"], tps(&[("y", 2)]));
        // More members than partitions: the last ones get nothing but an entry.
        let members = vec![
            member("a", &["t"]),
            member("b", &["t"]),
            member("c", &["t"]),
        ];
        let a = range_assign(&members, &counts(&[("t", 1)]));
        assert_eq!(a["a"], tps(&[("t", 0)]));
        assert!(a["b"].is_empty() && a["c"].is_empty());
    }

    #[test]
    fn static_members_sort_before_dynamic_ones_by_instance_id() {
        let mut s1 = member("zzz", &["t"]);
        s1.group_instance_id = Some("i1".into());
        let mut s2 = member("aaa", &["t"]);
        s2.group_instance_id = Some("i2".into());
        let members = vec![member("bbb", &["t"]), s2, s1];
        let a = range_assign(&members, &counts(&[("t", 3)]));
        assert_eq!(a["zzz"], tps(&[("t", 0)]));
        assert_eq!(a["aaa"], tps(&[("t", 1)]));
        assert_eq!(a["bbb"], tps(&[("t", 2)]));
    }

    #[test]
    fn round_robin_deals_sorted_partitions_skipping_unsubscribed_members() {
        let members = vec![member("b", &["x", "y"]), member("a", &["x"])];
        let a = round_robin_assign(&members, &counts(&[("x", 3), ("y", 2)]));
        assert_eq!(a["a"], tps(&[("x", 0), ("x", 2)]));
        assert_eq!(a["b"], tps(&[("x", 1), ("y", 0), ("y", 1)]));
    }

    #[test]
    fn subscriptions_carry_their_version_and_round_trip() {
        let topics = vec!["orders".to_owned(), "payments".to_owned()];
        let bytes = encode_subscription(&topics).expect("encodes");
        assert_eq!(&bytes[..2], &SUBSCRIPTION_VERSION.to_be_bytes());
        assert_eq!(decode_subscription(bytes).ok(), Some(topics));
    }

    #[test]
    fn assignments_are_v0_grouped_by_topic_and_round_trip() {
        let parts = tps(&[("b", 1), ("a", 2), ("b", 0)]);
        let bytes = encode_assignment(&parts).expect("encodes");
        // version 0, 2 topics, "a" (len 1), 1 partition: 2, ...
        assert_eq!(&bytes[..13], &[0, 0, 0, 0, 0, 2, 0, 1, b'a', 0, 0, 0, 1]);
        assert_eq!(
            decode_assignment(bytes).ok(),
            Some(tps(&[("a", 2), ("b", 0), ("b", 1)]))
        );
        assert_eq!(decode_assignment(Bytes::new()).ok(), Some(vec![]));
    }

    #[test]
    fn newer_protocol_versions_are_read_with_the_fields_we_know() {
        // A v3 subscription as Kafka 3.5+ writes it: topics, user data, owned
        // partitions, generation, rack.
        let mut s = ConsumerProtocolSubscription::default();
        s.topics = vec![str_bytes("t")];
        s.generation_id = 4;
        s.rack_id = Some(str_bytes("r1"));
        let mut bytes = encode_versioned(&s, 3, "subscription")
            .expect("encodes")
            .to_vec();
        assert_eq!(
            decode_subscription(Bytes::from(bytes.clone())).ok(),
            Some(vec!["t".to_owned()])
        );
        // A future version 7 with fields appended that we do not know.
        bytes[..2].copy_from_slice(&7i16.to_be_bytes());
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            decode_subscription(Bytes::from(bytes)).ok(),
            Some(vec!["t".to_owned()])
        );
        assert!(decode_subscription(Bytes::from_static(&[0xff, 0xff, 0, 0])).is_err());
        assert!(decode_assignment(Bytes::from_static(&[0])).is_err());
    }
}
