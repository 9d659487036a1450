//! Observers (KIP-595): a broker-only node follows the metadata log without
//! being a voter, pulling committed entries from the leader as Kafka's
//! observers fetch from it.
//!
//! The observer sends [`Request::Fetch`] with the offset past what it applied
//! to the leader (found by asking the voters in turn and following their
//! `NotLeader` hints). The leader answers the committed entries from there
//! (those it applied, so committed), or, when its log no longer holds that
//! offset, its latest snapshot and the entries after it; with nothing new it
//! waits up to [`FETCH_MAX_WAIT`] first (a long poll). The observer applies
//! them to its own [`StateMachine`], which streams them to the metadata
//! publisher as on a voter. It is never part of the Raft membership: it
//! votes in no election, counts for no commit, and the voters need no change
//! when observers come and go. The leader records each observer's position
//! and fetch times for DescribeQuorum.
//!
//! An observer keeps only the last snapshot it was sent (`quorum-snapshot`);
//! after a restart it fetches again from there (or from the start).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{BasicNode, RaftLogId, ServerState, SnapshotMeta};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::network::{unix_ms, PeerStats, PeerTimes, ProposeError, Request, Response, Served, TcpPeer};
use crate::state_machine::StateMachine;
use crate::types::{Entry, NodeId};

/// How long the leader holds a fetch that has nothing new (Kafka's
/// observers fetch with a 500 ms max wait too).
pub const FETCH_MAX_WAIT: Duration = Duration::from_millis(500);
/// How long an observer waits for a fetch's answer beyond the max wait:
/// short, so that a paused or cut-off leader is left quickly (the broker's
/// controller channels follow the leader the observer names).
const FETCH_TIMEOUT: Duration = Duration::from_millis(1500);
/// The pause after a failed fetch or a voter that does not lead.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// How long fetches may fail before the observer says so (and how often).
const FAILING_WARN_AFTER: Duration = Duration::from_secs(10);
/// At most this many entries per answer (and about [`MAX_ANSWER_BYTES`]).
const MAX_ENTRIES: usize = 500;
const MAX_ANSWER_BYTES: usize = 4 << 20;
/// An observer that has not fetched for this long is no longer described
/// (Kafka's `OBSERVER_SESSION_TIMEOUT_MS`).
pub(crate) const OBSERVER_SESSION_MS: i64 = 300_000;

/// An observer's fetch: `from` is the offset past the last entry it applied.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FetchRequest {
    pub(crate) observer: NodeId,
    pub(crate) from: u64,
    pub(crate) max_wait_ms: u64,
}

/// The leader's answer: a snapshot when its log no longer holds `from`, then
/// committed entries in order.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Fetched {
    pub(crate) leader: NodeId,
    pub(crate) epoch: u64,
    /// The offset past the last entry the leader applied (all committed).
    pub(crate) high_watermark: u64,
    pub(crate) snapshot: Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>,
    pub(crate) entries: Vec<Entry>,
}

/// What an observer knows of the quorum, from its last fetch.
#[derive(Debug, Clone, Default)]
pub(crate) struct ObserverStatus {
    /// The leader it fetches from (or the one a voter named).
    pub(crate) leader: Option<NodeId>,
    /// The leader's epoch.
    pub(crate) epoch: u64,
    /// The leader's high watermark at the last answer (-1: none yet).
    pub(crate) high_watermark: Option<u64>,
}

/// The leader's side: answers a fetch (NotLeader on any other voter).
pub(crate) async fn answer_fetch(served: &Served, req: FetchRequest) -> Result<Fetched, ProposeError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms).min(FETCH_MAX_WAIT);
    let mut metrics = served.raft.metrics();
    let mut recorded = false;
    loop {
        let (leading, leader, epoch) = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader, m.current_leader, m.current_term)
        };
        if !leading {
            return Err(ProposeError::NotLeader { leader });
        }
        let applied = served.state.last_applied();
        let high_watermark = applied.map_or(0, |a| a + 1);
        if !recorded {
            // The fetch offset is the observer's acknowledgement, as a follower's.
            recorded = true;
            let now = unix_ms();
            let mut observers = served.observers.lock();
            let (end, times) = observers.entry(req.observer).or_insert((-1, PeerTimes { last_fetch_ms: -1, last_caught_up_ms: -1 }));
            *end = req.from as i64;
            times.last_fetch_ms = now;
            if req.from >= high_watermark {
                times.last_caught_up_ms = now;
            }
        }
        if req.from < high_watermark || tokio::time::Instant::now() >= deadline {
            return Ok(committed_from(served, req.from, applied, leader.unwrap_or_default(), epoch));
        }
        let _ = tokio::time::timeout_at(deadline, metrics.changed()).await;
    }
}

