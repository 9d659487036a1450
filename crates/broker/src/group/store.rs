//! The records the group coordinator keeps in `__consumer_offsets`, in Kafka's
//! key and value layouts, so that a restart rebuilds every group and committed
//! offset: key version 0/1 is a committed offset, 2 a classic group, 3 a
//! consumer (KIP-848) group's epoch, 5 a consumer group member's metadata, 6
//! the epoch of a consumer group's target assignment, 7 a member's target
//! assignment and 8 a member's current assignment. A null value is a tombstone.
//!
//! Keys are non-flexible (int16 version, int16-length strings); the values of
//! consumer group records (key 3 and up) are flexible version 0: compact
//! strings and arrays (unsigned varint length + 1, 0 for null), topics by id,
//! and a tagged-field section after each struct, written empty and skipped
//! when read.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::assignor::Assignment;

/// A record key of `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum StoredKey {
    /// A committed offset of a group's partition.
    Offset {
        /// Group id.
        group: String,
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// A classic group's metadata.
    ClassicGroup(String),
    /// A consumer (KIP-848) group's metadata.
    ConsumerGroup(String),
    /// A consumer group member's metadata (key version 5).
    ConsumerMember {
        /// Group id.
        group: String,
        /// Member id.
        member: String,
    },
    /// A consumer group's target assignment epoch (key version 6).
    TargetAssignmentEpoch(String),
    /// A consumer group member's target assignment (key version 7).
    TargetAssignment {
        /// Group id.
        group: String,
        /// Member id.
        member: String,
    },
    /// A consumer group member's current assignment and epoch (key version 8).
    CurrentAssignment {
        /// Group id.
        group: String,
        /// Member id.
        member: String,
    },
}

/// A committed offset as stored (OffsetCommitValue version 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetValue {
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, -1 if unknown.
    pub leader_epoch: i32,
    /// Client-supplied metadata.
    pub metadata: String,
    /// When it was committed.
    pub commit_timestamp: i64,
}

/// A classic group's metadata as stored (GroupMetadataValue version 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassicGroupValue {
    /// Protocol type, e.g. `consumer`; empty for a group that only commits.
    pub protocol_type: String,
    /// Generation.
    pub generation: i32,
    /// The selected protocol (assignor).
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// When the group entered its current state.
    pub state_timestamp: i64,
    /// The members of the stable generation.
    pub members: Vec<StoredMember>,
}

/// A classic group member as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredMember {
    /// Member id.
    pub member_id: String,
    /// Static membership id (KIP-345).
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Subscription (the selected protocol's metadata).
    pub subscription: Bytes,
    /// Assignment.
    pub assignment: Bytes,
}

/// A consumer group member's metadata as stored (ConsumerGroupMemberMetadataValue
/// version 0; the classic-protocol metadata, tag 0, is not written and skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerMemberValue {
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Rack id.
    pub rack_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Subscribed topic names.
    pub subscribed_topic_names: Vec<String>,
    /// Subscribed topic regex.
    pub subscribed_topic_regex: Option<String>,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// The server assignor the member asked for.
    pub server_assignor: Option<String>,
}

/// A consumer group member's current assignment as stored
/// (ConsumerGroupCurrentMemberAssignmentValue version 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CurrentAssignmentValue {
    /// The member's epoch.
    pub member_epoch: i32,
    /// The epoch before the last bump (a member that missed the bump may use it).
    pub previous_member_epoch: i32,
    /// Kafka's `MemberState` code: 0 stable, 1 unrevoked partitions, 2
    /// unreleased partitions.
    pub state: i8,
    /// The partitions the member owns (or is being given).
    pub assigned: Assignment,
    /// The partitions the member must revoke.
    pub pending_revocation: Assignment,
}

