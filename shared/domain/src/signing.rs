//! Signed tokens (confirmation and unsubscribe links, render timestamps) and request signatures.
//!
//! A token is `base64url(payload).base64url(hmac_sha256(key, payload))`; the payload names its
//! purpose, so a token made for one purpose never works for another, and the id of the key that
//! signed it, so keys rotate without breaking links already in mailboxes.
//!
//! Keys live in rings (`KeyRing`): the first key signs, every key verifies. Rotating is putting a
//! new key first, waiting until nothing signed with the old one is still needed, then dropping it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The id a key given in the old single-key shape (`"token_key": "..."`) gets: tokens made before
/// key ids existed were all made with it.
pub const LEGACY_KEY_ID: &str = "k1";
/// Most keys one ring holds: verifying tries each key for tokens that name none.
pub const MAX_KEYS_PER_RING: usize = 8;
/// Shortest key accepted, in characters.
pub const MIN_KEY_CHARS: usize = 32;
const MAX_KEY_ID_CHARS: usize = 16;

/// Key ids: 1 to 16 of A-Z a-z 0-9 _ - (they travel in headers and in tokens).
pub fn is_valid_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_CHARS).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One key of a ring, named by its id.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RingKey {
    pub id: String,
    pub key: String,
}

impl std::fmt::Debug for RingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RingKey({}, <redacted>)", self.id)
    }
}

impl RingKey {
    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(self.key.as_bytes()).expect("HMAC accepts keys of any length")
    }
}

/// Keys for one purpose: the first signs, every one verifies. Never empty.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.keys).finish()
    }
}

impl KeyRing {
    /// A ring of one key with the id `k1`, as a key given without an id gets.
    pub fn single(key: impl Into<String>) -> KeyRing {
        KeyRing { keys: vec![RingKey { id: LEGACY_KEY_ID.into(), key: key.into() }] }
    }

    /// A ring from its keys, signing key first. `field` names the list in errors
    /// (`token_keys[1].id ...`). Key lengths are checked by `Secrets::validate`.
    pub fn new(keys: Vec<RingKey>, field: &str) -> Result<KeyRing, String> {
        if keys.is_empty() {
            return Err(format!("`{field}` must hold at least one key"));
        }
        if keys.len() > MAX_KEYS_PER_RING {
            return Err(format!("`{field}` holds {} keys; at most {MAX_KEYS_PER_RING} are allowed", keys.len()));
        }
        for (index, key) in keys.iter().enumerate() {
            if !is_valid_key_id(&key.id) {
                return Err(format!("`{field}[{index}].id` must be 1 to {MAX_KEY_ID_CHARS} of A-Z a-z 0-9 _ -"));
            }
            if keys[..index].iter().any(|earlier| earlier.id == key.id) {
                return Err(format!("`{field}[{index}].id` repeats the key id `{}`; ids must be unique", key.id));
            }
        }
        Ok(KeyRing { keys })
    }

    /// The key new tokens and signatures are made with.
    pub fn signing(&self) -> &RingKey {
        &self.keys[0]
    }

    pub fn get(&self, id: &str) -> Option<&RingKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn keys(&self) -> &[RingKey] {
        &self.keys
    }

    /// Given in the old shape: one key without an id.
    fn is_single_legacy(&self) -> bool {
        self.keys.len() == 1 && self.keys[0].id == LEGACY_KEY_ID
    }

    /// The keys to try for something that names `kid` (or names none: then every key).
    fn candidates(&self, kid: Option<&str>) -> Option<Vec<&RingKey>> {
        match kid {
            Some(id) => self.get(id).map(|k| vec![k]),
            None => Some(self.keys.iter().collect()),
        }
    }

    fn check_lengths(&self, single: &str, ring: &str) -> Result<(), String> {
        for (index, key) in self.keys.iter().enumerate() {
            if key.key.chars().count() < MIN_KEY_CHARS {
                return Err(if self.is_single_legacy() {
                    format!("secret `{single}` must be at least {MIN_KEY_CHARS} characters")
                } else {
                    format!("secret `{ring}[{index}].key` (id {}) must be at least {MIN_KEY_CHARS} characters", key.id)
                });
            }
        }
        Ok(())
    }
}

