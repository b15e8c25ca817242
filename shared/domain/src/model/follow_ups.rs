//! What form submissions still owe their queues, remembered on the contact.
//!
//! A submission stores the contact first and queues its follow-ups after; when the queue refuses
//! them the client retries, maybe with a new submission id, and finds the contact already there.
//! So the contact carries what is owed (the `lead_created` of the submission that created it, the
//! confirmation emails granted) until the queue has taken it, and every submission queues what is
//! still owed, under the same ids, which the consumers deduplicate.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// A confirmation email granted to one sign-up (one consent receipt).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmationGranted {
    pub receipt_id: String,
    pub at: Timestamp,
    /// Whether the sends queue took it; until then every submission queues it again.
    #[serde(default)]
    pub queued: bool,
}

/// How often one address may be sent a confirmation email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfirmationLimit {
    pub per_day: u32,
    /// None again within this long of the last one (a double click, a retried post).
    pub min_gap: SignedDuration,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubmissionFollowUps {
    /// The submission that created the contact, while its `lead_created` is not known to be queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_created_by: Option<String>,
    /// Confirmation emails granted within the last day, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confirmations: Vec<ConfirmationGranted>,
}

impl SubmissionFollowUps {
    pub fn is_empty(&self) -> bool {
        self.lead_created_by.is_none() && self.confirmations.is_empty()
    }

    /// Whether a sign-up (its receipt) gets a confirmation email: the same sign-up again always
    /// (a retry); a new one unless the address had one within `min_gap`, or `per_day` within a day.
    /// A granted one is remembered until queued.
    pub fn grant_confirmation(&mut self, receipt_id: &str, now: Timestamp, limit: ConfirmationLimit) -> bool {
        let day = SignedDuration::from_hours(24);
        // A day-old grant the queue never took is stale: this sign-up gets its own.
        self.confirmations.retain(|c| now.duration_since(c.at) < day);
        if self.confirmations.iter().any(|c| c.receipt_id == receipt_id) {
            return true;
        }
        let within_day = self.confirmations.len();
        let too_soon = self.confirmations.last().is_some_and(|c| now.duration_since(c.at) < limit.min_gap);
        if too_soon || within_day >= limit.per_day as usize {
            return false;
        }
        self.confirmations.push(ConfirmationGranted { receipt_id: receipt_id.to_string(), at: now, queued: false });
        true
    }

    /// The receipts whose confirmation email is granted and not yet queued.
    pub fn unqueued_confirmations(&self) -> Vec<String> {
        self.confirmations.iter().filter(|c| !c.queued).map(|c| c.receipt_id.clone()).collect()
    }

    /// Records what the queues took. Returns whether anything changed.
    pub fn mark_queued(&mut self, lead_created_by: Option<&str>, confirmations: &[String]) -> bool {
        let mut changed = false;
        if lead_created_by.is_some() && self.lead_created_by.as_deref() == lead_created_by {
            self.lead_created_by = None;
            changed = true;
        }
        for granted in self.confirmations.iter_mut().filter(|c| !c.queued && confirmations.contains(&c.receipt_id)) {
            granted.queued = true;
            changed = true;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: ConfirmationLimit = ConfirmationLimit { per_day: 3, min_gap: SignedDuration::from_mins(10) };

    fn at(minutes: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_mins(minutes)
    }

    #[test]
    fn confirmations_are_granted_once_per_ten_minutes_three_a_day_and_again_for_a_retry() {
        let mut owed = SubmissionFollowUps::default();
        assert!(owed.grant_confirmation("r1", at(0), LIMIT));
        assert!(owed.grant_confirmation("r1", at(1), LIMIT), "a retry of the same sign-up");
        assert!(!owed.grant_confirmation("r2", at(5), LIMIT), "too soon");
        assert!(owed.grant_confirmation("r3", at(11), LIMIT));
        assert!(owed.grant_confirmation("r4", at(22), LIMIT));
        assert!(!owed.grant_confirmation("r5", at(60), LIMIT), "three a day");
        owed.mark_queued(None, &owed.unqueued_confirmations());
        assert!(owed.grant_confirmation("r6", at(24 * 60 + 1), LIMIT), "a new day");
        assert_eq!(owed.confirmations.len(), 3, "what is a day old is forgotten");
    }

    #[test]
    fn what_the_queue_took_is_owed_no_more() {
        let mut owed = SubmissionFollowUps { lead_created_by: Some("s1".into()), ..Default::default() };
        owed.grant_confirmation("r1", at(0), LIMIT);
        assert_eq!(owed.unqueued_confirmations(), ["r1"]);
        assert!(!owed.mark_queued(Some("s0"), &[]), "another submission's lead is not this one");
        assert!(owed.mark_queued(Some("s1"), &["r1".to_string()]));
        assert!(owed.lead_created_by.is_none());
        assert!(owed.unqueued_confirmations().is_empty());
    }
}
