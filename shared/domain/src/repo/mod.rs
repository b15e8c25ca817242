//! Repositories: every access pattern written once, over the storage port.

pub mod aggregates;
pub mod bot_sessions;
pub mod carts;
pub mod consent_receipts;
pub mod contacts;
pub mod deferred;
pub mod discount_codes;
pub mod due;
pub mod event_log;
pub mod event_receipts;
pub mod frequency;
pub mod journey_state;
pub mod kpi_snapshots;
pub mod personal_data;
pub mod processed;
pub mod rate_limit;
pub mod reputation;
pub mod scheduler_cursor;
pub mod send_ledger;
pub mod spend;
pub mod trigger_counts;

/// The subject an anonymous visitor's items are filed under (their due items, trigger counts and
/// carts) until they identify: `anon:<anonymous id>`.
pub fn anonymous_subject(anonymous_id: &str) -> String {
    format!("anon:{anonymous_id}")
}

/// The anonymous id behind a subject `anonymous_subject` made.
pub fn anonymous_id_of(subject: &str) -> Option<&str> {
    subject.strip_prefix("anon:")
}

pub use bot_sessions::{BotSessions, SessionWriteError, StoredBotSession};
pub use consent_receipts::ConsentReceipts;
pub use contacts::{ContactLookup, ContactRepository, RepoError, UpsertOutcome};
pub use event_receipts::{EventClaim, EventReceipts};
pub use frequency::{FrequencyCaps, Reservation};
pub use rate_limit::{RateDecision, RateLimiter};
pub use send_ledger::{Claim, SendLedger};
