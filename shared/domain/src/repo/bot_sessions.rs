//! Bot conversations as stored: `BOTSESSION#<session id>` / `SESSION`, one item per session,
//! holding the conversation (`S`, the domain's `BotSession`), where it came from, and the response
//! sent for every answer's seq, so a repeated answer gets the same bytes back. Every write is
//! version-checked: two answers racing for one seq cannot both be applied.
//!
//! Only the latest responses are kept (`KEPT_RESPONSES`): a client retries its last answer, and an
//! older repeat is rendered again from the conversation's own record of each seq, so a visitor who
//! is re-asked two hundred times cannot grow the item past DynamoDB's 400 KB.
//!
//! A session is answered until `expires_at`; the item itself lives a while longer (`ttl`), so an
//! expired session is told apart from one that never existed (410, not 404).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ports::{Condition, Item, Key, Store, StoreError};

/// How long a session is answered when the settings say nothing else.
pub const DEFAULT_SESSION_TTL: SignedDuration = SignedDuration::from_hours(24);
/// How long an expired session is still known as expired before the table drops it.
pub const EXPIRED_KEPT_FOR: SignedDuration = SignedDuration::from_hours(24 * 7);
/// How many of the latest responses are kept byte for byte.
pub const KEPT_RESPONSES: usize = 8;

pub fn session_key(session_id: &str) -> Key {
    Key::new(format!("BOTSESSION#{session_id}"), "SESSION")
}

/// Where the conversation started: what a form would have read from its hidden fields and the
/// request (attribution, anonymous id, locale), kept for the contact the session captures.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SessionOrigin {
    /// The start body's tracking and identity fields (`anonymous_id`, `utm_*`, `page`, `referrer`,
    /// `locale`, click ids), as single bounded texts.
    #[serde(default)]
    pub fields: Map<String, Value>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// What the session's outcome has already done, so a retried final answer finishes the rest and
/// repeats nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutcomeProgress {
    #[serde(default)]
    pub contact_updated: bool,
    #[serde(default)]
    pub queued: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBotSession<S> {
    pub session_id: String,
    pub script_id: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub origin: SessionOrigin,
    /// The conversation itself.
    pub session: S,
    /// The body answered to each of the latest seqs, byte for byte.
    #[serde(default)]
    pub responses: BTreeMap<u32, String>,
    /// The contact the session's answers went to, once the form's fields were all answered.
    #[serde(default)]
    pub contact_id: Option<String>,
    #[serde(default)]
    pub outcome_progress: OutcomeProgress,
    /// Optimistic version: 0 before the first write.
    #[serde(default)]
    pub version: u64,
}

impl<S> StoredBotSession<S> {
    pub fn new(
        session_id: String,
        script_id: String,
        session: S,
        origin: SessionOrigin,
        now: Timestamp,
        ttl: SignedDuration,
    ) -> Self {
        StoredBotSession {
            session_id,
            script_id,
            created_at: now,
            expires_at: now + ttl,
            origin,
            session,
            responses: BTreeMap::new(),
            contact_id: None,
            outcome_progress: OutcomeProgress::default(),
            version: 0,
        }
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }

