//! The storage port: narrow and shaped like DynamoDB's item API.
//!
//! Items are JSON objects with a partition key `pk`, a sort key `sk`, an optional secondary index
//! key pair `gsi1pk`/`gsi1sk` and an optional `ttl` (epoch seconds). Conditions and updates are
//! Rust values, never expression strings: the AWS adapter translates them to DynamoDB expressions,
//! the embedded adapter evaluates them on its file store, and `voronka-contract` pins down that
//! both mean the same thing.
//!
//! Semantics both adapters share (and the contract suite checks):
//! - conditions see the stored item as it is, including an item whose `ttl` has passed but which
//!   has not been purged yet (DynamoDB deletes expired items lazily);
//! - `get` and `query` never return an item whose `ttl` has passed;
//! - an update of a missing item creates it (upsert), unless its condition says otherwise;
//! - numbers compare numerically, strings by their UTF-8 bytes, values of different types never
//!   compare true.

use async_trait::async_trait;
use serde_json::{Map, Value};

/// Attribute names with a fixed meaning in every item.
pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const GSI1_PK: &str = "gsi1pk";
pub const GSI1_SK: &str = "gsi1sk";
pub const TTL: &str = "ttl";

/// Most operations a single transaction may hold (DynamoDB's limit).
pub const MAX_TRANSACTION_OPS: usize = 100;
/// Most items a single unconditional batch write may hold (DynamoDB's limit).
pub const MAX_BATCH_PUT: usize = 25;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self { pk: pk.into(), sk: sk.into() }
    }
}

/// A stored item: a JSON object that always carries `pk` and `sk` as strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Item(pub Map<String, Value>);

impl Item {
    /// Builds an item from a key and the other attributes of a JSON object.
    /// Panics only on a programming error: `attributes` must be a JSON object.
    pub fn new(key: &Key, attributes: Value) -> Self {
        let mut map = match attributes {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => panic!("item attributes must be a JSON object, got {other}"),
        };
        map.insert(PK.into(), Value::String(key.pk.clone()));
        map.insert(SK.into(), Value::String(key.sk.clone()));
        Item(map)
    }

    pub fn key(&self) -> Option<Key> {
        Some(Key::new(self.get_str(PK)?, self.get_str(SK)?))
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    pub fn get_i64(&self, name: &str) -> Option<i64> {
        self.0.get(name).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
    }

    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.0.insert(name.to_string(), value.into());
        self
    }

    /// Sets the secondary index keys so the item appears in `Index::Gsi1`.
    pub fn with_gsi1(self, pk: impl Into<String>, sk: impl Into<String>) -> Self {
        self.with(GSI1_PK, pk.into()).with(GSI1_SK, sk.into())
    }

    /// Sets the time (epoch seconds) after which reads no longer see this item.
    pub fn with_ttl(self, expires_at_epoch_seconds: i64) -> Self {
        self.with(TTL, expires_at_epoch_seconds)
    }

    /// True when the item's `ttl` lies at or before `now_epoch_seconds`.
    pub fn is_expired(&self, now_epoch_seconds: i64) -> bool {
        self.get_i64(TTL).is_some_and(|ttl| ttl <= now_epoch_seconds)
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

/// A condition on the item currently stored under the key an operation names.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// No item is stored under the key.
    NotExists,
    /// An item is stored under the key.
    Exists,
    AttributeExists(String),
    AttributeNotExists(String),
    Equals(String, Value),
    NotEquals(String, Value),
    LessThan(String, Value),
    LessOrEqual(String, Value),
    GreaterThan(String, Value),
    GreaterOrEqual(String, Value),
    And(Vec<Condition>),
    Or(Vec<Condition>),
}

impl Condition {
    pub fn equals(name: &str, value: impl Into<Value>) -> Self {
        Condition::Equals(name.into(), value.into())
    }
    pub fn less_than(name: &str, value: impl Into<Value>) -> Self {
        Condition::LessThan(name.into(), value.into())
    }
    pub fn less_or_equal(name: &str, value: impl Into<Value>) -> Self {
        Condition::LessOrEqual(name.into(), value.into())
    }
    pub fn attribute_not_exists(name: &str) -> Self {
        Condition::AttributeNotExists(name.into())
    }
    pub fn attribute_exists(name: &str) -> Self {
        Condition::AttributeExists(name.into())
    }
}

/// One change to a top-level attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateAction {
    Set(String, Value),
    /// Sets the attribute only where it is missing.
    SetIfNotExists(String, Value),
    /// Adds a number; a missing attribute counts as zero.
    Add(String, Value),
    /// Appends to a list; a missing attribute counts as an empty list.
    Append(String, Vec<Value>),
    Remove(String),
}

