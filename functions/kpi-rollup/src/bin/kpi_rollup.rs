//! The kpi-rollup Lambda: EventBridge Scheduler invokes it hourly (`{"kind":"hourly"}`) and
//! nightly (`{"kind":"nightly"}`). The store and the settings are set up once per container.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use voronka_aws::{ports_from_env, sdk_config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    voronka_telemetry::init_json_logging(std::io::stdout);
    let config = sdk_config(None).await;
    let ports = ports_from_env(&config)?;
    let campaigns = voronka_campaigns::bundled().map_err(|e| format!("campaign files are invalid:\n{e}"))?;
    let settings = Arc::new(campaigns.settings);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let (ports, settings) = (ports.clone(), settings.clone());
        async move {
            let outcome = kpi_rollup::scheduled(&ports, &settings, &event.payload).await?;
            Ok::<_, Error>(serde_json::to_value(outcome)?)
        }
    }))
    .await
}