/// The secrets of one installation, from configuration (Secrets Manager on AWS, a file locally).
///
/// Read in either shape: `{"token_key": "...", "events_key": "..."}` (one key each, id `k1`), or
/// rings `{"token_keys": [{"id": "k2", "key": "..."}, {"id": "k1", "key": "..."}], "events_keys":
/// [...]}` whose first key signs.
#[derive(Clone, Deserialize, Serialize)]
#[serde(try_from = "SecretsFile", into = "SecretsFile")]
pub struct Secrets {
    /// Signs links in email and render timestamps. Never leaves Voronka.
    pub token_keys: KeyRing,
    /// Shared with the shop back end, which signs server-side events with it.
    pub events_keys: KeyRing,
}

/// The JSON shape of `Secrets`, old and new.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_keys: Option<Vec<RingKey>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    events_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    events_keys: Option<Vec<RingKey>>,
}

fn ring_from(
    single: Option<String>,
    many: Option<Vec<RingKey>>,
    single_name: &str,
    ring_name: &str,
) -> Result<KeyRing, String> {
    match (single, many) {
        (Some(_), Some(_)) => Err(format!("give either `{single_name}` or `{ring_name}`, not both")),
        (Some(key), None) => Ok(KeyRing::single(key)),
        (None, Some(keys)) => KeyRing::new(keys, ring_name),
        (None, None) => Err(format!("missing `{single_name}` (one key) or `{ring_name}` (a list of keys with ids)")),
    }
}

impl TryFrom<SecretsFile> for Secrets {
    type Error = String;

    fn try_from(file: SecretsFile) -> Result<Secrets, String> {
        Ok(Secrets {
            token_keys: ring_from(file.token_key, file.token_keys, "token_key", "token_keys")?,
            events_keys: ring_from(file.events_key, file.events_keys, "events_key", "events_keys")?,
        })
    }
}

impl From<Secrets> for SecretsFile {
    fn from(secrets: Secrets) -> SecretsFile {
        let split = |ring: KeyRing| {
            if ring.is_single_legacy() {
                (ring.keys.into_iter().next().map(|k| k.key), None)
            } else {
                (None, Some(ring.keys))
            }
        };
        let (token_key, token_keys) = split(secrets.token_keys);
        let (events_key, events_keys) = split(secrets.events_keys);
        SecretsFile { token_key, token_keys, events_key, events_keys }
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

impl Secrets {
    /// One key each, with the id `k1` (the old shape).
    pub fn new(token_key: impl Into<String>, events_key: impl Into<String>) -> Secrets {
        Secrets { token_keys: KeyRing::single(token_key), events_keys: KeyRing::single(events_key) }
    }

    /// Every key must be long enough to resist guessing.
    pub fn validate(&self) -> Result<(), String> {
        self.token_keys.check_lengths("token_key", "token_keys")?;
        self.events_keys.check_lengths("events_key", "events_keys")
    }

    pub fn token_signer(&self) -> TokenSigner {
        TokenSigner { ring: self.token_keys.clone() }
    }

    /// The current link-signing key, also the key of Voronka's keyed digests (client addresses,
    /// session tags, discount codes). Rotating it starts those afresh, which only resets rate-limit
    /// windows; the one digest kept for good, the erased-address marker, is looked up under every
    /// key of the ring (`repo::personal_data::address_erased_at`).
    pub fn token_key(&self) -> &str {
        &self.token_keys.signing().key
    }

    /// The current events key: what a shop back end signs with (tests and the demo act as one).
    pub fn events_key(&self) -> &str {
        &self.events_keys.signing().key
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
    /// the id of the key that signed it; absent in tokens made before key ids (made with `k1`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    /// the list an unsubscribe token unsubscribes from
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l: Option<String>,
    /// the form a confirmation token confirms a sign-up of
    #[serde(default, skip_serializing_if = "Option::is_none")]
    f: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("the token names a key that is no longer accepted")]
    UnknownKey,
    #[error("the token was made for another purpose")]
    WrongPurpose,
    #[error("the token has expired")]
    Expired,
}

/// What a token is good for besides its purpose and subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenScope {
    /// The list an unsubscribe token unsubscribes from (`UNSUBSCRIBE_LIST_MARKETING`).
    pub list: Option<String>,
    /// The form whose sign-up a confirmation token confirms.
    pub form: Option<String>,
}

/// A verified token's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub subject: String,
    pub issued_at: Timestamp,
    /// The ring key that verified it (`k1` for tokens made before key ids).
    pub key_id: String,
    pub scope: TokenScope,
}