/// A value of `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredValue {
    /// For [`StoredKey::Offset`].
    Offset(OffsetValue),
    /// For [`StoredKey::ClassicGroup`].
    ClassicGroup(ClassicGroupValue),
    /// For [`StoredKey::ConsumerGroup`]: the group epoch.
    ConsumerGroup {
        /// Group epoch.
        epoch: i32,
    },
    /// For [`StoredKey::ConsumerMember`].
    ConsumerMember(ConsumerMemberValue),
    /// For [`StoredKey::TargetAssignmentEpoch`].
    TargetAssignmentEpoch {
        /// The group epoch the target assignment was computed for.
        epoch: i32,
    },
    /// For [`StoredKey::TargetAssignment`]: the member's target partitions.
    TargetAssignment(Assignment),
    /// For [`StoredKey::CurrentAssignment`].
    CurrentAssignment(CurrentAssignmentValue),
}

/// Why a stored record could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DecodeError(String);

fn put_str(buf: &mut BytesMut, s: &str) {
    let len = s.len().min(i16::MAX as usize);
    buf.put_i16(len as i16);
    buf.put_slice(&s.as_bytes()[..len]);
}

fn put_nullable_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

fn need(buf: &Bytes, n: usize, what: &str) -> Result<(), DecodeError> {
    if buf.remaining() < n {
        return Err(DecodeError(format!("record ends inside {what}")));
    }
    Ok(())
}

fn get_i16(buf: &mut Bytes, what: &str) -> Result<i16, DecodeError> {
    need(buf, 2, what)?;
    Ok(buf.get_i16())
}

fn get_i32(buf: &mut Bytes, what: &str) -> Result<i32, DecodeError> {
    need(buf, 4, what)?;
    Ok(buf.get_i32())
}

fn get_i64(buf: &mut Bytes, what: &str) -> Result<i64, DecodeError> {
    need(buf, 8, what)?;
    Ok(buf.get_i64())
}

fn get_nullable_str(buf: &mut Bytes, what: &str) -> Result<Option<String>, DecodeError> {
    let len = get_i16(buf, what)?;
    if len < 0 {
        return Ok(None);
    }
    need(buf, len as usize, what)?;
    let raw = buf.split_to(len as usize);
    String::from_utf8(raw.to_vec()).map(Some).map_err(|_| DecodeError(format!("{what} is not UTF-8")))
}

fn get_str(buf: &mut Bytes, what: &str) -> Result<String, DecodeError> {
    get_nullable_str(buf, what)?.ok_or_else(|| DecodeError(format!("{what} is null")))
}

fn get_bytes(buf: &mut Bytes, what: &str) -> Result<Bytes, DecodeError> {
    let len = get_i32(buf, what)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    need(buf, len as usize, what)?;
    Ok(buf.split_to(len as usize))
}

fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// A compact array's or string's length: n + 1.
fn put_compact_len(buf: &mut BytesMut, n: usize) {
    put_uvarint(buf, u32::try_from(n).unwrap_or(u32::MAX - 1) + 1);
}

fn put_compact_str(buf: &mut BytesMut, s: &str) {
    put_compact_len(buf, s.len());
    buf.put_slice(s.as_bytes());
}

fn put_compact_nullable_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_compact_str(buf, s),
        None => put_uvarint(buf, 0),
    }
}

/// An empty tagged-field section.
fn put_no_tags(buf: &mut BytesMut) {
    put_uvarint(buf, 0);
}

/// `[]TopicPartitions`: topic id, partitions, tagged fields.
fn put_partitions(buf: &mut BytesMut, assignment: &Assignment) {
    put_compact_len(buf, assignment.len());
    for (topic, partitions) in assignment {
        buf.put_slice(topic.as_bytes());
        put_compact_len(buf, partitions.len());
        for p in partitions {
            buf.put_i32(*p);
        }
        put_no_tags(buf);
    }
}

fn get_uvarint(buf: &mut Bytes, what: &str) -> Result<u32, DecodeError> {
    let mut value = 0u32;
    for shift in (0..35).step_by(7) {
        need(buf, 1, what)?;
        let b = buf.get_u8();
        value |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError(format!("{what} has a varint longer than 5 bytes")))
}

