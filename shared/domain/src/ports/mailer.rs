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

/// How a send failed, sorted by what it says about the message: taken or not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// The service answered "slow down": it did not take the message. Retry with backoff.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The request never reached the service (connection refused, name not resolved) or the
    /// service answered that it took nothing (sending paused): safe to try again.
    #[error("not sent: {0}")]
    NotSent(String),
    /// The request may have reached the service and no answer says how it went (a timeout, a 5xx,
    /// a connection lost mid-way): the message may be on its way. Marketing is never re-sent.
    #[error("outcome unknown: {0}")]
    Ambiguous(String),
    /// Refused for good (the address or the message): record it, never retry.
    #[error("rejected: {0}")]
    Rejected(String),
}

impl MailError {
    /// Whether trying again cannot send the message twice.
    pub fn is_safe_to_retry(&self) -> bool {
        matches!(self, MailError::Throttled(_) | MailError::NotSent(_))
    }
}

#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends one message; returns the service's message id.
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError>;
}
