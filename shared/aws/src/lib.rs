//! AWS adapters for Voronka's ports: DynamoDB (store), SQS (queues), SES v2 (mail), Secrets
//! Manager (secrets).
//! Clients are built once per container and shared; every adapter counts its AWS calls so the
//! demo and benchmarks can report calls per lead, event and email.

mod dynamo;
pub mod lambda_sqs;
mod secrets;
mod ses;
mod sqs;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use voronka_domain::campaigns::Campaigns;
use voronka_domain::deps::{Deps, Ports};
use voronka_domain::ports::SystemClock;

pub use dynamo::DynamoStore;
pub use secrets::load_secrets;
pub use ses::SesMailer;
pub use sqs::{QueueUrls, SqsQueue};

/// Loads the SDK configuration the usual way (environment, profile, the Lambda role), with an
/// optional endpoint override (`AWS_ENDPOINT_URL` is honoured by the SDK as well).
pub async fn sdk_config(endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// The store and the queues a function reaches, named by its environment (`TABLE_NAME`, the queue
/// URLs), with the system clock.
pub fn ports_from_env(config: &aws_config::SdkConfig) -> Result<Ports, String> {
    let clock = Arc::new(SystemClock);
    Ok(Ports {
        store: Arc::new(DynamoStore::new(config, required_env("TABLE_NAME")?, clock.clone())),
        queue: Arc::new(SqsQueue::new(config, QueueUrls::from_env()?)),
        clock,
    })
}

/// What the functions with secrets share: the ports, the campaign files they were built with, and
/// both secrets from Secrets Manager (`TOKEN_SECRET_ARN`, `EVENTS_SECRET_ARN`).
pub async fn deps_from_env(config: &aws_config::SdkConfig, campaigns: Campaigns) -> Result<Deps, String> {
    let secrets = load_secrets(config, &required_env("TOKEN_SECRET_ARN")?, &required_env("EVENTS_SECRET_ARN")?).await?;
    Ok(Deps { ports: ports_from_env(config)?, campaigns: Arc::new(campaigns), secrets: Arc::new(secrets) })
}

/// Counts calls per AWS operation, and the capacity units DynamoDB reports it consumed
/// (`ReturnConsumedCapacity: TOTAL`, which costs nothing extra).
#[derive(Debug, Default)]
pub struct CallCounter {
    counts: Mutex<BTreeMap<&'static str, u64>>,
    capacity: Mutex<BTreeMap<&'static str, f64>>,
}

impl CallCounter {
    pub fn record(&self, operation: &'static str) {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner()).entry(operation).or_default() += 1;
    }

    pub fn record_capacity(&self, operation: &'static str, units: f64) {
        *self.capacity.lock().unwrap_or_else(|p| p.into_inner()).entry(operation).or_default() += units;
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Capacity units reported per operation.
    pub fn capacity(&self) -> BTreeMap<&'static str, f64> {
        self.capacity.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

/// Reads a required environment variable with a message that names it.
pub fn required_env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("the environment variable {name} must be set"))
}
