//! InitProducerId for idempotent producers. Transactional ids need the
//! transaction coordinator, which is not built yet.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::Broker;

pub(crate) fn init(broker: &Arc<Broker>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    if req.transactional_id.is_some() {
        tracing::warn!("InitProducerId with a transactional id: transactions are not supported yet");
        return InitProducerIdResponse::default().with_error_code(ResponseError::CoordinatorNotAvailable.code());
    }
    match broker.allocate_producer_id() {
        Ok(id) => InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(0),
        // No block from the controller yet: the producer retries (retriable code).
        Err(e) if e.code() == ResponseError::CoordinatorLoadInProgress.code() => {
            tracing::debug!(error = %e, "no producer id yet");
            InitProducerIdResponse::default().with_error_code(e.code())
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            InitProducerIdResponse::default().with_error_code(e.code())
        }
    }
}