/// A compact length; None for null.
fn get_compact_len(buf: &mut Bytes, what: &str) -> Result<Option<usize>, DecodeError> {
    Ok(get_uvarint(buf, what)?.checked_sub(1).map(|n| n as usize))
}

fn get_compact_nullable_str(buf: &mut Bytes, what: &str) -> Result<Option<String>, DecodeError> {
    let Some(len) = get_compact_len(buf, what)? else { return Ok(None) };
    need(buf, len, what)?;
    let raw = buf.split_to(len);
    String::from_utf8(raw.to_vec()).map(Some).map_err(|_| DecodeError(format!("{what} is not UTF-8")))
}

fn get_compact_str(buf: &mut Bytes, what: &str) -> Result<String, DecodeError> {
    get_compact_nullable_str(buf, what)?.ok_or_else(|| DecodeError(format!("{what} is null")))
}

/// A non-nullable compact array's element count.
fn get_compact_count(buf: &mut Bytes, what: &str) -> Result<usize, DecodeError> {
    get_compact_len(buf, what)?.ok_or_else(|| DecodeError(format!("{what} is null")))
}

/// Skips a tagged-field section: the fields this broker does not use.
fn skip_tags(buf: &mut Bytes, what: &str) -> Result<(), DecodeError> {
    let count = get_uvarint(buf, what)?;
    for _ in 0..count {
        get_uvarint(buf, what)?;
        let size = get_uvarint(buf, what)? as usize;
        need(buf, size, what)?;
        buf.advance(size);
    }
    Ok(())
}

fn get_partitions(buf: &mut Bytes, what: &str) -> Result<Assignment, DecodeError> {
    let mut assignment = Assignment::new();
    // Each element takes at least 18 bytes, so a bad count ends at the buffer's end.
    for _ in 0..get_compact_count(buf, what)? {
        need(buf, 16, what)?;
        let topic = Uuid::from_slice(&buf.split_to(16)).map_err(|e| DecodeError(format!("{what}: {e}")))?;
        let partitions = assignment.entry(topic).or_default();
        for _ in 0..get_compact_count(buf, what)? {
            partitions.insert(get_i32(buf, what)?);
        }
        skip_tags(buf, what)?;
    }
    Ok(assignment)
}

impl StoredKey {
    /// The group the record belongs to.
    pub(crate) fn group(&self) -> &str {
        match self {
            StoredKey::Offset { group, .. }
            | StoredKey::ClassicGroup(group)
            | StoredKey::ConsumerGroup(group)
            | StoredKey::ConsumerMember { group, .. }
            | StoredKey::TargetAssignmentEpoch(group)
            | StoredKey::TargetAssignment { group, .. }
            | StoredKey::CurrentAssignment { group, .. } => group,
        }
    }

