//! The trigger-evaluator Lambda: wires the AWS adapters and consumes SQS batches with partial
//! batch failures.

use lambda_runtime::Error;
use trigger_evaluator::EvaluatorDeps;
use voronka_aws::{deps_from_env, lambda_sqs, sdk_config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    voronka_telemetry::init_json_logging(std::io::stdout);
    voronka_telemetry::metrics::write_to_stdout();
    let config = sdk_config(None).await;
    let campaigns = voronka_campaigns::bundled().map_err(|e| format!("campaign files are invalid:\n{e}"))?;
    let deps = EvaluatorDeps { shared: deps_from_env(&config, campaigns).await? };
    lambda_sqs::run(deps).await
}
