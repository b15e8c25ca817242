//! Builds the RFC 5322 message: multipart/alternative text and HTML, encoded headers, and the
//! one-click unsubscribe headers of RFC 8058 for marketing mail. `lettre` encodes every header,
//! so no value (a name, a subject) can start a header of its own.

use lettre::Message;
use lettre::message::header::{ContentTransferEncoding, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart, header};

use crate::campaigns::templates::RenderedEmail;
use crate::model::SendClass;

/// Says which contact a message is for (mail to the sales inbox has none): the contact's id,
/// never an address. With `CLASS_HEADER` and `Date`, what the invariants check a sent message
/// against reads from the message itself.
pub const CONTACT_HEADER: &str = "X-Voronka-Contact";
/// `marketing` or `transactional`, as the sender classed the message.
pub const CLASS_HEADER: &str = "X-Voronka-Class";

#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub from_name: &'a str,
    pub from_address: &'a str,
    pub reply_to: Option<&'a str>,
    pub to_name: Option<&'a str>,
    pub to_address: &'a str,
    /// The HTTPS one-click unsubscribe URL (marketing mail only).
    pub unsubscribe_url: Option<&'a str>,
    /// Our id for the message, e.g. the hash of the send's idempotency key, for `Message-ID`.
    pub message_id: &'a str,
    pub message_id_domain: &'a str,
    /// The sender's clock when it decided to send: the `Date` header, the instant its consent,
    /// quiet-hour and cap checks were made at.
    pub date: jiff::Timestamp,
    pub class: SendClass,
    /// The contact the message is to, when it is to a contact.
    pub contact_id: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum MimeError {
    #[error("the {0} address is not valid for email: {1}")]
    Address(&'static str, String),
    #[error("the message cannot be built: {0}")]
    Build(String),
}

macro_rules! raw_header {
    ($name:ident, $header:literal) => {
        #[derive(Debug, Clone)]
        struct $name(String);

        impl Header for $name {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($header)
            }

            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok($name(s.to_string()))
            }

            fn display(&self) -> HeaderValue {
                HeaderValue::new(Self::name(), self.0.clone())
            }
        }
    };
}

raw_header!(ListUnsubscribe, "List-Unsubscribe");
raw_header!(ListUnsubscribePost, "List-Unsubscribe-Post");
raw_header!(VoronkaContact, "X-Voronka-Contact");
raw_header!(VoronkaClass, "X-Voronka-Class");

/// Strips anything that could end a header line from a value placed into one.
fn header_safe(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}

