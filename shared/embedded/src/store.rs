//! The embedded store: DynamoDB's item semantics on an SQLite table.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};
use voronka_domain::ports::store::{GSI1_PK, GSI1_SK, MAX_BATCH_PUT, MAX_TRANSACTION_OPS, TTL};
use voronka_domain::ports::{
    Clock, Condition, Cursor, Index, Item, Key, Page, Query, SortKeyRange, Store, StoreError, TransactOp, UpdateAction,
};

use crate::semantics::{apply_updates, condition_holds};
use crate::{Db, WriteTx};

pub struct EmbeddedStore {
    pub(crate) db: Db,
    clock: Arc<dyn Clock>,
}

fn backend(error: rusqlite::Error) -> StoreError {
    match error {
        rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::DatabaseBusy => {
            StoreError::Throttled("the database file is locked by another process".into())
        }
        other => StoreError::Backend(other.to_string()),
    }
}

fn read(tx: &Connection, key: &Key) -> Result<Option<Map<String, Value>>, StoreError> {
    let body: Option<String> = tx
        .prepare_cached("SELECT body FROM items WHERE pk = ?1 AND sk = ?2")
        .and_then(|mut statement| statement.query_row(params![key.pk, key.sk], |row| row.get(0)))
        .optional()
        .map_err(backend)?;
    body.map(|text| parse_body(&text)).transpose()
}

fn parse_body(text: &str) -> Result<Map<String, Value>, StoreError> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(StoreError::Backend("a stored item is not a JSON object".into())),
    }
}

fn write(tx: &Connection, item: &Map<String, Value>) -> Result<(), StoreError> {
    let text = |name: &str| item.get(name).and_then(Value::as_str).map(str::to_string);
    let (Some(pk), Some(sk)) = (text("pk"), text("sk")) else {
        return Err(StoreError::Invalid("an item needs string `pk` and `sk`".into()));
    };
    if pk.is_empty() || sk.is_empty() {
        return Err(StoreError::Invalid("key attributes must not be empty".into()));
    }
    let ttl = item.get(TTL).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)));
    let body = serde_json::to_string(item).map_err(|e| StoreError::Invalid(e.to_string()))?;
    tx.prepare_cached(
        "INSERT INTO items (pk, sk, gsi1pk, gsi1sk, ttl, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (pk, sk) DO UPDATE SET gsi1pk = excluded.gsi1pk, gsi1sk = excluded.gsi1sk,
         ttl = excluded.ttl, body = excluded.body",
    )
    .and_then(|mut statement| statement.execute(params![pk, sk, text(GSI1_PK), text(GSI1_SK), ttl, body]))
    .map_err(backend)?;
    Ok(())
}

fn remove(tx: &Connection, key: &Key) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM items WHERE pk = ?1 AND sk = ?2")
        .and_then(|mut statement| statement.execute(params![key.pk, key.sk]))
        .map_err(backend)?;
    Ok(())
}

fn check(condition: Option<&Condition>, current: Option<&Map<String, Value>>) -> bool {
    condition.is_none_or(|c| condition_holds(c, current))
}

fn begin(connection: &Connection) -> Result<WriteTx<'_>, StoreError> {
    WriteTx::begin(connection).map_err(backend)
}

fn op_key(op: &TransactOp) -> Result<Key, StoreError> {
    match op {
        TransactOp::Put { item, .. } => {
            item.key().ok_or_else(|| StoreError::Invalid("an item needs `pk` and `sk`".into()))
        }
        TransactOp::Update { key, .. } | TransactOp::Delete { key, .. } | TransactOp::Check { key, .. } => {
            Ok(key.clone())
        }
    }
}