/// Longest token looked at: far above what Voronka makes, so a huge query string costs nothing.
const MAX_TOKEN_CHARS: usize = 2048;

#[derive(Clone)]
pub struct TokenSigner {
    ring: KeyRing,
}

impl TokenSigner {
    /// A signer with one key (id `k1`).
    pub fn new(key: &[u8]) -> Self {
        TokenSigner { ring: KeyRing::single(String::from_utf8_lossy(key).into_owned()) }
    }

    pub fn with_ring(ring: KeyRing) -> Self {
        TokenSigner { ring }
    }

    pub fn sign(&self, purpose: &str, subject: &str, issued_at: Timestamp, expires_at: Timestamp) -> String {
        self.sign_scoped(purpose, subject, &TokenScope::default(), issued_at, expires_at)
    }

    pub fn sign_scoped(
        &self,
        purpose: &str,
        subject: &str,
        scope: &TokenScope,
        issued_at: Timestamp,
        expires_at: Timestamp,
    ) -> String {
        let key = self.ring.signing();
        let payload = Payload {
            p: purpose.to_string(),
            s: subject.to_string(),
            i: issued_at.as_second(),
            x: expires_at.as_second(),
            k: Some(key.id.clone()),
            l: scope.list.clone(),
            f: scope.form.clone(),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).expect("payload serialises"));
        let mut mac = key.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    pub fn verify(&self, purpose: &str, token: &str, now: Timestamp) -> Result<VerifiedToken, TokenError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::Malformed);
        }
        let (payload_b64, signature_b64) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| TokenError::Malformed)?;
        // The payload is read before its signature is checked only to pick the key it names; a
        // payload that does not read names none, and then no key will match it either.
        let payload: Result<Payload, TokenError> = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| TokenError::Malformed)
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed));
        let claimed_kid = payload.as_ref().ok().and_then(|p| p.k.as_deref());
        let candidates = self.ring.candidates(claimed_kid).ok_or(TokenError::UnknownKey)?;
        let key = candidates
            .into_iter()
            .find(|key| {
                let mut mac = key.mac();
                mac.update(payload_b64.as_bytes());
                mac.verify_slice(&signature).is_ok()
            })
            .ok_or(TokenError::BadSignature)?;
        let payload = payload?;
        if payload.p != purpose {
            return Err(TokenError::WrongPurpose);
        }
        if now.as_second() >= payload.x {
            return Err(TokenError::Expired);
        }
        let issued_at = Timestamp::from_second(payload.i).map_err(|_| TokenError::Malformed)?;
        Ok(VerifiedToken {
            subject: payload.s,
            issued_at,
            key_id: key.id.clone(),
            scope: TokenScope { list: payload.l, form: payload.f },
        })
    }
}

/// The purpose of unsubscribe-link tokens (made by the sender, checked by lead-capture).
pub const UNSUBSCRIBE_TOKEN_PURPOSE: &str = "unsubscribe";
/// The list marketing email's unsubscribe links name: the only list so far. Tokens made before
/// lists were named carry none and mean this one.
pub const UNSUBSCRIBE_LIST_MARKETING: &str = "marketing";

/// The header the shop back end signs server-side event batches with:
/// `t=<unix seconds>,kid=<key id>,v1=<hex hmac-sha256 of "<t>.<body>">` (`kid` optional, `v1`
/// repeatable), or the legacy `sha256=<hex hmac of the body>`.
pub const EVENTS_SIGNATURE_HEADER: &str = "x-voronka-signature";

/// Most `v1=` signatures one header may carry (a shop mid-rotation sends two).
const MAX_SIGNATURES_PER_HEADER: usize = 8;