/// The committed entries from `from` up to `applied`, after the snapshot if
/// the log no longer holds `from`.
fn committed_from(served: &Served, from: u64, applied: Option<u64>, leader: NodeId, epoch: u64) -> Fetched {
    let high_watermark = applied.map_or(0, |a| a + 1);
    let mut answer = Fetched { leader, epoch, high_watermark, snapshot: None, entries: Vec::new() };
    let Some(applied) = applied.filter(|&a| a >= from) else { return answer };
    let mut next = from;
    let held = served.log.entries_between(from, from, 1);
    if held.is_empty() {
        // Purged here: the snapshot covers it (the log is purged only below one).
        if let Some((meta, data)) = served.state.current_snapshot() {
            next = meta.last_log_id.map_or(0, |id| id.index + 1);
            answer.snapshot = Some((meta, data));
        }
    }
    let mut bytes = 0;
    for entry in served.log.entries_between(next, applied, MAX_ENTRIES) {
        bytes += serde_json::to_vec(&entry).map_or(0, |v| v.len());
        answer.entries.push(entry);
        if bytes >= MAX_ANSWER_BYTES {
            break;
        }
    }
    answer
}

/// The observer's side: fetches from the leader and applies what it gets,
/// until the task is aborted.
pub(crate) async fn follow(
    node_id: NodeId,
    voters: BTreeMap<NodeId, String>,
    mut state: StateMachine,
    status: watch::Sender<ObserverStatus>,
) {
    let ids: Vec<NodeId> = voters.keys().copied().collect();
    let mut peers: BTreeMap<NodeId, TcpPeer> = BTreeMap::new();
    let mut turn = 0usize;
    let mut target: Option<NodeId> = None;
    let stats = PeerStats::default();
    // Since when no fetch was answered, and when that was last said.
    let mut failing_since: Option<tokio::time::Instant> = None;
    let mut said = tokio::time::Instant::now();
    loop {
        let id = match target {
            Some(id) => id,
            None => {
                turn = turn.wrapping_add(1);
                ids[(turn - 1) % ids.len()]
            }
        };
        let peer = peers.entry(id).or_insert_with(|| TcpPeer::forwarder(id, voters[&id].clone(), stats.clone(), None));
        let from = state.last_applied().map_or(0, |a| a + 1);
        let request = Request::Fetch(FetchRequest { observer: node_id, from, max_wait_ms: FETCH_MAX_WAIT.as_millis() as u64 });
        match peer.call(&request, FETCH_MAX_WAIT + FETCH_TIMEOUT).await {
            Ok(Response::Fetch(Ok(fetched))) => {
                target = Some(id);
                failing_since = None;
                status.send_modify(|s| {
                    s.leader = Some(fetched.leader);
                    s.epoch = fetched.epoch;
                    s.high_watermark = Some(fetched.high_watermark);
                });
                if let Err(e) = apply(&mut state, from, fetched).await {
                    tracing::error!(voter = id, "cannot apply the metadata fetched from the controller: {e}");
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
            }
            Ok(Response::Fetch(Err(ProposeError::NotLeader { leader }))) => {
                // Follow the hint once; without one, ask the next voter.
                target = leader.filter(|l| *l != id && voters.contains_key(l));
                status.send_modify(|s| s.leader = leader.filter(|l| voters.contains_key(l)));
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
            other => {
                let why = match other {
                    Err(e) => format!("{e:?}"),
                    Ok(_) => "an answer of another kind".to_string(),
                };
                tracing::debug!(voter = id, "fetching metadata: {why}");
                let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= FAILING_WARN_AFTER && said.elapsed() >= FAILING_WARN_AFTER {
                    said = tokio::time::Instant::now();
                    tracing::warn!(voter = id, "no controller answered this observer's metadata fetches for {:?} (last: {why})", since.elapsed());
                }
                target = None;
                status.send_modify(|s| s.leader = None);
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
        }
    }
}

/// Applies one answer to the observer's state machine: the snapshot, then the
/// entries that follow what it has (an answer that does not is dropped).
async fn apply(state: &mut StateMachine, from: u64, fetched: Fetched) -> Result<(), String> {
    let mut next = from;
    if let Some((meta, data)) = fetched.snapshot {
        let covers = meta.last_log_id.map_or(0, |id| id.index + 1);
        if covers > next {
            state.install_snapshot(&meta, Box::new(Cursor::new(data))).await.map_err(|e| e.to_string())?;
            next = covers;
        }
    }
    let entries: Vec<Entry> = fetched.entries.into_iter().skip_while(|e| e.get_log_id().index < next).collect();
    match entries.first() {
        None => Ok(()),
        Some(first) if first.get_log_id().index == next => {
            state.apply(entries).await.map_err(|e| e.to_string())?;
            Ok(())
        }
        Some(first) => Err(format!("the answer starts at offset {} but {next} comes next", first.get_log_id().index)),
    }
}
