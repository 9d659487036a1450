//! The metadata quorum: KRaft's Raft of controllers, on openraft.
//!
//! Controllers replicate the metadata log (`__cluster_metadata-0`) with Raft;
//! the leader is the active controller. Each log entry carries a batch of
//! [`metadata::MetadataRecord`]s ([`Proposal`]); a committed entry is applied,
//! in log order, to a [`metadata::Image`] on every controller and published to
//! subscribers ([`Committed`]). See README.md beside this crate for the
//! invariants, the on-disk files and how to run the simulation.
//!
//! Determinism (the simulation in `sim.rs`): the fault schedule, message
//! delays and drops, openraft's election timeouts ([`QuorumRuntime`] draws
//! them from a thread-local RNG that [`seed_thread_rng`] seeds), the cluster id
//! and time (tokio's paused clock) all come from the seed, on one thread. Not
//! deterministic: tokio's `select!` fairness (openraft's replication loop uses
//! an unbiased `select!`, whose RNG tokio seeds per runtime), so a replay can in
//! principle diverge where two events are ready at the same virtual instant.

// openraft's StorageError is large, and its traits fix it as the error type.
#![allow(clippy::result_large_err)]

mod log_store;
mod network;
mod observer;
mod quorum;
mod runtime;
#[cfg(test)]
mod sim;
mod sink;
mod state_machine;
mod types;

pub use log_store::{LogStore, LOG_FILE, LOG_START_FILE, QUORUM_STATE_FILE};
pub use runtime::{seed_thread_rng, QuorumRuntime};
pub use sink::QuorumSink;
pub use state_machine::{Committed, StateMachine, SNAPSHOT_FILE};
pub use types::{Applied, Entry, LogId, NodeId, Proposal, Raft, StorageError, TypeConfig, Vote};
pub use observer::FETCH_MAX_WAIT;
pub use network::{PeerTimes, ProposeError, PREFACE, CONNECT_TIMEOUT, FRAME_TIMEOUT, IDLE_TIMEOUT, MAX_FRAME_BYTES};
pub use quorum::{random_cluster_id, Quorum, QuorumDescription, QuorumError, QuorumOptions, VoterState, METADATA_DIR};
