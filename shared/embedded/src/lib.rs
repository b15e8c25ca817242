//! Embedded adapters: the store and the queues in one SQLite file, durable across restarts and
//! safe under concurrent use in one process (and, through SQLite's locking, across processes).
//! They implement the same ports with the same semantics as the AWS adapters; the contract suite
//! in `voronka-contract` holds both to that.

mod outbox;
mod queue;
mod semantics;
mod store;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;
use tokio::sync::watch;
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
        // Without an fsync per commit a call seldom waits on the disk (a WAL checkpoint, or another
        // process's write lock within busy_timeout, still can): the work runs on the caller's
        // thread instead of paying a hand-over to the blocking pool for each call. A scratch
        // folder promises nothing past the process, so its calls need not wait for a commit.
        let commit = if durability == Durability::Scratch { Commit::Lazy } else { Commit::Grouped };
        let db = Db::new(connection, commit, durability == Durability::PowerCut);
        Ok(Embedded {
            store: Arc::new(EmbeddedStore::new(db.clone(), clock.clone())),
            queue: Arc::new(EmbeddedQueue::new(db, clock, DEFAULT_MAX_RECEIVES)),
        })
    }

    /// Transactions committed so far by the store's and queues' calls (many calls share one under
    /// load): for benchmarks and reports.
    pub fn commits(&self) -> u64 {
        self.store.db.shared.commits.load(Ordering::Relaxed)
    }

    /// A private database in memory: for tests and throwaway runs.
    pub fn in_memory(clock: Arc<dyn Clock>) -> Embedded {
        let connection = Connection::open_in_memory().expect("SQLite opens in memory");
        connection.execute_batch(SCHEMA).expect("schema applies");
        let db = Db::new(connection, Commit::Lazy, false);
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
///
/// Writes are grouped: a call's writes go into the transaction already open (each in its own
/// savepoint, so a failed condition undoes only that call), and the transaction commits when no
/// other call is queued for the connection, or after `MAX_GROUP` calls. Under load many calls
/// share one commit and its fsync; alone, a call commits at once as before. With `Commit::Grouped`
/// every call in a group returns only after the group's commit, readers too (they may have read
/// what the group wrote), so nothing unwritten is ever acknowledged.
#[derive(Clone)]
pub(crate) struct Db {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Calls that have asked for the connection and not yet finished their turn: the last of them
    /// commits the group.
    queued: AtomicUsize,
    /// Set when a `Commit::Lazy` group was lost after its calls had been answered: from then on
    /// every call fails, so a scratch run stops loudly instead of going on with its state rewound.
    lost: AtomicBool,
    /// Group commits so far: calls per commit is what grouping saves.
    commits: AtomicU64,
    commit: Commit,
    /// Whether a call can wait on the disk (an fsync): then it runs on the blocking pool, so the
    /// async executor's threads are never held by it.
    waits_on_disk: bool,
}

struct State {
    connection: Connection,
    group: Option<Group>,
}

/// The calls whose work sits in the open transaction, and how they learn its outcome.
struct Group {
    calls: usize,
    outcome: watch::Sender<Option<Result<(), String>>>,
}

/// When the open transaction commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// When no other call waits for the connection (or after `MAX_GROUP` calls); every call waits
    /// for the commit of its group before it returns.
    Grouped,
    /// Every `LAZY_GROUP` calls, and nobody waits: for data no other process reads and nobody
    /// keeps (a scratch folder, memory). SQLite rolling back a failed transaction whole (a full
    /// disk) then loses the calls since the last commit, which such data can afford.
    Lazy,
}

/// Most calls one commit holds: bounds how long the first of them waits.
const MAX_GROUP: usize = 256;
/// Calls per commit for data nobody keeps: bounds the rollback journal, which holds in memory
/// every page the open transaction changed.
const LAZY_GROUP: usize = 512;

/// Enough for every statement text the store and the queues prepare (queries vary by range,
/// direction, cursor and limit).
const STATEMENT_CACHE: usize = 128;