    /// Kafka's key layout.
    pub(crate) fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            StoredKey::Offset { group, topic, partition } => {
                buf.put_i16(1);
                put_str(&mut buf, group);
                put_str(&mut buf, topic);
                buf.put_i32(*partition);
            }
            StoredKey::ClassicGroup(group) => {
                buf.put_i16(2);
                put_str(&mut buf, group);
            }
            StoredKey::ConsumerGroup(group) => {
                buf.put_i16(3);
                put_str(&mut buf, group);
            }
            StoredKey::ConsumerMember { group, member } => {
                buf.put_i16(5);
                put_str(&mut buf, group);
                put_str(&mut buf, member);
            }
            StoredKey::TargetAssignmentEpoch(group) => {
                buf.put_i16(6);
                put_str(&mut buf, group);
            }
            StoredKey::TargetAssignment { group, member } => {
                buf.put_i16(7);
                put_str(&mut buf, group);
                put_str(&mut buf, member);
            }
            StoredKey::CurrentAssignment { group, member } => {
                buf.put_i16(8);
                put_str(&mut buf, group);
                put_str(&mut buf, member);
            }
        }
        buf.freeze()
    }

    /// Reads a key; `Ok(None)` for record types this broker does not use.
    pub(crate) fn decode(mut buf: Bytes) -> Result<Option<StoredKey>, DecodeError> {
        let version = get_i16(&mut buf, "key version")?;
        Ok(Some(match version {
            0 | 1 => StoredKey::Offset {
                group: get_str(&mut buf, "group id")?,
                topic: get_str(&mut buf, "topic")?,
                partition: get_i32(&mut buf, "partition")?,
            },
            2 => StoredKey::ClassicGroup(get_str(&mut buf, "group id")?),
            3 => StoredKey::ConsumerGroup(get_str(&mut buf, "group id")?),
            5 => StoredKey::ConsumerMember {
                group: get_str(&mut buf, "group id")?,
                member: get_str(&mut buf, "member id")?,
            },
            6 => StoredKey::TargetAssignmentEpoch(get_str(&mut buf, "group id")?),
            7 => StoredKey::TargetAssignment {
                group: get_str(&mut buf, "group id")?,
                member: get_str(&mut buf, "member id")?,
            },
            8 => StoredKey::CurrentAssignment {
                group: get_str(&mut buf, "group id")?,
                member: get_str(&mut buf, "member id")?,
            },
            _ => return Ok(None),
        }))
    }
}

