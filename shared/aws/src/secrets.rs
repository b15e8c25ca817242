//! The installation's secrets from AWS Secrets Manager, read once at cold start.

use voronka_domain::signing::Secrets;

/// Reads the secret `secret_id` (ARN or name), whose value is JSON `{"token_key", "events_key"}`.
pub async fn load_secrets(config: &aws_config::SdkConfig, secret_id: &str) -> Result<Secrets, String> {
    let client = aws_sdk_secretsmanager::Client::new(config);
    let output = client.get_secret_value().secret_id(secret_id).send().await.map_err(|e| {
        format!("cannot read the secret {secret_id}: {}", aws_sdk_secretsmanager::error::DisplayErrorContext(e))
    })?;
    let text = output.secret_string().ok_or_else(|| format!("the secret {secret_id} has no string value"))?;
    let secrets: Secrets = serde_json::from_str(text)
        .map_err(|e| format!("the secret {secret_id} must be JSON with token_key and events_key: {e}"))?;
    secrets.validate()?;
    Ok(secrets)
}
