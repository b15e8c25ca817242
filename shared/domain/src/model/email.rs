//! Email addresses: validation, and the identity key used to find a person again.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

/// An email address as typed (trimmed, kept for sending) and its identity key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailAddress {
    as_typed: String,
    identity: String,
}

/// The addresses that look fine to a person but that mail servers reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("is empty")]
    Empty,
    #[error("is longer than 254 characters")]
    TooLong,
    #[error("must contain exactly one @ with text on both sides")]
    Shape,
    #[error("must not contain spaces or control characters")]
    ForbiddenCharacter,
    #[error("the part before @ is longer than 64 characters")]
    LocalPartTooLong,
    #[error("the domain after @ is not a valid host name")]
    Domain,
}

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.chars().count() > 254 {
            return Err(EmailError::TooLong);
        }
        if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError::ForbiddenCharacter);
        }
        let (local, domain) = match trimmed.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !local.contains('@') => (local, domain),
            _ => return Err(EmailError::Shape),
        };
        if local.chars().count() > 64 {
            return Err(EmailError::LocalPartTooLong);
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(EmailError::Shape);
        }
        if !valid_domain(&domain.nfc().collect::<String>()) {
            return Err(EmailError::Domain);
        }
        Ok(EmailAddress { as_typed: trimmed.to_string(), identity: identity_key(trimmed) })
    }

    /// The address as the person typed it, surrounding spaces removed: what mail is sent to.
    pub fn as_typed(&self) -> &str {
        &self.as_typed
    }

    /// Trimmed, NFC-normalised and lower-cased: two spellings of one address share it.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// A one-way digest of the identity key: used in storage keys, so keys never hold an address.
    pub fn identity_digest(&self) -> String {
        hex::encode(Sha256::digest(self.identity.as_bytes()))
    }
}

/// Keeps addresses out of debug output, and so out of logs.
impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress(<redacted>)")
    }
}

fn identity_key(trimmed: &str) -> String {
    trimmed.nfc().collect::<String>().to_lowercase()
}

fn valid_domain(domain: &str) -> bool {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.len() > 253 || !domain.contains('.') {
        return false;
    }
    domain.split('.').all(|label| {
        let count = label.chars().count();
        (1..=63).contains(&count)
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_address_share_the_identity() {
        let a = EmailAddress::parse("  Anna.Petrova@Example.COM ").unwrap();
        let b = EmailAddress::parse("anna.petrova@example.com").unwrap();
        assert_eq!(a.identity(), b.identity());
        assert_eq!(a.as_typed(), "Anna.Petrova@Example.COM");
        assert_eq!(a.identity_digest(), b.identity_digest());
    }

    #[test]
    fn unicode_normalisation_forms_share_the_identity() {
        // "é" precomposed vs "e" + combining acute accent.
        let composed = EmailAddress::parse("jos\u{e9}@exampl\u{e9}.fr").unwrap();
        let decomposed = EmailAddress::parse("jose\u{301}@example\u{301}.fr").unwrap();
        assert_eq!(composed.identity(), decomposed.identity());
        let cyrillic = EmailAddress::parse("Иван@Пример.РФ").unwrap();
        assert_eq!(cyrillic.identity(), "иван@пример.рф");
    }

    #[test]
    fn the_whole_address_is_kept_for_identity() {
        // Providers differ on dots and +tags, so Voronka does not fold them.
        let plain = EmailAddress::parse("anna@example.com").unwrap();
        let tagged = EmailAddress::parse("anna+shop@example.com").unwrap();
        assert_ne!(plain.identity(), tagged.identity());
    }

    #[test]
    fn rejects_broken_addresses_with_a_reason() {
        assert_eq!(EmailAddress::parse("   "), Err(EmailError::Empty));
        assert_eq!(EmailAddress::parse("anna"), Err(EmailError::Shape));
        assert_eq!(EmailAddress::parse("anna@"), Err(EmailError::Shape));
        assert_eq!(EmailAddress::parse("an na@example.com"), Err(EmailError::ForbiddenCharacter));
        assert_eq!(EmailAddress::parse("anna@localhost"), Err(EmailError::Domain));
        assert_eq!(EmailAddress::parse("anna@-bad.com"), Err(EmailError::Domain));
        assert_eq!(EmailAddress::parse("a..b@example.com"), Err(EmailError::Shape));
        assert_eq!(EmailAddress::parse("anna\r\nBcc: x@example.com"), Err(EmailError::ForbiddenCharacter));
    }

    #[test]
    fn debug_output_never_shows_the_address() {
        let email = EmailAddress::parse("secret.person@example.com").unwrap();
        assert!(!format!("{email:?}").contains("secret"));
    }
}
