//! The durable Raft log and vote of one controller, in its metadata directory
//! (`__cluster_metadata-0`).
//!
//! - `quorum-state`: the vote, as Kafka's JSON (`leaderEpoch` is the term,
//!   `votedId` the candidate voted for, `leaderId` the known leader or -1),
//!   replaced with write + fsync + rename.
//! - `raft-log`: entries appended as frames `[length u32][crc32c u32][JSON]`.
//!   An append is fsynced before openraft is told it is durable; a torn or
//!   corrupt tail (short frame, CRC mismatch) is cut at open.
//! - `log-start`: the last purged log id, written before the purged entries are
//!   dropped from `raft-log`, so a crash between the two steps only leaves
//!   entries that open skips.
//!
//! A failed write or fsync poisons the store: it and every later call fail, and
//! openraft stops the node (a retried fsync can report success for lost pages).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, RaftLogId, RaftLogReader};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig, Vote};

/// Kafka's file name for the quorum's vote.
pub const QUORUM_STATE_FILE: &str = "quorum-state";
/// The file holding the Raft log entries.
pub const LOG_FILE: &str = "raft-log";
/// The file holding the last purged log id.
pub const LOG_START_FILE: &str = "log-start";

/// Frames larger than this are corruption, not entries.
const MAX_FRAME_BYTES: usize = 64 << 20;
const FRAME_HEADER: usize = 8;

/// Kafka's `quorum-state` JSON (data_version 1), mapped onto openraft's vote.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QuorumStateFile {
    leader_id: i64,
    leader_epoch: u64,
    voted_id: i64,
    #[serde(rename = "data_version")]
    data_version: u16,
}

impl QuorumStateFile {
    fn from_vote(vote: &Vote) -> Self {
        let node = vote.leader_id.voted_for().map_or(-1, |id| id as i64);
        QuorumStateFile {
            leader_id: if vote.is_committed() { node } else { -1 },
            leader_epoch: vote.leader_id.get_term(),
            voted_id: node,
            data_version: 1,
        }
    }

    fn to_vote(&self) -> Vote {
        let mut vote = Vote::new(self.leader_epoch, u64::try_from(self.voted_id).unwrap_or_default());
        if self.leader_id >= 0 {
            vote.commit();
        }
        vote
    }
}

struct Inner {
    dir: PathBuf,
    file: File,
    /// Entries by index, from the first unpurged one.
    entries: BTreeMap<u64, Entry>,
    /// Byte position of each entry's frame in `raft-log`.
    positions: BTreeMap<u64, u64>,
    /// The length of `raft-log`.
    end: u64,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    /// Set by the first failed write: the store refuses everything afterwards.
    failed: Option<String>,
}

/// The durable Raft log and vote; clones share the same store (openraft's log
/// reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn encode_frame(entry: &Entry) -> std::io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(entry)?;
    let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Splits `bytes` into entries and their positions; returns where the valid
/// prefix ends (a torn or corrupt tail starts there).
fn decode_frames(bytes: &[u8], path: &Path) -> std::io::Result<(Vec<(u64, Entry)>, u64)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while bytes.len() - pos >= FRAME_HEADER {
        let len = u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]) as usize;
        let crc = u32::from_be_bytes([bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]]);
        if len > MAX_FRAME_BYTES || bytes.len() - pos - FRAME_HEADER < len {
            break;
        }
        let payload = &bytes[pos + FRAME_HEADER..pos + FRAME_HEADER + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        // A frame whose CRC matches but that does not decode is not a torn
        // write: refuse to guess.
        let entry: Entry = serde_json::from_slice(payload).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: undecodable entry at byte {pos}: {e}", path.display()),
            )
        })?;
        out.push((pos as u64, entry));
        pos += FRAME_HEADER + len;
    }
    Ok((out, pos as u64))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: malformed: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn io_error(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: std::io::Error) -> StorageError {
    StorageError::from_io_error(subject, verb, e)
}

impl LogStore {
    /// Opens (creating if needed) the store in `dir`, cutting a torn tail.
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let vote = read_json::<QuorumStateFile>(&dir.join(QUORUM_STATE_FILE))?.map(|s| s.to_vote());
        let last_purged: Option<LogId> = read_json(&dir.join(LOG_START_FILE))?;
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (frames, valid) = decode_frames(&bytes, &path)?;
        if valid < bytes.len() as u64 {
            tracing::warn!(
                "{}: cutting {} bytes of torn or corrupt tail at byte {valid}",
                path.display(),
                bytes.len() as u64 - valid
            );
            file.set_len(valid)?;
            file.sync_all()?;
        }
        let mut entries = BTreeMap::new();
        let mut positions = BTreeMap::new();
        let purged_index = last_purged.map(|id| id.index);
        for (pos, entry) in frames {
            let index = entry.get_log_id().index;
            if purged_index.is_some_and(|p| index <= p) {
                continue;
            }
            if let Some((&last, _)) = entries.last_key_value() {
                if index != last + 1 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: entry {index} follows entry {last}", path.display()),
                    ));
                }
            }
            positions.insert(index, pos);
            entries.insert(index, entry);
        }
        let mut file = OpenOptions::new().append(true).open(&path)?;
        file.flush()?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                file,
                entries,
                positions,
                end: valid,
                last_purged,
                vote,
                failed: None,
            })),
        })
    }
}

