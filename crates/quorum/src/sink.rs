//! The controller's [`MetadataSink`] on the quorum: what the broker's
//! controller appends through once the quorum is wired in.
//!
//! `MetadataSink` is synchronous (the controller and its callers are), so
//! [`QuorumSink`] waits for the quorum's async commit by blocking: inside a
//! multi-thread tokio runtime through `block_in_place` (the worker hands its
//! other tasks to another thread first), outside any runtime directly on the
//! quorum's runtime. A current-thread runtime cannot wait on itself: there
//! the sink refuses instead of deadlocking.

use std::future::Future;
use std::sync::Arc;

use metadata::{Committed, Image, MetadataError, MetadataRecord, MetadataSink};
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::quorum::{Quorum, QuorumError};

/// A [`MetadataSink`] that commits through the metadata quorum: from any
/// controller (a follower forwards to the leader), or, made with
/// [`QuorumSink::leader_only`], only under this node's own leadership.
pub struct QuorumSink {
    quorum: Arc<Quorum>,
    runtime: Handle,
    /// Commits only while this node leads ([`Quorum::propose_as_leader`]).
    leader_only: bool,
    /// The image as of this sink's last commit (or [`QuorumSink::refresh`]).
    image: Image,
}

impl QuorumSink {
    /// A sink on `quorum`, whose tasks run on `runtime`.
    pub fn new(quorum: Arc<Quorum>, runtime: Handle) -> QuorumSink {
        let image = quorum.image().0;
        QuorumSink { quorum, runtime, leader_only: false, image }
    }

    /// A sink that commits only while this node is the quorum's leader (the
    /// active controller's decisions): a change proposed as leadership is
    /// lost is refused with NOT_CONTROLLER, never forwarded to the new leader.
    pub fn leader_only(quorum: Arc<Quorum>, runtime: Handle) -> QuorumSink {
        QuorumSink { leader_only: true, ..QuorumSink::new(quorum, runtime) }
    }

    /// Reloads the image from the quorum (changes committed through other
    /// controllers since this sink's last commit).
    pub fn refresh(&mut self) {
        self.image = self.quorum.image().0;
    }

    /// The quorum this sink commits through.
    pub fn quorum(&self) -> &Arc<Quorum> {
        &self.quorum
    }

    fn block_on<F: Future>(&self, future: F) -> Result<F::Output, MetadataError> {
        match Handle::try_current() {
            Ok(current) if current.runtime_flavor() == RuntimeFlavor::CurrentThread => Err(MetadataError::NotController(
                "a metadata change cannot wait for the quorum on a current-thread runtime; nothing was proposed".into(),
            )),
            Ok(_) => Ok(tokio::task::block_in_place(|| self.runtime.block_on(future))),
            Err(_) => Ok(self.runtime.block_on(future)),
        }
    }
}

/// The metadata error the controller maps to a Kafka error code.
fn metadata_error(e: QuorumError) -> MetadataError {
    match e {
        // Nothing was appended: the client may retry elsewhere.
        QuorumError::NoLeader(_) | QuorumError::LostLeadership { .. } => MetadataError::NotController(e.to_string()),
        _ => MetadataError::CommitUncertain(e.to_string()),
    }
}

impl MetadataSink for QuorumSink {
    fn image(&self) -> &Image {
        &self.image
    }

    fn refresh(&mut self) {
        QuorumSink::refresh(self);
    }

    /// Commits `records` as one quorum entry and returns once this node has
    /// applied it: `last_offset` is the entry's offset (its Raft log index),
    /// `delta` what exactly this entry changed. Afterwards [`MetadataSink::image`]
    /// is this node's image, which may include later entries too.
    fn append_and_commit(&mut self, records: &[MetadataRecord], _now_ms: i64) -> metadata::Result<Committed> {
        let quorum = self.quorum.clone();
        let records = records.to_vec();
        let proposed = if self.leader_only {
            self.block_on(quorum.propose_and_apply_as_leader(records))?
        } else {
            self.block_on(quorum.propose_and_apply(records))?
        };
        let (offset, delta) = proposed.map_err(metadata_error)?;
        self.refresh();
        let last_offset = i64::try_from(offset).map_err(|_| MetadataError::CommitUncertain(format!("offset {offset} out of range")))?;
        Ok(Committed { last_offset, delta: Arc::unwrap_or_clone(delta) })
    }
}