/// Signs a request body for `EVENTS_SIGNATURE_HEADER` with the ring's signing key at time `t`
/// (what a shop back end does).
pub fn sign_events_body(ring: &KeyRing, t: Timestamp, body: &[u8]) -> String {
    let key = ring.signing();
    format!(
        "t={},kid={},v1={}",
        t.as_second(),
        key.id,
        hex::encode(timestamped_mac(key, t.as_second(), body).finalize().into_bytes())
    )
}

/// The MAC of `"<t>.<body>"`: the time is signed with the body, so neither can be swapped.
fn timestamped_mac(key: &RingKey, t: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = key.mac();
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// How event signatures are judged: `[security]` in settings.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignaturePolicy {
    /// A signature whose `t` is further than this from now, either way, is refused.
    pub tolerance: SignedDuration,
    /// Whether the legacy `sha256=` header (no timestamp) is still accepted.
    pub accept_legacy: bool,
}

/// Which format a verified signature came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureScheme {
    /// `t=...,v1=...`, signed at `signed_at`.
    Timestamped { signed_at: Timestamp },
    /// `sha256=...`: no time, so the body could be a replay; callers bound the events' age.
    Legacy,
}

/// A signature that verified: with which key (log the id, never the key) and in which format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    pub key_id: String,
    pub scheme: SignatureScheme,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("is malformed: {0}")]
    Malformed(String),
    /// `age_seconds` is now minus `t`: negative when `t` lies in the future.
    #[error("{}", stale_message(*age_seconds))]
    Stale { age_seconds: i64 },
    #[error("does not match the body; sign `<t>.<exact body bytes>` with HMAC-SHA256")]
    BadSignature,
    #[error("names the key id `{0}`, which is not (or no longer) an events key")]
    UnknownKey(String),
    #[error(
        "uses the legacy sha256= format, which this installation no longer accepts; send t=<unix seconds>,v1=<hmac>"
    )]
    LegacyRefused,
}

impl SignatureError {
    /// A short name for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::Malformed(_) => "malformed",
            SignatureError::Stale { .. } => "stale",
            SignatureError::BadSignature => "bad_signature",
            SignatureError::UnknownKey(_) => "unknown_key",
            SignatureError::LegacyRefused => "legacy_refused",
        }
    }
}

fn stale_message(age_seconds: i64) -> String {
    if age_seconds < 0 {
        format!("was made {} seconds in the future (t is later than now); check the sender's clock", -age_seconds)
    } else {
        format!("was made {age_seconds} seconds ago, beyond the tolerance; sign each request when sending it")
    }
}

/// Checks an events signature header against the exact body bytes, in constant time per key.
pub fn verify_events_body(
    ring: &KeyRing,
    header: &str,
    body: &[u8],
    now: Timestamp,
    policy: &SignaturePolicy,
) -> Result<VerifiedSignature, SignatureError> {
    let header = header.trim();
    if let Some(hex_signature) = header.strip_prefix("sha256=") {
        if !policy.accept_legacy {
            return Err(SignatureError::LegacyRefused);
        }
        let signature = hex::decode(hex_signature)
            .map_err(|_| SignatureError::Malformed("sha256= must be followed by hex".into()))?;
        let key = ring
            .keys()
            .iter()
            .find(|key| {
                let mut mac = key.mac();
                mac.update(body);
                mac.verify_slice(&signature).is_ok()
            })
            .ok_or(SignatureError::BadSignature)?;
        return Ok(VerifiedSignature { key_id: key.id.clone(), scheme: SignatureScheme::Legacy });
    }

    let parsed = parse_timestamped(header)?;
    let candidates =
        ring.candidates(parsed.kid).ok_or_else(|| SignatureError::UnknownKey(parsed.kid.unwrap_or_default().into()))?;
    let key = candidates
        .into_iter()
        .find(|key| {
            // One pass over the body per key; each `v1` only finalises a copy of its state.
            let mac = timestamped_mac(key, parsed.t, body);
            parsed.signatures.iter().any(|signature| mac.clone().verify_slice(signature).is_ok())
        })
        .ok_or(SignatureError::BadSignature)?;
    let age_seconds = now.as_second().saturating_sub(parsed.t);
    if age_seconds.unsigned_abs() > policy.tolerance.as_secs().unsigned_abs() {
        return Err(SignatureError::Stale { age_seconds });
    }
    let signed_at =
        Timestamp::from_second(parsed.t).map_err(|_| SignatureError::Malformed("t is out of range".into()))?;
    Ok(VerifiedSignature { key_id: key.id.clone(), scheme: SignatureScheme::Timestamped { signed_at } })
}

