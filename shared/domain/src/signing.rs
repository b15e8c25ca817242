//! Signed tokens (confirmation and unsubscribe links, render timestamps) and request signatures.
//!
//! A token is `base64url(payload).base64url(hmac_sha256(key, payload))`; the payload names its
//! purpose, so a token made for one purpose never works for another.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The secrets of one installation, from configuration (Secrets Manager on AWS, a file locally).
#[derive(Clone, Deserialize, Serialize)]
pub struct Secrets {
    /// Signs links in email and render timestamps. Never leaves Voronka.
    pub token_key: String,
    /// Shared with the shop back end, which signs server-side events with it.
    pub events_key: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

impl Secrets {
    /// Both keys must be long enough to resist guessing.
    pub fn validate(&self) -> Result<(), String> {
        for (name, key) in [("token_key", &self.token_key), ("events_key", &self.events_key)] {
            if key.len() < 32 {
                return Err(format!("secret `{name}` must be at least 32 characters"));
            }
        }
        Ok(())
    }

    pub fn token_signer(&self) -> TokenSigner {
        TokenSigner { key: self.token_key.as_bytes().to_vec() }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    /// purpose
    p: String,
    /// subject
    s: String,
    /// issued at, epoch seconds
    i: i64,
    /// expires at, epoch seconds
    x: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("the token was made for another purpose")]
    WrongPurpose,
    #[error("the token has expired")]
    Expired,
}

/// A verified token's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub subject: String,
    pub issued_at: Timestamp,
}

#[derive(Clone)]
pub struct TokenSigner {
    key: Vec<u8>,
}

impl TokenSigner {
    pub fn new(key: &[u8]) -> Self {
        TokenSigner { key: key.to_vec() }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.key).expect("HMAC accepts keys of any length")
    }

    pub fn sign(&self, purpose: &str, subject: &str, issued_at: Timestamp, expires_at: Timestamp) -> String {
        let payload = Payload {
            p: purpose.to_string(),
            s: subject.to_string(),
            i: issued_at.as_second(),
            x: expires_at.as_second(),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).expect("payload serialises"));
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    pub fn verify(&self, purpose: &str, token: &str, now: Timestamp) -> Result<VerifiedToken, TokenError> {
        let (payload_b64, signature_b64) = token.trim().split_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(payload_b64.as_bytes());
        mac.verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| TokenError::Malformed)?;
        let payload: Payload = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if payload.p != purpose {
            return Err(TokenError::WrongPurpose);
        }
        if now.as_second() >= payload.x {
            return Err(TokenError::Expired);
        }
        let issued_at = Timestamp::from_second(payload.i).map_err(|_| TokenError::Malformed)?;
        Ok(VerifiedToken { subject: payload.s, issued_at })
    }
}

/// The purpose of unsubscribe-link tokens (made by the sender, checked by lead-capture).
pub const UNSUBSCRIBE_TOKEN_PURPOSE: &str = "unsubscribe";

/// The header the shop back end signs server-side event batches with: `sha256=<hex hmac of the body>`.
pub const EVENTS_SIGNATURE_HEADER: &str = "x-voronka-signature";

/// Signs a request body for `EVENTS_SIGNATURE_HEADER` (what a shop back end does).
pub fn sign_body(key: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A keyed digest (HMAC-SHA256, 128 bits, hex) of a value such as an IP address: stable enough to
/// count by, useless for identifying anyone without the key.
pub fn keyed_digest(key: &str, value: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(value.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// Checks a body signature in constant time.
pub fn verify_body(key: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_signature) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(signature) = hex::decode(hex_signature) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// The admin routes' bearer key, held only as a digest: the running process never keeps the key
/// itself, and a presented key is compared through HMAC's constant-time check (`verify_slice`), so
/// the answer's timing tells nothing about how much of a guess was right.
#[derive(Clone)]
pub struct AdminKeyDigest([u8; 32]);

/// The HMAC key the digest is taken under: a fixed label, since the secret is the message.
const ADMIN_KEY_LABEL: &[u8] = b"voronka admin key v1";

/// Shortest admin key accepted: 128 bits of hex.
pub const MIN_ADMIN_KEY_CHARS: usize = 32;

impl AdminKeyDigest {
    pub fn of(key: &str) -> AdminKeyDigest {
        AdminKeyDigest(admin_mac(key).finalize().into_bytes().into())
    }

    pub fn matches(&self, presented: &str) -> bool {
        admin_mac(presented).verify_slice(&self.0).is_ok()
    }
}

fn admin_mac(key: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(ADMIN_KEY_LABEL).expect("HMAC takes any key length");
    mac.update(key.as_bytes());
    mac
}

impl std::fmt::Debug for AdminKeyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminKeyDigest(<redacted>)")
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_admin_key_digest_accepts_only_the_key() {
        let digest = AdminKeyDigest::of("0123456789abcdef0123456789abcdef");
        assert!(digest.matches("0123456789abcdef0123456789abcdef"));
        assert!(!digest.matches("0123456789abcdef0123456789abcdee"));
        assert!(!digest.matches(""));
        assert_eq!(format!("{digest:?}"), "AdminKeyDigest(<redacted>)");
    }
    use super::*;
    use jiff::SignedDuration;

    fn signer() -> TokenSigner {
        TokenSigner::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn a_token_verifies_for_its_purpose_until_it_expires() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let token = signer().sign("confirm", "c_1", now, now + SignedDuration::from_hours(1));
        assert_eq!(signer().verify("confirm", &token, now).unwrap().subject, "c_1");
        assert_eq!(signer().verify("unsubscribe", &token, now), Err(TokenError::WrongPurpose));
        assert_eq!(signer().verify("confirm", &token, now + SignedDuration::from_hours(2)), Err(TokenError::Expired));
    }

    #[test]
    fn a_tampered_token_is_rejected() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let token = signer().sign("confirm", "c_1", now, now + SignedDuration::from_hours(1));
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"p":"confirm","s":"c_2","i":1800000000,"x":1900000000}"#);
        let signature = token.split_once('.').unwrap().1;
        let forged = format!("{forged_payload}.{signature}");
        assert_eq!(signer().verify("confirm", &forged, now), Err(TokenError::BadSignature));
        let other_key = TokenSigner::new(b"another key another key another key");
        assert_eq!(other_key.verify("confirm", &token, now), Err(TokenError::BadSignature));
        assert_eq!(signer().verify("confirm", "garbage", now), Err(TokenError::Malformed));
    }

    #[test]
    fn body_signatures_verify_only_for_the_same_body_and_key() {
        let key = "shared-secret-shared-secret-shared-secret";
        let header = sign_body(key, b"{\"events\":[]}");
        assert!(verify_body(key, b"{\"events\":[]}", &header));
        assert!(!verify_body(key, b"{\"events\":[1]}", &header));
        assert!(!verify_body("another-key", b"{\"events\":[]}", &header));
        assert!(!verify_body(key, b"{\"events\":[]}", "sha256=zz"));
    }
}
