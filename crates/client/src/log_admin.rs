//! Log administration on [`Admin`]: DeleteRecords, DescribeLogDirs and
//! ListOffsets with any of Kafka's offset specs (-1 latest, -2 earliest, -3 max
//! timestamp, or a timestamp).

use std::collections::BTreeMap;

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
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

impl Admin {
    /// Deletes the records before each given offset (-1: the high watermark),
    /// sending each partition to its leader; returns each partition's new low
    /// watermark or its error, in the order given.
    pub async fn delete_records(
        &self,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<Vec<(TopicPartition, Result<i64>)>> {
        let mut by_leader: BTreeMap<i32, Vec<&(TopicPartition, i64)>> = BTreeMap::new();
        let mut results: BTreeMap<TopicPartition, Result<i64>> = BTreeMap::new();
        for entry in offsets {
            match self.client().leader_for(&entry.0 .0, entry.0 .1).await {
                Ok(leader) => by_leader.entry(leader).or_default().push(entry),
                Err(e) => {
                    results.insert(entry.0.clone(), Err(e));
                }
            }
        }
        for (leader, entries) in by_leader {
            let mut req = DeleteRecordsRequest::default();
            req.timeout_ms = i32::try_from(
                self.client()
                    .config()
                    .connection
                    .request_timeout
                    .as_millis(),
            )
            .unwrap_or(i32::MAX);
            for ((topic, partition), offset) in entries.iter().map(|e| (&e.0, e.1)) {
                let mut p = DeleteRecordsPartition::default();
                p.partition_index = *partition;
                p.offset = offset;
                match req.topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                    Some(t) => t.partitions.push(p),
                    None => {
                        let mut t = DeleteRecordsTopic::default();
                        t.name = name(topic);
                        t.partitions.push(p);
                        req.topics.push(t);
                    }
                }
            }
            let resp = self.client().broker(leader).await?.send(&req).await?;
            for t in resp.topics {
                for p in t.partitions {
                    let tp = (t.name.0.to_string(), p.partition_index);
                    results.insert(tp, check(p.error_code, None).map(|()| p.low_watermark));
                }
            }
        }
        Ok(offsets
            .iter()
            .map(|(tp, _)| {
                let r = results.remove(tp).unwrap_or_else(|| {
                    Err(Error::protocol(format!(
                        "DeleteRecords response has no result for {}-{}",
                        tp.0, tp.1
                    )))
                });
                (tp.clone(), r)
            })
            .collect())
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
            let mut topics: Vec<kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic> =
                Vec::new();
            for (topic, partition) in tps {
                match topics.iter_mut().find(|t| t.topic.0.as_str() == topic) {
                    Some(t) => t.partitions.push(*partition),
                    None => {
                        let mut t = kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic::default();
                        t.topic = name(topic);
                        t.partitions.push(*partition);
                        topics.push(t);
                    }
                }
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
        let mut by_leader: BTreeMap<i32, Vec<&TopicPartition>> = BTreeMap::new();
        let mut results: BTreeMap<TopicPartition, Result<ListedOffset>> = BTreeMap::new();
        for tp in partitions {
            match self.client().leader_for(&tp.0, tp.1).await {
                Ok(leader) => by_leader.entry(leader).or_default().push(tp),
                Err(e) => {
                    results.insert(tp.clone(), Err(e));
                }
            }
        }
        for (leader, tps) in by_leader {
            let mut req = ListOffsetsRequest::default();
            req.replica_id = (-1).into();
            for (topic, partition) in tps {
                let mut p = ListOffsetsPartition::default();
                p.partition_index = *partition;
                p.timestamp = spec;
                p.current_leader_epoch = -1;
                match req.topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                    Some(t) => t.partitions.push(p),
                    None => {
                        let mut t = ListOffsetsTopic::default();
                        t.name = name(topic);
                        t.partitions.push(p);
                        req.topics.push(t);
                    }
                }
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
        Ok(partitions
            .iter()
            .map(|tp| {
                let r = results.remove(tp).unwrap_or_else(|| {
                    Err(Error::protocol(format!(
                        "ListOffsets response has no result for {}-{}",
                        tp.0, tp.1
                    )))
                });
                (tp.clone(), r)
            })
            .collect())
    }
}
