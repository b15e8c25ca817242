//! How an accepted form submission changes a contact: the decision, apart from reading the
//! request (lead-capture) and writing the contact (the repository).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::Value;

use super::attribution::Touch;
use super::consent::ConsentReceipt;
use super::contact::{Contact, LifecycleStage, SuppressionReason};
use super::email::EmailAddress;
use super::follow_ups::ConfirmationLimit;
use super::phone::PhoneNumber;

/// A form submission that passed validation and the spam checks, with what its form adds.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedSubmission {
    /// The client's id for it, or one generated: a submission is applied once per id.
    pub submission_id: String,
    pub form_id: String,
    pub at: Timestamp,
    pub email: EmailAddress,
    pub phone: Option<PhoneNumber>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The locale the page asked for, already resolved to a supported one; None when it asked
    /// for none (the contact keeps its own).
    pub locale: Option<String>,
    /// The time zone the page sent, already checked (or the default in its place); None when it
    /// sent none.
    pub time_zone: Option<String>,
    pub attributes: BTreeMap<String, Value>,
    /// The form's tags.
    pub tags: Vec<String>,
    /// The stage the form moves people to (never back).
    pub target_stage: LifecycleStage,
    pub touch: Touch,
    /// The visitor's browser id, linked only to a contact this submission creates.
    pub anonymous_id: Option<String>,
    /// The consent given, when the form asks for it and the box was ticked.
    pub consent: Option<ConsentReceipt>,
    /// Whether the form's consent waits for a confirmation by email.
    pub double_opt_in: bool,
}

impl Contact {
    /// A new contact for a submission's address. Its `lead_created` is owed until the events
    /// queue has taken it, whatever submission comes next.
    pub fn for_submission(id: String, submission: &AcceptedSubmission, locale: String, time_zone: String) -> Contact {
        let mut contact = Contact::new(id, submission.at, locale, time_zone);
        contact.follow_ups.lead_created_by = Some(submission.submission_id.clone());
        contact
    }

    /// Applies a submission once per submission id: what the person typed, the form's tags and
    /// stage, the visit it came from, consent, and a confirmation email within `confirmations`.
    pub fn apply_submission(&mut self, submission: &AcceptedSubmission, confirmations: ConfirmationLimit) {
        if self.has_applied_submission(&submission.submission_id) {
            return;
        }
        self.email = Some(submission.email.clone());
        if let Some(phone) = &submission.phone {
            self.phone = Some(phone.clone());
        }
        if let Some(first) = &submission.first_name {
            self.first_name = Some(first.clone());
        }
        if let Some(last) = &submission.last_name {
            self.last_name = Some(last.clone());
        }
        if let Some(time_zone) = &submission.time_zone {
            self.time_zone = time_zone.clone();
        }
        if let Some(locale) = &submission.locale {
            self.locale = locale.clone();
        }
        for (name, value) in &submission.attributes {
            self.attributes.insert(name.clone(), value.clone());
        }
        self.tags.extend(submission.tags.iter().cloned());
        self.stage = self.stage.advanced_to(submission.target_stage);
        if submission.touch.is_informative() || self.first_touch.is_none() {
            self.record_touch(submission.touch.clone());
        }
        // A form links the visitor's anonymous id only to the contact it creates: anyone can type
        // an existing person's address, and must not reach them through their own browser's id.
        // Returning people are linked by the shop's signed events (a login, a purchase).
        if let Some(anonymous_id) = &submission.anonymous_id
            && self.is_unsaved()
        {
            self.add_anonymous_id(anonymous_id);
        }
        if let Some(receipt) = &submission.consent {
            self.record_consent(receipt.clone());
            // One address gets few confirmation emails however often anyone posts it; nobody
            // who bounced or complained gets one.
            if submission.double_opt_in && self.awaits_confirmation() {
                self.follow_ups.grant_confirmation(&receipt.id, submission.at, confirmations);
            }
        }
        self.last_activity_at = submission.at;
        self.record_submission(&submission.form_id, &submission.submission_id);
    }

