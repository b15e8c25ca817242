//! Consent per channel, and the receipts that prove it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::contact::{bound_option, bound_text};

/// Longest user agent kept on a receipt, in bytes.
pub const MAX_USER_AGENT_BYTES: usize = 256;
/// Longest id, form id or wording version kept on a receipt, in bytes.
pub const MAX_RECEIPT_TEXT_BYTES: usize = 160;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    Granted,
    Withdrawn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoubleOptIn {
    /// The form did not ask for a confirmation.
    NotRequired,
    /// A confirmation email went out; marketing waits until it is followed.
    Pending,
    Confirmed,
}

/// The consent a channel stands at now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consent {
    pub status: ConsentStatus,
    pub double_opt_in: DoubleOptIn,
    pub updated_at: Timestamp,
    pub confirmed_at: Option<Timestamp>,
    /// The receipt that last changed it.
    pub receipt_id: String,
    /// While a confirmation is pending: the receipt that asked for it, which the confirmation
    /// link must name. Later submissions while pending keep it, so every link sent for this
    /// sign-up confirms it; confirming or withdrawing clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_receipt_id: Option<String>,
}

impl Consent {
    pub(crate) fn from_receipt(receipt: &ConsentReceipt) -> Self {
        Consent {
            status: ConsentStatus::Withdrawn,
            double_opt_in: DoubleOptIn::NotRequired,
            updated_at: receipt.at,
            confirmed_at: None,
            receipt_id: receipt.id.clone(),
            pending_receipt_id: None,
        }
    }

    pub(crate) fn apply(&mut self, receipt: &ConsentReceipt) {
        let was_pending = self.pending_receipt().is_some();
        let previous_receipt = std::mem::replace(&mut self.receipt_id, receipt.id.clone());
        self.updated_at = receipt.at;
        if !receipt.granted {
            self.status = ConsentStatus::Withdrawn;
            self.pending_receipt_id = None;
            return;
        }
        let already_confirmed = self.status == ConsentStatus::Granted && self.double_opt_in == DoubleOptIn::Confirmed;
        self.status = ConsentStatus::Granted;
        self.double_opt_in = match (receipt.double_opt_in, already_confirmed) {
            // A person who confirmed once is not asked again by a later form.
            (_, true) => DoubleOptIn::Confirmed,
            (true, false) => DoubleOptIn::Pending,
            (false, false) if self.double_opt_in == DoubleOptIn::Pending => DoubleOptIn::Pending,
            (false, false) => DoubleOptIn::NotRequired,
        };
        self.pending_receipt_id = match self.double_opt_in {
            DoubleOptIn::Pending if was_pending => self.pending_receipt_id.take().or(Some(previous_receipt)),
            DoubleOptIn::Pending => Some(receipt.id.clone()),
            _ => None,
        };
    }

    /// The receipt a confirmation link must name, while a confirmation is pending.
    pub fn pending_receipt(&self) -> Option<&str> {
        (self.status == ConsentStatus::Granted && self.double_opt_in == DoubleOptIn::Pending)
            .then(|| self.pending_receipt_id.as_deref().unwrap_or(&self.receipt_id))
    }

    /// Marketing may be sent: granted, and confirmed where confirmation was asked for.
    pub fn allows_marketing(&self) -> bool {
        self.status == ConsentStatus::Granted && self.double_opt_in != DoubleOptIn::Pending
    }

    pub fn confirm(&mut self, at: Timestamp) -> bool {
        if self.double_opt_in == DoubleOptIn::Confirmed {
            return false;
        }
        self.double_opt_in = DoubleOptIn::Confirmed;
        self.pending_receipt_id = None;
        self.confirmed_at = Some(at);
        self.updated_at = at;
        true
    }
}

/// Evidence of one consent decision: who, when, where, on which wording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentReceipt {
    pub id: String,
    pub channel: Channel,
    pub granted: bool,
    pub at: Timestamp,
    pub form_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub text_version: String,
    pub double_opt_in: bool,
    /// The submission that carried it, so a retried submission records it once.
    pub submission_id: Option<String>,
}

impl ConsentReceipt {
    /// Cuts every free-text field to its limit.
    pub fn bound_fields(&mut self) {
        bound_text(&mut self.id, MAX_RECEIPT_TEXT_BYTES);
        bound_text(&mut self.text_version, MAX_RECEIPT_TEXT_BYTES);
        bound_option(&mut self.form_id, MAX_RECEIPT_TEXT_BYTES);
        bound_option(&mut self.submission_id, MAX_RECEIPT_TEXT_BYTES);
        // The longest IPv6 address in text is 45 characters.
        bound_option(&mut self.ip, 64);
        bound_option(&mut self.user_agent, MAX_USER_AGENT_BYTES);
    }

    /// Consent given outside a form (an import, a shop's own checkbox, a test): no IP or browser.
    pub fn granted(id: &str, at: Timestamp, text_version: &str, double_opt_in: bool) -> ConsentReceipt {
        ConsentReceipt {
            id: id.to_string(),
            channel: Channel::Email,
            granted: true,
            at,
            form_id: None,
            ip: None,
            user_agent: None,
            text_version: text_version.to_string(),
            double_opt_in,
            submission_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(id: &str, granted: bool, double_opt_in: bool) -> ConsentReceipt {
        ConsentReceipt {
            id: id.into(),
            channel: Channel::Email,
            granted,
            at: Timestamp::UNIX_EPOCH,
            form_id: Some("newsletter".into()),
            ip: None,
            user_agent: None,
            text_version: "v1".into(),
            double_opt_in,
            submission_id: None,
        }
    }

    #[test]
    fn double_opt_in_waits_for_confirmation_and_is_not_asked_twice() {
        let first = receipt("r1", true, true);
        let mut consent = Consent::from_receipt(&first);
        consent.apply(&first);
        assert!(!consent.allows_marketing());
        assert!(consent.confirm(Timestamp::UNIX_EPOCH));
        assert!(consent.allows_marketing());
        consent.apply(&receipt("r2", true, true));
        assert_eq!(consent.double_opt_in, DoubleOptIn::Confirmed);
        consent.apply(&receipt("r3", false, false));
        assert!(!consent.allows_marketing());
    }

    #[test]
    fn a_single_opt_in_form_does_not_bypass_a_pending_confirmation() {
        let mut consent = Consent::from_receipt(&receipt("r1", true, true));
        consent.apply(&receipt("r1", true, true));
        consent.apply(&receipt("r2", true, false));
        assert_eq!(consent.double_opt_in, DoubleOptIn::Pending);
        assert_eq!(consent.pending_receipt(), Some("r1"), "the link sent for r1 still confirms");
    }
}
