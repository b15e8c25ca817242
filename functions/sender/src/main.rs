//! The sender Lambda: wires the AWS adapters and consumes SQS batches with partial batch failures.

use std::sync::Arc;

use lambda_runtime::Error;
use sender::SenderDeps;
use voronka_aws::{Deferred, SesMailer, deps_from_env, lambda_sqs, required_env, sdk_config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    voronka_telemetry::init_json_logging(std::io::stdout);
    voronka_telemetry::metrics::write_to_stdout();
    lambda_sqs::run(Deferred::start(set_up)).await
}

/// Clients, secrets and content: built once per container, beside the runtime's first poll.
async fn set_up() -> Result<SenderDeps, String> {
    let public_base_url = required_env("PUBLIC_BASE_URL")?.trim_end_matches('/').to_string();
    let config = sdk_config(None).await;
    let shared = deps_from_env(&config, voronka_campaigns::load_bundled).await?;
    let templates = shared.campaigns.template_set();
    let rate = shared.campaigns.settings.sending.max_send_rate_per_second;
    Ok(SenderDeps {
        shared,
        mailer: Arc::new(SesMailer::new(&config, std::env::var("SES_CONFIGURATION_SET").ok())),
        templates: Arc::new(templates),
        public_base_url,
        rate: Arc::new(sender::rate::RateGate::per_second(rate)),
        reputation: Default::default(),
    })
}
