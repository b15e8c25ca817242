//! The cart-scheduler Lambda: EventBridge invokes it every minute.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use voronka_aws::{Deferred, ports_from_env, sdk_config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    voronka_telemetry::init_json_logging(std::io::stdout);
    voronka_telemetry::metrics::write_to_stdout();
    // The clients are built once per container, beside the runtime's first poll.
    let deps = Arc::new(Deferred::start(|| async { ports_from_env(&sdk_config(None).await) }));
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<serde_json::Value>| {
        let deps = deps.clone();
        async move {
            let deps = deps.get().await?;
            let report = cart_scheduler::run(deps).await?;
            cart_scheduler::finish_erasures(deps, &voronka_domain::ports::NoMailCopies).await;
            Ok::<_, Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}
