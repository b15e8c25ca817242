//! The kpi-rollup Lambda: EventBridge Scheduler invokes it hourly (`{"kind":"hourly"}`) and
//! nightly (`{"kind":"nightly"}`). The store and the settings are set up once per container,
//! beside the runtime's first poll.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use voronka_aws::{Deferred, ports_from_env, sdk_config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    voronka_telemetry::init_json_logging(std::io::stdout);
    let set_up = Arc::new(Deferred::start(|| async {
        let ports = ports_from_env(&sdk_config(None).await)?;
        let campaigns = tokio::task::spawn_blocking(voronka_campaigns::load_bundled)
            .await
            .map_err(|e| format!("parsing the campaign files failed: {e}"))??;
        Ok((ports, campaigns.settings))
    }));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let set_up = set_up.clone();
        async move {
            let (ports, settings) = set_up.get().await?;
            let outcome = kpi_rollup::scheduled(ports, settings, &event.payload).await?;
            Ok::<_, Error>(serde_json::to_value(outcome)?)
        }
    }))
    .await
}
