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
use crate::scoring::ScoreLedger;

// Every list on a contact has a bound and every text a length limit (in bytes of UTF-8, cut on a
// character boundary), so the item stays far below DynamoDB's 400 KB whatever the input: a contact
// filled to every bound is under 72 KB (pinned by a test below; 64 KB before the score ledger,
// which adds up to 40 entries with their reasons), a real one a few KB.

/// Most touches kept per contact for multi-touch attribution, in the form attribution reads
/// (`Touch::for_attribution`); older ones fall outside any lookback.
pub const MAX_TOUCHES: usize = 20;
/// Most anonymous ids kept per contact (one per browser, device, cleared cookie). Older ones still
/// lead to the contact through their `ANON#` identity items.
pub const MAX_ANONYMOUS_IDS: usize = 20;
/// Submission ids remembered per contact, so a retried submission is applied once.
pub const MAX_RECENT_SUBMISSIONS: usize = 20;
/// Longest client-chosen id (anonymous id, submission id) kept, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 128;
/// Consent receipts kept on the contact, latest last. Every receipt is also its own item
/// (`repo::consent_receipts`), written with the contact: the proof outlives this window.
pub const MAX_RECEIPTS_ON_CONTACT: usize = 5;
/// Discount codes kept on the contact, latest last; the `DISCOUNT#` items stay the source of truth.
pub const MAX_CODES_ON_CONTACT: usize = 20;
/// Longest code, and longest note of what it was issued for, in bytes.
pub const MAX_CODE_BYTES: usize = 64;
pub const MAX_CODE_REASON_BYTES: usize = 200;
/// Tags per contact, and the longest tag, in bytes.
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_BYTES: usize = 64;
/// Custom attributes per contact, the longest name, and the longest value (as text or JSON), in
/// bytes: a form field's default `max_length` of 500 characters of Cyrillic fits.
pub const MAX_ATTRIBUTES: usize = 15;
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 64;
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1000;
/// Distinct forms counted per contact.
pub const MAX_FORMS_COUNTED: usize = 20;
/// Longest first or last name, in bytes (200 characters of Cyrillic).
pub const MAX_NAME_BYTES: usize = 400;

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a character boundary.
pub fn truncate_to_bytes(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Cuts `text` to at most `max_bytes` bytes on a character boundary.
pub fn bound_text(text: &mut String, max_bytes: usize) {
    if text.len() > max_bytes {
        let end = truncate_to_bytes(text, max_bytes).len();
        text.truncate(end);
    }
}

pub fn bound_option(text: &mut Option<String>, max_bytes: usize) {
    if let Some(text) = text {
        bound_text(text, max_bytes);
    }
}

/// Keeps the last `max` entries of a list kept oldest first.
fn keep_latest<T>(list: &mut Vec<T>, max: usize) {
    if list.len() > max {
        let excess = list.len() - max;
        list.drain(..excess);
    }
}

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
    /// The lead score, entry by entry with reasons (`scoring.toml`); absent until a rule applies.
    #[serde(default, skip_serializing_if = "ScoreLedger::is_empty")]
    pub score: ScoreLedger,
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
    /// Whether every receipt this contact ever held is stored as its own `CONSENT#` item. False
    /// for contacts stored when receipts lived only on the contact, until their next write.
    #[serde(default)]
    pub receipts_itemised: bool,
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
            score: ScoreLedger::default(),
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
            receipts_itemised: true,
        }
    }

    /// Records a touch: the first one ever stays the first touch, the latest becomes the last,
    /// both in full; the ring of recent touches keeps what attribution reads.
    pub fn record_touch(&mut self, mut touch: Touch) {
        touch.bound_fields();
        if self.first_touch.is_none() {
            self.first_touch = Some(touch.clone());
        }
        self.touches.push(touch.for_attribution());
        keep_latest(&mut self.touches, MAX_TOUCHES);
        self.last_touch = Some(touch);
    }

    /// Whether this contact has never been stored (it is being created by this write).
    pub fn is_unsaved(&self) -> bool {
        self.version == 0
    }

    /// Remembers an anonymous id (cookie) so earlier anonymous behaviour counts for this person.
    /// Returns whether it was new.
    pub fn add_anonymous_id(&mut self, anonymous_id: &str) -> bool {
        if anonymous_id.len() > MAX_CLIENT_ID_BYTES || self.anonymous_ids.iter().any(|known| known == anonymous_id) {
            return false;
        }
        self.anonymous_ids.push(anonymous_id.to_string());
        keep_latest(&mut self.anonymous_ids, MAX_ANONYMOUS_IDS);
        true
    }

    /// Adds a consent receipt and updates the channel's consent, once per receipt id. The contact
    /// keeps the latest `MAX_RECEIPTS_ON_CONTACT`; the repository stores each new one as an item.
    pub fn record_consent(&mut self, mut receipt: ConsentReceipt) {
        receipt.bound_fields();
        if self.consent_receipts.iter().any(|known| known.id == receipt.id) {
            return;
        }
        let consent = self.consents.entry(receipt.channel).or_insert_with(|| Consent::from_receipt(&receipt));
        consent.apply(&receipt);
        self.consent_receipts.push(receipt);
        keep_latest(&mut self.consent_receipts, MAX_RECEIPTS_ON_CONTACT);
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
        self.recent_submission_ids.push(truncate_to_bytes(submission_id, MAX_CLIENT_ID_BYTES).to_string());
        keep_latest(&mut self.recent_submission_ids, MAX_RECENT_SUBMISSIONS);
    }

    /// Holds every list to its bound and every text to its limit. The repository applies it to
    /// every contact it writes, so a path that pushes onto a list directly (discount codes, tags
    /// from a journey, attributes from a form) cannot grow the item either; a contact stored
    /// before the bounds existed shrinks on its next write.
    pub fn keep_within_bounds(&mut self) {
        bound_option(&mut self.first_name, MAX_NAME_BYTES);
        bound_option(&mut self.last_name, MAX_NAME_BYTES);
        for touch in self.first_touch.iter_mut().chain(self.last_touch.iter_mut()) {
            touch.bound_fields();
        }
        for touch in &mut self.touches {
            touch.bound_fields();
            *touch = touch.for_attribution();
        }
        keep_latest(&mut self.touches, MAX_TOUCHES);
        for receipt in &mut self.consent_receipts {
            receipt.bound_fields();
        }
        keep_latest(&mut self.consent_receipts, MAX_RECEIPTS_ON_CONTACT);
        for code in &mut self.discount_codes {
            bound_text(&mut code.code, MAX_CODE_BYTES);
            bound_text(&mut code.reason, MAX_CODE_REASON_BYTES);
        }
        keep_latest(&mut self.discount_codes, MAX_CODES_ON_CONTACT);
        self.anonymous_ids.retain(|id| id.len() <= MAX_CLIENT_ID_BYTES);
        keep_latest(&mut self.anonymous_ids, MAX_ANONYMOUS_IDS);
        for id in &mut self.recent_submission_ids {
            bound_text(id, MAX_CLIENT_ID_BYTES);
        }
        keep_latest(&mut self.recent_submission_ids, MAX_RECENT_SUBMISSIONS);
        // Tags, attributes and form ids come from campaign files and form fields, which are bounded
        // already; these limits are the net under a misconfigured file.
        self.tags.retain(|tag| tag.len() <= MAX_TAG_BYTES);
        while self.tags.len() > MAX_TAGS {
            self.tags.pop_last();
        }
        self.attributes.retain(|name, _| name.len() <= MAX_ATTRIBUTE_NAME_BYTES);
        for value in self.attributes.values_mut() {
            if let Value::String(text) = value {
                bound_text(text, MAX_ATTRIBUTE_VALUE_BYTES);
            }
        }
        self.attributes.retain(|_, value| value.is_string() || value.to_string().len() <= MAX_ATTRIBUTE_VALUE_BYTES);
        while self.attributes.len() > MAX_ATTRIBUTES {
            self.attributes.pop_last();
        }
        self.form_submissions.retain(|form_id, _| form_id.len() <= MAX_TAG_BYTES);
        while self.form_submissions.len() > MAX_FORMS_COUNTED {
            self.form_submissions.pop_last();
        }
        bound_option(&mut self.orders.currency, 8);
        keep_latest(&mut self.orders.recent_orders, MAX_RECENT_ORDERS);
        self.score.keep_within_bounds();
    }

    pub fn email_consent(&self) -> Option<&Consent> {
        self.consents.get(&Channel::Email)
    }
}

