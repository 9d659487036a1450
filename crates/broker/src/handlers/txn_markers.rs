//! WriteTxnMarkers (API 27): the transaction coordinator's COMMIT/ABORT
//! control batches, appended to each named partition this broker leads
//! (KIP-98). Called by the network layer for a remote coordinator and
//! directly by the local transaction coordinator's marker sender.
//!
//! Skeleton: every partition answers UNSUPPORTED_VERSION until the
//! partition side of transactions lands.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use crate::Broker;

/// Appends each marker of `req` to its partitions; one result per partition.
/// A marker written to a `__consumer_offsets` partition also completes the
/// producer's pending transactional offset commits there
/// ([`crate::group::GroupCoordinator::complete_txn_offsets`]).
pub(crate) async fn write(broker: &Arc<Broker>, req: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let _ = broker;
    let markers = req
        .markers
        .into_iter()
        .map(|m| {
            let topics = m
                .topics
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partition_indexes
                        .into_iter()
                        .map(|p| {
                            WritableTxnMarkerPartitionResult::default()
                                .with_partition_index(p)
                                .with_error_code(ResponseError::UnsupportedVersion.code())
                        })
                        .collect();
                    WritableTxnMarkerTopicResult::default().with_name(t.name).with_partitions(partitions)
                })
                .collect();
            WritableTxnMarkerResult::default().with_producer_id(m.producer_id).with_topics(topics)
        })
        .collect();
    WriteTxnMarkersResponse::default().with_markers(markers)
}
