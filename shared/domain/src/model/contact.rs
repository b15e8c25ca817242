//! The contact: one person, whatever channel they came through.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::attribution::Touch;
use super::consent::{Channel, Consent, ConsentReceipt};
use super::email::EmailAddress;
use super::follow_ups::SubmissionFollowUps;
use super::phone::PhoneNumber;

/// Most touches kept per contact for multi-touch attribution; older ones fall outside any lookback.
pub const MAX_TOUCHES: usize = 50;
/// Most anonymous ids kept per contact (one per browser, device, cleared cookie).
pub const MAX_ANONYMOUS_IDS: usize = 50;
/// Submission ids remembered per contact, so a retried submission is applied once.
pub const MAX_RECENT_SUBMISSIONS: usize = 20;

/// Where a person stands in the funnel. Moves forward only, except to `Lost`, and from `Lost`
/// back into the funnel when the person shows up again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStage {
    Subscriber,
    Lead,
    Mql,
    Sql,
    Customer,
    RepeatCustomer,
    Lost,
}

impl LifecycleStage {
    pub const ALL: [LifecycleStage; 7] = [
        LifecycleStage::Subscriber,
        LifecycleStage::Lead,
        LifecycleStage::Mql,
        LifecycleStage::Sql,
        LifecycleStage::Customer,
        LifecycleStage::RepeatCustomer,
        LifecycleStage::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleStage::Subscriber => "subscriber",
            LifecycleStage::Lead => "lead",
            LifecycleStage::Mql => "mql",
            LifecycleStage::Sql => "sql",
            LifecycleStage::Customer => "customer",
            LifecycleStage::RepeatCustomer => "repeat_customer",
            LifecycleStage::Lost => "lost",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        LifecycleStage::ALL.into_iter().find(|stage| stage.as_str() == name)
    }

    /// The stage after a move towards `target`: never backwards within the funnel.
    pub fn advanced_to(self, target: LifecycleStage) -> LifecycleStage {
        match (self, target) {
            (_, LifecycleStage::Lost) => LifecycleStage::Lost,
            (LifecycleStage::Lost, target) => target,
            (current, target) => current.max(target),
        }
    }
}

/// Why no more email goes to a person: an unsubscribe stops marketing; a hard bounce or a
/// complaint stops everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    Unsubscribed,
    HardBounce,
    Complaint,
}

/// A personal discount code issued to the person (single use, with an expiry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuedCode {
    pub code: String,
    pub percent: u32,
    /// What it was issued for, e.g. `cart:<cart id>:step3`.
    pub reason: String,
    pub expires_at: Timestamp,
    pub redeemed_at: Option<Timestamp>,
}

/// What the person has bought, kept up to date from `purchase` events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderSummary {
    pub orders: u64,
    /// In minor units of `currency` (kopecks, cents).
    pub revenue_minor: i64,
    pub currency: Option<String>,
    pub first_order_at: Option<Timestamp>,
    pub last_order_at: Option<Timestamp>,
    /// The latest order times, oldest first, at most `MAX_RECENT_ORDERS`: for "3 orders in 90 days".
    #[serde(default)]
    pub recent_orders: Vec<Timestamp>,
}

/// Order times kept per contact for frequency segments.
pub const MAX_RECENT_ORDERS: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub id: String,
    pub email: Option<EmailAddress>,
    pub phone: Option<PhoneNumber>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub locale: String,
    /// IANA name, e.g. `Europe/Moscow`.
    pub time_zone: String,
    pub stage: LifecycleStage,
    pub fit_score: i64,
    pub engagement_score: i64,
    #[serde(default)]
    pub consents: BTreeMap<Channel, Consent>,
    #[serde(default)]
    pub consent_receipts: Vec<ConsentReceipt>,
    /// Personal discount codes issued to this person.
    #[serde(default)]
    pub discount_codes: Vec<IssuedCode>,
    /// Suppressions in force, with when they began.
    #[serde(default)]
    pub suppressions: BTreeMap<SuppressionReason, Timestamp>,
    pub first_touch: Option<Touch>,
    pub last_touch: Option<Touch>,
    /// Recent touches, oldest first, at most `MAX_TOUCHES`.
    #[serde(default)]
    pub touches: Vec<Touch>,
    #[serde(default)]
    pub anonymous_ids: Vec<String>,
    #[serde(default)]
    pub tags: BTreeSet<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, Value>,
    #[serde(default)]
    pub orders: OrderSummary,
    /// Forms this person submitted, by id, with how often.
    #[serde(default)]
    pub form_submissions: BTreeMap<String, u64>,
    /// The latest submission ids applied to this contact, newest last.
    #[serde(default)]
    pub recent_submission_ids: Vec<String>,
    /// Follow-ups of form submissions not yet known to be on their queues.
    #[serde(default, skip_serializing_if = "SubmissionFollowUps::is_empty")]
    pub follow_ups: SubmissionFollowUps,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_activity_at: Timestamp,
    /// Distinct days with activity (visits), and the last of them, for "returning visitors".
    #[serde(default)]
    pub active_days: u32,
    #[serde(default)]
    pub last_active_day: Option<String>,
    /// Optimistic-concurrency version: every write checks and bumps it.
    pub version: u64,
}

