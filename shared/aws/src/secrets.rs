//! The installation's secrets from AWS Secrets Manager, read once at cold start.
//!
//! Two secrets, so the shop's back-end team can be given the events key without the key that
//! signs confirmation and unsubscribe links. Each holds JSON `{"key": "..."}` (the SAM template
//! generates them) or the bare key as a plain string.

use voronka_domain::signing::Secrets;

async fn read_key(client: &aws_sdk_secretsmanager::Client, secret_id: &str) -> Result<String, String> {
    let output = client.get_secret_value().secret_id(secret_id).send().await.map_err(|e| {
        format!("cannot read the secret {secret_id}: {}", aws_sdk_secretsmanager::error::DisplayErrorContext(e))
    })?;
    let text = output.secret_string().ok_or_else(|| format!("the secret {secret_id} has no string value"))?;
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => map
            .get("key")
            .and_then(|k| k.as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("the secret {secret_id} is JSON without a string `key`")),
        _ => Ok(text.trim().to_string()),
    }
}

/// Reads the link-signing key and the events key.
pub async fn load_secrets(
    config: &aws_config::SdkConfig,
    token_secret_id: &str,
    events_secret_id: &str,
) -> Result<Secrets, String> {
    let client = aws_sdk_secretsmanager::Client::new(config);
    let secrets = Secrets {
        token_key: read_key(&client, token_secret_id).await?,
        events_key: read_key(&client, events_secret_id).await?,
    };
    secrets.validate()?;
    Ok(secrets)
}
