//! Committed offsets: OffsetCommit, OffsetFetch (single- and multi-group) and
//! OffsetDelete.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};

use super::str_bytes;
use crate::group::store::OffsetValue;
use crate::group::PartitionResult;
use crate::{now_ms, Broker};

/// Results grouped by topic, in request order of first appearance.
fn by_topic<T>(results: Vec<((String, i32), T)>) -> Vec<(String, Vec<(i32, T)>)> {
    let mut out: Vec<(String, Vec<(i32, T)>)> = Vec::new();
    for ((topic, partition), r) in results {
        match out.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, list)) => list.push((partition, r)),
            None => out.push((topic, vec![(partition, r)])),
        }
    }
    out
}

fn code(result: PartitionResult) -> i16 {
    result.err().map_or(0, |e| e.code())
}

pub(crate) async fn commit(broker: &Arc<Broker>, req: OffsetCommitRequest, version: i16) -> OffsetCommitResponse {
    let now = now_ms();
    let requested: Vec<((String, i32), OffsetValue)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                let value = OffsetValue {
                    offset: p.committed_offset,
                    leader_epoch: if version >= 6 { p.committed_leader_epoch } else { -1 },
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
                    commit_timestamp: now,
                };
                ((t.name.to_string(), p.partition_index), value)
            })
        })
        .collect();
    let group_error = if req.group_id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        broker.ensure_offsets_topic().map_err(|e| e.response_error())
    };
    let committed = match group_error {
        Ok(()) => {
            broker
                .groups
                .commit_offsets(
                    &req.group_id,
                    &req.member_id,
                    req.group_instance_id.as_deref(),
                    req.generation_id_or_member_epoch,
                    requested.clone(),
                    &broker.replicas,
                    now,
                )
                .await
        }
        Err(e) => Err(e),
    };
    let results: Vec<((String, i32), PartitionResult)> = match committed {
        Ok(results) => results,
        // An unknown group with a generation: GROUP_ID_NOT_FOUND only from v9, as Kafka.
        Err(ResponseError::GroupIdNotFound) if version < 9 => {
            requested.into_iter().map(|(tp, _)| (tp, Err(ResponseError::IllegalGeneration))).collect()
        }
        Err(e) => requested.into_iter().map(|(tp, _)| (tp, Err(e))).collect(),
    };
    let topics = by_topic(results)
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetCommitResponseTopic::default().with_name(TopicName(str_bytes(topic))).with_partitions(
                partitions
                    .into_iter()
                    .map(|(p, r)| OffsetCommitResponsePartition::default().with_partition_index(p).with_error_code(code(r)))
                    .collect(),
            )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// A topic's partitions with their committed offsets (None: nothing committed).
type TopicOffsets = (String, Vec<(i32, Option<OffsetValue>)>);

/// One group's committed offsets, or a group-level error.
struct FetchedGroup {
    error: Option<ResponseError>,
    topics: Vec<TopicOffsets>,
}

fn fetch_group(
    broker: &Broker,
    group_id: &str,
    member: Option<(&str, i32)>,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> FetchedGroup {
    if let Err(e) = broker.ensure_offsets_topic() {
        return FetchedGroup { error: Some(e.response_error()), topics: Vec::new() };
    }
    if let Some((member_id, epoch)) = member {
        if let Err(e) = broker.groups.check_fetch_member(group_id, member_id, epoch) {
            return FetchedGroup { error: Some(e), topics: Vec::new() };
        }
    }
    let partitions = topics.map(|ts| {
        ts.into_iter().flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p))).collect::<Vec<_>>()
    });
    match broker.groups.fetch_offsets(group_id, partitions) {
        Ok(fetched) => FetchedGroup { error: None, topics: by_topic(fetched) },
        Err(e) => FetchedGroup { error: Some(e), topics: Vec::new() },
    }
}

fn offset_fields(value: &Option<OffsetValue>) -> (i64, i32, String) {
    match value {
        Some(v) => (v.offset, v.leader_epoch, v.metadata.clone()),
        None => (-1, -1, String::new()),
    }
}

pub(crate) fn fetch(broker: &Arc<Broker>, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let topics = g.topics.as_ref().map(|ts| {
                    ts.iter().map(|t| (t.name.to_string(), t.partition_indexes.clone())).collect::<Vec<_>>()
                });
                let member = g.member_id.as_deref().map(|m| (m, g.member_epoch));
                let fetched = fetch_group(broker, &g.group_id, member, topics);
                let topics = fetched
                    .topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetFetchResponseTopics::default().with_name(TopicName(str_bytes(topic))).with_partitions(
                            partitions
                                .into_iter()
                                .map(|(p, value)| {
                                    let (offset, epoch, metadata) = offset_fields(&value);
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(str_bytes(metadata)))
                                })
                                .collect(),
                        )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(str_bytes(g.group_id.to_string())))
                    .with_error_code(fetched.error.map_or(0, |e| e.code()))
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.to_string(), t.partition_indexes.clone())).collect());
    let fetched = fetch_group(broker, &req.group_id, None, topics);
    let topics = fetched
        .topics
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetFetchResponseTopic::default().with_name(TopicName(str_bytes(topic))).with_partitions(
                partitions
                    .into_iter()
                    .map(|(p, value)| {
                        let (offset, epoch, metadata) = offset_fields(&value);
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(if version >= 5 { epoch } else { -1 })
                            .with_metadata(Some(str_bytes(metadata)))
                            // v0-1 carry the group error per partition.
                            .with_error_code(if version < 2 { fetched.error.map_or(0, |e| e.code()) } else { 0 })
                    })
                    .collect(),
            )
        })
        .collect();
    let mut resp = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        resp.error_code = fetched.error.map_or(0, |e| e.code());
    }
    resp
}

pub(crate) async fn delete(broker: &Arc<Broker>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.to_string(), p.partition_index)))
        .collect();
    if let Err(e) = broker.ensure_offsets_topic() {
        return OffsetDeleteResponse::default().with_error_code(e.code());
    }
    match broker.groups.delete_offsets(&req.group_id, partitions, now_ms()).await {
        Err(e) => OffsetDeleteResponse::default().with_error_code(e.code()),
        Ok(results) => {
            let grouped: BTreeMap<String, Vec<(i32, PartitionResult)>> = by_topic(results).into_iter().collect();
            OffsetDeleteResponse::default().with_topics(
                grouped
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetDeleteResponseTopic::default().with_name(TopicName(str_bytes(topic))).with_partitions(
                            partitions
                                .into_iter()
                                .map(|(p, r)| {
                                    OffsetDeleteResponsePartition::default().with_partition_index(p).with_error_code(code(r))
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            )
        }
    }
}
