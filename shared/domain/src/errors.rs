//! Errors answered to clients: a code, a message, and every failing field.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, code: &str, message: &str) -> Self {
        FieldError { field: field.into(), code: code.into(), message: message.into() }
    }
}
