//! The mail port: hands a finished RFC 5322 message to the mail service (SES v2 on AWS, the
//! outbox folder locally) and says how it went.

use async_trait::async_trait;

/// A message ready to go: the envelope and the raw bytes (headers and body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    pub from: String,
    pub to: String,
    pub raw: Vec<u8>,
    /// Name/value pairs the mail service reports back with delivery, open and click events.
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// Over the sending rate: retry with backoff.
    #[error("throttled: {0}")]
    Throttled(String),
    /// A passing fault (5xx, network): retry with backoff.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// Refused for good (the address or the message): record it, never retry.
    #[error("rejected: {0}")]
    Rejected(String),
}

impl MailError {
    pub fn is_retryable(&self) -> bool {
        !matches!(self, MailError::Rejected(_))
    }
}

#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends one message; returns the service's message id.
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError>;
}