/// The transaction that held a call's writes did not commit: the call's effect is lost and must
/// be reported as failed, whatever the call itself returned.
#[derive(Debug)]
pub(crate) struct CommitFailed(String);

impl From<CommitFailed> for voronka_domain::ports::StoreError {
    fn from(failed: CommitFailed) -> Self {
        voronka_domain::ports::StoreError::Backend(format!("the write did not commit: {}", failed.0))
    }
}

impl From<CommitFailed> for voronka_domain::ports::QueueError {
    fn from(failed: CommitFailed) -> Self {
        voronka_domain::ports::QueueError::Backend(format!("the write did not commit: {}", failed.0))
    }
}

impl Db {
    fn new(connection: Connection, commit: Commit, waits_on_disk: bool) -> Db {
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Db {
            shared: Arc::new(Shared {
                state: Mutex::new(State { connection, group: None }),
                queued: AtomicUsize::new(0),
                lost: AtomicBool::new(false),
                commits: AtomicU64::new(0),
                commit,
                waits_on_disk,
            }),
        }
    }

    /// Runs SQLite work under the connection's lock, inside the open group's transaction, and
    /// returns once what it did is committed (or, for `Commit::Lazy`, at once).
    pub(crate) async fn run<T, E>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<CommitFailed> + Send + 'static,
    {
        if self.shared.lost.load(Ordering::SeqCst) {
            return Err(CommitFailed("an earlier transaction of this scratch database was lost".into()).into());
        }
        let (result, pending) = if self.shared.waits_on_disk {
            let shared = self.shared.clone();
            tokio::task::spawn_blocking(move || shared.take_turn(work)).await.expect("embedded storage task panicked")
        } else {
            self.shared.take_turn(work)
        };
        match pending {
            Pending::Settled(Ok(())) => result,
            Pending::Settled(Err(error)) => Err(CommitFailed(error).into()),
            Pending::Group(mut outcome) => match outcome.wait_for(Option::is_some).await {
                Ok(settled) => match settled.as_ref() {
                    Some(Ok(())) => result,
                    Some(Err(error)) => Err(CommitFailed(error.clone()).into()),
                    None => Err(CommitFailed("the group ended without an outcome".into()).into()),
                },
                Err(_) => Err(CommitFailed("the group ended without an outcome".into()).into()),
            },
        }
    }
}

/// What a call still waits for after its turn.
enum Pending {
    Settled(Result<(), String>),
    Group(watch::Receiver<Option<Result<(), String>>>),
}

impl Shared {
    fn take_turn<T>(&self, work: impl FnOnce(&mut Connection) -> T) -> (T, Pending) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let mut turn = Turn { shared: self, state: self.lock(), finished: false };
        if turn.state.group.is_none() && !turn.state.connection.is_autocommit() {
            // A transaction no group owns: a COMMIT and its ROLLBACK both failed. Its writes were
            // reported as failed, so they must not be committed along with this call's.
            let _ = turn.state.connection.execute_batch("ROLLBACK");
        }
        let result = work(&mut turn.state.connection);
        let pending = turn.finish();
        (result, pending)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock poisons it; the connection itself is still consistent
        // because the panicking call's savepoint rolled back when its `WriteTx` dropped.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One call's hold on the connection. Finishing it, even by a panic, counts the call out of the
/// queue and commits the group when it was the last: no group is ever left open with callers
/// waiting on it.
struct Turn<'s> {
    shared: &'s Shared,
    state: MutexGuard<'s, State>,
    finished: bool,
}

