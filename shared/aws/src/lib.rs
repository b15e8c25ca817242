//! AWS adapters for Voronka's ports: DynamoDB (store), SQS (queues), SES v2 (mail), Secrets
//! Manager (secrets).
//! Clients are built once per container and shared; every adapter counts its AWS calls so the
//! demo and benchmarks can report calls per lead, event and email.

mod deferred;
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

pub use deferred::Deferred;
pub use dynamo::DynamoStore;
pub use secrets::load_secrets;
pub use ses::SesMailer;
pub use sqs::{QueueUrls, SqsQueue};

/// The roots AWS service endpoints chain to (Amazon Root CA 1 to 4 and Starfield Services Root
/// Certificate Authority G2, as AWS documents for its endpoints), copied from Debian's
/// ca-certificates.
const AMAZON_ROOTS: &str = include_str!("amazon-roots.pem");

/// Loads the SDK configuration the usual way (environment, profile, the Lambda role), with an
/// optional endpoint override (`AWS_ENDPOINT_URL` is honoured by the SDK as well).
///
/// The HTTPS client is the SDK's default (rustls with aws-lc, the same connector settings and
/// proxy handling) except that it trusts only [`AMAZON_ROOTS`]: the default parses the whole
/// system store (about 150 roots) when it opens its first connection, at every cold start.
pub async fn sdk_config(endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    // What `aws_smithy_runtime`'s `default_https_client` builds, with `amazon_tls_context`.
    let http_client = aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut builder = aws_smithy_http_client::ConnectorBuilder::default()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(amazon_tls_context());
        builder.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            builder.set_sleep_impl(components.sleep_impl());
        }
        builder.set_proxy_config(Some(aws_smithy_http_client::proxy::ProxyConfig::from_env()));
        builder.build()
    });
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client);
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

fn amazon_tls_context() -> aws_smithy_http_client::tls::TlsContext {
    use aws_smithy_http_client::tls::{TlsContext, TrustStore};
    TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(AMAZON_ROOTS.as_bytes()))
        .build()
        .expect("a trust store without extra server names builds")
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
/// both secrets from Secrets Manager (`TOKEN_SECRET_ARN`, `EVENTS_SECRET_ARN`). `campaigns`
/// parses the content: CPU work, run on the blocking pool while the secrets are on their way.
pub async fn deps_from_env<F>(config: &aws_config::SdkConfig, campaigns: F) -> Result<Deps, String>
where
    F: FnOnce() -> Result<Campaigns, String> + Send + 'static,
{
    let (token_secret, events_secret) = (required_env("TOKEN_SECRET_ARN")?, required_env("EVENTS_SECRET_ARN")?);
    let ports = ports_from_env(config)?;
    let parsing = tokio::task::spawn_blocking(campaigns);
    let secrets = load_secrets(config, &token_secret, &events_secret).await?;
    let campaigns = parsing.await.map_err(|e| format!("parsing the campaign files failed: {e}"))??;
    Ok(Deps { ports, campaigns: Arc::new(campaigns), secrets: Arc::new(secrets) })
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_bundled_amazon_roots_parse() {
        // Building a connector parses the trust store's PEM, and panics on a bad certificate.
        use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
        let _connector = aws_smithy_http_client::ConnectorBuilder::default()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(super::amazon_tls_context())
            .build();
        assert_eq!(super::AMAZON_ROOTS.matches("-----BEGIN CERTIFICATE-----").count(), 5);
    }
}
