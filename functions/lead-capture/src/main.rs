//! The lead-capture Lambda: wires the AWS adapters and runs the router. Clients, secrets and the
//! campaign content are set up once per container, at cold start.

use std::sync::Arc;

use lambda_http::{Error, service_fn};
use lead_capture::AppState;
use voronka_aws::{DynamoStore, QueueUrls, SqsQueue, load_secrets, required_env, sdk_config};
use voronka_domain::deps::{Deps, Ports};
use voronka_domain::ports::{RandomIds, SystemClock};

#[tokio::main]
async fn main() -> Result<(), Error> {
    voronka_telemetry::init_json_logging(std::io::stdout);
    let config = sdk_config(None).await;
    let campaigns = voronka_campaigns::bundled().map_err(|e| format!("campaign files are invalid:\n{e}"))?;
    let secrets =
        load_secrets(&config, &required_env("TOKEN_SECRET_ARN")?, &required_env("EVENTS_SECRET_ARN")?).await?;
    // Empty: links point at the host each request came to (the API Gateway URL).
    let public_base_url = std::env::var("PUBLIC_BASE_URL").unwrap_or_default().trim_end_matches('/').to_string();
    let clock = Arc::new(SystemClock);
    let state = AppState {
        shared: Deps {
            ports: Ports {
                store: Arc::new(DynamoStore::new(&config, required_env("TABLE_NAME")?, clock.clone())),
                queue: Arc::new(SqsQueue::new(&config, QueueUrls::from_env()?)),
                clock,
            },
            campaigns: Arc::new(campaigns),
            secrets: Arc::new(secrets),
        },
        ids: Arc::new(RandomIds),
        public_base_url,
        // API Gateway's IAM authoriser guards every admin route (`Auth: Authorizer: AWS_IAM`).
        admin_access: lead_capture::admin::AdminAccess::IamAuthorizer,
    };
    let router = lead_capture::router(state);
    lambda_http::run(service_fn(move |request| lead_capture::lambda::handle(router.clone(), request))).await
}
