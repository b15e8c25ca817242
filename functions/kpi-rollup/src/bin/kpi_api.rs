//! The kpi-api Lambda: wires the AWS adapters and runs the KPI admin routes. Clients, secrets and
//! the campaign content are set up once per container, at cold start.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lead_capture::lambda::run(kpi_rollup::router).await
}