struct TimestampedHeader<'a> {
    t: i64,
    kid: Option<&'a str>,
    signatures: Vec<Vec<u8>>,
}

fn parse_timestamped(header: &str) -> Result<TimestampedHeader<'_>, SignatureError> {
    let malformed = |message: &str| SignatureError::Malformed(message.to_string());
    let mut t = None;
    let mut kid = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (name, value) = part.trim().split_once('=').ok_or_else(|| {
            malformed("expected comma-separated name=value parts: t=<unix seconds>,kid=<key id>,v1=<hex>")
        })?;
        match name {
            "t" => {
                if t.is_some() {
                    return Err(malformed("t is given twice"));
                }
                if value.is_empty() || value.len() > 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(malformed("t must be the signing time in whole unix seconds"));
                }
                t = Some(value.parse::<i64>().map_err(|_| malformed("t must be unix seconds"))?);
            }
            "kid" => {
                if kid.is_some() {
                    return Err(malformed("kid is given twice"));
                }
                if !is_valid_key_id(value) {
                    return Err(malformed("kid must be 1 to 16 of A-Z a-z 0-9 _ -"));
                }
                kid = Some(value);
            }
            "v1" => {
                if signatures.len() == MAX_SIGNATURES_PER_HEADER {
                    return Err(malformed("at most 8 v1 signatures"));
                }
                let signature = hex::decode(value)
                    .ok()
                    .filter(|s| s.len() == 32)
                    .ok_or_else(|| malformed("v1 must be 64 hex digits (an HMAC-SHA256)"))?;
                signatures.push(signature);
            }
            other => {
                return Err(SignatureError::Malformed(format!(
                    "unknown part `{}`; expected t, kid and v1",
                    other.chars().take(16).collect::<String>()
                )));
            }
        }
    }
    let t = t.ok_or_else(|| malformed("t=<unix seconds> is missing"))?;
    if signatures.is_empty() {
        return Err(malformed("v1=<hex hmac-sha256> is missing"));
    }
    Ok(TimestampedHeader { t, kid, signatures })
}

/// Signs a request body in the legacy format `sha256=<hex hmac of the body>` (no timestamp).
/// Kept for shops integrated before timestamps and for tests of that path; new senders use
/// `sign_events_body`.
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