impl Contact {
    pub fn new(id: String, now: Timestamp, locale: String, time_zone: String) -> Self {
        Contact {
            id,
            email: None,
            phone: None,
            first_name: None,
            last_name: None,
            locale,
            time_zone,
            stage: LifecycleStage::Subscriber,
            fit_score: 0,
            engagement_score: 0,
            consents: BTreeMap::new(),
            consent_receipts: Vec::new(),
            suppressions: BTreeMap::new(),
            discount_codes: Vec::new(),
            first_touch: None,
            last_touch: None,
            touches: Vec::new(),
            anonymous_ids: Vec::new(),
            tags: BTreeSet::new(),
            attributes: BTreeMap::new(),
            orders: OrderSummary::default(),
            form_submissions: BTreeMap::new(),
            recent_submission_ids: Vec::new(),
            follow_ups: SubmissionFollowUps::default(),
            created_at: now,
            updated_at: now,
            last_activity_at: now,
            active_days: 0,
            last_active_day: None,
            version: 0,
        }
    }

    /// Records a touch: the first one ever stays the first touch, the latest becomes the last.
    pub fn record_touch(&mut self, touch: Touch) {
        if self.first_touch.is_none() {
            self.first_touch = Some(touch.clone());
        }
        self.last_touch = Some(touch.clone());
        self.touches.push(touch);
        if self.touches.len() > MAX_TOUCHES {
            let excess = self.touches.len() - MAX_TOUCHES;
            self.touches.drain(..excess);
        }
    }

    /// Remembers an anonymous id (cookie) so earlier anonymous behaviour counts for this person.
    /// Returns whether it was new.
    pub fn add_anonymous_id(&mut self, anonymous_id: &str) -> bool {
        if self.anonymous_ids.iter().any(|known| known == anonymous_id) {
            return false;
        }
        self.anonymous_ids.push(anonymous_id.to_string());
        if self.anonymous_ids.len() > MAX_ANONYMOUS_IDS {
            self.anonymous_ids.remove(0);
        }
        true
    }

    /// Adds a consent receipt and updates the channel's consent, once per receipt id.
    pub fn record_consent(&mut self, receipt: ConsentReceipt) {
        if self.consent_receipts.iter().any(|known| known.id == receipt.id) {
            return;
        }
        let consent = self.consents.entry(receipt.channel).or_insert_with(|| Consent::from_receipt(&receipt));
        consent.apply(&receipt);
        self.consent_receipts.push(receipt);
    }

    /// Whether a submission with this id was already applied.
    pub fn has_applied_submission(&self, submission_id: &str) -> bool {
        self.recent_submission_ids.iter().any(|id| id == submission_id)
    }

    /// Counts a form submission once per submission id.
    pub fn record_submission(&mut self, form_id: &str, submission_id: &str) {
        if self.has_applied_submission(submission_id) {
            return;
        }
        *self.form_submissions.entry(form_id.to_string()).or_default() += 1;
        self.recent_submission_ids.push(submission_id.to_string());
        if self.recent_submission_ids.len() > MAX_RECENT_SUBMISSIONS {
            self.recent_submission_ids.remove(0);
        }
    }

    pub fn email_consent(&self) -> Option<&Consent> {
        self.consents.get(&Channel::Email)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_only_move_forward_except_to_lost() {
        use LifecycleStage::*;
        assert_eq!(Mql.advanced_to(Lead), Mql);
        assert_eq!(Lead.advanced_to(Sql), Sql);
        assert_eq!(Customer.advanced_to(Lost), Lost);
        assert_eq!(Lost.advanced_to(Lead), Lead);
        for stage in LifecycleStage::ALL {
            assert_eq!(LifecycleStage::parse(stage.as_str()), Some(stage));
        }
    }
}