    /// Keeps `body` as the response to `seq`, dropping the oldest beyond `KEPT_RESPONSES`.
    pub fn remember_response(&mut self, seq: u32, body: String) {
        self.responses.insert(seq, body);
        while self.responses.len() > KEPT_RESPONSES {
            self.responses.pop_first();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionWriteError {
    /// Someone else wrote the session since it was read (a concurrent answer): read it again.
    #[error("the session changed since it was read")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct BotSessions<'a> {
    store: &'a dyn Store,
}

impl<'a> BotSessions<'a> {
    pub fn new(store: &'a dyn Store) -> Self {
        BotSessions { store }
    }

    /// The session, expired or not, or `None` when there is none (or the table dropped it).
    pub async fn load<S: DeserializeOwned>(&self, session_id: &str) -> Result<Option<StoredBotSession<S>>, StoreError> {
        let Some(item) = self.store.get(&session_key(session_id)).await? else { return Ok(None) };
        let mut map = item.0;
        for name in ["pk", "sk", "ttl", "gsi1pk", "gsi1sk"] {
            map.remove(name);
        }
        serde_json::from_value(Value::Object(map))
            .map(Some)
            .map_err(|e| StoreError::Backend(format!("a stored bot session cannot be read: {e}")))
    }

    /// Writes the session: a new one only if its id is free, a known one only if nobody wrote it
    /// since it was read. Bumps `version` on success.
    pub async fn save<S: Serialize>(&self, session: &mut StoredBotSession<S>) -> Result<(), SessionWriteError> {
        let condition =
            if session.version == 0 { Condition::NotExists } else { Condition::equals("version", session.version) };
        session.version += 1;
        let result = self.store.put(item_of(session), Some(condition)).await;
        match result {
            Ok(()) => Ok(()),
            Err(error) => {
                session.version -= 1;
                match error {
                    StoreError::ConditionFailed => Err(SessionWriteError::Conflict),
                    other => Err(SessionWriteError::Store(other)),
                }
            }
        }
    }
}

/// The index partition of a contact's captured sessions: how an erasure or an export reaches the
/// conversations a person had (their answers are personal data).
pub fn contact_sessions_partition(contact_id: &str) -> String {
    format!("BOTSESSIONS#{contact_id}")
}

fn item_of<S: Serialize>(session: &StoredBotSession<S>) -> Item {
    let attributes = serde_json::to_value(session).expect("bot sessions serialise");
    let item = Item::new(&session_key(&session.session_id), attributes)
        .with_ttl((session.expires_at + EXPIRED_KEPT_FOR).as_second());
    match &session.contact_id {
        Some(contact_id) => item.with_gsi1(contact_sessions_partition(contact_id), session.session_id.clone()),
        None => item,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn only_the_latest_responses_are_kept_and_a_session_expires_at_its_time() {
        let mut stored = StoredBotSession::new(
            "s".into(),
            "b2b".into(),
            (),
            SessionOrigin::default(),
            at("2026-01-01T00:00:00Z"),
            DEFAULT_SESSION_TTL,
        );
        for seq in 1..=200 {
            stored.remember_response(seq, format!("{{\"seq\":{seq}}}"));
        }
        assert_eq!(stored.responses.len(), KEPT_RESPONSES);
        assert_eq!(stored.responses.keys().next(), Some(&(200 - KEPT_RESPONSES as u32 + 1)));
        assert!(!stored.is_expired(at("2026-01-01T23:59:59Z")));
        assert!(stored.is_expired(at("2026-01-02T00:00:00Z")));
    }

    #[test]
    fn the_item_outlives_the_session_so_expiry_is_told_apart() {
        let stored = StoredBotSession::new(
            "s".into(),
            "b2b".into(),
            (),
            SessionOrigin::default(),
            at("2026-01-01T00:00:00Z"),
            DEFAULT_SESSION_TTL,
        );
        let item = item_of(&stored);
        assert_eq!(item.get_str("pk"), Some("BOTSESSION#s"));
        assert_eq!(item.get_i64("ttl"), Some((stored.expires_at + EXPIRED_KEPT_FOR).as_second()));
        assert_eq!(item.get_str("gsi1pk"), None, "a session nobody was captured by is in no listing");
    }

    #[test]
    fn a_captured_session_is_listed_under_its_contact() {
        let mut stored = StoredBotSession::new(
            "s".into(),
            "b2b".into(),
            (),
            SessionOrigin::default(),
            at("2026-01-01T00:00:00Z"),
            DEFAULT_SESSION_TTL,
        );
        stored.contact_id = Some("c_1".into());
        let item = item_of(&stored);
        assert_eq!(item.get_str("gsi1pk"), Some("BOTSESSIONS#c_1"));
        assert_eq!(item.get_str("gsi1sk"), Some("s"));
    }
}
