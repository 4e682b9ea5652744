//! InitProducerId: idempotent producers (KIP-98, with KIP-360 epoch bumps)
//! and transactional ones (handed to the transaction coordinator).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::edge::RequestContext;

pub async fn init_producer_id(
    ctx: &RequestContext<'_>,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let fail = |code: i16| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(tid) = &req.transactional_id {
        return match ctx
            .broker
            .txns
            .init_producer(
                tid,
                req.transaction_timeout_ms,
                (req.producer_id.0 >= 0 && req.producer_epoch >= 0)
                    .then_some((req.producer_id.0, req.producer_epoch)),
                &ctx.broker.producer_ids,
            )
            .await
        {
            Ok((pid, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch),
            Err(code) => fail(code),
        };
    }
    // KIP-360: a producer that knows its id asks for the next epoch.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return InitProducerIdResponse::default()
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match ctx.broker.producer_ids.next() {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!("cannot allocate a producer id: {e}");
            fail(ResponseError::KafkaStorageError.code())
        }
    }
}
