//! Baselines for `tests/load.sh` (BENCHMARKS.md, "The local stack under load"): what this machine
//! does in the same run without Voronka's work per request.
//!
//! - `loadbench bare-axum`: the routes the load test drives, each answering a fixed body at once,
//!   on `#[tokio::main]` as `voronka serve` is (one worker thread per core): the ceiling the HTTP
//!   stack alone sets.
//! - `loadbench store-limit`: the durable writes `POST /v1/events` makes for an unsigned batch, in a
//!   plain rusqlite loop on one connection with the embedded store's schema and pragmas: the
//!   ceiling the disk sets, with one commit per write as the store does today, one per request, or
//!   one per group of requests.
//! - `loadbench queue-depth`: the messages waiting in each queue of a server's database.
//!
//! Each measuring command ends with one `LOADRESULT` line in the format of `tests/load.lua`'s, so
//! the script reads every figure the same way.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, StatusCode};
use axum::routing::{get, post};
use clap::{Parser, Subcommand};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};

#[derive(Parser)]
#[command(about = "Baselines for tests/load.sh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the load test's routes with fixed answers until killed.
    BareAxum {
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: String,
        /// The body `GET /v1/forms/{id}` answers (the script saves Voronka's own, so both send
        /// the same bytes).
        #[arg(long)]
        describe_body: Option<PathBuf>,
    },
    /// Runs the events route's durable writes in a loop for `--seconds` on a new database in `--dir`.
    StoreLimit {
        #[arg(long)]
        dir: PathBuf,
        /// Events per request.
        #[arg(long, default_value_t = 1)]
        events: usize,
        /// `per-write` (one commit per write, as the embedded store does), `per-request`, or
        /// `group:<requests per commit>`.
        #[arg(long, default_value = "per-write")]
        commit: String,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// Prints `<queue>=<messages>` for every queue holding messages in a server's database.
    QueueDepth {
        #[arg(long)]
        db: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::BareAxum { addr, describe_body } => bare_axum(&addr, describe_body.as_deref()),
        Command::StoreLimit { dir, events, commit, seconds } => {
            store_limit(&dir, events, Commit::parse(&commit)?, Duration::from_secs(seconds))
        }
        Command::QueueDepth { db } => queue_depth(&db),
    }
}

const JSON: [(HeaderName, &str); 1] = [(CONTENT_TYPE, "application/json")];

