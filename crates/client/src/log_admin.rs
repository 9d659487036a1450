//! Log administration on [`Admin`]: DeleteRecords, DescribeLogDirs and
//! ListOffsets with any of Kafka's offset specs (-1 latest, -2 earliest, -3 max
//! timestamp, or a timestamp).

use std::collections::BTreeMap;

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DescribeLogDirsRequest, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::admin::Admin;
use crate::error::{check, Error, KafkaError, Result};
use crate::group::TopicPartition;

/// One partition's replica in a log dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// Topic and partition.
    pub partition: TopicPartition,
    /// Bytes of the replica's log.
    pub size: i64,
    /// How far the replica is behind the leader's log end (0 for the leader).
    pub offset_lag: i64,
    /// Whether this is a future replica (being moved between log dirs).
    pub is_future: bool,
}

/// One log dir of a broker, as DescribeLogDirs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirDescription {
    /// The log dir's path on the broker.
    pub path: String,
    /// The log dir's error, if it is offline.
    pub error: Option<KafkaError>,
    /// The replicas in it, sorted by topic and partition.
    pub replicas: Vec<ReplicaInfo>,
    /// The file system's size in bytes (DescribeLogDirs v4+, else -1).
    pub total_bytes: i64,
    /// Bytes free for the broker (v4+, else -1).
    pub usable_bytes: i64,
}

/// What ListOffsets found for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset; -1 when no record matches (a timestamp past every record).
    pub offset: i64,
    /// The record's timestamp, -1 for earliest and latest.
    pub timestamp: i64,
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

/// Adds partition entry `p` to the request topic named `topic`, creating the
/// topic entry with `new` when it is not there yet.
fn push_partition<T, P>(
    topics: &mut Vec<T>,
    topic: &str,
    p: P,
    name_of: impl Fn(&T) -> &str,
    new: impl Fn(TopicName) -> T,
    partitions: impl Fn(&mut T) -> &mut Vec<P>,
) {
    match topics.iter_mut().find(|t| name_of(t) == topic) {
        Some(t) => partitions(t).push(p),
        None => {
            let mut t = new(name(topic));
            partitions(&mut t).push(p);
            topics.push(t);
        }
    }
}

/// Per-partition results in the order the partitions were asked for; one the
/// responses left out is a protocol error naming `api`.
fn in_order<R>(
    asked: impl Iterator<Item = TopicPartition>,
    mut results: BTreeMap<TopicPartition, Result<R>>,
    api: &str,
) -> Vec<(TopicPartition, Result<R>)> {
    asked
        .map(|tp| {
            let r = results.remove(&tp).unwrap_or_else(|| {
                Err(Error::protocol(format!(
                    "{api} response has no result for {}-{}",
                    tp.0, tp.1
                )))
            });
            (tp, r)
        })
        .collect()
}