impl StoredValue {
    /// Kafka's value layout.
    pub(crate) fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            StoredValue::Offset(v) => {
                buf.put_i16(3);
                buf.put_i64(v.offset);
                buf.put_i32(v.leader_epoch);
                put_str(&mut buf, &v.metadata);
                buf.put_i64(v.commit_timestamp);
            }
            StoredValue::ClassicGroup(g) => {
                buf.put_i16(3);
                put_str(&mut buf, &g.protocol_type);
                buf.put_i32(g.generation);
                put_nullable_str(&mut buf, g.protocol.as_deref());
                put_nullable_str(&mut buf, g.leader.as_deref());
                buf.put_i64(g.state_timestamp);
                buf.put_i32(g.members.len() as i32);
                for m in &g.members {
                    put_str(&mut buf, &m.member_id);
                    put_nullable_str(&mut buf, m.group_instance_id.as_deref());
                    put_str(&mut buf, &m.client_id);
                    put_str(&mut buf, &m.client_host);
                    buf.put_i32(m.rebalance_timeout_ms);
                    buf.put_i32(m.session_timeout_ms);
                    put_bytes(&mut buf, &m.subscription);
                    put_bytes(&mut buf, &m.assignment);
                }
            }
            StoredValue::ConsumerGroup { epoch } => {
                buf.put_i16(0);
                buf.put_i32(*epoch);
                put_no_tags(&mut buf);
            }
            StoredValue::ConsumerMember(m) => {
                buf.put_i16(0);
                put_compact_nullable_str(&mut buf, m.instance_id.as_deref());
                put_compact_nullable_str(&mut buf, m.rack_id.as_deref());
                put_compact_str(&mut buf, &m.client_id);
                put_compact_str(&mut buf, &m.client_host);
                put_compact_len(&mut buf, m.subscribed_topic_names.len());
                for name in &m.subscribed_topic_names {
                    put_compact_str(&mut buf, name);
                }
                put_compact_nullable_str(&mut buf, m.subscribed_topic_regex.as_deref());
                buf.put_i32(m.rebalance_timeout_ms);
                put_compact_nullable_str(&mut buf, m.server_assignor.as_deref());
                put_no_tags(&mut buf);
            }
            StoredValue::TargetAssignmentEpoch { epoch } => {
                buf.put_i16(0);
                buf.put_i32(*epoch);
                put_no_tags(&mut buf);
            }
            StoredValue::TargetAssignment(assignment) => {
                buf.put_i16(0);
                put_partitions(&mut buf, assignment);
                put_no_tags(&mut buf);
            }
            StoredValue::CurrentAssignment(c) => {
                buf.put_i16(0);
                buf.put_i32(c.member_epoch);
                buf.put_i32(c.previous_member_epoch);
                buf.put_i8(c.state);
                put_partitions(&mut buf, &c.assigned);
                put_partitions(&mut buf, &c.pending_revocation);
                put_no_tags(&mut buf);
            }
        }
        buf.freeze()
    }

    /// Reads the value of a record whose key is `key`.
    pub(crate) fn decode(key: &StoredKey, mut buf: Bytes) -> Result<StoredValue, DecodeError> {
        let version = get_i16(&mut buf, "value version")?;
        match key {
            StoredKey::Offset { .. } => {
                let offset = get_i64(&mut buf, "offset")?;
                let leader_epoch = if version >= 3 { get_i32(&mut buf, "leader epoch")? } else { -1 };
                let metadata = get_str(&mut buf, "metadata")?;
                let commit_timestamp = get_i64(&mut buf, "commit timestamp")?;
                Ok(StoredValue::Offset(OffsetValue { offset, leader_epoch, metadata, commit_timestamp }))
            }
            StoredKey::ClassicGroup(_) => {
                let protocol_type = get_str(&mut buf, "protocol type")?;
                let generation = get_i32(&mut buf, "generation")?;
                let protocol = get_nullable_str(&mut buf, "protocol")?;
                let leader = get_nullable_str(&mut buf, "leader")?;
                let state_timestamp = if version >= 2 { get_i64(&mut buf, "state timestamp")? } else { -1 };
                let count = get_i32(&mut buf, "member count")?;
                let mut members = Vec::new();
                for _ in 0..count.max(0) {
                    let member_id = get_str(&mut buf, "member id")?;
                    let group_instance_id =
                        if version >= 3 { get_nullable_str(&mut buf, "group instance id")? } else { None };
                    let client_id = get_str(&mut buf, "client id")?;
                    let client_host = get_str(&mut buf, "client host")?;
                    let rebalance_timeout_ms = if version >= 1 { get_i32(&mut buf, "rebalance timeout")? } else { 0 };
                    let session_timeout_ms = get_i32(&mut buf, "session timeout")?;
                    let rebalance_timeout_ms =
                        if version >= 1 { rebalance_timeout_ms } else { session_timeout_ms };
                    let subscription = get_bytes(&mut buf, "subscription")?;
                    let assignment = get_bytes(&mut buf, "assignment")?;
                    members.push(StoredMember {
                        member_id,
                        group_instance_id,
                        client_id,
                        client_host,
                        rebalance_timeout_ms,
                        session_timeout_ms,
                        subscription,
                        assignment,
                    });
                }
                Ok(StoredValue::ClassicGroup(ClassicGroupValue {
                    protocol_type,
                    generation,
                    protocol,
                    leader,
                    state_timestamp,
                    members,
                }))
            }
            StoredKey::ConsumerGroup(_) => {
                let epoch = get_i32(&mut buf, "epoch")?;
                skip_tags(&mut buf, "group metadata tagged fields")?;
                Ok(StoredValue::ConsumerGroup { epoch })
            }
            StoredKey::ConsumerMember { .. } => {
                let instance_id = get_compact_nullable_str(&mut buf, "instance id")?;
                let rack_id = get_compact_nullable_str(&mut buf, "rack id")?;
                let client_id = get_compact_str(&mut buf, "client id")?;
                let client_host = get_compact_str(&mut buf, "client host")?;
                let mut subscribed_topic_names = Vec::new();
                for _ in 0..get_compact_count(&mut buf, "subscribed topic names")? {
                    subscribed_topic_names.push(get_compact_str(&mut buf, "subscribed topic name")?);
                }
                let subscribed_topic_regex = get_compact_nullable_str(&mut buf, "subscribed topic regex")?;
                let rebalance_timeout_ms = get_i32(&mut buf, "rebalance timeout")?;
                let server_assignor = get_compact_nullable_str(&mut buf, "server assignor")?;
                skip_tags(&mut buf, "member metadata tagged fields")?;
                Ok(StoredValue::ConsumerMember(ConsumerMemberValue {
                    instance_id,
                    rack_id,
                    client_id,
                    client_host,
                    subscribed_topic_names,
                    subscribed_topic_regex,
                    rebalance_timeout_ms,
                    server_assignor,
                }))
            }
            StoredKey::TargetAssignmentEpoch(_) => {
                let epoch = get_i32(&mut buf, "assignment epoch")?;
                skip_tags(&mut buf, "target assignment metadata tagged fields")?;
                Ok(StoredValue::TargetAssignmentEpoch { epoch })
            }
            StoredKey::TargetAssignment { .. } => {
                let assignment = get_partitions(&mut buf, "target partitions")?;
                skip_tags(&mut buf, "target assignment tagged fields")?;
                Ok(StoredValue::TargetAssignment(assignment))
            }
            StoredKey::CurrentAssignment { .. } => {
                let member_epoch = get_i32(&mut buf, "member epoch")?;
                let previous_member_epoch = get_i32(&mut buf, "previous member epoch")?;
                need(&buf, 1, "member state")?;
                let state = buf.get_i8();
                let assigned = get_partitions(&mut buf, "assigned partitions")?;
                let pending_revocation = get_partitions(&mut buf, "partitions pending revocation")?;
                skip_tags(&mut buf, "current assignment tagged fields")?;
                Ok(StoredValue::CurrentAssignment(CurrentAssignmentValue {
                    member_epoch,
                    previous_member_epoch,
                    state,
                    assigned,
                    pending_revocation,
                }))
            }
        }
    }
}

