//! The quorum's state machine: committed entries applied to a metadata
//! [`Image`], snapshots of it kept durably in `quorum-snapshot`, and a stream
//! of what was committed, with what it changed, for the metadata publisher.
//!
//! A snapshot holds the records that rebuild the image ([`Image::to_records`],
//! the content of the single-node log's snapshots too), so its size follows
//! the cluster's size, not the length of its history.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use metadata::{Image, ImageDelta, MetadataRecord};
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
        /// What the records changed in the image.
        delta: Arc<ImageDelta>,
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
    /// Records that rebuild the image from an empty one.
    records: Vec<MetadataRecord>,
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
    image: Image,
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

fn decode_data(bytes: &[u8]) -> Result<(Option<String>, Image), String> {
    let data: SnapshotData = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok((data.cluster_id, Image::from_records(&data.records)))
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
        let (mut last_applied, mut membership, mut image, mut cluster_id) = (None, StoredMembership::default(), Image::default(), None);
        if let Some(file) = &snapshot {
            (cluster_id, image) = decode_data(&file.data).map_err(invalid)?;
            last_applied = file.meta.last_log_id;
            membership = file.meta.last_membership.clone();
        }
        let (events, _) = broadcast::channel(EVENTS_CAPACITY);
        Ok(StateMachine {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                last_applied,
                membership,
                image,
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
        (inner.image.clone(), inner.last_applied.map(|id| id.index))
    }

    /// The index of the last applied entry.
    pub fn last_applied(&self) -> Option<u64> {
        self.inner.lock().last_applied.map(|id| id.index)
    }

    /// The latest snapshot (openraft's meta and the data), for an observer
    /// whose position the log no longer holds.
    pub(crate) fn current_snapshot(&self) -> Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)> {
        self.inner.lock().snapshot.as_ref().map(|file| (file.meta.clone(), file.data.clone()))
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
        let data = SnapshotData { cluster_id: inner.cluster_id.clone(), records: inner.image.to_records() };
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
                    let delta = inner.image.apply_all(&records);
                    // No subscriber is not an error.
                    let _ = inner.events.send(Committed::Records {
                        offset: log_id.index,
                        epoch: log_id.leader_id.term,
                        records: Arc::new(records),
                        delta: Arc::new(delta),
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
        let (cluster_id, image) = decode_data(&data).map_err(snapshot_error)?;
        let mut inner = self.inner.lock();
        let file = SnapshotFile { meta: meta.clone(), data };
        inner.persist(&file)?;
        inner.snapshot = Some(file);
        inner.image = image;
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

#[cfg(test)]
mod tests {
    use super::*;
    use metadata::{ConfigRecord, PartitionRecord, TopicRecord, Uuid, RESOURCE_TOPIC};
    use openraft::CommittedLeaderId;

    fn entry(index: u64, records: Vec<MetadataRecord>) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(Proposal::Records(records)) }
    }

    /// The same topic's partition and config rewritten: the image does not grow.
    fn churn(topic_id: Uuid, round: u64) -> Vec<MetadataRecord> {
        let leader = 1 + (round % 3) as i32;
        vec![
            MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition: 0,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                leader,
                leader_epoch: 5,
                ..Default::default()
            }),
            MetadataRecord::Config(ConfigRecord {
                resource_type: RESOURCE_TOPIC,
                resource_name: "t".into(),
                name: "retention.ms".into(),
                value: Some(format!("{}", 1000 + round % 9)),
            }),
        ]
    }

    async fn snapshot_bytes(sm: &mut StateMachine) -> Vec<u8> {
        sm.get_snapshot_builder().await.build_snapshot().await.expect("snapshot").snapshot.into_inner()
    }

    #[tokio::test]
    async fn snapshots_hold_the_image_not_the_history_and_applies_yield_deltas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = StateMachine::open(dir.path()).expect("open");
        let mut events = sm.subscribe();
        let topic_id = Uuid::from_u128(7);
        let create = vec![MetadataRecord::Topic(TopicRecord { name: "t".into(), topic_id })];
        sm.apply([entry(1, create), entry(2, churn(topic_id, 0))]).await.expect("apply");
        let first = snapshot_bytes(&mut sm).await;

        for round in 1..=200 {
            sm.apply([entry(2 + round, churn(topic_id, round))]).await.expect("apply");
        }
        let later = snapshot_bytes(&mut sm).await;
        assert_eq!(later.len(), first.len(), "202 entries later the snapshot has the same size");

        // Every applied batch came with its own delta.
        match events.try_recv().expect("the creation") {
            Committed::Records { offset: 1, delta, .. } => assert_eq!(delta.created_topics, [topic_id].into()),
            other => panic!("{other:?}"),
        }
        match events.try_recv().expect("the first change") {
            Committed::Records { offset: 2, delta, .. } => {
                assert!(delta.topic_configs.contains(&topic_id));
                assert_eq!(delta.partitions_of(topic_id).map(|(p, c)| (p, c.new.leader)).collect::<Vec<_>>(), vec![(0, 1)]);
            }
            other => panic!("{other:?}"),
        }

        // The snapshot on disk rebuilds the same image, at the same offset.
        let (image, offset) = sm.image();
        assert_eq!(offset, Some(202));
        assert_eq!(image.topic("t").map(|t| t.configs.get("retention.ms").cloned()), Some(Some("1002".into())));
        let reopened = StateMachine::open(dir.path()).expect("reopen");
        assert_eq!(reopened.image(), (image.clone(), Some(202)));

        // A follower installing that snapshot gets the same image and hears of the jump.
        let other = tempfile::tempdir().expect("tempdir");
        let mut follower = StateMachine::open(other.path()).expect("open");
        let mut follower_events = follower.subscribe();
        let snapshot = sm.get_current_snapshot().await.expect("current").expect("a snapshot");
        follower.install_snapshot(&snapshot.meta, snapshot.snapshot).await.expect("install");
        assert_eq!(follower.image(), (image, Some(202)));
        assert!(matches!(follower_events.try_recv(), Ok(Committed::Snapshot { offset: 202 })));
    }
}