impl LogStore {
    /// The index of the last entry (or of the last purged one).
    pub fn last_index(&self) -> Option<u64> {
        let inner = self.inner.lock();
        inner.entries.last_key_value().map(|(&index, _)| index).or(inner.last_purged.map(|id| id.index))
    }

    /// Up to `max` entries from `from` to `to` (inclusive) that this store
    /// holds, in order (none below its purged prefix), for an observer's fetch.
    pub(crate) fn entries_between(&self, from: u64, to: u64, max: usize) -> Vec<Entry> {
        if from > to {
            return Vec::new();
        }
        self.inner.lock().entries.range(from..=to).take(max).map(|(_, e)| e.clone()).collect()
    }

    /// True if nothing was ever written here: no vote, no entry.
    pub fn is_empty(&self) -> bool {
        let inner = self.inner.lock();
        inner.vote.is_none() && inner.entries.is_empty() && inner.last_purged.is_none()
    }
}

impl Inner {
    fn check(&self) -> Result<(), StorageError> {
        match &self.failed {
            Some(why) => Err(io_error(
                ErrorSubject::Logs,
                ErrorVerb::Write,
                std::io::Error::other(format!("{}: an earlier write failed: {why}", self.dir.display())),
            )),
            None => Ok(()),
        }
    }

    /// Records the first failure; the store stays failed.
    fn fail(&mut self, subject: ErrorSubject<NodeId>, e: std::io::Error) -> StorageError {
        tracing::error!("{}: metadata log write failed, stopping the quorum node: {e}", self.dir.display());
        self.failed.get_or_insert_with(|| e.to_string());
        io_error(subject, ErrorVerb::Write, e)
    }

    fn append(&mut self, entries: Vec<Entry>) -> Result<(), StorageError> {
        self.check()?;
        let Some(first) = entries.first().map(|e| e.get_log_id().index) else {
            return Ok(());
        };
        // openraft truncates before overwriting; this guards the file anyway.
        if self.entries.last_key_value().is_some_and(|(&last, _)| last >= first) {
            self.truncate_from(first)?;
        }
        let mut buf = Vec::new();
        let mut placed = Vec::with_capacity(entries.len());
        for entry in &entries {
            let frame = encode_frame(entry).map_err(|e| self.fail(ErrorSubject::Logs, e))?;
            placed.push((entry.get_log_id().index, self.end + buf.len() as u64));
            buf.extend_from_slice(&frame);
        }
        let written = self.file.write_all(&buf).and_then(|()| self.file.sync_data());
        written.map_err(|e| self.fail(ErrorSubject::Logs, e))?;
        self.end += buf.len() as u64;
        for ((index, pos), entry) in placed.into_iter().zip(entries) {
            self.positions.insert(index, pos);
            self.entries.insert(index, entry);
        }
        Ok(())
    }

    /// Removes entries from `index` on, in the file first.
    fn truncate_from(&mut self, index: u64) -> Result<(), StorageError> {
        self.check()?;
        let Some((&from, &pos)) = self.positions.range(index..).next() else {
            return Ok(());
        };
        let cut = self.file.set_len(pos).and_then(|()| self.file.sync_all());
        cut.map_err(|e| self.fail(ErrorSubject::Logs, e))?;
        self.end = pos;
        self.positions.split_off(&from);
        self.entries.split_off(&from);
        Ok(())
    }

    fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.check()?;
        let start = serde_json::to_vec(&log_id).map_err(|e| self.fail(ErrorSubject::Logs, e.into()))?;
        storage::checkpoint::write_durably(&self.dir.join(LOG_START_FILE), &start)
            .map_err(|e| self.fail(ErrorSubject::Logs, e))?;
        self.last_purged = Some(log_id);
        self.entries = self.entries.split_off(&(log_id.index + 1));
        // Rewrite the log without the purged entries.
        let mut buf = Vec::new();
        let mut positions = BTreeMap::new();
        let mut encoded = Ok(());
        for (&index, entry) in &self.entries {
            positions.insert(index, buf.len() as u64);
            match encode_frame(entry) {
                Ok(frame) => buf.extend_from_slice(&frame),
                Err(e) => {
                    encoded = Err(e);
                    break;
                }
            }
        }
        encoded.map_err(|e| self.fail(ErrorSubject::Logs, e))?;
        let path = self.dir.join(LOG_FILE);
        storage::checkpoint::write_durably(&path, &buf).map_err(|e| self.fail(ErrorSubject::Logs, e))?;
        self.file = OpenOptions::new().append(true).open(&path).map_err(|e| self.fail(ErrorSubject::Logs, e))?;
        self.positions = positions;
        self.end = buf.len() as u64;
        Ok(())
    }

    fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        if let Err(e) = self.check() {
            return Err(io_error(ErrorSubject::Vote, ErrorVerb::Write, std::io::Error::other(e.to_string())));
        }
        let bytes = serde_json::to_vec(&QuorumStateFile::from_vote(vote)).map_err(|e| self.fail(ErrorSubject::Vote, e.into()))?;
        storage::checkpoint::write_durably(&self.dir.join(QUORUM_STATE_FILE), &bytes)
            .map_err(|e| self.fail(ErrorSubject::Vote, e))?;
        self.vote = Some(*vote);
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.inner.lock();
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.inner.lock();
        let last = inner.entries.last_key_value().map(|(_, e)| *e.get_log_id()).or(inner.last_purged);
        Ok(LogState { last_purged_log_id: inner.last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.inner.lock().save_vote(vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.inner.lock().vote)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let result = self.inner.lock().append(entries.into_iter().collect());
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.inner.lock().truncate_from(log_id.index)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.inner.lock().purge(log_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metadata::{MetadataRecord, TopicRecord, Uuid};
    use openraft::{CommittedLeaderId, EntryPayload};

    use crate::types::Proposal;

    fn entry(term: u64, index: u64) -> Entry {
        let record = MetadataRecord::Topic(TopicRecord { name: format!("t{index}"), topic_id: Uuid::from_u128(index as u128) });
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Proposal::Records(vec![record])),
        }
    }

    fn indexes(store: &LogStore) -> Vec<(u64, u64)> {
        let inner = store.inner.lock();
        inner.entries.values().map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect()
    }

    #[test]
    fn entries_and_vote_survive_reopen_in_kafkas_quorum_state_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LogStore::open(dir.path()).expect("open");
        store.inner.lock().append((1..=3).map(|i| entry(1, i)).collect()).expect("append");
        let mut vote = Vote::new(4, 2);
        vote.commit();
        store.inner.lock().save_vote(&vote).expect("vote");
        drop(store);

        let text = std::fs::read_to_string(dir.path().join(QUORUM_STATE_FILE)).expect("read");
        assert_eq!(text, r#"{"leaderId":2,"leaderEpoch":4,"votedId":2,"data_version":1}"#);
        let store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&store), vec![(1, 1), (1, 2), (1, 3)]);
        assert_eq!(store.inner.lock().vote, Some(vote));
        let reopened = store.inner.lock().entries.get(&2).cloned();
        assert_eq!(reopened, Some(entry(1, 2)));
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LogStore::open(dir.path()).expect("open");
        store.inner.lock().append((1..=3).map(|i| entry(1, i)).collect()).expect("append");
        let third = store.inner.lock().positions[&3];
        drop(store);
        let path = dir.path().join(LOG_FILE);
        let full = std::fs::read(&path).expect("read");

        // A write torn in the middle of the third frame.
        std::fs::write(&path, &full[..full.len() - 5]).expect("tear");
        let store = LogStore::open(dir.path()).expect("reopen torn");
        assert_eq!(indexes(&store), vec![(1, 1), (1, 2)]);
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), third);
        // Appending after the cut continues the log.
        store.inner.lock().append(vec![entry(2, 3)]).expect("append after cut");
        drop(store);
        assert_eq!(indexes(&LogStore::open(dir.path()).expect("reopen")), vec![(1, 1), (1, 2), (2, 3)]);

        // A flipped byte in the last frame's payload fails its CRC.
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).expect("corrupt");
        assert_eq!(indexes(&LogStore::open(dir.path()).expect("reopen corrupt")), vec![(1, 1), (1, 2)]);
    }

    #[test]
    fn truncate_and_purge_are_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LogStore::open(dir.path()).expect("open");
        store.inner.lock().append((1..=6).map(|i| entry(1, i)).collect()).expect("append");
        store.inner.lock().truncate_from(5).expect("truncate");
        store.inner.lock().append(vec![entry(2, 5)]).expect("append");
        store.inner.lock().purge(LogId::new(CommittedLeaderId::new(1, 1), 2)).expect("purge");
        assert_eq!(indexes(&store), vec![(1, 3), (1, 4), (2, 5)]);
        drop(store);
        let store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&store), vec![(1, 3), (1, 4), (2, 5)]);
        assert_eq!(store.inner.lock().last_purged.map(|id| id.index), Some(2));
        // Appending after a purge rewrote the file.
        store.inner.lock().append(vec![entry(2, 6)]).expect("append");
        drop(store);
        assert_eq!(indexes(&LogStore::open(dir.path()).expect("reopen")), vec![(1, 3), (1, 4), (2, 5), (2, 6)]);
    }

    #[test]
    fn a_failed_write_poisons_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LogStore::open(dir.path()).expect("open");
        // The directory vanishing makes the vote's write fail.
        std::fs::remove_dir_all(dir.path()).expect("remove");
        assert!(store.inner.lock().save_vote(&Vote::new(1, 1)).is_err());
        std::fs::create_dir_all(dir.path()).expect("recreate");
        // Nothing is retried: the store stays failed.
        assert!(store.inner.lock().save_vote(&Vote::new(1, 1)).is_err());
        assert!(store.inner.lock().append(vec![entry(1, 1)]).is_err());
    }
}
