//! The trigger-evaluator Lambda: wires the AWS adapters and consumes SQS batches with partial
//! batch failures.

use std::sync::Arc;

use lambda_runtime::Error;
use trigger_evaluator::EvaluatorDeps;
use voronka_aws::{DynamoStore, QueueUrls, SqsQueue, lambda_sqs, required_env, sdk_config};
use voronka_domain::deps::{Deps, Ports};
use voronka_domain::ports::SystemClock;

#[tokio::main]
async fn main() -> Result<(), Error> {
    voronka_telemetry::init_json_logging(std::io::stdout);
    let config = sdk_config(None).await;
    let campaigns = voronka_campaigns::bundled().map_err(|e| format!("campaign files are invalid:\n{e}"))?;
    let clock = Arc::new(SystemClock);
    let secrets =
        voronka_aws::load_secrets(&config, &required_env("TOKEN_SECRET_ARN")?, &required_env("EVENTS_SECRET_ARN")?)
            .await?;
    let deps = EvaluatorDeps {
        shared: Deps {
            ports: Ports {
                store: Arc::new(DynamoStore::new(&config, required_env("TABLE_NAME")?, clock.clone())),
                queue: Arc::new(SqsQueue::new(&config, QueueUrls::from_env()?)),
                clock,
            },
            campaigns: Arc::new(campaigns),
            secrets: Arc::new(secrets),
        },
    };
    lambda_sqs::run(deps).await
}