impl EmbeddedStore {
    pub(crate) fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        EmbeddedStore { db, clock }
    }

    /// Deletes items whose `ttl` has passed, as DynamoDB's TTL sweeper does; returns how many.
    pub async fn purge_expired(&self) -> Result<usize, StoreError> {
        let now = self.clock.now().as_second();
        self.db
            .run(move |connection| {
                connection
                    .prepare_cached("DELETE FROM items WHERE ttl IS NOT NULL AND ttl <= ?1")
                    .and_then(|mut statement| statement.execute(params![now]))
                    .map_err(backend)
            })
            .await
    }

    /// Every row of the database file as text, every column of every table (items, expired or
    /// not, and queue messages): what a search for personal data left behind must read, below
    /// the store's own reads.
    pub async fn raw_rows(&self) -> Result<Vec<String>, StoreError> {
        self.db
            .run(move |connection| {
                let mut rows = Vec::new();
                for sql in [
                    "SELECT pk, sk, gsi1pk, gsi1sk, ttl, body FROM items",
                    "SELECT queue, message_id, body, visible_at, receive_count, receipt FROM queue_messages",
                ] {
                    let mut statement = connection.prepare(sql).map_err(backend)?;
                    let mut found = statement.query([]).map_err(backend)?;
                    while let Some(row) = found.next().map_err(backend)? {
                        let columns: Vec<String> = (0..6)
                            .map(|i| match row.get_ref(i) {
                                Ok(rusqlite::types::ValueRef::Text(text)) => String::from_utf8_lossy(text).into_owned(),
                                Ok(rusqlite::types::ValueRef::Integer(n)) => n.to_string(),
                                Ok(rusqlite::types::ValueRef::Blob(bytes)) => {
                                    String::from_utf8_lossy(bytes).into_owned()
                                }
                                _ => String::new(),
                            })
                            .collect();
                        rows.push(columns.join("\t"));
                    }
                }
                Ok(rows)
            })
            .await
    }
}

/// The first key after every key starting with `prefix` (its last byte raised by one), for a
/// range read on the primary key.
fn after_prefix(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).unwrap_or_default();
        }
    }
    String::from("\u{10FFFF}")
}

