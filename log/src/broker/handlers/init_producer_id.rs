//! InitProducerId for idempotent producers: a fresh producer id at epoch 0. Transactional
//! ids arrive with the transaction coordinator.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;
use crate::codes;

pub(super) async fn handle(broker: &Broker, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let refuse = |code| {
        InitProducerIdResponse::default().with_error_code(code).with_producer_id(ProducerId(-1)).with_producer_epoch(-1)
    };
    if req.transactional_id.is_some() {
        tracing::info!("InitProducerId with a transactional id; transactions are not supported yet");
        return refuse(codes::INVALID_REQUEST);
    }
    match broker.allocate_producer_id().await {
        Ok(id) => InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(code = e.code, reason = %e.message, "no producer id from the controller");
            // The controller's own codes (NOT_CONTROLLER, STALE_BROKER_EPOCH, ...) mean
            // nothing to a producer, which would treat them as fatal: it retries this one.
            refuse(codes::COORDINATOR_NOT_AVAILABLE)
        }
    }
}
