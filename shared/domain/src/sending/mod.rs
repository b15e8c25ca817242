//! Sending rules and message building: who may get what and when, and the MIME message.

pub mod feedback;
pub mod mime;
pub mod origin;
pub mod policy;
pub mod redact;
pub mod reputation;
