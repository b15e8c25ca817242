//! The one-machine stack: the same handlers as on Lambda, over the embedded adapters.

pub mod dashboard;
pub mod demo;
pub mod export;
pub mod inspect;
pub mod invariants;
pub mod kpi_cli;
pub mod metering;
pub mod outbox;
pub mod serve;
pub mod simulated_ses;
pub mod stack;
pub mod workers;
