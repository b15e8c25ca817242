//! Embedded adapters: the store and the queues in one SQLite file, durable across restarts and
//! safe under concurrent use in one process (and, through SQLite's locking, across processes).
//! They implement the same ports with the same semantics as the AWS adapters; the contract suite
//! in `voronka-contract` holds both to that.

mod outbox;
mod queue;
mod semantics;
mod store;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use voronka_domain::ports::Clock;

pub use outbox::OutboxMailer;
pub use queue::EmbeddedQueue;
pub use store::EmbeddedStore;

/// How often a message may be received before it moves to its dead-letter queue (as the
/// SAM template's redrive policy sets for SQS).
pub const DEFAULT_MAX_RECEIVES: u32 = 5;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    gsi1pk TEXT,
    gsi1sk TEXT,
    ttl INTEGER,
    body TEXT NOT NULL,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_gsi1 ON items (gsi1pk, gsi1sk, pk, sk) WHERE gsi1pk IS NOT NULL AND gsi1sk IS NOT NULL;
CREATE INDEX IF NOT EXISTS items_ttl ON items (ttl) WHERE ttl IS NOT NULL;
CREATE TABLE IF NOT EXISTS queue_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT
);
CREATE INDEX IF NOT EXISTS queue_visible ON queue_messages (queue, visible_at, seq);
CREATE UNIQUE INDEX IF NOT EXISTS queue_receipt ON queue_messages (receipt) WHERE receipt IS NOT NULL;
";

/// The embedded store and queues over one database file.
pub struct Embedded {
    pub store: Arc<EmbeddedStore>,
    pub queue: Arc<EmbeddedQueue>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open the embedded database {path}: {source}")]
pub struct OpenError {
    path: String,
    source: rusqlite::Error,
}

impl Embedded {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Embedded, OpenError> {
        let wrap = |source| OpenError { path: path.display().to_string(), source };
        let connection = Connection::open(path).map_err(wrap)?;
        // WAL lets readers in other processes (an export) run beside the server; FULL makes every
        // acknowledged write survive a power cut, not only a crash; secure_delete overwrites what
        // a delete frees, so an erased person's bytes do not linger in the file's free pages (the
        // WAL holds them until its next checkpoint).
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; \
                 PRAGMA secure_delete = ON;",
            )
            .map_err(wrap)?;
        connection.execute_batch(SCHEMA).map_err(wrap)?;
        let connection = Arc::new(Mutex::new(connection));
        Ok(Embedded {
            store: Arc::new(EmbeddedStore::new(connection.clone(), clock.clone())),
            queue: Arc::new(EmbeddedQueue::new(connection, clock, DEFAULT_MAX_RECEIVES)),
        })
    }

    /// A private database in memory: for tests and throwaway runs.
    pub fn in_memory(clock: Arc<dyn Clock>) -> Embedded {
        let connection = Connection::open_in_memory().expect("SQLite opens in memory");
        connection.execute_batch(SCHEMA).expect("schema applies");
        let connection = Arc::new(Mutex::new(connection));
        Embedded {
            store: Arc::new(EmbeddedStore::new(connection.clone(), clock.clone())),
            queue: Arc::new(EmbeddedQueue::new(connection, clock, DEFAULT_MAX_RECEIVES)),
        }
    }
}

/// Runs blocking SQLite work off the async executor.
async fn blocking<T: Send + 'static>(
    connection: &Arc<Mutex<Connection>>,
    work: impl FnOnce(&mut Connection) -> T + Send + 'static,
) -> T {
    let connection = connection.clone();
    tokio::task::spawn_blocking(move || {
        // A panic while holding the lock poisons it; the connection itself is still consistent
        // because every write runs in a transaction that rolled back.
        let mut guard = connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        work(&mut guard)
    })
    .await
    .expect("embedded storage task panicked")
}

#[cfg(test)]
mod tests {
    use super::*;
    use voronka_domain::ports::{Item, Key, Store, SystemClock};

    #[tokio::test]
    async fn a_deleted_items_bytes_are_not_left_in_the_database_file() {
        let dir = std::env::temp_dir().join(format!("voronka-secure-delete-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("voronka.db");
        let embedded = Embedded::open(&path, Arc::new(SystemClock)).unwrap();
        let key = Key::new("CONTACT#c_gone", "PROFILE");
        let secret = "erased-person-marker-1f2e3d";
        embedded.store.put(Item::new(&key, serde_json::json!({ "email": secret })), None).await.unwrap();
        embedded.store.delete(&key, None).await.unwrap();
        let checkpoint = Connection::open(&path).unwrap();
        checkpoint.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let found = bytes.windows(secret.len()).any(|window| window == secret.as_bytes());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!found, "the deleted item is still readable in the file");
    }
}