impl Admin {
    /// Groups `items` by the leader of their partition (`tp_of`); an item whose
    /// leader cannot be found gets its error in the returned results.
    async fn by_leader<'a, T, R>(
        &self,
        items: &'a [T],
        tp_of: impl Fn(&T) -> &TopicPartition,
    ) -> (
        BTreeMap<i32, Vec<&'a T>>,
        BTreeMap<TopicPartition, Result<R>>,
    ) {
        let mut grouped: BTreeMap<i32, Vec<&T>> = BTreeMap::new();
        let mut failed = BTreeMap::new();
        for item in items {
            let tp = tp_of(item);
            match self.client().leader_for(&tp.0, tp.1).await {
                Ok(leader) => grouped.entry(leader).or_default().push(item),
                Err(e) => {
                    failed.insert(tp.clone(), Err(e));
                }
            }
        }
        (grouped, failed)
    }

    /// Deletes the records before each given offset (-1: the high watermark),
    /// sending each partition to its leader; returns each partition's new low
    /// watermark or its error, in the order given.
    pub async fn delete_records(
        &self,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<Vec<(TopicPartition, Result<i64>)>> {
        let (grouped, mut results) = self.by_leader(offsets, |e| &e.0).await;
        for (leader, entries) in grouped {
            let mut req = DeleteRecordsRequest::default();
            req.timeout_ms = i32::try_from(
                self.client()
                    .config()
                    .connection
                    .request_timeout
                    .as_millis(),
            )
            .unwrap_or(i32::MAX);
            for ((topic, partition), offset) in entries {
                let mut p = DeleteRecordsPartition::default();
                p.partition_index = *partition;
                p.offset = *offset;
                push_partition(
                    &mut req.topics,
                    topic,
                    p,
                    |t: &DeleteRecordsTopic| t.name.0.as_str(),
                    |name| DeleteRecordsTopic::default().with_name(name),
                    |t| &mut t.partitions,
                );
            }
            let resp = self.client().broker(leader).await?.send(&req).await?;
            for t in resp.topics {
                for p in t.partitions {
                    let tp = (t.name.0.to_string(), p.partition_index);
                    results.insert(tp, check(p.error_code, None).map(|()| p.low_watermark));
                }
            }
        }
        Ok(in_order(
            offsets.iter().map(|(tp, _)| tp.clone()),
            results,
            "DeleteRecords",
        ))
    }

    /// Describes the log dirs of one broker; `partitions` None asks for every
    /// partition.
    pub async fn describe_log_dirs(
        &self,
        broker: i32,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<LogDirDescription>> {
        let mut req = DescribeLogDirsRequest::default();
        req.topics = partitions.map(|tps| {
            let mut topics = Vec::new();
            for (topic, partition) in tps {
                push_partition(
                    &mut topics,
                    topic,
                    *partition,
                    |t: &DescribableLogDirTopic| t.topic.0.as_str(),
                    |name| DescribableLogDirTopic::default().with_topic(name),
                    |t| &mut t.partitions,
                );
            }
            topics
        });
        let resp = self.client().broker(broker).await?.send(&req).await?;
        check(resp.error_code, None)?;
        Ok(resp
            .results
            .into_iter()
            .map(|dir| {
                let mut replicas: Vec<ReplicaInfo> = dir
                    .topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(|p| ReplicaInfo {
                            partition: (t.name.0.to_string(), p.partition_index),
                            size: p.partition_size,
                            offset_lag: p.offset_lag,
                            is_future: p.is_future_key,
                        })
                    })
                    .collect();
                replicas.sort_by(|a, b| a.partition.cmp(&b.partition));
                LogDirDescription {
                    path: dir.log_dir.to_string(),
                    error: KafkaError::from_code(dir.error_code, None),
                    replicas,
                    total_bytes: dir.total_bytes,
                    usable_bytes: dir.usable_bytes,
                }
            })
            .collect())
    }

    /// ListOffsets for each partition at `spec`: -1 latest, -2 earliest, -3 the
    /// record with the largest timestamp (KIP-734), or a timestamp (the first
    /// record at or after it). Each partition's own error is kept.
    pub async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: i64,
    ) -> Result<Vec<(TopicPartition, Result<ListedOffset>)>> {
        let (grouped, mut results) = self.by_leader(partitions, |tp| tp).await;
        for (leader, tps) in grouped {
            let mut req = ListOffsetsRequest::default();
            req.replica_id = (-1).into();
            for (topic, partition) in tps {
                let mut p = ListOffsetsPartition::default();
                p.partition_index = *partition;
                p.timestamp = spec;
                p.current_leader_epoch = -1;
                push_partition(
                    &mut req.topics,
                    topic,
                    p,
                    |t: &ListOffsetsTopic| t.name.0.as_str(),
                    |name| ListOffsetsTopic::default().with_name(name),
                    |t| &mut t.partitions,
                );
            }
            let resp = self.client().broker(leader).await?.send(&req).await?;
            for t in resp.topics {
                for p in t.partitions {
                    let tp = (t.name.0.to_string(), p.partition_index);
                    let found = ListedOffset {
                        offset: p.offset,
                        timestamp: p.timestamp,
                    };
                    results.insert(tp, check(p.error_code, None).map(|()| found));
                }
            }
        }
        Ok(in_order(partitions.iter().cloned(), results, "ListOffsets"))
    }
}