impl Turn<'_> {
    fn finish(mut self) -> Pending {
        self.finished = true;
        self.settle()
    }

    fn settle(&mut self) -> Pending {
        let still_queued = self.shared.queued.fetch_sub(1, Ordering::SeqCst) - 1;
        let state = &mut *self.state;
        let in_transaction = !state.connection.is_autocommit();
        match (&mut state.group, in_transaction) {
            (None, false) => return Pending::Settled(Ok(())),
            (Some(_), false) => {
                // SQLite ended the transaction itself (it rolls back whole on a full disk or an
                // I/O error): everything the group wrote is gone.
                let group = state.group.take().expect("matched a group");
                let lost = "the database rolled the transaction back".to_string();
                tracing::error!(calls = group.calls, "an embedded storage transaction was rolled back whole");
                if self.shared.commit == Commit::Lazy {
                    self.shared.lost.store(true, Ordering::SeqCst);
                }
                group.outcome.send_replace(Some(Err(lost.clone())));
                return Pending::Settled(Err(lost));
            }
            (Some(group), true) => group.calls += 1,
            (None, true) => state.group = Some(Group { calls: 1, outcome: watch::Sender::new(None) }),
        }
        let calls = state.group.as_ref().map_or(0, |group| group.calls);
        let commit_now = match self.shared.commit {
            Commit::Grouped => still_queued == 0 || calls >= MAX_GROUP,
            Commit::Lazy => calls >= LAZY_GROUP,
        };
        if !commit_now {
            return match self.shared.commit {
                Commit::Grouped => Pending::Group(state.group.as_ref().expect("a group is open").outcome.subscribe()),
                Commit::Lazy => Pending::Settled(Ok(())),
            };
        }
        let outcome = commit(&state.connection);
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        if outcome.is_err() && self.shared.commit == Commit::Lazy {
            self.shared.lost.store(true, Ordering::SeqCst);
        }
        if let Some(group) = state.group.take() {
            group.outcome.send_replace(Some(outcome.clone()));
        }
        outcome.map_or_else(|error| Pending::Settled(Err(error)), |()| Pending::Settled(Ok(())))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.settle();
        }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // A lazily committed group still open when the database closes: keep it.
        if !self.connection.is_autocommit() {
            let _ = commit(&self.connection);
        }
    }
}

fn commit(connection: &Connection) -> Result<(), String> {
    match connection.prepare_cached("COMMIT").and_then(|mut statement| statement.execute([])) {
        Ok(_) => Ok(()),
        Err(error) => {
            // A COMMIT that failed may leave the transaction open: end it, so the next call starts
            // clean instead of adding to writes that can no longer be promised.
            if !connection.is_autocommit() {
                let _ = connection.execute_batch("ROLLBACK");
            }
            tracing::error!(error = %error, "an embedded storage commit failed");
            Err(error.to_string())
        }
    }
}

/// One call's writes, in a savepoint of the group's transaction (which it opens, `BEGIN
/// IMMEDIATE`, when none is open): released into the group on success, rolled back alone when
/// dropped uncommitted. Its statements are cached, parsed once per connection.
pub(crate) struct WriteTx<'c> {
    connection: &'c Connection,
    open: bool,
}

