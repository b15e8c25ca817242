//! Browser sessions for the admin pages. A browser cannot send the bearer header on a plain
//! navigation, so `/admin/login` checks the admin key once and hands out a cookie instead. The
//! cookie carries a random session token, never the key: a leaked cookie dies with its expiry,
//! a logout or a restart, and tells nothing about the key. Sessions live in this process only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use voronka_domain::ports::{IdGenerator, RandomIds};
use voronka_domain::signing::keyed_digest;

pub const COOKIE_NAME: &str = "voronka_admin";
/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Live sessions kept at most; logging in beyond it ends the oldest.
pub const MAX_SESSIONS: usize = 1000;

pub struct Sessions {
    /// The map is keyed by a keyed digest of the token, so a lookup's timing says nothing useful
    /// about the tokens it holds.
    digest_key: String,
    live: Mutex<HashMap<String, Instant>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions { digest_key: RandomIds.random_hex(32), live: Mutex::new(HashMap::new()) }
    }
}

impl Sessions {
    /// A new session's token, valid until `SESSION_TTL` from now.
    pub fn start(&self) -> String {
        let token = RandomIds.random_hex(32);
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        live.retain(|_, expires| *expires > now);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, expires)| **expires).map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(self.digest(&token), now + SESSION_TTL);
        token
    }

    pub fn is_valid(&self, token: &str) -> bool {
        if token.len() != 64 {
            return false;
        }
        let live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        live.get(&self.digest(token)).is_some_and(|expires| *expires > Instant::now())
    }

    pub fn end(&self, token: &str) {
        let mut live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        live.remove(&self.digest(token));
    }

    fn digest(&self, token: &str) -> String {
        keyed_digest(&self.digest_key, token)
    }
}

/// The `Set-Cookie` value of a new session: script cannot read it, other sites' requests never
/// carry it, and only the admin pages receive it.
pub fn session_cookie(token: &str) -> String {
    format!("{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age={}", SESSION_TTL.as_secs())
}

/// The `Set-Cookie` value that ends the session in the browser.
pub fn cleared_cookie() -> String {
    format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=0")
}

/// The session token in a `Cookie` header, if any.
pub fn token_from_cookies(header: &str) -> Option<&str> {
    header.split(';').map(str::trim).find_map(|pair| pair.strip_prefix(COOKIE_NAME)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_valid_until_it_ends_and_a_guess_never_is() {
        let sessions = Sessions::default();
        let token = sessions.start();
        assert!(sessions.is_valid(&token));
        assert!(!sessions.is_valid(&"0".repeat(64)));
        assert!(!sessions.is_valid(""));
        sessions.end(&token);
        assert!(!sessions.is_valid(&token));
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        let first = sessions.start();
        for _ in 0..MAX_SESSIONS {
            sessions.start();
        }
        assert!(!sessions.is_valid(&first), "the oldest session made room");
        assert_eq!(sessions.live.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_scoped_to_admin() {
        let cookie = session_cookie("abc");
        assert!(cookie.starts_with("voronka_admin=abc;"));
        for part in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert_eq!(token_from_cookies("a=b; voronka_admin=xyz; c=d"), Some("xyz"));
        assert_eq!(token_from_cookies("voronka_adminx=1"), None);
    }
}
