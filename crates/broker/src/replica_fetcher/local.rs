//! A leader in this process for the tests: answers a follower's queries
//! from `Partition`s as the broker's handlers do (the leader-side checks are
//! the partition's own), without a network.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::{EpochAnswer, EpochQuery, FetchAnswer, FetchQuery, LeaderEndpoint, OffsetSpec, TopicPartition};
use crate::error::Result;
use crate::partition::{FollowerFetch, Partition};

/// OffsetForLeaderEpoch of one partition on its leader.
pub(crate) fn answer_epoch(partition: Option<&Partition>, q: &EpochQuery) -> EpochAnswer {
    let found = partition
        .ok_or(ResponseError::UnknownTopicOrPartition)
        .and_then(|p| p.last_offset_for_leader_epoch(q.current_leader_epoch, q.leader_epoch).map_err(|e| e.response_error()));
    match found {
        Ok((leader_epoch, end_offset)) => EpochAnswer { error: None, leader_epoch, end_offset },
        Err(error) => EpochAnswer { error: Some(error), leader_epoch: -1, end_offset: -1 },
    }
}

/// A follower's Fetch of one partition on its leader.
pub(crate) fn answer_fetch(partition: Option<&Partition>, follower: FollowerFetch, q: &FetchQuery, max_bytes: usize, now_ms: i64) -> FetchAnswer {
    let read = partition.ok_or(ResponseError::UnknownTopicOrPartition).and_then(|p| {
        p.fetch_records_for(q.fetch_offset, max_bytes, q.current_leader_epoch, Some(follower), q.last_fetched_epoch, now_ms)
            .map_err(|e| e.response_error())
    });
    match read {
        Ok(read) => FetchAnswer {
            error: None,
            records: read.records,
            high_watermark: read.offsets.high_watermark,
            log_start_offset: read.offsets.log_start,
            diverging_epoch: read.diverging_epoch,
        },
        Err(error) => FetchAnswer { error: Some(error), records: Bytes::new(), high_watermark: -1, log_start_offset: -1, diverging_epoch: None },
    }
}

/// ListOffsets of one partition on its leader, as a replica asks it.
pub(crate) fn answer_list_offset(partition: Option<&Partition>, current_leader_epoch: i32, spec: OffsetSpec) -> std::result::Result<i64, ResponseError> {
    let p = partition.ok_or(ResponseError::UnknownTopicOrPartition)?;
    p.check_leader_at(current_leader_epoch).map_err(|e| e.response_error())?;
    let offsets = p.offsets();
    Ok(match spec {
        OffsetSpec::Earliest => offsets.log_start,
        OffsetSpec::Latest => offsets.log_end,
    })
}

/// A leader in this process, what the unit tests drive followers against.
pub(crate) struct LocalLeader {
    /// The follower's replica id in the fetches.
    pub(crate) replica_id: i32,
    /// The leader's partitions.
    pub(crate) partitions: BTreeMap<TopicPartition, Arc<Partition>>,
    /// Whether it answers fetches with diverging epochs (Fetch v12+).
    pub(crate) truncation_on_fetch: bool,
}

impl LocalLeader {
    fn partition(&self, key: &TopicPartition) -> Option<&Partition> {
        self.partitions.get(key).map(|p| &**p)
    }
}

impl LeaderEndpoint for LocalLeader {
    fn truncation_on_fetch(&self) -> bool {
        self.truncation_on_fetch
    }

    fn offset_for_leader_epoch(&self, queries: &[EpochQuery]) -> impl Future<Output = Result<Vec<EpochAnswer>>> + Send {
        let answers = queries.iter().map(|q| answer_epoch(self.partition(&q.partition), q)).collect();
        std::future::ready(Ok(answers))
    }

    fn fetch(&self, queries: &[FetchQuery], max_bytes: usize) -> impl Future<Output = Result<Vec<FetchAnswer>>> + Send {
        let now = crate::now_ms();
        let follower = FollowerFetch { replica_id: self.replica_id, broker_epoch: -1 };
        let answers = queries.iter().map(|q| answer_fetch(self.partition(&q.partition), follower, q, max_bytes, now)).collect();
        std::future::ready(Ok(answers))
    }

    fn list_offset(
        &self,
        partition: &TopicPartition,
        current_leader_epoch: i32,
        spec: OffsetSpec,
    ) -> impl Future<Output = Result<std::result::Result<i64, ResponseError>>> + Send {
        std::future::ready(Ok(answer_list_offset(self.partition(partition), current_leader_epoch, spec)))
    }
}

/// The values of every record in `batches`, in offset order (for tests).
#[cfg(test)]
pub(crate) fn values(batches: &Bytes) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = batches.clone();
    while let Ok(header) = records::BatchHeader::parse(&rest) {
        let (decoded, _) = records::decode_records(&header, &rest, 1 << 20).expect("decode");
        out.extend(decoded.iter().map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()));
        rest = rest.slice(header.total_size()..);
    }
    out
}