impl UpdateAction {
    pub fn set(name: &str, value: impl Into<Value>) -> Self {
        UpdateAction::Set(name.into(), value.into())
    }
    pub fn set_if_not_exists(name: &str, value: impl Into<Value>) -> Self {
        UpdateAction::SetIfNotExists(name.into(), value.into())
    }
    pub fn add(name: &str, amount: impl Into<Value>) -> Self {
        UpdateAction::Add(name.into(), amount.into())
    }
    pub fn remove(name: &str) -> Self {
        UpdateAction::Remove(name.into())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Index {
    /// The table's own key: `pk`, `sk`.
    #[default]
    Table,
    /// The secondary index keyed `gsi1pk`, `gsi1sk` (projects whole items).
    Gsi1,
}

/// Which sort keys of a partition a query reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SortKeyRange {
    #[default]
    All,
    BeginsWith(String),
    /// Inclusive on both ends, like DynamoDB's BETWEEN.
    Between(String, String),
    LessOrEqual(String),
    GreaterOrEqual(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    pub index: Index,
    pub partition: String,
    pub range: SortKeyRange,
    /// Ascending sort-key order when true.
    pub forward: bool,
    pub limit: Option<u32>,
    /// Continue after this position (from `Page::next`).
    pub start_after: Option<Cursor>,
}

impl Query {
    pub fn partition(index: Index, partition: impl Into<String>) -> Self {
        Query { index, partition: partition.into(), forward: true, ..Default::default() }
    }
    pub fn range(mut self, range: SortKeyRange) -> Self {
        self.range = range;
        self
    }
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }
    pub fn backward(mut self) -> Self {
        self.forward = false;
        self
    }
}

/// Where a query stopped: the keys of the last item it returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub key: Key,
    /// The index keys of the last item, for index queries.
    pub index_key: Option<Key>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Item>,
    pub next: Option<Cursor>,
}

/// One operation of a transaction; all of them happen, or none.
#[derive(Debug, Clone, PartialEq)]
pub enum TransactOp {
    Put { item: Item, condition: Option<Condition> },
    Update { key: Key, actions: Vec<UpdateAction>, condition: Option<Condition> },
    Delete { key: Key, condition: Option<Condition> },
    Check { key: Key, condition: Condition },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the condition of the write did not hold")]
    ConditionFailed,
    /// The transaction changed nothing; `failed` lists the operations whose condition did not hold.
    #[error("the transaction was cancelled: conditions failed at operations {failed:?}")]
    TransactionCancelled { failed: Vec<usize> },
    /// Retryable: the backend asked to slow down or a concurrent transaction touched the same items.
    #[error("the store is busy, retry later: {0}")]
    Throttled(String),
    #[error("invalid request to the store: {0}")]
    Invalid(String),
    #[error("store backend error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether the same request may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Throttled(_) | StoreError::Backend(_))
    }
}

#[async_trait]
pub trait Store: Send + Sync {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError>;

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError>;

    /// Applies the actions and returns the item as it is afterwards.
    async fn update(
        &self,
        key: &Key,
        actions: Vec<UpdateAction>,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError>;

    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), StoreError>;

    async fn query(&self, query: Query) -> Result<Page, StoreError>;

    /// At most `MAX_TRANSACTION_OPS` operations, on distinct keys.
    async fn transact(&self, ops: Vec<TransactOp>) -> Result<(), StoreError>;

    /// Unconditional puts of at most `MAX_BATCH_PUT` items; returns once all are written.
    async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError>;
}

/// Every item a query matches, following the cursor page by page (a page stops at 1 MB on
/// DynamoDB, so one page is not "all of them" for a partition that grew).
pub async fn query_all(store: &dyn Store, mut query: Query) -> Result<Vec<Item>, StoreError> {
    let mut items = Vec::new();
    loop {
        let page = store.query(query.clone()).await?;
        items.extend(page.items);
        match page.next {
            Some(cursor) => query.start_after = Some(cursor),
            None => return Ok(items),
        }
    }
}

#[async_trait]
impl<T: Store + ?Sized> Store for std::sync::Arc<T> {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        (**self).get(key).await
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        (**self).put(item, condition).await
    }

    async fn update(
        &self,
        key: &Key,
        actions: Vec<UpdateAction>,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError> {
        (**self).update(key, actions, condition).await
    }

    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), StoreError> {
        (**self).delete(key, condition).await
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        (**self).query(query).await
    }

    async fn transact(&self, ops: Vec<TransactOp>) -> Result<(), StoreError> {
        (**self).transact(ops).await
    }

    async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        (**self).batch_put(items).await
    }
}