impl EmbeddedStore {
    /// Folds every item whose partition key starts with `prefix`, expired or not, in key order,
    /// one at a time (a whole item kind is never held at once): for checks that must read every
    /// item of a kind, such as the demo's invariants. DynamoDB would need a Scan for this.
    pub async fn fold_items_under<T: Send + 'static>(
        &self,
        prefix: &str,
        init: T,
        mut fold: impl FnMut(&mut T, Item) + Send + 'static,
    ) -> Result<T, StoreError> {
        let (from, to) = (prefix.to_string(), after_prefix(prefix));
        self.db
            .run(move |connection| {
                let mut statement = connection
                    .prepare("SELECT body FROM items WHERE pk >= ?1 AND pk < ?2 ORDER BY pk, sk")
                    .map_err(backend)?;
                let mut rows = statement.query(params![from, to]).map_err(backend)?;
                let mut state = init;
                while let Some(row) = rows.next().map_err(backend)? {
                    let text: String = row.get(0).map_err(backend)?;
                    fold(&mut state, Item(parse_body(&text)?));
                }
                Ok(state)
            })
            .await
    }

    /// Folds the keys of every item whose partition key starts with `prefix`, expired or not,
    /// without reading the items.
    pub async fn fold_keys_under<T: Send + 'static>(
        &self,
        prefix: &str,
        init: T,
        mut fold: impl FnMut(&mut T, &str, &str) + Send + 'static,
    ) -> Result<T, StoreError> {
        let (from, to) = (prefix.to_string(), after_prefix(prefix));
        self.db
            .run(move |connection| {
                let mut statement = connection
                    .prepare("SELECT pk, sk FROM items WHERE pk >= ?1 AND pk < ?2 ORDER BY pk, sk")
                    .map_err(backend)?;
                let mut rows = statement.query(params![from, to]).map_err(backend)?;
                let mut state = init;
                while let Some(row) = rows.next().map_err(backend)? {
                    let pk =
                        row.get_ref(0).map_err(backend)?.as_str().map_err(|e| StoreError::Backend(e.to_string()))?;
                    let sk =
                        row.get_ref(1).map_err(backend)?.as_str().map_err(|e| StoreError::Backend(e.to_string()))?;
                    fold(&mut state, pk, sk);
                }
                Ok(state)
            })
            .await
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let key = key.clone();
        let now = self.clock.now().as_second();
        self.db.run(move |connection| Ok(read(connection, &key)?.map(Item).filter(|item| !item.is_expired(now)))).await
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        let key = item.key().ok_or_else(|| StoreError::Invalid("an item needs string `pk` and `sk`".into()))?;
        self.db
            .run(move |connection| {
                let tx = begin(connection)?;
                let current = read(&tx, &key)?;
                if !check(condition.as_ref(), current.as_ref()) {
                    return Err(StoreError::ConditionFailed);
                }
                write(&tx, &item.0)?;
                tx.commit().map_err(backend)
            })
            .await
    }

    async fn update(
        &self,
        key: &Key,
        actions: Vec<UpdateAction>,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError> {
        let key = key.clone();
        self.db
            .run(move |connection| {
                let tx = begin(connection)?;
                let current = read(&tx, &key)?;
                if !check(condition.as_ref(), current.as_ref()) {
                    return Err(StoreError::ConditionFailed);
                }
                let updated = apply_updates(&key, current, &actions)?;
                write(&tx, &updated)?;
                tx.commit().map_err(backend)?;
                Ok(Item(updated))
            })
            .await
    }

    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), StoreError> {
        let key = key.clone();
        self.db
            .run(move |connection| {
                let tx = begin(connection)?;
                let current = read(&tx, &key)?;
                if !check(condition.as_ref(), current.as_ref()) {
                    return Err(StoreError::ConditionFailed);
                }
                remove(&tx, &key)?;
                tx.commit().map_err(backend)
            })
            .await
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        let now = self.clock.now().as_second();
        self.db.run(move |connection| run_query(connection, &query, now)).await
    }

    async fn transact(&self, ops: Vec<TransactOp>) -> Result<(), StoreError> {
        if ops.is_empty() || ops.len() > MAX_TRANSACTION_OPS {
            return Err(StoreError::Invalid(format!("a transaction holds 1 to {MAX_TRANSACTION_OPS} operations")));
        }
        let keys = ops.iter().map(op_key).collect::<Result<Vec<_>, _>>()?;
        if keys.iter().collect::<BTreeSet<_>>().len() != keys.len() {
            return Err(StoreError::Invalid("a transaction touches each item at most once".into()));
        }
        self.db
            .run(move |connection| {
                let tx = begin(connection)?;
                let mut current = Vec::with_capacity(ops.len());
                let mut failed = Vec::new();
                for (index, (op, key)) in ops.iter().zip(&keys).enumerate() {
                    let stored = read(&tx, key)?;
                    let condition = match op {
                        TransactOp::Put { condition, .. }
                        | TransactOp::Update { condition, .. }
                        | TransactOp::Delete { condition, .. } => condition.as_ref(),
                        TransactOp::Check { condition, .. } => Some(condition),
                    };
                    if !check(condition, stored.as_ref()) {
                        failed.push(index);
                    }
                    current.push(stored);
                }
                if !failed.is_empty() {
                    return Err(StoreError::TransactionCancelled { failed });
                }
                for ((op, key), stored) in ops.into_iter().zip(&keys).zip(current) {
                    match op {
                        TransactOp::Put { item, .. } => write(&tx, &item.0)?,
                        TransactOp::Update { actions, .. } => write(&tx, &apply_updates(key, stored, &actions)?)?,
                        TransactOp::Delete { .. } => remove(&tx, key)?,
                        TransactOp::Check { .. } => {}
                    }
                }
                tx.commit().map_err(backend)
            })
            .await
    }

    async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        if items.len() > MAX_BATCH_PUT {
            return Err(StoreError::Invalid(format!("a batch holds at most {MAX_BATCH_PUT} items")));
        }
        self.db
            .run(move |connection| {
                let tx = begin(connection)?;
                for item in &items {
                    write(&tx, &item.0)?;
                }
                tx.commit().map_err(backend)
            })
            .await
    }
}

