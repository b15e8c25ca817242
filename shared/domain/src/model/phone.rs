//! Phone numbers in E.164.

use serde::{Deserialize, Serialize};

/// A phone number in E.164: `+` and 8 to 15 digits, the first not zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("must be in international format with the country code, e.g. +79161234567")]
    NotInternational,
    #[error("must have 8 to 15 digits after the +")]
    Length,
    #[error("may contain only digits, spaces, brackets, dots and dashes")]
    ForbiddenCharacter,
}

impl PhoneNumber {
    /// Accepts common separators (`+7 (916) 123-45-67`) and the `00` international prefix.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        let (international, rest) = if let Some(rest) = trimmed.strip_prefix('+') {
            (true, rest)
        } else if let Some(rest) = trimmed.strip_prefix("00") {
            (true, rest)
        } else {
            (false, trimmed)
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' | '\u{a0}' => {}
                _ => return Err(PhoneError::ForbiddenCharacter),
            }
        }
        if !international {
            return Err(PhoneError::NotInternational);
        }
        if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(PhoneError::Length);
        }
        Ok(PhoneNumber(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_separators_and_prefixes() {
        assert_eq!(PhoneNumber::parse("+7 (916) 123-45-67").unwrap().as_str(), "+79161234567");
        assert_eq!(PhoneNumber::parse("0044 20 7946 0958").unwrap().as_str(), "+442079460958");
    }

    #[test]
    fn rejects_local_and_malformed_numbers() {
        assert_eq!(PhoneNumber::parse("8 916 123 45 67"), Err(PhoneError::NotInternational));
        assert_eq!(PhoneNumber::parse("+7 916"), Err(PhoneError::Length));
        assert_eq!(PhoneNumber::parse("+7 916 abc"), Err(PhoneError::ForbiddenCharacter));
    }
}
