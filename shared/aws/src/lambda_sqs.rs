//! The SQS event source's side of a queue-consuming Lambda: the records in, the partial batch
//! failures (`ReportBatchItemFailures`) out.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use voronka_domain::ports::{BatchHandler, Delivery};

use crate::Deferred;

/// Runs the handler on every batch the event source invokes the function with, once it is set up.
pub async fn run<H: BatchHandler + 'static>(handler: Deferred<H>) -> Result<(), Error> {
    let handler = Arc::new(handler);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        async move {
            let handler = handler.get().await?;
            Ok::<_, Error>(batch_response(handler.handle_batch(deliveries(event.payload)).await))
        }
    }))
    .await
}

/// Every record as a delivery.
pub fn deliveries(event: SqsEvent) -> Vec<Delivery> {
    event
        .records
        .into_iter()
        .map(|r| Delivery { message_id: r.message_id.unwrap_or_default(), body: r.body.unwrap_or_default() })
        .collect()
}

/// Reports the failed message ids, so only they come back; the rest of the batch is done.
pub fn batch_response(failed: Vec<String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}
