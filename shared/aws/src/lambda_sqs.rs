//! The SQS event source's side of a queue-consuming Lambda: the records in, the partial batch
//! failures (`ReportBatchItemFailures`) out.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

/// (message id, body) of every record.
pub fn records(event: SqsEvent) -> Vec<(String, String)> {
    event.records.into_iter().map(|r| (r.message_id.unwrap_or_default(), r.body.unwrap_or_default())).collect()
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
