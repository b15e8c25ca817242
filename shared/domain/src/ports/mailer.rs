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

#[async_trait]
impl<T: Mailer + ?Sized> Mailer for std::sync::Arc<T> {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        (**self).send(email).await
    }
}

/// A copy of a sent message the mail service keeps, as an export lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MailCopy {
    /// The copy's name where it is kept (the outbox's file name).
    pub name: String,
    pub to: String,
    pub subject: String,
    pub date: String,
}

/// What finds a person's mail among the copies: every text that marks a message as about them
/// (their address, phone, contact id), compared without case after decoding the message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersonMarkers {
    pub texts: Vec<String>,
}

impl PersonMarkers {
    /// Markers from the texts given, empty and very short ones dropped (they would match any
    /// message).
    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let texts = texts.into_iter().map(|t| t.trim().to_lowercase()).filter(|t| t.chars().count() >= 6).collect();
        PersonMarkers { texts }
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Whether a decoded message text names the person: a marker standing on its own, not part
    /// of a longer address, number or id (`ann@example.com` is not found in `joann@example.com`,
    /// nor `+7999000112` in `+79990001122`); a full stop or hyphen ending a sentence still ends it.
    pub fn found_in(&self, text: &str) -> bool {
        let text = text.to_lowercase();
        self.texts.iter().any(|marker| {
            text.match_indices(marker.as_str()).any(|(at, found)| {
                let before = text[..at].chars().next_back();
                let mut after = text[at + found.len()..].chars();
                let starts = before.is_none_or(|c| !is_address_char(c));
                let ends = match after.next() {
                    None => true,
                    Some('.' | '-') => after.next().is_none_or(|c| !c.is_alphanumeric()),
                    Some(c) => !is_address_char(c),
                };
                starts && ends
            })
        })
    }

    /// Whether an address (a To or Cc of a message) is one of the person's, exactly.
    pub fn is_address(&self, address: &str) -> bool {
        let address = address.trim().to_lowercase();
        self.texts.contains(&address)
    }
}

/// A character that can continue an address, a phone number or a contact id.
fn is_address_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-' | '@')
}

/// The copies of sent mail a mail service keeps, for a person's export and erasure. The local
/// outbox keeps every message as a file; SES keeps none (`NoMailCopies`), so there the same
/// handler finds and erases nothing.
#[async_trait]
pub trait MailCopies: Send + Sync {
    /// The copies about the person, newest first, at most `limit`, and whether more exist.
    async fn copies_about(&self, person: &PersonMarkers, limit: usize) -> Result<(Vec<MailCopy>, bool), String>;

    /// Deletes every copy about the person; returns how many went.
    async fn erase_copies_about(&self, person: &PersonMarkers) -> Result<usize, String>;
}

/// A mail service that keeps no copy of what it sent (SES).
pub struct NoMailCopies;

#[async_trait]
impl MailCopies for NoMailCopies {
    async fn copies_about(&self, _: &PersonMarkers, _: usize) -> Result<(Vec<MailCopy>, bool), String> {
        Ok((Vec::new(), false))
    }

    async fn erase_copies_about(&self, _: &PersonMarkers) -> Result<usize, String> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::PersonMarkers;

    #[test]
    fn a_marker_is_found_only_standing_on_its_own() {
        let person = PersonMarkers::new(["Ann@Example.com", "+79990001122", "c_ann_1"]);
        for text in ["To: <ann@example.com>", "write to ann@example.com.", "ANN@EXAMPLE.COM", "tel:+79990001122;"] {
            assert!(person.found_in(text), "{text}");
        }
        for text in [
            "joann@example.com",
            "ann@example.com.au",
            "x.ann@example.com",
            "ann@example.community",
            "+799900011223",
            "c_ann_12",
        ] {
            assert!(!person.found_in(text), "{text}");
        }
        assert!(person.is_address(" ANN@example.com") && !person.is_address("joann@example.com"));
    }
}
