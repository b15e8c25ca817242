//! The sender Lambda: wires the AWS adapters and consumes SQS batches with partial batch failures.

use std::sync::Arc;

use lambda_runtime::Error;
use sender::SenderDeps;
use voronka_aws::{SesMailer, deps_from_env, lambda_sqs, required_env, sdk_config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    voronka_telemetry::init_json_logging(std::io::stdout);
    voronka_telemetry::metrics::write_to_stdout();
    let config = sdk_config(None).await;
    let campaigns = voronka_campaigns::bundled().map_err(|e| format!("campaign files are invalid:\n{e}"))?;
    let templates = campaigns.template_set();
    let rate = campaigns.settings.sending.max_send_rate_per_second;
    let public_base_url = required_env("PUBLIC_BASE_URL")?.trim_end_matches('/').to_string();
    let deps = SenderDeps {
        shared: deps_from_env(&config, campaigns).await?,
        mailer: Arc::new(SesMailer::new(&config, std::env::var("SES_CONFIGURATION_SET").ok())),
        templates: Arc::new(templates),
        public_base_url,
        rate: Arc::new(sender::rate::RateGate::per_second(rate)),
        reputation: Default::default(),
    };
    lambda_sqs::run(deps).await
}
