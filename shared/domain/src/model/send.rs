//! Send requests: what travels on the `sends` queue to the sender.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::consent::Channel;

/// Transactional mail (opt-in confirmation, sales notification) needs no marketing consent;
/// marketing mail needs granted and, where asked for, confirmed consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendClass {
    Transactional,
    Marketing,
}

/// Higher wins when messages compete for a contact's frequency cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Promo,
    Journey,
    Cart,
    Transactional,
}

/// What asked for the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SendOrigin {
    Form { form_id: String, submission_id: String },
    Journey { journey_id: String, step_id: String },
    Cart { cart_id: String, step: u32 },
    Bot { script_id: String, session_id: String },
}

/// Who a message goes to. Requests queued before there was a choice go to their contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipient {
    /// The contact's own address, under their consent and suppressions.
    #[default]
    Contact,
    /// The installation's sales inbox (`sending.sales_address`), about the contact: no consent
    /// or suppression of the contact's applies, and the message does not count as theirs.
    SalesInbox,
}

impl Recipient {
    pub fn is_contact(&self) -> bool {
        *self == Recipient::Contact
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendRequest {
    /// The sender's ledger key: one message per key, however often the request is delivered.
    pub idempotency_key: String,
    pub contact_id: String,
    pub template: String,
    pub channel: Channel,
    pub class: SendClass,
    pub priority: Priority,
    /// Values for the template beyond the contact's own (links, cart items, codes).
    #[serde(default)]
    pub context: Map<String, Value>,
    pub origin: SendOrigin,
    pub requested_at: Timestamp,
    #[serde(default, skip_serializing_if = "Recipient::is_contact")]
    pub recipient: Recipient,
}

impl SendRequest {
    /// The tag a sent email carries (SES tag `send`, the `Message-ID`'s local part): a digest of
    /// the idempotency key. Journeys match click feedback to the email they sent by it.
    pub fn send_tag(idempotency_key: &str) -> String {
        hex::encode(&Sha256::digest(idempotency_key.as_bytes())[..16])
    }
}