impl<'c> WriteTx<'c> {
    pub(crate) fn begin(connection: &'c Connection) -> rusqlite::Result<WriteTx<'c>> {
        if connection.is_autocommit() {
            // IMMEDIATE takes the write lock now, so a writer in another process makes this wait
            // (busy_timeout) instead of failing at its first write.
            connection.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        }
        connection.prepare_cached("SAVEPOINT call")?.execute([])?;
        Ok(WriteTx { connection, open: true })
    }

    pub(crate) fn commit(mut self) -> rusqlite::Result<()> {
        self.connection.prepare_cached("RELEASE call")?.execute([])?;
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
            // When SQLite already ended the whole transaction (it does on some errors) there is
            // no savepoint left and these fail; the turn then reports the group as lost.
            if let Ok(mut rollback) = self.connection.prepare_cached("ROLLBACK TO call") {
                let _ = rollback.execute([]);
            }
            if let Ok(mut release) = self.connection.prepare_cached("RELEASE call") {
                let _ = release.execute([]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voronka_domain::ports::{Condition, Item, Key, Store, SystemClock};

    fn scratch_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("voronka-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Waits (without a deadline on the outcome: only a guard against hanging) until `calls`
    /// calls have asked for the connection.
    async fn until_queued(db: &Db, calls: usize) {
        for _ in 0..10_000 {
            if db.shared.queued.load(Ordering::SeqCst) == calls {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        panic!("the calls never queued for the connection");
    }

    fn item(id: usize) -> Item {
        Item::new(&Key::new(format!("T#{id}"), "A"), serde_json::json!({ "n": id }))
    }

    // Holding the connection while the calls queue up is the point: they must all be waiting.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queued_behind_one_another_share_one_commit_and_each_returns_after_it() {
        let dir = scratch_dir("group-commit");
        let path = dir.join("voronka.db");
        let embedded = Embedded::open(&path, Arc::new(SystemClock)).unwrap();
        embedded.store.put(item(0), None).await.unwrap();
        let db = embedded.store.db.clone();
        let before = embedded.commits();

        let held = db.shared.lock();
        let mut calls = Vec::new();
        for id in 1..=8 {
            let store = embedded.store.clone();
            calls.push(tokio::spawn(async move { store.put(item(id), None).await }));
        }
        // One of them finds its condition broken: only its own write is undone.
        let store = embedded.store.clone();
        let refused = tokio::spawn(async move { store.put(item(0), Some(Condition::NotExists)).await });
        until_queued(&db, 9).await;
        drop(held);
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert!(matches!(refused.await.unwrap(), Err(voronka_domain::ports::StoreError::ConditionFailed)));
        assert_eq!(embedded.commits() - before, 1, "nine calls queued together commit once");

        // Every acknowledged write is visible to another process's connection: committed.
        let other = Connection::open(&path).unwrap();
        let rows: i64 = other.query_row("SELECT COUNT(*) FROM items WHERE pk LIKE 'T#%'", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 9);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn when_a_groups_transaction_is_lost_every_call_in_it_fails() {
        let dir = scratch_dir("group-lost");
        let embedded = Embedded::open(&dir.join("voronka.db"), Arc::new(SystemClock)).unwrap();
        let db = embedded.store.db.clone();
        // A caller queued behind the first keeps the group open after the first call's turn.
        db.shared.queued.fetch_add(1, Ordering::SeqCst);
        let store = embedded.store.clone();
        let first = tokio::spawn(async move { store.put(item(1), None).await });
        for _ in 0..10_000 {
            if db.shared.lock().group.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(db.shared.lock().group.is_some(), "the first call's write waits in an open group");
        // The queued caller's turn: the database ends the transaction under it (as SQLite does on a
        // full disk or an I/O error).
        let (_, pending) =
            db.shared.take_turn(|connection| connection.execute_batch("ROLLBACK").map_err(|e| e.to_string()));
        db.shared.queued.fetch_sub(1, Ordering::SeqCst);
        assert!(matches!(pending, Pending::Settled(Err(_))));
        let answer = first.await.unwrap();
        assert!(
            matches!(&answer, Err(voronka_domain::ports::StoreError::Backend(message)) if message.contains("did not commit")),
            "{answer:?}"
        );
        assert!(embedded.store.get(&Key::new("T#1", "A")).await.unwrap().is_none(), "and it is indeed not there");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_scratch_database_that_lost_answered_writes_refuses_every_later_call() {
        let embedded = Embedded::in_memory(Arc::new(SystemClock));
        embedded.store.put(item(1), None).await.unwrap();
        let db = embedded.store.db.clone();
        assert!(db.shared.lock().group.is_some(), "answered, not yet committed");
        // The database ends the transaction under the next call (a full disk, an I/O error).
        let _ = db.shared.take_turn(|connection| connection.execute_batch("ROLLBACK").map_err(|e| e.to_string()));
        let later = embedded.store.get(&Key::new("T#1", "A")).await;
        assert!(
            matches!(&later, Err(voronka_domain::ports::StoreError::Backend(m)) if m.contains("lost")),
            "{later:?}"
        );
        assert!(embedded.store.put(item(2), None).await.is_err(), "no write is taken either");
    }

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
