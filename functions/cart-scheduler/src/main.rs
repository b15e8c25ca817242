//! The cart-scheduler Lambda: EventBridge invokes it every minute.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use voronka_aws::{DynamoStore, QueueUrls, SqsQueue, required_env, sdk_config};
use voronka_domain::deps::Ports;
use voronka_domain::ports::SystemClock;

#[tokio::main]
async fn main() -> Result<(), Error> {
    voronka_telemetry::init_json_logging(std::io::stdout);
    let config = sdk_config(None).await;
    let clock = Arc::new(SystemClock);
    let deps = Ports {
        store: Arc::new(DynamoStore::new(&config, required_env("TABLE_NAME")?, clock.clone())),
        queue: Arc::new(SqsQueue::new(&config, QueueUrls::from_env()?)),
        clock,
    };
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<serde_json::Value>| {
        let deps = deps.clone();
        async move {
            let report = cart_scheduler::run(&deps).await?;
            Ok::<_, Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}