fn run_query(connection: &Connection, query: &Query, now: i64) -> Result<Page, StoreError> {
    let (pk_col, sk_col) = match query.index {
        Index::Table => ("pk", "sk"),
        Index::Gsi1 => ("gsi1pk", "gsi1sk"),
    };
    let mut sql = format!("SELECT body FROM items WHERE {pk_col} = ?1");
    let mut args: Vec<String> = vec![query.partition.clone()];
    let arg = |value: &str, args: &mut Vec<String>| {
        args.push(value.to_string());
        format!("?{}", args.len())
    };
    match &query.range {
        SortKeyRange::All => {
            if query.index == Index::Gsi1 {
                sql.push_str(" AND gsi1sk IS NOT NULL");
            }
        }
        SortKeyRange::BeginsWith(prefix) => {
            // Byte-wise prefix match: `substr` on a BLOB cast avoids LIKE's case folding and wildcards.
            let p = arg(prefix, &mut args);
            sql.push_str(&format!(
                " AND substr(CAST({sk_col} AS BLOB), 1, length(CAST({p} AS BLOB))) = CAST({p} AS BLOB)"
            ));
        }
        SortKeyRange::Between(low, high) => {
            let low = arg(low, &mut args);
            let high = arg(high, &mut args);
            sql.push_str(&format!(" AND {sk_col} >= {low} AND {sk_col} <= {high}"));
        }
        SortKeyRange::LessOrEqual(bound) => {
            let b = arg(bound, &mut args);
            sql.push_str(&format!(" AND {sk_col} <= {b}"));
        }
        SortKeyRange::GreaterOrEqual(bound) => {
            let b = arg(bound, &mut args);
            sql.push_str(&format!(" AND {sk_col} >= {b}"));
        }
    }
    let (cmp, order) = if query.forward { (">", "ASC") } else { ("<", "DESC") };
    if let Some(cursor) = &query.start_after {
        match query.index {
            Index::Table => {
                let sk = arg(&cursor.key.sk, &mut args);
                sql.push_str(&format!(" AND sk {cmp} {sk}"));
            }
            Index::Gsi1 => {
                let index_key = cursor
                    .index_key
                    .as_ref()
                    .ok_or_else(|| StoreError::Invalid("an index cursor needs the index key".into()))?;
                let gsk = arg(&index_key.sk, &mut args);
                let pk = arg(&cursor.key.pk, &mut args);
                let sk = arg(&cursor.key.sk, &mut args);
                sql.push_str(&format!(" AND (gsi1sk, pk, sk) {cmp} ({gsk}, {pk}, {sk})"));
            }
        }
    }
    match query.index {
        Index::Table => sql.push_str(&format!(" ORDER BY sk {order}")),
        Index::Gsi1 => sql.push_str(&format!(" ORDER BY gsi1sk {order}, pk {order}, sk {order}")),
    }
    if let Some(limit) = query.limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    let mut statement = connection.prepare_cached(&sql).map_err(backend)?;
    let rows = statement
        .query_map(rusqlite::params_from_iter(args.iter()), |row| row.get::<_, String>(0))
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    let scanned = rows.len();
    let items = rows.iter().map(|text| parse_body(text).map(Item)).collect::<Result<Vec<_>, _>>()?;
    // As DynamoDB does, the limit counts items read before expired ones are filtered out, and a
    // full page always offers a cursor.
    let next = match (query.limit, items.last()) {
        (Some(limit), Some(last)) if scanned == limit as usize => Some(cursor_of(last, query.index)?),
        _ => None,
    };
    let items = items.into_iter().filter(|item| !item.is_expired(now)).collect();
    Ok(Page { items, next })
}

fn cursor_of(item: &Item, index: Index) -> Result<Cursor, StoreError> {
    let key = item.key().ok_or_else(|| StoreError::Backend("a stored item has no key".into()))?;
    let index_key = match index {
        Index::Table => None,
        Index::Gsi1 => {
            Some(Key::new(item.get_str(GSI1_PK).unwrap_or_default(), item.get_str(GSI1_SK).unwrap_or_default()))
        }
    };
    Ok(Cursor { key, index_key })
}
