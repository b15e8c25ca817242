//! The qualify-bot Lambda: wires the AWS adapters and runs the bot's router. Clients, secrets and
//! the campaign content are set up once per container, at cold start.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lead_capture::lambda::run(qualify_bot::router).await
}