#[cfg(test)]
mod tests {
    use super::super::consent::MAX_RECEIPT_TEXT_BYTES;
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

    /// `n` bytes of two-byte letters after an ASCII `prefix`, cut to `n` bytes.
    fn text(prefix: &str, n: usize) -> String {
        truncate_to_bytes(&format!("{prefix}{}", "ж".repeat(n)), n).to_string()
    }

    #[test]
    fn a_contact_filled_past_every_bound_stays_far_below_the_item_limit() {
        let now = Timestamp::UNIX_EPOCH;
        let mut contact = Contact::new("c_full".into(), now, "ru".into(), "Europe/Moscow".into());
        contact.first_name = Some(text("f", 2000));
        contact.last_name = Some(text("l", 2000));
        for i in 0..100 {
            let long = text(&format!("{i}-"), 2000);
            let touch_fields = |_: &str| Some(long.clone());
            contact.record_touch(Touch::from_fields(now, touch_fields));
            contact.record_consent(ConsentReceipt {
                id: text(&format!("r{i}-"), 2000),
                channel: Channel::Email,
                granted: true,
                at: now,
                form_id: Some(long.clone()),
                ip: Some(long.clone()),
                user_agent: Some(long.clone()),
                text_version: long.clone(),
                double_opt_in: true,
                submission_id: Some(long.clone()),
            });
            contact.add_anonymous_id(&format!("{i:04}{}", "a".repeat(124)));
            contact
                .record_submission(&text(&format!("form{i}-"), MAX_TAG_BYTES), &format!("{i:04}{}", "s".repeat(124)));
            contact.discount_codes.push(IssuedCode {
                code: long.clone(),
                percent: 10,
                reason: long.clone(),
                expires_at: now,
                redeemed_at: Some(now),
            });
            contact.tags.insert(text(&format!("t{i}-"), MAX_TAG_BYTES));
            contact.attributes.insert(text(&format!("a{i}-"), MAX_ATTRIBUTE_NAME_BYTES), Value::String(long.clone()));
            contact.orders.recent_orders.push(now);
            let reason = "ж".repeat(crate::scoring::rules::MAX_REASON_CHARS);
            contact.score.set_fit(&[(format!("{i}{reason}"), 5)], now);
            let event_id = format!("shop:{i:04}{}", "e".repeat(124));
            // Distinct reasons: one reason counts once a day, and the bound is what is measured.
            contact.score.add_engagement(&event_id, now, &[(format!("{i}{reason}"), 1)], 14.0);
        }
        // Fit entries as many as the rules allow (a ledger's fit is one entry per rule).
        let fit: Vec<(String, i64)> = (0..100).map(|i| (format!("{i:03}{}", "ж".repeat(80)), 5)).collect();
        contact.score.set_fit(&fit, now);
        contact.keep_within_bounds();

        assert_eq!(contact.touches.len(), MAX_TOUCHES);
        assert_eq!(contact.consent_receipts.len(), MAX_RECEIPTS_ON_CONTACT);
        assert_eq!(contact.discount_codes.len(), MAX_CODES_ON_CONTACT);
        assert_eq!(contact.anonymous_ids.len(), MAX_ANONYMOUS_IDS);
        assert_eq!(contact.attributes.len(), MAX_ATTRIBUTES);
        assert_eq!(contact.tags.len(), MAX_TAGS);
        assert_eq!(contact.form_submissions.len(), MAX_FORMS_COUNTED);
        assert_eq!(
            contact.score.entries.len(),
            crate::scoring::rules::MAX_RULES + crate::scoring::ledger::MAX_ENGAGEMENT_ENTRIES
        );
        let size = serde_json::to_vec(&contact).unwrap().len();
        assert!(size < 72 * 1024, "a contact at every bound takes {size} bytes");
        assert_eq!(
            contact.consent_receipts.last().unwrap().id,
            text("r99-", 2000)[..MAX_RECEIPT_TEXT_BYTES].to_string()
        );
    }
}
