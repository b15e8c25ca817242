//! The lead-capture Lambda: wires the AWS adapters and runs the router. Clients, secrets and the
//! campaign content are set up once per container, at cold start.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lead_capture::lambda::run(lead_capture::router).await
}
