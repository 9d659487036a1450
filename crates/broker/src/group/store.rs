//! The records the group coordinator keeps in `__consumer_offsets`, in Kafka's
//! key and value layouts, so that a restart rebuilds every group and committed
//! offset: key version 0/1 is a committed offset, 2 a classic group, 3 a
//! consumer (KIP-848) group. A null value is a tombstone.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A record key of `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl StoredKey {
    /// The group the record belongs to.
    pub(crate) fn group(&self) -> &str {
        match self {
            StoredKey::Offset { group, .. } | StoredKey::ClassicGroup(group) | StoredKey::ConsumerGroup(group) => {
                group
            }
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
                // ConsumerGroupMetadataValue v0 is a flexible version: the epoch,
                // then an empty tagged-field section.
                buf.put_i16(0);
                buf.put_i32(*epoch);
                buf.put_u8(0);
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
            StoredKey::ConsumerGroup(_) => Ok(StoredValue::ConsumerGroup { epoch: get_i32(&mut buf, "epoch")? }),
        }
    }
}

/// The `__consumer_offsets` partition of a group: Java's `String.hashCode`, made
/// non-negative as Kafka's `Utils.abs` does, modulo the partition count.
pub(crate) fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = group.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    (hash & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_partition_matches_kafka_for_known_ids() {
        // Java: "mygroup".hashCode() == 1516409939 -> 1516409939 % 50 == 39.
        assert_eq!(partition_for("mygroup", 50), 39);
        assert_eq!(partition_for("", 50), 0);
        // A negative hash code is masked, not negated.
        let h = "polygenelubricants".encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
        assert_eq!(h, i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
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

    #[test]
    fn unknown_key_versions_are_skipped() {
        let mut buf = BytesMut::new();
        buf.put_i16(9);
        put_str(&mut buf, "g");
        assert_eq!(StoredKey::decode(buf.freeze()).expect("decodes"), None);
    }
}
