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
    /// Opens (creating if needed) the database at `path`, every commit on the disk before it
    /// returns.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Embedded, OpenError> {
        Embedded::open_with(path, clock, Durability::PowerCut)
    }

    /// Opens (creating if needed) the database at `path` with the given durability.
    pub fn open_with(path: &Path, clock: Arc<dyn Clock>, durability: Durability) -> Result<Embedded, OpenError> {
        let wrap = |source| OpenError { path: path.display().to_string(), source };
        let connection = Connection::open(path).map_err(wrap)?;
        // WAL lets readers in other processes (an export) run beside the server; FULL makes every
        // acknowledged write survive a power cut, not only a crash; secure_delete overwrites what
        // a delete frees, so an erased person's bytes do not linger in the file's free pages (the
        // WAL holds them until its next checkpoint).
        // A scratch run (the demo at 100 000 contacts) reads back most of what it wrote: a larger
        // cache saves a read call per page it would otherwise drop.
        let cache_kib = if durability == Durability::Scratch { SCRATCH_CACHE_KIB } else { CACHE_KIB };
        let journal = match durability {
            Durability::PowerCut => "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;",
            Durability::ProcessCrash => "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
            // Each page written once, in place, with the rollback journal in memory: half the
            // writes of the WAL and no checkpoints; one process holds the file.
            // Pages big enough to hold a contact (2-4 KB) without overflow pages, set before the
            // file has any; and no overwriting of freed bytes in a file deleted at the end.
            Durability::Scratch => {
                "PRAGMA page_size = 16384; PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = MEMORY; \
                 PRAGMA synchronous = OFF;"
            }
        };
        let secure_delete = if durability == Durability::Scratch { "OFF" } else { "ON" };
        connection
            .execute_batch(&format!(
                "{journal} PRAGMA busy_timeout = 10000; PRAGMA secure_delete = {secure_delete}; \
                 PRAGMA cache_size = -{cache_kib};"
            ))
            .map_err(wrap)?;
        connection.execute_batch(SCHEMA).map_err(wrap)?;
        // Without an fsync per commit no call waits on the disk: the work runs on the caller's
        // thread instead of paying a hand-over to the blocking pool for each call.
        let db = Db::new(connection, durability == Durability::PowerCut);
        Ok(Embedded {
            store: Arc::new(EmbeddedStore::new(db.clone(), clock.clone())),
            queue: Arc::new(EmbeddedQueue::new(db, clock, DEFAULT_MAX_RECEIVES)),
        })
    }

    /// A private database in memory: for tests and throwaway runs.
    pub fn in_memory(clock: Arc<dyn Clock>) -> Embedded {
        let connection = Connection::open_in_memory().expect("SQLite opens in memory");
        connection.execute_batch(SCHEMA).expect("schema applies");
        let db = Db::new(connection, false);
        Embedded {
            store: Arc::new(EmbeddedStore::new(db.clone(), clock.clone())),
            queue: Arc::new(EmbeddedQueue::new(db, clock, DEFAULT_MAX_RECEIVES)),
        }
    }
}

/// SQLite's page cache for the one connection: the hot items (contacts, journey states, due
/// items, queue heads) stay in memory instead of costing a read call each; bounded, unlike a
/// memory map, so a large database does not grow the process.
const CACHE_KIB: u32 = 32 * 1024;
const SCRATCH_CACHE_KIB: u32 = 128 * 1024;

/// What an acknowledged write survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit is on the disk before it returns (`synchronous = FULL`): `voronka serve`.
    #[default]
    PowerCut,
    /// Commits survive the process dying, not the machine losing power (WAL with `synchronous =
    /// NORMAL`): a demo run into a folder the user keeps.
    ProcessCrash,
    /// Throwaway data in a private folder: transactions still commit or roll back whole, but a
    /// process killed mid-commit may leave the file unreadable, and no other process may open
    /// it meanwhile. The demo's scratch folder, removed when it ends.
    Scratch,
}

/// The one connection the store and the queues share, and how its work is run.
#[derive(Clone)]
pub(crate) struct Db {
    connection: Arc<Mutex<Connection>>,
    /// Whether a call can wait on the disk (an fsync): then it runs on the blocking pool, so the
    /// async executor's threads are never held by it.
    waits_on_disk: bool,
}

/// Enough for every statement text the store and the queues prepare (queries vary by range,
/// direction, cursor and limit).
const STATEMENT_CACHE: usize = 128;

impl Db {
    fn new(connection: Connection, waits_on_disk: bool) -> Db {
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Db { connection: Arc::new(Mutex::new(connection)), waits_on_disk }
    }

    /// Runs SQLite work under the connection's lock.
    pub(crate) async fn run<T: Send + 'static>(&self, work: impl FnOnce(&mut Connection) -> T + Send + 'static) -> T {
        // A panic while holding the lock poisons it; the connection itself is still consistent
        // because every write runs in a transaction that rolled back.
        if !self.waits_on_disk {
            let mut guard = self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            return work(&mut guard);
        }
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut guard)
        })
        .await
        .expect("embedded storage task panicked")
    }
}

/// A write transaction on cached statements: `BEGIN IMMEDIATE`, `COMMIT` and `ROLLBACK` are
/// parsed once per connection instead of once per write. Rolled back when dropped uncommitted.
pub(crate) struct WriteTx<'c> {
    connection: &'c Connection,
    open: bool,
}

impl<'c> WriteTx<'c> {
    pub(crate) fn begin(connection: &'c Connection) -> rusqlite::Result<WriteTx<'c>> {
        connection.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(WriteTx { connection, open: true })
    }

    pub(crate) fn commit(mut self) -> rusqlite::Result<()> {
        self.connection.prepare_cached("COMMIT")?.execute([])?;
        self.open = false;
        Ok(())
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.connection
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if self.open {
            // A failed COMMIT may already have rolled back (SQLite ends the transaction on some
            // errors); then there is nothing to roll back and the error says so.
            if let Ok(mut rollback) = self.connection.prepare_cached("ROLLBACK") {
                let _ = rollback.execute([]);
            }
        }
    }
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
