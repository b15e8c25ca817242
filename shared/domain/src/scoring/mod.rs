//! Lead scoring: the rules file (`scoring.toml`) and the ledger every contact carries, which
//! explains a score entry by entry and lets engagement fade with age.
//!
//! Nothing here knows the contact or the event types: the rules match an event by its type's name
//! and properties, and the ledger is plain points over time, so `model` can hold a ledger and
//! decide stage changes with it (`Contact::score_event`).

pub mod ledger;
pub mod rules;

pub use ledger::{Contribution, ScoreBreakdown, ScoreEntry, ScoreKind, ScoreLedger};
pub use rules::{EngagementRule, FitRule, ScoringRules, Thresholds};
