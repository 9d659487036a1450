//! DescribeLogDirs: each log dir with the size of every partition in it and the
//! file system's total and usable bytes; a failed log dir with KAFKA_STORAGE_ERROR
//! and nothing else, as Kafka answers.

use std::path::Path;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::str_bytes;
use crate::partition::Partition;
use crate::Broker;

pub(crate) fn describe(broker: &Arc<Broker>, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    // None: every partition (Kafka's `topics: null`).
    let wanted = |p: &Partition| {
        req.topics.as_ref().is_none_or(|topics| {
            topics.iter().any(|t| t.topic.0.as_str() == p.topic && t.partitions.contains(&p.index))
        })
    };
    let mut partitions: Vec<_> = broker.replicas.all_partitions().into_iter().filter(|p| wanted(p)).collect();
    partitions.sort_by(|a, b| (&a.topic, a.index).cmp(&(&b.topic, b.index)));
    let results = broker
        .log_dirs
        .dirs()
        .iter()
        .map(|dir| {
            if !broker.log_dirs.health().writable(dir) {
                return DescribeLogDirsResult::default()
                    .with_log_dir(str_bytes(dir.display().to_string()))
                    .with_error_code(ResponseError::KafkaStorageError.code())
                    .with_total_bytes(-1)
                    .with_usable_bytes(-1);
            }
            let mut topics: Vec<DescribeLogDirsTopic> = Vec::new();
            for p in partitions.iter().filter(|p| p.log_dir() == dir) {
                let entry = DescribeLogDirsPartition::default()
                    .with_partition_index(p.index)
                    .with_partition_size(p.size_in_bytes().map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX)))
                    // One node: no replica lags the leader.
                    .with_offset_lag(0)
                    .with_is_future_key(false);
                match topics.last_mut().filter(|t| t.name.0.as_str() == p.topic) {
                    Some(t) => t.partitions.push(entry),
                    None => topics.push(
                        DescribeLogDirsTopic::default().with_name(kafka_protocol::messages::TopicName(str_bytes(p.topic.clone()))).with_partitions(vec![entry]),
                    ),
                }
            }
            let (total, usable) = space(dir);
            DescribeLogDirsResult::default()
                .with_log_dir(str_bytes(dir.display().to_string()))
                .with_topics(topics)
                .with_total_bytes(total)
                .with_usable_bytes(usable)
        })
        .collect();
    DescribeLogDirsResponse::default().with_results(results)
}

/// The file system's total and usable bytes (Java's `FileStore.getTotalSpace`
/// and `getUsableSpace`), -1 when unknown.
fn space(dir: &Path) -> (i64, i64) {
    match rustix::fs::statvfs(dir) {
        Ok(s) => {
            let bytes = |blocks: u64| i64::try_from(blocks.saturating_mul(s.f_frsize)).unwrap_or(i64::MAX);
            (bytes(s.f_blocks), bytes(s.f_bavail))
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot read the file system's size");
            (-1, -1)
        }
    }
}
