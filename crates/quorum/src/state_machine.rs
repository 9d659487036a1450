//! The quorum's state machine: committed entries applied to a metadata
//! [`Image`], snapshots of it kept durably in `quorum-snapshot`, and a stream
//! of what was committed for the metadata publisher.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use metadata::{Image, MetadataRecord};
use openraft::storage::RaftStateMachine;
use openraft::{BasicNode, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, RaftLogId, Snapshot, SnapshotMeta, StoredMembership};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::types::{Applied, Entry, LogId, NodeId, Proposal, StorageError, TypeConfig};

/// The file holding the latest snapshot.
pub const SNAPSHOT_FILE: &str = "quorum-snapshot";
/// How many committed events a subscriber may fall behind before it lags.
const EVENTS_CAPACITY: usize = 4096;

/// What the state machine keeps: an image that records are applied to and
/// that can be snapshotted and restored. [`ReplayImage`] is the implementation
/// until `metadata::Image` is snapshottable itself; only this trait and the
/// [`State`] alias need to change then.
pub trait MetadataState: Default + Clone + Send + Sync + 'static {
    /// Applies one committed record.
    fn apply(&mut self, record: &MetadataRecord);
    /// The image as of the last applied record.
    fn image(&self) -> &Image;
    /// The snapshot of this state.
    fn to_json(&self) -> serde_json::Value;
    /// Restores a state from [`MetadataState::to_json`]'s output.
    fn from_json(value: serde_json::Value) -> Result<Self, String>;
}

/// An image that snapshots as the records that built it (`Image` has no
/// serialized form yet). Correct, but the snapshot grows with the history.
#[derive(Debug, Clone, Default)]
pub struct ReplayImage {
    image: Image,
    records: Vec<MetadataRecord>,
}

impl MetadataState for ReplayImage {
    fn apply(&mut self, record: &MetadataRecord) {
        // The delta is for a metadata publisher; none is wired to the quorum yet.
        self.image.apply(record, &mut metadata::ImageDelta::default());
        self.records.push(record.clone());
    }

    fn image(&self) -> &Image {
        &self.image
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.records).unwrap_or(serde_json::Value::Null)
    }

    fn from_json(value: serde_json::Value) -> Result<Self, String> {
        let records: Vec<MetadataRecord> = serde_json::from_value(value).map_err(|e| e.to_string())?;
        let mut state = ReplayImage::default();
        for record in &records {
            state.apply(record);
        }
        Ok(state)
    }
}

/// The state implementation the quorum uses.
pub type State = ReplayImage;

/// One committed change, in log order, as the metadata publisher sees it.
#[derive(Debug, Clone)]
pub enum Committed {
    /// A batch of records committed at `offset` (its Raft log index) in
    /// `epoch` (the term of the leader that appended it).
    Records {
        /// The entry's log index.
        offset: u64,
        /// The entry's term.
        epoch: u64,
        /// The records, already applied to the image.
        records: Arc<Vec<MetadataRecord>>,
    },
    /// The cluster id was agreed at `offset`.
    ClusterId {
        /// The entry's log index.
        offset: u64,
        /// The agreed cluster id.
        cluster_id: String,
    },
    /// A snapshot replaced the whole state (a lagging follower): reload the
    /// image instead of applying deltas.
    Snapshot {
        /// The last log index the snapshot covers.
        offset: u64,
    },
}

/// The serialized state in a snapshot.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    cluster_id: Option<String>,
    state: serde_json::Value,
}

/// The snapshot file: openraft's meta and the data.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

struct Inner {
    dir: PathBuf,
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, BasicNode>,
    state: State,
    cluster_id: Option<String>,
    snapshot: Option<SnapshotFile>,
    built: u64,
    events: broadcast::Sender<Committed>,
}

/// The state machine; clones share it (the snapshot builder is a clone).
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<Inner>>,
}

fn snapshot_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::from_io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, std::io::Error::other(e.to_string()))
}

fn decode_data(bytes: &[u8]) -> Result<(Option<String>, State), String> {
    let data: SnapshotData = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok((data.cluster_id, State::from_json(data.state)?))
}