pub fn build_message(envelope: &Envelope<'_>, email: &RenderedEmail) -> Result<Vec<u8>, MimeError> {
    let from = Mailbox::new(
        Some(header_safe(envelope.from_name)),
        envelope.from_address.parse().map_err(|e| MimeError::Address("from", format!("{e}")))?,
    );
    let to = Mailbox::new(
        envelope.to_name.map(header_safe).filter(|n| !n.is_empty()),
        envelope.to_address.parse().map_err(|e| MimeError::Address("to", format!("{e}")))?,
    );
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(crate::campaigns::templates::one_line(&email.subject))
        .message_id(Some(format!("<{}@{}>", header_safe(envelope.message_id), header_safe(envelope.message_id_domain))))
        .date(std::time::SystemTime::from(envelope.date))
        .header(VoronkaClass(
            match envelope.class {
                SendClass::Marketing => "marketing",
                SendClass::Transactional => "transactional",
            }
            .to_string(),
        ));
    if let Some(contact_id) = envelope.contact_id {
        builder = builder.header(VoronkaContact(header_safe(contact_id)));
    }
    if let Some(reply_to) = envelope.reply_to {
        builder = builder.reply_to(reply_to.parse().map_err(|e| MimeError::Address("reply-to", format!("{e}")))?);
    }
    if let Some(url) = envelope.unsubscribe_url {
        builder = builder
            .header(ListUnsubscribe(format!("<{}>", header_safe(url))))
            .header(ListUnsubscribePost("List-Unsubscribe=One-Click".to_string()));
    }
    let body = MultiPart::alternative()
        .singlepart(
            SinglePart::builder()
                .header(header::ContentType::TEXT_PLAIN)
                .header(ContentTransferEncoding::QuotedPrintable)
                .body(email.text.clone()),
        )
        .singlepart(
            SinglePart::builder()
                .header(header::ContentType::TEXT_HTML)
                .header(ContentTransferEncoding::QuotedPrintable)
                .body(email.html.clone()),
        );
    let message = builder.multipart(body).map_err(|e| MimeError::Build(e.to_string()))?;
    Ok(message.formatted())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(subject: &str) -> RenderedEmail {
        RenderedEmail {
            locale: "en".into(),
            subject: subject.into(),
            text: "Hello".into(),
            html: "<p>Hello</p>".into(),
        }
    }

    fn envelope<'a>(to_name: Option<&'a str>, unsubscribe: Option<&'a str>) -> Envelope<'a> {
        Envelope {
            from_name: "Demo shop",
            from_address: "news@shop.example",
            reply_to: None,
            to_name,
            to_address: "anna@example.com",
            unsubscribe_url: unsubscribe,
            message_id: "abc123",
            message_id_domain: "shop.example",
            date: "2026-11-22T10:00:00Z".parse().unwrap(),
            class: if unsubscribe.is_some() { SendClass::Marketing } else { SendClass::Transactional },
            contact_id: Some("c-1"),
        }
    }

    fn headers(raw: &[u8]) -> Vec<String> {
        let text = String::from_utf8_lossy(raw);
        let head = text.split("\r\n\r\n").next().unwrap().to_string();
        // Unfold continuation lines, then one header per line.
        head.replace("\r\n ", " ").replace("\r\n\t", " ").split("\r\n").map(str::to_string).collect()
    }

    #[test]
    fn marketing_mail_carries_one_click_unsubscribe() {
        let raw = build_message(
            &envelope(Some("Anna"), Some("https://api.example/v1/unsubscribe?token=t.s")),
            &rendered("Hi"),
        )
        .unwrap();
        let headers = headers(&raw);
        assert!(
            headers.contains(&"List-Unsubscribe: <https://api.example/v1/unsubscribe?token=t.s>".to_string()),
            "{headers:?}"
        );
        assert!(headers.contains(&"List-Unsubscribe-Post: List-Unsubscribe=One-Click".to_string()));
        assert!(headers.iter().any(|h| h.starts_with("Message-ID: <abc123@shop.example>")));
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("multipart/alternative"));
        assert!(text.contains("text/plain") && text.contains("text/html"));
    }

    #[test]
    fn the_message_says_when_it_was_sent_its_class_and_its_contact() {
        let raw = build_message(&envelope(None, Some("https://api.example/u")), &rendered("Hi")).unwrap();
        let headers = headers(&raw);
        // The sender's clock, not the machine's: a simulated run's messages carry simulated dates.
        assert!(headers.contains(&"Date: Sun, 22 Nov 2026 10:00:00 +0000".to_string()), "{headers:?}");
        assert!(headers.contains(&format!("{CLASS_HEADER}: marketing")), "{headers:?}");
        assert!(headers.contains(&format!("{CONTACT_HEADER}: c-1")), "{headers:?}");
        let transactional =
            build_message(&Envelope { contact_id: None, ..envelope(None, None) }, &rendered("Hi")).unwrap();
        let headers = self::headers(&transactional);
        assert!(headers.contains(&format!("{CLASS_HEADER}: transactional")), "{headers:?}");
        assert!(!headers.iter().any(|h| h.starts_with(CONTACT_HEADER)), "no contact: no header");
    }

    #[test]
    fn line_breaks_in_a_subject_or_name_add_no_header() {
        let raw = build_message(
            &envelope(Some("Anna\r\nBcc: victim@example.com"), None),
            &rendered("Sale\r\nBcc: victim@example.com"),
        )
        .unwrap();
        let headers = headers(&raw);
        assert!(!headers.iter().any(|h| h.to_ascii_lowercase().starts_with("bcc:")), "{headers:?}");
        assert!(
            !headers.iter().any(|h| h.starts_with("List-Unsubscribe")),
            "transactional mail has no unsubscribe headers"
        );
    }
}
