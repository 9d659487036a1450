//! Cluster metadata: the records that describe the cluster (topics, partitions,
//! configs), the in-memory [`Image`] they build, and the durable [`MetadataLog`]
//! they are appended to.
//!
//! Every change to cluster metadata is a [`MetadataRecord`] appended to the
//! metadata log (the `__cluster_metadata-0` partition, stored with the same
//! segment format as any other partition) and then applied to the image. On start
//! the log is replayed to rebuild the image. A single node is a one-voter quorum:
//! appending is committing. A replicated quorum will commit the same records
//! through Raft before applying them.

mod checkpoint;
mod error;
mod image;
mod log;
mod record;

pub use checkpoint::{Checkpoint, CHECKPOINT_FILE};
pub use error::{MetadataError, Result};
pub use image::{Image, PartitionImage, TopicImage};
pub use log::{LogDirWatch, MetadataLog};
pub use record::{ConfigRecord, MetadataRecord, PartitionRecord, TopicRecord, RESOURCE_BROKER, RESOURCE_TOPIC};
pub use uuid::Uuid;