impl StateMachine {
    /// Opens the state machine in `dir`, restoring the snapshot if there is one.
    pub fn open(dir: &Path) -> std::io::Result<StateMachine> {
        let path = dir.join(SNAPSHOT_FILE);
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()));
        let snapshot: Option<SnapshotFile> = match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let (mut last_applied, mut membership, mut state, mut cluster_id) = (None, StoredMembership::default(), State::default(), None);
        if let Some(file) = &snapshot {
            (cluster_id, state) = decode_data(&file.data).map_err(invalid)?;
            last_applied = file.meta.last_log_id;
            membership = file.meta.last_membership.clone();
        }
        let (events, _) = broadcast::channel(EVENTS_CAPACITY);
        Ok(StateMachine {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                last_applied,
                membership,
                state,
                cluster_id,
                snapshot,
                built: 0,
                events,
            })),
        })
    }

    /// A stream of what is committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.inner.lock().events.subscribe()
    }

    /// The image as of the last applied entry, and that entry's index.
    pub fn image(&self) -> (Image, Option<u64>) {
        let inner = self.inner.lock();
        (inner.state.image().clone(), inner.last_applied.map(|id| id.index))
    }

    /// The agreed cluster id, once committed.
    pub fn cluster_id(&self) -> Option<String> {
        self.inner.lock().cluster_id.clone()
    }
}

impl Inner {
    fn persist(&self, file: &SnapshotFile) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(file).map_err(snapshot_error)?;
        storage::checkpoint::write_durably(&self.dir.join(SNAPSHOT_FILE), &bytes).map_err(|e| {
            tracing::error!("{}: writing the metadata snapshot failed: {e}", self.dir.display());
            StorageError::from_io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e)
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let mut inner = self.inner.lock();
        let data = SnapshotData { cluster_id: inner.cluster_id.clone(), state: inner.state.to_json() };
        let data = serde_json::to_vec(&data).map_err(snapshot_error)?;
        inner.built += 1;
        let snapshot_id = match inner.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, inner.built),
            None => format!("none-{}", inner.built),
        };
        let meta = SnapshotMeta { last_log_id: inner.last_applied, last_membership: inner.membership.clone(), snapshot_id };
        let file = SnapshotFile { meta: meta.clone(), data: data.clone() };
        inner.persist(&file)?;
        inner.snapshot = Some(file);
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership<NodeId, BasicNode>), StorageError> {
        let inner = self.inner.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock();
        let mut out = Vec::new();
        for entry in entries {
            let log_id = *entry.get_log_id();
            inner.last_applied = Some(log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Membership(membership) => {
                    inner.membership = StoredMembership::new(Some(log_id), membership);
                }
                EntryPayload::Normal(Proposal::Records(records)) => {
                    for record in &records {
                        inner.state.apply(record);
                    }
                    // No subscriber is not an error.
                    let _ = inner.events.send(Committed::Records {
                        offset: log_id.index,
                        epoch: log_id.leader_id.term,
                        records: Arc::new(records),
                    });
                }
                EntryPayload::Normal(Proposal::ClusterId(id)) => {
                    if inner.cluster_id.is_none() {
                        inner.cluster_id = Some(id.clone());
                        let _ = inner.events.send(Committed::ClusterId { offset: log_id.index, cluster_id: id });
                    }
                }
            }
            out.push(Applied { offset: log_id.index });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let (cluster_id, state) = decode_data(&data).map_err(snapshot_error)?;
        let mut inner = self.inner.lock();
        let file = SnapshotFile { meta: meta.clone(), data };
        inner.persist(&file)?;
        inner.snapshot = Some(file);
        inner.state = state;
        inner.cluster_id = cluster_id;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        let offset = meta.last_log_id.map_or(0, |id| id.index);
        let _ = inner.events.send(Committed::Snapshot { offset });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let inner = self.inner.lock();
        Ok(inner.snapshot.as_ref().map(|file| Snapshot {
            meta: file.meta.clone(),
            snapshot: Box::new(Cursor::new(file.data.clone())),
        }))
    }
}