#[tokio::main]
async fn bare_axum(addr: &str, describe_body: Option<&Path>) -> Result<()> {
    let describe: &'static str = match describe_body {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Box::leak(text.into_boxed_str())
        }
        None => r#"{"id":"newsletter","fields":[]}"#,
    };
    let app = Router::new()
        .route("/v1/forms/{form_id}", get(move || async move { (JSON, describe) }))
        .route(
            "/v1/forms/{form_id}/submissions",
            post(move |_body: Bytes| async move {
                (StatusCode::CREATED, JSON, r#"{"contact_id":"c_bare","status":"created"}"#)
            }),
        )
        .route(
            "/v1/events",
            post(move |_body: Bytes| async move {
                (StatusCode::ACCEPTED, JSON, r#"{"accepted":1,"duplicates":0,"rejected":0,"failed":0,"results":[]}"#)
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    // The same words as `voronka serve`'s, so the script finds either address the same way.
    println!("bare axum is listening on http://{} (fixed answers)", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// How the loop groups its writes into transactions.
#[derive(Debug, Clone, Copy)]
enum Commit {
    PerWrite,
    PerRequest,
    Group(usize),
}

impl Commit {
    fn parse(text: &str) -> Result<Commit> {
        Ok(match text {
            "per-write" => Commit::PerWrite,
            "per-request" => Commit::PerRequest,
            _ => match text.strip_prefix("group:").and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => Commit::Group(n),
                _ => bail!("--commit must be per-write, per-request or group:<n>, not {text}"),
            },
        })
    }
}

/// The embedded store's pragmas for `voronka serve` (`Durability::PowerCut` in
/// shared/embedded/src/lib.rs) and its schema; keep them in step.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; \
                       PRAGMA secure_delete = ON; PRAGMA cache_size = -32768;";
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    pk TEXT NOT NULL, sk TEXT NOT NULL, gsi1pk TEXT, gsi1sk TEXT, ttl INTEGER, body TEXT NOT NULL,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_gsi1 ON items (gsi1pk, gsi1sk, pk, sk) WHERE gsi1pk IS NOT NULL AND gsi1sk IS NOT NULL;
CREATE INDEX IF NOT EXISTS items_ttl ON items (ttl) WHERE ttl IS NOT NULL;
CREATE TABLE IF NOT EXISTS queue_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, message_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL, visible_at INTEGER NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT
);
CREATE INDEX IF NOT EXISTS queue_visible ON queue_messages (queue, visible_at, seq);
CREATE UNIQUE INDEX IF NOT EXISTS queue_receipt ON queue_messages (receipt) WHERE receipt IS NOT NULL;
";

fn store_limit(dir: &Path, events: usize, commit: Commit, run_for: Duration) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("limit.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let connection = Connection::open(&path)?;
    connection.execute_batch(PRAGMAS)?;
    connection.execute_batch(SCHEMA)?;
    connection.set_prepared_statement_cache_capacity(128);

    let per_transaction = match commit {
        Commit::Group(n) => n,
        _ => 1,
    };
    let commit_each_write = matches!(commit, Commit::PerWrite);
    let mut latencies_us: Vec<u64> = Vec::new();
    let mut request = 0u64;
    let started = Instant::now();
    while started.elapsed() < run_for {
        let group_started = Instant::now();
        if !commit_each_write {
            connection.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        }
        for _ in 0..per_transaction {
            request += 1;
            events_request(&connection, request, events, commit_each_write)?;
        }
        if !commit_each_write {
            connection.prepare_cached("COMMIT")?.execute([])?;
        }
        // Every request of a group is answered when the group's commit returns.
        let took = group_started.elapsed().as_micros() as u64;
        latencies_us.extend(std::iter::repeat_n(took, per_transaction));
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    let at = |q: f64| latencies_us[((latencies_us.len() - 1) as f64 * q).round() as usize];
    println!(
        "LOADRESULT requests={request} seconds={seconds:.3} p50_us={} p99_us={} non2xx=0 errors=0",
        at(0.50),
        at(0.99)
    );
    Ok(())
}

/// The writes of one unsigned `POST /v1/events` with `events` new events, in the order the handler
/// makes them: the per-address rate-limit counter, a receipt claimed per event, the batch onto the
/// events queue, each receipt marked queued. As the store does, each item write reads the item
/// (its condition), then writes the whole item back as JSON.
fn events_request(connection: &Connection, request: u64, events: usize, commit_each_write: bool) -> Result<()> {
    let now = 1_800_000_000 + (request / 1000) as i64;
    let write = |work: &dyn Fn() -> Result<()>| -> Result<()> {
        if commit_each_write {
            connection.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        }
        work()?;
        if commit_each_write {
            connection.prepare_cached("COMMIT")?.execute([])?;
        }
        Ok(())
    };
    let window = now - now.rem_euclid(60);
    write(&|| {
        let (pk, sk) = ("RATE#events-ip#5b0b4c1a2e6f9d3c", window.to_string());
        let mut item = read(connection, pk, &sk)?.unwrap_or_default();
        let hits = item.get("hits").and_then(Value::as_i64).unwrap_or(0);
        item.insert("hits".into(), json!(hits + 1));
        item.entry("ttl").or_insert(json!(window + 120));
        upsert(connection, pk, &sk, item)
    })?;
    let ids: Vec<String> = (0..events).map(|i| format!("load-{request}-{i}")).collect();
    for id in &ids {
        write(&|| {
            let pk = format!("EVENT#{id}");
            if read(connection, &pk, "RECEIPT")?.is_some() {
                bail!("event ids are unique");
            }
            let item = json!({"state": "pending", "received_at": "2027-01-15T08:00:00Z", "ttl": now + 30 * 86_400});
            upsert(connection, &pk, "RECEIPT", item.as_object().cloned().unwrap_or_default())
        })?;
    }
    write(&|| {
        for (n, id) in ids.iter().enumerate() {
            let body = json!({
                "event_id": id, "event_type": "page_view", "contact": {"anonymous_id": format!("anon-{request}")},
                "occurred_at": "2027-01-15T08:00:00Z", "received_at": "2027-01-15T08:00:00Z",
                "properties": {"url": "https://shop.example/p/1", "page_type": "product"},
                "trusted": false, "source": "browser",
            });
            connection
                .prepare_cached(
                    "INSERT INTO queue_messages (queue, message_id, body, visible_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params!["events", format!("m-{now}-{request}-{n}"), body.to_string(), now * 1_000_000])?;
        }
        Ok(())
    })?;
    for id in &ids {
        write(&|| {
            let pk = format!("EVENT#{id}");
            let mut item = read(connection, &pk, "RECEIPT")?.context("the receipt was claimed")?;
            item.insert("state".into(), json!("queued"));
            upsert(connection, &pk, "RECEIPT", item)
        })?;
    }
    Ok(())
}

fn read(connection: &Connection, pk: &str, sk: &str) -> Result<Option<Map<String, Value>>> {
    let body: Option<String> = connection
        .prepare_cached("SELECT body FROM items WHERE pk = ?1 AND sk = ?2")?
        .query_row(params![pk, sk], |row| row.get(0))
        .optional()?;
    Ok(match body {
        Some(text) => Some(serde_json::from_str(&text)?),
        None => None,
    })
}

fn upsert(connection: &Connection, pk: &str, sk: &str, mut item: Map<String, Value>) -> Result<()> {
    item.insert("pk".into(), json!(pk));
    item.insert("sk".into(), json!(sk));
    let ttl = item.get("ttl").and_then(Value::as_i64);
    connection
        .prepare_cached(
            "INSERT INTO items (pk, sk, gsi1pk, gsi1sk, ttl, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (pk, sk) DO UPDATE SET gsi1pk = excluded.gsi1pk, gsi1sk = excluded.gsi1sk,
             ttl = excluded.ttl, body = excluded.body",
        )?
        .execute(params![pk, sk, None::<String>, None::<String>, ttl, Value::Object(item).to_string()])?;
    Ok(())
}

fn queue_depth(db: &Path) -> Result<()> {
    let connection = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
    connection.busy_timeout(Duration::from_secs(10))?;
    let mut statement =
        connection.prepare("SELECT queue, COUNT(*) FROM queue_messages GROUP BY queue ORDER BY queue")?;
    let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
    let depths: Vec<String> = rows.map(|row| row.map(|(queue, n)| format!("{queue}={n}"))).collect::<Result<_, _>>()?;
    println!("{}", depths.join(" "));
    Ok(())
}
