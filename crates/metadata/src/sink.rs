//! Where the controller's decisions go: an append-and-commit interface that
//! the single-node [`MetadataLog`] implements today and a replicated quorum
//! (Raft) can implement later.

use crate::error::Result;
use crate::image::Image;
use crate::log::{Committed, MetadataLog};
use crate::record::MetadataRecord;

/// A metadata log the controller appends to.
pub trait MetadataSink: Send {
    /// The image of every committed record: what the controller validates
    /// requests against.
    fn image(&self) -> &Image;

    /// Appends `records` as one atomic change and returns once it is
    /// committed, with its last offset and what it changed.
    fn append_and_commit(&mut self, records: &[MetadataRecord], now_ms: i64) -> Result<Committed>;

    /// Reloads [`MetadataSink::image`] with changes committed by others (a
    /// quorum's other controllers); a local log's image is always current.
    fn refresh(&mut self) {}
}

impl MetadataSink for MetadataLog {
    fn image(&self) -> &Image {
        MetadataLog::image(self)
    }

    fn append_and_commit(&mut self, records: &[MetadataRecord], now_ms: i64) -> Result<Committed> {
        // One voter: fsynced is committed.
        self.append(records, now_ms)
    }
}
