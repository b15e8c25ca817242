//! Texts from the mail service (SES rejection messages) may name the recipient; they are logged
//! and kept in the ledger only with every address replaced.

/// Characters that end an address in running text.
fn delimits(c: char) -> bool {
    c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | '[' | ']' | ',' | ';' | ':' | '"' | '\'')
}

/// `text` with every email address in it replaced by `[address]`.
pub fn addresses(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if token.contains('@') {
            // Keep sentence punctuation after the address.
            let trailing = token.len() - token.trim_end_matches(['.', '!', '?']).len();
            out.push_str("[address]");
            out.push_str(&token[token.len() - trailing..]);
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in text.chars() {
        if delimits(c) {
            flush(&mut token, &mut out);
            out.push(c);
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// A text that has been through [`addresses`]: the only form in which a text from outside (an SES
/// answer, a template error quoting a value) may be stored or logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted(String);

impl Redacted {
    pub fn new(text: &str) -> Redacted {
        Redacted(addresses(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_in_an_ses_text_is_replaced() {
        let text = "Email address is not verified. The following identities failed the check in region \
                    EU-WEST-1: Anna.Petrova+shop@Example.com, <boris@пример.рф>; \"c@d.io\".";
        assert_eq!(
            addresses(text),
            "Email address is not verified. The following identities failed the check in region \
             EU-WEST-1: [address], <[address]>; \"[address]\"."
        );
        assert_eq!(
            addresses("Throttling: Maximum sending rate exceeded."),
            "Throttling: Maximum sending rate exceeded."
        );
    }
}
