//! Incremental fetch sessions (KIP-227): the broker remembers a consumer's
//! partitions and fetch positions, so later fetches send and receive only what
//! changed.

use std::collections::HashMap;
use std::time::Instant;

use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use uuid::Uuid;

/// `max.incremental.fetch.session.cache.slots`.
const MAX_SESSIONS: usize = 1000;
/// Epoch that closes a session or asks for a sessionless fetch.
const FINAL_EPOCH: i32 = -1;
/// Epoch that opens a new session.
const INITIAL_EPOCH: i32 = 0;

/// One partition a fetch reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FetchTarget {
    /// Topic name ("" if the id is unknown).
    pub topic: String,
    /// Topic id (nil before Fetch v13).
    pub topic_id: Uuid,
    /// Partition index.
    pub partition: i32,
    /// Where to read from.
    pub fetch_offset: i64,
    /// Per-partition byte limit.
    pub max_bytes: i32,
    /// The leader epoch the client knows (-1: none), checked against the partition's.
    pub current_leader_epoch: i32,
    /// Fetch v12+: the epoch of the last batch the fetcher has (-1: none),
    /// checked for divergence.
    pub last_fetched_epoch: i32,
}

/// A partition's key in a session: by id from v13, by name before.
type PartitionKey = (Uuid, String, i32);

fn key(t: &FetchTarget) -> PartitionKey {
    if t.topic_id.is_nil() {
        (Uuid::nil(), t.topic.clone(), t.partition)
    } else {
        (t.topic_id, String::new(), t.partition)
    }
}

/// What the last response told the client about a partition, so an incremental
/// response can leave out partitions that did not change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PartitionState {
    /// High watermark last sent.
    pub high_watermark: i64,
    /// Log start offset last sent.
    pub log_start_offset: i64,
}

struct Session {
    epoch: i32,
    partitions: IndexMap<PartitionKey, (FetchTarget, Option<PartitionState>)>,
    last_used: Instant,
}

/// Every open fetch session.
#[derive(Default)]
pub(crate) struct FetchSessions {
    sessions: HashMap<i32, Session>,
    next_id: i32,
}

/// The partitions to read for one request and how to answer it.
pub(crate) struct FetchPlan {
    /// Session id to put in the response (0: none).
    pub session_id: i32,
    /// True if only changed partitions go in the response.
    pub incremental: bool,
    /// The partitions to read.
    pub targets: Vec<FetchTarget>,
}

