//! The trigger-evaluator Lambda: wires the AWS adapters and consumes SQS batches with partial
//! batch failures.

use lambda_runtime::Error;
use trigger_evaluator::EvaluatorDeps;
use voronka_aws::{Deferred, deps_from_env, lambda_sqs, sdk_config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    voronka_telemetry::init_json_logging(std::io::stdout);
    voronka_telemetry::metrics::write_to_stdout();
    lambda_sqs::run(Deferred::start(set_up)).await
}

/// Clients, secrets and content: built once per container, beside the runtime's first poll.
async fn set_up() -> Result<EvaluatorDeps, String> {
    let config = sdk_config(None).await;
    Ok(EvaluatorDeps { shared: deps_from_env(&config, voronka_campaigns::load_bundled).await? })
}
