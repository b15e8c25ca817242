//! Journeys and segments: the marketer's automation rules, and the pure decisions behind them.

pub mod attribution;
pub mod definition;
pub mod engine;
pub mod segments;

pub use definition::{Journey, ReEntry, Step, StepKind, Trigger, WaitFor};
pub use segments::{SegmentDefinition, Segments};