impl FetchSessions {
    /// Resolves a request's session fields into the partitions to read.
    pub(crate) fn plan(
        &mut self,
        session_id: i32,
        epoch: i32,
        requested: Vec<FetchTarget>,
        forgotten: Vec<FetchTarget>,
    ) -> Result<FetchPlan, ResponseError> {
        if session_id == 0 {
            if epoch == FINAL_EPOCH {
                return Ok(FetchPlan { session_id: 0, incremental: false, targets: requested });
            }
            if epoch != INITIAL_EPOCH {
                // An incremental epoch names a session, and session 0 never exists.
                return Err(ResponseError::FetchSessionIdNotFound);
            }
            let id = self.open(&requested);
            return Ok(FetchPlan { session_id: id, incremental: false, targets: requested });
        }
        if epoch == FINAL_EPOCH {
            self.sessions.remove(&session_id);
            return Ok(FetchPlan { session_id: 0, incremental: false, targets: requested });
        }
        if epoch == INITIAL_EPOCH {
            self.sessions.remove(&session_id);
            let id = self.open(&requested);
            return Ok(FetchPlan { session_id: id, incremental: false, targets: requested });
        }
        let session = self.sessions.get_mut(&session_id).ok_or(ResponseError::FetchSessionIdNotFound)?;
        if session.epoch != epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch);
        }
        session.epoch = next_epoch(epoch);
        session.last_used = Instant::now();
        for target in forgotten {
            session.partitions.shift_remove(&key(&target));
        }
        for target in requested {
            let k = key(&target);
            match session.partitions.get_mut(&k) {
                Some(entry) => entry.0 = target,
                None => {
                    session.partitions.insert(k, (target, None));
                }
            }
        }
        if session.partitions.is_empty() {
            // A session the client emptied is closed, as Kafka does.
            self.sessions.remove(&session_id);
            return Ok(FetchPlan { session_id: 0, incremental: false, targets: Vec::new() });
        }
        let targets = session.partitions.values().map(|(t, _)| t.clone()).collect();
        Ok(FetchPlan { session_id, incremental: true, targets })
    }

    /// Decides whether a partition goes into an incremental response and records
    /// what was sent. Full responses include every partition.
    pub(crate) fn should_send(
        &mut self,
        plan: &FetchPlan,
        target: &FetchTarget,
        state: PartitionState,
        has_records_or_error: bool,
    ) -> bool {
        let Some(session) = self.sessions.get_mut(&plan.session_id) else {
            return true;
        };
        let Some(entry) = session.partitions.get_mut(&key(target)) else {
            return true;
        };
        let changed = entry.1 != Some(state);
        entry.1 = Some(state);
        !plan.incremental || has_records_or_error || changed
    }

    /// Drops a deleted topic from every session.
    pub(crate) fn forget_topic(&mut self, topic_id: Uuid) {
        for session in self.sessions.values_mut() {
            session.partitions.retain(|_, (t, _)| t.topic_id != topic_id);
        }
    }

    fn open(&mut self, targets: &[FetchTarget]) -> i32 {
        if self.sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = self.sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(id, _)| *id) {
                self.sessions.remove(&oldest);
            }
        }
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            if self.next_id > 0 && !self.sessions.contains_key(&self.next_id) {
                break;
            }
        }
        let partitions = targets.iter().map(|t| (key(t), (t.clone(), None))).collect();
        self.sessions.insert(self.next_id, Session { epoch: 1, partitions, last_used: Instant::now() });
        self.next_id
    }
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(p: i32, offset: i64) -> FetchTarget {
        FetchTarget { topic: "t".into(), topic_id: Uuid::nil(), partition: p, fetch_offset: offset, max_bytes: 100, current_leader_epoch: -1, last_fetched_epoch: -1 }
    }

    #[test]
    fn incremental_fetch_keeps_partitions_the_request_left_out() {
        let mut sessions = FetchSessions::default();
        let full = sessions.plan(0, 0, vec![target(0, 0), target(1, 0)], vec![]).expect("open");
        assert!(full.session_id > 0);
        let inc = sessions.plan(full.session_id, 1, vec![target(1, 5)], vec![]).expect("incremental");
        assert!(inc.incremental);
        assert_eq!(inc.targets, vec![target(0, 0), target(1, 5)]);
        let inc = sessions.plan(full.session_id, 2, vec![], vec![target(0, 0)]).expect("forget");
        assert_eq!(inc.targets, vec![target(1, 5)]);
    }

    #[test]
    fn wrong_epoch_and_unknown_session_are_errors() {
        let mut sessions = FetchSessions::default();
        let full = sessions.plan(0, 0, vec![target(0, 0)], vec![]).expect("open");
        assert_eq!(sessions.plan(full.session_id, 5, vec![], vec![]).err(), Some(ResponseError::InvalidFetchSessionEpoch));
        assert_eq!(sessions.plan(full.session_id + 1, 1, vec![], vec![]).err(), Some(ResponseError::FetchSessionIdNotFound));
    }

    #[test]
    fn session_zero_with_an_incremental_epoch_is_not_found() {
        let mut sessions = FetchSessions::default();
        assert_eq!(sessions.plan(0, 1, vec![target(0, 0)], vec![]).err(), Some(ResponseError::FetchSessionIdNotFound));
    }

    #[test]
    fn forgetting_every_partition_closes_the_session() {
        let mut sessions = FetchSessions::default();
        let full = sessions.plan(0, 0, vec![target(0, 0)], vec![]).expect("open");
        let emptied = sessions.plan(full.session_id, 1, vec![], vec![target(0, 0)]).expect("forget");
        assert_eq!(emptied.session_id, 0);
        assert_eq!(sessions.plan(full.session_id, 2, vec![], vec![]).err(), Some(ResponseError::FetchSessionIdNotFound));
    }

    #[test]
    fn unchanged_partitions_are_left_out_of_incremental_responses() {
        let mut sessions = FetchSessions::default();
        let full = sessions.plan(0, 0, vec![target(0, 0)], vec![]).expect("open");
        let state = PartitionState { high_watermark: 3, log_start_offset: 0 };
        assert!(sessions.should_send(&full, &target(0, 0), state, false));
        let inc = sessions.plan(full.session_id, 1, vec![], vec![]).expect("incremental");
        assert!(!sessions.should_send(&inc, &target(0, 0), state, false));
        assert!(sessions.should_send(&inc, &target(0, 0), state, true));
    }
}