/// Checks a legacy `sha256=` body signature against one key, in constant time.
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

    const KEY_1: &str = "key-one-key-one-key-one-key-one-key-one";
    const KEY_2: &str = "key-two-key-two-key-two-key-two-key-two";

    fn ring(ids: &[(&str, &str)]) -> KeyRing {
        KeyRing::new(ids.iter().map(|(id, key)| RingKey { id: id.to_string(), key: key.to_string() }).collect(), "keys")
            .unwrap()
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    /// A token as Voronka made them before key ids: no `k` in the payload.
    fn token_without_key_id(key: &str, purpose: &str, subject: &str, expires: i64) -> String {
        let payload = URL_SAFE_NO_PAD
            .encode(format!(r#"{{"p":"{purpose}","s":"{subject}","i":1800000000,"x":{expires}}}"#).as_bytes());
        let mut mac = HmacSha256::new_from_slice(key.as_bytes()).unwrap();
        mac.update(payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn secrets_read_the_old_single_key_shape_as_a_ring_of_k1_and_write_it_back_unchanged() {
        let text = format!(r#"{{"token_key": "{KEY_1}", "events_key": "{KEY_2}"}}"#);
        let secrets: Secrets = serde_json::from_str(&text).unwrap();
        secrets.validate().unwrap();
        assert_eq!(secrets.token_keys, ring(&[("k1", KEY_1)]));
        assert_eq!(secrets.events_key(), KEY_2);
        let written: serde_json::Value = serde_json::to_value(&secrets).unwrap();
        assert_eq!(written, serde_json::json!({"token_key": KEY_1, "events_key": KEY_2}));
    }

    #[test]
    fn secrets_read_rings_whose_first_key_signs() {
        let text = format!(
            r#"{{"token_keys": [{{"id": "k2", "key": "{KEY_2}"}}, {{"id": "k1", "key": "{KEY_1}"}}],
                "events_keys": [{{"id": "shop-2026", "key": "{KEY_1}"}}]}}"#
        );
        let secrets: Secrets = serde_json::from_str(&text).unwrap();
        secrets.validate().unwrap();
        assert_eq!(secrets.token_keys.signing().id, "k2");
        assert_eq!(secrets.token_key(), KEY_2);
        assert_eq!(secrets.token_keys.get("k1").unwrap().key, KEY_1);
        assert_eq!(secrets.events_keys.signing().id, "shop-2026");
        let again: Secrets = serde_json::from_value(serde_json::to_value(&secrets).unwrap()).unwrap();
        assert_eq!(again.token_keys, secrets.token_keys);
        let shown = format!("{secrets:?} {:?} {:?}", secrets.token_keys, secrets.token_keys.signing());
        assert!(!shown.contains(KEY_1) && !shown.contains(KEY_2), "{shown}");
    }

    #[test]
    fn bad_secrets_are_refused_with_the_field_named() {
        let read = |text: String| match serde_json::from_str::<Secrets>(&text) {
            Err(e) => e.to_string(),
            Ok(secrets) => secrets.validate().unwrap_err(),
        };
        let key = |id: &str, key: &str| format!(r#"{{"id": "{id}", "key": "{key}"}}"#);
        let events = format!(r#""events_key": "{KEY_2}""#);
        let cases = [
            (format!(r#"{{"token_key": "short", {events}}}"#), "secret `token_key` must be at least 32"),
            (
                format!(r#"{{"token_keys": [{}, {}], {events}}}"#, key("k2", KEY_2), key("k1", "short")),
                "`token_keys[1].key` (id k1)",
            ),
            (
                format!(r#"{{"token_keys": [{}, {}], {events}}}"#, key("k1", KEY_2), key("k1", KEY_1)),
                "`token_keys[1].id` repeats",
            ),
            (
                format!(r#"{{"token_keys": [{}], {events}}}"#, key("bad id!", KEY_2)),
                "`token_keys[0].id` must be 1 to 16",
            ),
            (
                format!(r#"{{"token_keys": [{}], {events}}}"#, key("a-key-id-that-is-too-long", KEY_2)),
                "`token_keys[0].id`",
            ),
            (format!(r#"{{"token_keys": [], {events}}}"#), "`token_keys` must hold at least one key"),
            (
                format!(
                    r#"{{"token_keys": [{}], {events}}}"#,
                    (0..9).map(|i| key(&format!("k{i}"), KEY_1)).collect::<Vec<_>>().join(",")
                ),
                "at most 8",
            ),
            (
                format!(r#"{{"token_key": "{KEY_1}", "token_keys": [{}], {events}}}"#, key("k2", KEY_2)),
                "either `token_key` or `token_keys`",
            ),
            (format!(r#"{{"token_key": "{KEY_1}"}}"#), "missing `events_key`"),
            (format!(r#"{{"token_key": "{KEY_1}", "token_kyes": [], {events}}}"#), "token_kyes"),
        ];
        for (text, expected) in cases {
            let error = read(text.clone());
            assert!(error.contains(expected), "{text}\n→ {error}\n(expected {expected})");
            assert!(!error.contains(KEY_1) && !error.contains(KEY_2), "no key in errors: {error}");
        }
    }

    #[test]
    fn rotating_the_token_key_keeps_old_links_working_until_the_old_key_is_dropped() {
        let now = at(1_800_000_000);
        let later = now + SignedDuration::from_hours(24);
        let before = TokenSigner::with_ring(ring(&[("k1", KEY_1)]));
        let during = TokenSigner::with_ring(ring(&[("k2", KEY_2), ("k1", KEY_1)]));
        let after = TokenSigner::with_ring(ring(&[("k2", KEY_2)]));

        let old = before.sign("unsubscribe", "c_1", now, later);
        let older = token_without_key_id(KEY_1, "unsubscribe", "c_1", later.as_second());
        for token in [&old, &older] {
            let verified = during.verify("unsubscribe", token, now).unwrap();
            assert_eq!((verified.subject.as_str(), verified.key_id.as_str()), ("c_1", "k1"));
        }
        let new = during.sign("unsubscribe", "c_1", now, later);
        assert_eq!(during.verify("unsubscribe", &new, now).unwrap().key_id, "k2");
        assert_eq!(after.verify("unsubscribe", &new, now).unwrap().key_id, "k2");
        assert_eq!(before.verify("unsubscribe", &new, now), Err(TokenError::UnknownKey), "k1 alone knows no k2");

        assert_eq!(after.verify("unsubscribe", &old, now), Err(TokenError::UnknownKey));
        assert_eq!(after.verify("unsubscribe", &older, now), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_token_naming_another_key_or_purpose_or_carrying_a_forged_scope_is_refused() {
        let now = at(1_800_000_000);
        let later = now + SignedDuration::from_hours(1);
        let signer = TokenSigner::with_ring(ring(&[("k2", KEY_2), ("k1", KEY_1)]));
        let scope = TokenScope { list: Some(UNSUBSCRIBE_LIST_MARKETING.into()), form: None };
        let token = signer.sign_scoped("unsubscribe", "c_1", &scope, now, later);
        let verified = signer.verify("unsubscribe", &token, now).unwrap();
        assert_eq!(verified.scope, scope);
        assert_eq!(signer.verify("confirm", &token, now), Err(TokenError::WrongPurpose));

        // The same payload claimed to be signed by k1: only k1 is tried, and it did not sign it.
        let (payload, signature) = token.split_once('.').unwrap();
        let mut claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims["k"] = "k1".into();
        let relabelled = format!("{}.{signature}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        assert_eq!(signer.verify("unsubscribe", &relabelled, now), Err(TokenError::BadSignature));
        claims["k"] = "k2".into();
        claims["l"] = "everything".into();
        let widened = format!("{}.{signature}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        assert_eq!(signer.verify("unsubscribe", &widened, now), Err(TokenError::BadSignature));
        assert_eq!(signer.verify("unsubscribe", &"a".repeat(5000), now), Err(TokenError::Malformed));
    }

    const BODY: &[u8] = br#"{"events":[{"event_id":"o-1","type":"purchase"}]}"#;

    fn policy() -> SignaturePolicy {
        SignaturePolicy { tolerance: SignedDuration::from_secs(300), accept_legacy: true }
    }

    #[test]
    fn event_signatures_carry_their_time_and_key_and_rotate() {
        let now = at(1_800_000_000);
        let before = ring(&[("k1", KEY_1)]);
        let during = ring(&[("k2", KEY_2), ("k1", KEY_1)]);
        let after = ring(&[("k2", KEY_2)]);
        let old = sign_events_body(&before, now, BODY);
        assert!(old.starts_with("t=1800000000,kid=k1,v1="), "{old}");
        let verified = verify_events_body(&during, &old, BODY, now, &policy()).unwrap();
        assert_eq!(
            verified,
            VerifiedSignature { key_id: "k1".into(), scheme: SignatureScheme::Timestamped { signed_at: now } }
        );
        let new = sign_events_body(&during, now, BODY);
        assert_eq!(verify_events_body(&during, &new, BODY, now, &policy()).unwrap().key_id, "k2");
        assert_eq!(
            verify_events_body(&after, &old, BODY, now, &policy()),
            Err(SignatureError::UnknownKey("k1".into()))
        );

        // Without kid every key is tried; a shop mid-rotation may send one v1 per key.
        let v1 = |ring: &KeyRing| sign_events_body(ring, now, BODY).rsplit_once("v1=").unwrap().1.to_string();
        let both = format!("t=1800000000, v1={}, v1={}", v1(&before), v1(&after));
        for ring in [&before, &during, &after] {
            assert!(verify_events_body(ring, &both, BODY, now, &policy()).is_ok());
        }
        // A kid naming a key of the ring that did not make the signature.
        let mislabelled = format!("t=1800000000,kid=k2,v1={}", v1(&before));
        assert_eq!(verify_events_body(&during, &mislabelled, BODY, now, &policy()), Err(SignatureError::BadSignature));
    }

    #[test]
    fn event_signatures_outside_the_tolerance_or_over_another_body_are_refused() {
        let now = at(1_800_000_000);
        let keys = ring(&[("k1", KEY_1)]);
        let replayed = sign_events_body(&keys, now - SignedDuration::from_secs(301), BODY);
        assert_eq!(
            verify_events_body(&keys, &replayed, BODY, now, &policy()),
            Err(SignatureError::Stale { age_seconds: 301 })
        );
        let edge = sign_events_body(&keys, now - SignedDuration::from_secs(300), BODY);
        assert!(verify_events_body(&keys, &edge, BODY, now, &policy()).is_ok());
        let future = sign_events_body(&keys, now + SignedDuration::from_secs(301), BODY);
        let refused = verify_events_body(&keys, &future, BODY, now, &policy()).unwrap_err();
        assert_eq!(refused, SignatureError::Stale { age_seconds: -301 });
        assert!(refused.to_string().contains("in the future"), "{refused}");

        let signed = sign_events_body(&keys, now, BODY);
        let tampered = br#"{"events":[{"event_id":"o-1","type":"purchase","x":1}]}"#;
        assert_eq!(verify_events_body(&keys, &signed, tampered, now, &policy()), Err(SignatureError::BadSignature));
        // Moving t re-dates nothing: the time is inside the signed bytes.
        let redated = signed.replacen("t=1800000000", "t=1800000100", 1);
        assert_eq!(verify_events_body(&keys, &redated, BODY, now, &policy()), Err(SignatureError::BadSignature));
    }

    #[test]
    fn malformed_event_signature_headers_are_refused_by_name() {
        let now = at(1_800_000_000);
        let keys = ring(&[("k1", KEY_1)]);
        let hex64 = "ab".repeat(32);
        for header in [
            "".to_string(),
            "garbage".to_string(),
            format!("v1={hex64}"),
            "t=1800000000".to_string(),
            format!("t=1800000000,t=1800000000,v1={hex64}"),
            format!("t=-5,v1={hex64}"),
            format!("t=18e8,v1={hex64}"),
            format!("t=1800000000,v1=zz{hex64}"),
            "t=1800000000,v1=abcd".to_string(),
            format!("t=1800000000,kid=bad kid,v1={hex64}"),
            format!("t=1800000000,kid=k1,kid=k1,v1={hex64}"),
            format!("t=1800000000,v0={hex64}"),
            format!("t=1800000000,v1={hex64},"),
            format!("t=1800000000,{}", vec![format!("v1={hex64}"); 9].join(",")),
            "sha256=zz".to_string(),
        ] {
            let result = verify_events_body(&keys, &header, BODY, now, &policy());
            assert!(matches!(result, Err(SignatureError::Malformed(_))), "{header:?} → {result:?}");
        }
    }

    #[test]
    fn legacy_body_signatures_verify_with_any_key_of_the_ring_unless_turned_off() {
        let now = at(1_800_000_000);
        let during = ring(&[("k2", KEY_2), ("k1", KEY_1)]);
        let legacy = sign_body(KEY_1, BODY);
        let verified = verify_events_body(&during, &legacy, BODY, now, &policy()).unwrap();
        assert_eq!(verified, VerifiedSignature { key_id: "k1".into(), scheme: SignatureScheme::Legacy });
        assert_eq!(verify_events_body(&during, &legacy, b"{}", now, &policy()), Err(SignatureError::BadSignature));
        assert_eq!(
            verify_events_body(&ring(&[("k2", KEY_2)]), &legacy, BODY, now, &policy()),
            Err(SignatureError::BadSignature)
        );
        let strict = SignaturePolicy { accept_legacy: false, ..policy() };
        assert_eq!(verify_events_body(&during, &legacy, BODY, now, &strict), Err(SignatureError::LegacyRefused));
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
