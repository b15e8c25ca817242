//! The embedded mail service: every message becomes a real `.eml` file (RFC 5322, all headers) in
//! the outbox folder, which `voronka serve` lists and renders.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use voronka_domain::ports::{Clock, MailError, Mailer, OutgoingEmail};

pub struct OutboxMailer {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
}

impl OutboxMailer {
    pub fn new(dir: PathBuf, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(OutboxMailer { dir, clock })
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        let now = self.clock.now();
        let send_tag = email.tags.iter().find(|(k, _)| k == "send").map(|(_, v)| v.clone()).unwrap_or_default();
        let message_id = format!("{}-{send_tag}", now.as_millisecond());
        let path = self.dir.join(format!("{message_id}.eml"));
        let temporary = self.dir.join(format!(".{message_id}.eml.tmp"));
        let raw = email.raw.clone();
        tokio::task::spawn_blocking(move || {
            // Written aside, then renamed: a reader never sees half a message.
            std::fs::write(&temporary, &raw)?;
            std::fs::rename(&temporary, &path)
        })
        .await
        // Written aside and renamed: a failure leaves no message behind, so it was not sent.
        .map_err(|e| MailError::NotSent(e.to_string()))?
        .map_err(|e| MailError::NotSent(format!("cannot write to the outbox: {e}")))?;
        Ok(message_id)
    }
}
