//! The kpi-api Lambda: wires the AWS adapters and runs the KPI admin routes. Clients, secrets and
//! the campaign content are set up once per container, at cold start.

use std::sync::Arc;

use lambda_http::{Error, service_fn};
use lead_capture::AppState;
use voronka_aws::{deps_from_env, sdk_config};
use voronka_domain::ports::RandomIds;

#[tokio::main]
async fn main() -> Result<(), Error> {
    voronka_telemetry::init_json_logging(std::io::stdout);
    let config = sdk_config(None).await;
    let campaigns = voronka_campaigns::bundled().map_err(|e| format!("campaign files are invalid:\n{e}"))?;
    let state = AppState {
        shared: deps_from_env(&config, campaigns).await?,
        ids: Arc::new(RandomIds),
        public_base_url: lead_capture::lambda::public_base_url_from_env(),
        // API Gateway's IAM authoriser guards every route of this function (`Auth: Authorizer: AWS_IAM`).
        admin_access: lead_capture::admin::AdminAccess::IamAuthorizer,
    };
    let router = kpi_rollup::router(state);
    lambda_http::run(service_fn(move |request| lead_capture::lambda::handle(router.clone(), request))).await
}