/// The `__consumer_offsets` partition of a group: Java's `String.hashCode`, made
/// non-negative as Kafka's `Utils.abs` does (the absolute value, 0 for
/// `i32::MIN`), modulo the partition count.
pub(crate) fn partition_for(group: &str, partitions: i32) -> i32 {
    java_hash(group).checked_abs().unwrap_or(0) % partitions.max(1)
}

/// The partition earlier Potok versions placed a group in: the hash masked
/// to 31 bits (`hash & 0x7fffffff`) rather than Kafka's absolute value. The
/// same as [`partition_for`] for a non-negative hash; used only to find the
/// records of groups written there ([`super::shard`]'s misplaced groups).
pub(crate) fn legacy_partition_for(group: &str, partitions: i32) -> i32 {
    (java_hash(group) & 0x7fff_ffff) % partitions.max(1)
}

/// Java's `String.hashCode` (over UTF-16 code units).
fn java_hash(group: &str) -> i32 {
    group.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_partition_matches_kafka_for_known_ids() {
        // Java: "mygroup".hashCode() == 1516409939 -> 1516409939 % 50 == 39.
        assert_eq!(partition_for("mygroup", 50), 39);
        assert_eq!(partition_for("", 50), 0);
        // i32::MIN is 0, as Kafka's Utils.abs has it.
        let h = "polygenelubricants".encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
        assert_eq!(h, i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // Any other negative hash code is negated, not masked (masking gave
        // 10 and 35): "consumer-group".hashCode() == -1738392088.
        assert_eq!(partition_for("consumer-group", 50), 38);
        assert_eq!(partition_for("group-negative", 50), 13);
        // The placement of earlier versions, where misplaced groups are found.
        assert_eq!(legacy_partition_for("consumer-group", 50), 10);
        assert_eq!(legacy_partition_for("mygroup", 50), 39);
    }

    #[test]
    fn offset_and_group_records_round_trip() {
        let key = StoredKey::Offset { group: "g".into(), topic: "t".into(), partition: 3 };
        let value = StoredValue::Offset(OffsetValue {
            offset: 42,
            leader_epoch: 7,
            metadata: "meta".into(),
            commit_timestamp: 1_700_000_000_000,
        });
        let decoded_key = StoredKey::decode(key.encode()).expect("key").expect("known");
        assert_eq!(decoded_key, key);
        assert_eq!(StoredValue::decode(&key, value.encode()).expect("value"), value);

        let key = StoredKey::ClassicGroup("g".into());
        let value = StoredValue::ClassicGroup(ClassicGroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp: 9,
            members: vec![StoredMember {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        });
        assert_eq!(StoredKey::decode(key.encode()).expect("key"), Some(key.clone()));
        assert_eq!(StoredValue::decode(&key, value.encode()).expect("value"), value);

        let key = StoredKey::ConsumerGroup("g".into());
        let value = StoredValue::ConsumerGroup { epoch: 12 };
        assert_eq!(StoredValue::decode(&key, value.encode()).expect("value"), value);
    }

    #[test]
    fn truncated_value_is_an_error_not_a_panic() {
        let key = StoredKey::Offset { group: "g".into(), topic: "t".into(), partition: 0 };
        let value = StoredValue::Offset(OffsetValue { offset: 1, leader_epoch: -1, metadata: String::new(), commit_timestamp: 0 })
            .encode();
        for cut in 0..value.len() {
            assert!(StoredValue::decode(&key, value.slice(..cut)).is_err());
        }
    }

    fn consumer_records() -> Vec<(StoredKey, StoredValue)> {
        let (t1, t2) = (Uuid::from_bytes([1; 16]), Uuid::from_bytes([2; 16]));
        let assignment = Assignment::from([(t1, [0, 2, 300].into()), (t2, [1].into())]);
        let (g, m) = ("g".to_string(), "m-1".to_string());
        vec![
            (StoredKey::ConsumerGroup(g.clone()), StoredValue::ConsumerGroup { epoch: 12 }),
            (
                StoredKey::ConsumerMember { group: g.clone(), member: m.clone() },
                StoredValue::ConsumerMember(ConsumerMemberValue {
                    instance_id: Some("i1".into()),
                    rack_id: None,
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    // Longer than 127 bytes: a two-byte varint length.
                    subscribed_topic_names: vec!["t".repeat(200), "u".into()],
                    subscribed_topic_regex: Some("t.*".into()),
                    rebalance_timeout_ms: 300_000,
                    server_assignor: None,
                }),
            ),
            (StoredKey::TargetAssignmentEpoch(g.clone()), StoredValue::TargetAssignmentEpoch { epoch: 11 }),
            (StoredKey::TargetAssignment { group: g.clone(), member: m.clone() }, StoredValue::TargetAssignment(assignment.clone())),
            (
                StoredKey::CurrentAssignment { group: g, member: m },
                StoredValue::CurrentAssignment(CurrentAssignmentValue {
                    member_epoch: 11,
                    previous_member_epoch: 10,
                    state: 1,
                    assigned: assignment,
                    pending_revocation: Assignment::from([(t1, [5].into())]),
                }),
            ),
        ]
    }

    #[test]
    fn consumer_group_records_round_trip() {
        for (key, value) in consumer_records() {
            assert_eq!(StoredKey::decode(key.encode()).expect("key"), Some(key.clone()));
            assert_eq!(StoredValue::decode(&key, value.encode()).expect("value"), value);
        }
        let empty = StoredValue::TargetAssignment(Assignment::new());
        let key = StoredKey::TargetAssignment { group: "g".into(), member: "m".into() };
        assert_eq!(StoredValue::decode(&key, empty.encode()).expect("value"), empty);
    }

    #[test]
    fn consumer_group_records_have_kafkas_layout() {
        let key = StoredKey::CurrentAssignment { group: "g".into(), member: "m".into() };
        assert_eq!(&key.encode()[..], b"\x00\x08\x00\x01g\x00\x01m");
        let key = StoredKey::TargetAssignmentEpoch("g".into());
        assert_eq!(&key.encode()[..], b"\x00\x06\x00\x01g");
        assert_eq!(&StoredValue::TargetAssignmentEpoch { epoch: 5 }.encode()[..], b"\x00\x00\x00\x00\x00\x05\x00");
        let topic = Uuid::from_bytes([9; 16]);
        let value = StoredValue::TargetAssignment(Assignment::from([(topic, [1, 2].into())])).encode();
        let mut expected = vec![0, 0, 2];
        expected.extend_from_slice(&[9; 16]);
        expected.extend_from_slice(&[3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0]);
        assert_eq!(&value[..], &expected[..]);
        let member = StoredValue::ConsumerMember(ConsumerMemberValue {
            instance_id: None,
            rack_id: None,
            client_id: "c".into(),
            client_host: "h".into(),
            subscribed_topic_names: vec!["t".into()],
            subscribed_topic_regex: None,
            rebalance_timeout_ms: 1,
            server_assignor: Some("range".into()),
        });
        assert_eq!(&member.encode()[..], b"\x00\x00\x00\x00\x02c\x02h\x02\x02t\x00\x00\x00\x00\x01\x06range\x00");
    }

    #[test]
    fn tagged_fields_of_newer_kafka_versions_are_skipped() {
        // ConsumerGroupTargetAssignmentMetadataValue with AssignmentTimestamp (tag 0, int64).
        let key = StoredKey::TargetAssignmentEpoch("g".into());
        let raw = Bytes::from_static(b"\x00\x00\x00\x00\x00\x07\x01\x00\x08\x00\x00\x00\x00\x00\x00\x00\x2a");
        assert_eq!(StoredValue::decode(&key, raw).expect("value"), StoredValue::TargetAssignmentEpoch { epoch: 7 });
        // A current assignment whose topic carries AssignmentEpochs (tag 0, [1] int32).
        let key = StoredKey::CurrentAssignment { group: "g".into(), member: "m".into() };
        let mut raw = vec![0, 0, 0, 0, 0, 3, 0, 0, 0, 2, 0, 2];
        raw.extend_from_slice(&[4; 16]);
        raw.extend_from_slice(&[2, 0, 0, 0, 6, 1, 0, 5, 2, 0, 0, 0, 3, 1, 0]);
        let value = StoredValue::decode(&key, Bytes::from(raw)).expect("value");
        let StoredValue::CurrentAssignment(c) = value else { panic!("wrong value {value:?}") };
        assert_eq!((c.member_epoch, c.previous_member_epoch, c.state), (3, 2, 0));
        assert_eq!(c.assigned, Assignment::from([(Uuid::from_bytes([4; 16]), [6].into())]));
        assert!(c.pending_revocation.is_empty());
    }

    #[test]
    fn truncated_or_null_consumer_group_values_are_errors() {
        for (key, value) in consumer_records() {
            let bytes = value.encode();
            for cut in 0..bytes.len() {
                assert!(StoredValue::decode(&key, bytes.slice(..cut)).is_err(), "{key:?} cut at {cut}");
            }
            let key_bytes = key.encode();
            for cut in 0..key_bytes.len() {
                assert!(StoredKey::decode(key_bytes.slice(..cut)).is_err(), "{key:?} cut at {cut}");
            }
        }
        // A null partition array, and a varint that never ends.
        let key = StoredKey::TargetAssignment { group: "g".into(), member: "m".into() };
        assert!(StoredValue::decode(&key, Bytes::from_static(b"\x00\x00\x00\x00")).is_err());
        assert!(StoredValue::decode(&key, Bytes::from_static(b"\x00\x00\xff\xff\xff\xff\xff\xff\x01")).is_err());
    }

    #[test]
    fn unknown_key_versions_are_skipped() {
        let mut buf = BytesMut::new();
        buf.put_i16(9);
        put_str(&mut buf, "g");
        assert_eq!(StoredKey::decode(buf.freeze()).expect("decodes"), None);
        // ConsumerGroupPartitionMetadataKey: not used.
        let mut buf = BytesMut::new();
        buf.put_i16(4);
        put_str(&mut buf, "g");
        assert_eq!(StoredKey::decode(buf.freeze()).expect("decodes"), None);
    }
}
