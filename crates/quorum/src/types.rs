//! The openraft type configuration of the metadata quorum.

use std::io::Cursor;

use metadata::MetadataRecord;
use serde::{Deserialize, Serialize};

/// A controller's node id (Kafka's `node.id`).
pub type NodeId = u64;

/// What one Raft log entry carries: a batch of metadata records committed
/// together, or the cluster id the first leader of a fresh quorum proposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Proposal {
    /// Records that are applied to the image in order, as one unit.
    Records(Vec<MetadataRecord>),
    /// The cluster id; only the first committed one counts.
    ClusterId(String),
}

/// What applying an entry answers: the entry's log index (its offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The committed entry's index in the Raft log.
    pub offset: u64,
}

openraft::declare_raft_types!(
    /// The metadata quorum's Raft types: entries carry [`Proposal`]s, nodes are
    /// addressed by their controller listener (`host:port`).
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = crate::runtime::QuorumRuntime,
);

/// A Raft log entry of the quorum.
pub type Entry = openraft::Entry<TypeConfig>;
/// A Raft log id (term and index) of the quorum.
pub type LogId = openraft::LogId<NodeId>;
/// A Raft vote of the quorum.
pub type Vote = openraft::Vote<NodeId>;
/// The Raft instance of the quorum.
pub type Raft = openraft::Raft<TypeConfig>;
/// Storage errors as openraft reports them.
pub type StorageError = openraft::StorageError<NodeId>;
