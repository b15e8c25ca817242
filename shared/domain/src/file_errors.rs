//! A problem in one of the marketer's files (settings, forms, templates, journeys), located by
//! file, line and field, and the helpers that find the line. Every file parser uses them, so the
//! modules that parse (campaigns, journeys) need not use each other for them.

use std::fmt;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignError {
    pub file: String,
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for CampaignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: `{}`: {}", self.file, line, self.field, self.message),
            None => write!(f, "{}: `{}`: {}", self.file, self.field, self.message),
        }
    }
}

/// Turns a TOML parse or type error into a campaign error with its line and the field it names.
pub(crate) fn toml_error(file: &str, text: &str, error: &toml::de::Error) -> CampaignError {
    let line = error.span().map(|span| line_at(text, span.start));
    let message = error.message().to_string();
    // For a missing or unknown key the message names it ("missing field `id`"); otherwise the
    // error's span points at the offending value, whose line starts with its key.
    let names_key = message.starts_with("missing field") || message.starts_with("unknown field");
    let field = if names_key { message.split('`').nth(1).map(str::to_string) } else { None }
        .or_else(|| error.span().map(|span| key_at(text, span.start)))
        .unwrap_or_default();
    CampaignError { file: file.into(), line, field, message }
}

/// 1-based line of a byte offset.
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn key_at(text: &str, offset: usize) -> String {
    let start = text[..offset.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[start..];
    line.split(['=', '\n']).next().unwrap_or("").trim().to_string()
}

/// 1-based line where `key = ...` first appears at the start of a line.
pub(crate) fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            line.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}