    /// Whether the email consent waits for a confirmation that may be sent.
    pub fn awaits_confirmation(&self) -> bool {
        let pending = self.email_consent().and_then(|c| c.pending_receipt()).is_some();
        let suppressed = [SuppressionReason::HardBounce, SuppressionReason::Complaint]
            .iter()
            .any(|reason| self.suppressions.contains_key(reason));
        pending && !suppressed
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;
    use crate::model::Channel;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn limit() -> ConfirmationLimit {
        ConfirmationLimit { per_day: 3, min_gap: SignedDuration::from_mins(10) }
    }

    fn submission(id: &str, now: Timestamp) -> AcceptedSubmission {
        let consent = ConsentReceipt {
            id: format!("cr_{id}"),
            channel: Channel::Email,
            granted: true,
            at: now,
            form_id: Some("newsletter".into()),
            ip: None,
            user_agent: None,
            text_version: "v1".into(),
            double_opt_in: true,
            submission_id: Some(id.into()),
        };
        AcceptedSubmission {
            submission_id: id.into(),
            form_id: "newsletter".into(),
            at: now,
            email: EmailAddress::parse("anna@example.com").unwrap(),
            phone: None,
            first_name: Some("Anna".into()),
            last_name: None,
            locale: None,
            time_zone: None,
            attributes: BTreeMap::new(),
            tags: vec!["newsletter".into()],
            target_stage: LifecycleStage::Lead,
            touch: Touch::from_fields(now, |name| (name == "utm_source").then(|| "vk".to_string())),
            anonymous_id: Some("anon-1".into()),
            consent: Some(consent),
            double_opt_in: true,
        }
    }

    fn new_contact(submission: &AcceptedSubmission) -> Contact {
        Contact::for_submission("c_1".into(), submission, "ru".into(), "Europe/Moscow".into())
    }

    #[test]
    fn a_new_contact_takes_everything_and_owes_its_lead_created_and_one_confirmation() {
        let now = at("2026-11-22T10:00:00Z");
        let first = submission("sub-1", now);
        let mut contact = new_contact(&first);
        contact.apply_submission(&first, limit());
        assert_eq!(contact.follow_ups.lead_created_by.as_deref(), Some("sub-1"));
        assert_eq!(contact.first_name.as_deref(), Some("Anna"));
        assert_eq!(contact.stage, LifecycleStage::Lead);
        assert!(contact.tags.contains("newsletter"));
        assert_eq!(contact.anonymous_ids, vec!["anon-1".to_string()]);
        assert_eq!(contact.first_touch.as_ref().and_then(|t| t.source.as_deref()), Some("vk"));
        assert!(contact.awaits_confirmation());
        assert_eq!(contact.follow_ups.unqueued_confirmations(), vec!["cr_sub-1".to_string()]);
        assert_eq!(contact.form_submissions.get("newsletter"), Some(&1));
        assert_eq!(contact.last_activity_at, now);
    }

    #[test]
    fn the_same_submission_again_changes_nothing() {
        let now = at("2026-11-22T10:00:00Z");
        let first = submission("sub-1", now);
        let mut contact = new_contact(&first);
        contact.apply_submission(&first, limit());
        let once = contact.clone();
        let mut retried = submission("sub-1", now + SignedDuration::from_mins(1));
        retried.first_name = Some("Другое".into());
        contact.apply_submission(&retried, limit());
        assert_eq!(contact, once);
    }

    #[test]
    fn a_returning_person_keeps_their_browser_ids_locale_and_stage() {
        let now = at("2026-11-22T10:00:00Z");
        let mut contact = new_contact(&submission("sub-1", now));
        contact.version = 3;
        contact.stage = LifecycleStage::Customer;
        let mut later = submission("sub-2", now + SignedDuration::from_hours(1));
        later.anonymous_id = Some("someone-elses-browser".into());
        contact.apply_submission(&later, limit());
        assert!(contact.anonymous_ids.is_empty(), "an existing person is not linked to the poster's browser");
        assert_eq!(contact.stage, LifecycleStage::Customer);
        assert_eq!((contact.locale.as_str(), contact.time_zone.as_str()), ("ru", "Europe/Moscow"));
        later.submission_id = "sub-3".into();
        later.locale = Some("en".into());
        later.time_zone = Some("Asia/Kolkata".into());
        contact.apply_submission(&later, limit());
        assert_eq!((contact.locale.as_str(), contact.time_zone.as_str()), ("en", "Asia/Kolkata"));
        assert_eq!(contact.form_submissions.get("newsletter"), Some(&2));
    }

    #[test]
    fn nobody_who_bounced_or_complained_is_sent_a_confirmation() {
        let now = at("2026-11-22T10:00:00Z");
        let signup = submission("sub-1", now);
        let mut contact = new_contact(&signup);
        contact.version = 1;
        contact.suppressions.insert(SuppressionReason::HardBounce, now);
        contact.apply_submission(&signup, limit());
        assert!(!contact.awaits_confirmation());
        assert!(contact.follow_ups.unqueued_confirmations().is_empty());
    }

    #[test]
    fn a_plain_visit_does_not_replace_the_last_marketing_touch() {
        let now = at("2026-11-22T10:00:00Z");
        let mut contact = new_contact(&submission("sub-1", now));
        contact.apply_submission(&submission("sub-1", now), limit());
        let mut plain = submission("sub-2", now + SignedDuration::from_hours(1));
        plain.touch = Touch::from_fields(plain.at, |_| None);
        contact.apply_submission(&plain, limit());
        assert_eq!(contact.last_touch.as_ref().and_then(|t| t.source.as_deref()), Some("vk"));
    }
}
