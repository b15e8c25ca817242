//! Key performance indicators computed from the daily aggregates and ad spend, never from raw
//! events.

pub mod uplift;
