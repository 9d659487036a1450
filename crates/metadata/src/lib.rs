//! Cluster metadata: the records that describe the cluster (topics, partitions,
//! configs), the in-memory [`Image`] they build, and the durable [`MetadataLog`]
//! they are appended to.
//!
//! Every change to cluster metadata is a [`MetadataRecord`] appended to the
//! metadata log (the `__cluster_metadata-0` partition, stored with the same
//! segment format as any other partition) through a [`MetadataSink`] and then
//! applied to the image, which yields an [`ImageDelta`] for the broker's
//! publisher. On start the latest snapshot is loaded and the log after it
//! replayed. A single node is a one-voter quorum: appending is committing. A
//! replicated quorum will commit the same records through Raft before
//! applying them.

mod checkpoint;
mod delta;
mod error;
mod image;
mod log;
mod record;
mod sink;
pub mod snapshot;

pub use checkpoint::{Checkpoint, CHECKPOINT_FILE};
pub use delta::{ImageDelta, PartitionChange};
pub use error::{MetadataError, Result};
pub use image::{BrokerImage, Image, PartitionImage, TopicImage};
pub use log::{Committed, LogDirWatch, MetadataLog, MetadataLogConfig};
pub use sink::MetadataSink;
pub use record::{
    BrokerEndpoint, BrokerRegistrationChangeRecord, BrokerRegistrationRecord, ConfigRecord, MetadataRecord,
    PartitionChangeRecord, PartitionRecord, TopicRecord, RESOURCE_BROKER, RESOURCE_TOPIC,
};
pub use uuid::Uuid;
