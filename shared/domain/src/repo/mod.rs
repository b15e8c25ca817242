//! Repositories: every access pattern written once, over the storage port.

pub mod contacts;
pub mod event_receipts;
pub mod rate_limit;

pub use contacts::{ContactRepository, RepoError, UpsertOutcome};
pub use event_receipts::{EventClaim, EventReceipts};
pub use rate_limit::{RateDecision, RateLimiter};
