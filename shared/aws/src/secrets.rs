//! The installation's secrets from AWS Secrets Manager, read once per container (see `Deferred`).
//!
//! Two secrets, so the shop's back-end team can be given the events key without the key that
//! signs confirmation and unsubscribe links. Each holds JSON `{"key": "..."}` (the SAM template
//! generates them), the bare key as a plain string, or, to rotate, a ring
//! `{"keys": [{"id": "k2", "key": "..."}, {"id": "k1", "key": "..."}]}` whose first key signs and
//! whose every key verifies. A single key has the id `k1`.

use voronka_domain::signing::{KeyRing, RingKey, Secrets};

async fn read_ring(client: &aws_sdk_secretsmanager::Client, secret_id: &str) -> Result<KeyRing, String> {
    let output = client.get_secret_value().secret_id(secret_id).send().await.map_err(|e| {
        format!("cannot read the secret {secret_id}: {}", aws_sdk_secretsmanager::error::DisplayErrorContext(e))
    })?;
    let text = output.secret_string().ok_or_else(|| format!("the secret {secret_id} has no string value"))?;
    ring_from_secret_text(secret_id, text)
}

/// A secret's text as a key ring (see the module's comment for the shapes).
pub fn ring_from_secret_text(secret_id: &str, text: &str) -> Result<KeyRing, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(mut map)) => match (map.remove("key"), map.remove("keys")) {
            (Some(serde_json::Value::String(key)), None) => Ok(KeyRing::single(key)),
            (None, Some(keys)) => {
                // Not `{e}`: serde's message could quote a key.
                let keys: Vec<RingKey> = serde_json::from_value(keys).map_err(|_| {
                    format!("the secret {secret_id}: `keys` must be a list of {{\"id\": \"...\", \"key\": \"...\"}}")
                })?;
                KeyRing::new(keys, "keys").map_err(|e| format!("the secret {secret_id}: {e}"))
            }
            _ => Err(format!("the secret {secret_id} is JSON without a string `key` or a list `keys`")),
        },
        _ => Ok(KeyRing::single(text.trim())),
    }
}

/// Reads the link-signing key and the events key, both requests at once.
pub async fn load_secrets(
    config: &aws_config::SdkConfig,
    token_secret_id: &str,
    events_secret_id: &str,
) -> Result<Secrets, String> {
    let client = aws_sdk_secretsmanager::Client::new(config);
    let (token_keys, events_keys) =
        tokio::try_join!(read_ring(&client, token_secret_id), read_ring(&client, events_secret_id))?;
    let secrets = Secrets { token_keys, events_keys };
    secrets.validate()?;
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_secret_holds_one_key_or_a_ring() {
        for text in [format!(r#"{{"key": "{KEY}"}}"#), format!("{KEY}\n")] {
            let ring = ring_from_secret_text("token", &text).unwrap();
            assert_eq!((ring.signing().id.as_str(), ring.signing().key.as_str()), ("k1", KEY));
        }
        let text = format!(r#"{{"keys": [{{"id": "k2", "key": "{KEY}2"}}, {{"id": "k1", "key": "{KEY}"}}]}}"#);
        let ring = ring_from_secret_text("token", &text).unwrap();
        assert_eq!(ring.keys().iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), ["k2", "k1"]);
        for (bad, expected) in [
            (r#"{"keys": [{"id": "k1"}]}"#.to_string(), "`keys` must be a list"),
            (format!(r#"{{"keys": [{{"id": "k 1", "key": "{KEY}"}}]}}"#), "`keys[0].id`"),
            (format!(r#"{{"key": "{KEY}", "keys": []}}"#), "without a string `key` or a list `keys`"),
        ] {
            let error = ring_from_secret_text("token", &bad).unwrap_err();
            assert!(error.contains(expected) && !error.contains(KEY), "{error}");
        }
    }
}
