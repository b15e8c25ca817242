//! Counting at the ports: `Metered<T>` wraps a Store, a Queue or a Mailer and counts the AWS
//! requests the same work makes on AWS (DynamoDB calls with their read and write request units
//! from item sizes, SQS requests in 64 KB chunks, SES emails), per function and per what the work
//! grows with (leads, events, emails, days). A run on the embedded adapters thus reports what the
//! AWS adapters would be billed for; `tests/metering_aws_moto.rs` checks the call counts against
//! the AWS adapters' own counters.
//!
//! The unit rules follow DynamoDB's documentation, matched to what `voronka-aws` asks for:
//! - an item's size is the sum of its attribute names and values (strings by UTF-8 bytes, numbers
//!   one byte per two significant digits plus one, lists and maps 3 bytes plus one per element);
//! - a write costs one unit per started KB of the larger of the item before and after it (a delete:
//!   the item deleted), at least one; a failed condition still costs the item's units;
//! - `GetItem` and table queries are strongly consistent (the adapter asks so), one unit per
//!   started 4 KB; index queries are eventually consistent, half that; a query page is charged on
//!   the summed size of its items, at least one unit;
//! - a transaction costs twice the units of its writes on the table; a condition check is counted
//!   like a write of the item it checks (an assumption: the pricing pages do not price it apart);
//! - an item carrying `gsi1pk` adds the writes of its index entry (ALL projection): its size in
//!   KB, and a delete of the old entry when the index key changes or goes away; index entries are
//!   kept up to date asynchronously, outside a transaction's two phases, so they count once even
//!   for a transactional write (an assumption as well).
//!
//! The size of the item before a write is not known from the write alone: the meter remembers the
//! size of every item it saw (read or written) by a hash of its key. Items written before metering
//! started, or by someone else, count as absent.
//!
//! Functions and drivers come from the innermost `Meter::invoke` around a call (a label that
//! follows the future across polls); calls outside any invocation count as `Unattributed`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};

use super::store::{GSI1_PK, GSI1_SK};
use super::{
    Condition, Item, Key, MailError, Mailer, OutgoingEmail, OutgoingMessage, Page, Query, Queue, QueueError, QueueName,
    ReceivedMessage, SendOutcome, Store, StoreError, TransactOp, UpdateAction,
};
use crate::ports::store::Index;

/// One write request unit covers this many bytes of an item.
pub const WRITE_UNIT_BYTES: u64 = 1024;
/// One read request unit covers this many bytes, strongly consistent.
pub const READ_UNIT_BYTES: u64 = 4096;
/// SQS bills each started 64 KB chunk of a request's payload as one request.
pub const SQS_CHUNK_BYTES: u64 = 64 * 1024;

/// The suite's Lambda functions (as `infra/template.yaml` deploys them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Function {
    LeadCapture,
    QualifyBot,
    KpiApi,
    TriggerEvaluator,
    CartScheduler,
    Sender,
    KpiRollup,
    /// Calls outside any invocation: a demo's own checks, a CLI.
    Unattributed,
}

impl Function {
    pub fn as_str(self) -> &'static str {
        match self {
            Function::LeadCapture => "lead-capture",
            Function::QualifyBot => "qualify-bot",
            Function::KpiApi => "kpi-api",
            Function::TriggerEvaluator => "trigger-evaluator",
            Function::CartScheduler => "cart-scheduler",
            Function::Sender => "sender",
            Function::KpiRollup => "kpi-rollup",
            Function::Unattributed => "unattributed",
        }
    }
}

/// What a piece of work grows with, so one run's counts scale to another workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// Form submissions, confirmations, bot conversations.
    Lead,
    /// Behaviour and outcome events: their ingestion, evaluation and the carts they start.
    Event,
    /// Sends through the mail service.
    Email,
    /// Daily work: spend uploads, the nightly rollup.
    Day,
    /// One scheduled run with nothing due: what a schedule costs by merely running.
    IdleRun,
    Unattributed,
}

/// The AWS requests and units counted for one function and driver.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Requests per AWS operation, named as the AWS adapters count them (`dynamodb.Query` counts
    /// pages).
    pub calls: BTreeMap<&'static str, u64>,
    /// DynamoDB read request units.
    pub read_units: f64,
    /// DynamoDB write request units, index writes included.
    pub write_units: f64,
    /// The same by kind of item (its partition key up to the first `#`), to see what dominates.
    pub write_units_by_item: BTreeMap<String, f64>,
    /// SQS requests as billed (64 KB chunks), empty receives included.
    pub sqs_requests: u64,
    /// Receives that found nothing (on Lambda the event source's polling makes these).
    pub empty_receives: u64,
    /// Emails SES accepted.
    pub emails: u64,
    /// Lambda invocations.
    pub invocations: u64,
    /// In-process time of the invocations, less the time spent inside the adapters (which on
    /// AWS is network latency, modelled per request by the bill instead).
    pub handler_micros: u64,
    /// Time spent inside the wrapped adapters.
    pub adapter_micros: u64,
}

impl Usage {
    pub fn calls_of(&self, operation: &str) -> u64 {
        self.calls.get(operation).copied().unwrap_or(0)
    }

    fn add_write(&mut self, key: Option<&Key>, units: f64) {
        self.write_units += units;
        let kind = key.map_or("?", |k| k.pk.split('#').next().unwrap_or(""));
        *self.write_units_by_item.entry(kind.to_string()).or_default() += units;
    }

    pub fn add(&mut self, other: &Usage) {
        for (operation, n) in &other.calls {
            *self.calls.entry(operation).or_default() += n;
        }
        self.read_units += other.read_units;
        self.write_units += other.write_units;
        for (kind, units) in &other.write_units_by_item {
            *self.write_units_by_item.entry(kind.clone()).or_default() += units;
        }
        self.sqs_requests += other.sqs_requests;
        self.empty_receives += other.empty_receives;
        self.emails += other.emails;
        self.invocations += other.invocations;
        self.handler_micros += other.handler_micros;
        self.adapter_micros += other.adapter_micros;
    }
}

/// One row of a meter's counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    pub function: Function,
    pub driver: Driver,
    pub usage: Usage,
}

/// What the meter knows of a stored item: its size and a hash of its index key, in 8 bytes (the
/// meter keeps one per item of a run that may hold millions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    size: u32,
    index_key: Option<NonZeroU32>,
}

impl Shape {
    fn new(size: u64, index_key: Option<NonZeroU32>) -> Shape {
        Shape { size: size.min(u64::from(u32::MAX)) as u32, index_key }
    }

    fn bytes(self) -> u64 {
        u64::from(self.size)
    }
}

fn short_hash(value: impl Hash) -> NonZeroU32 {
    NonZeroU32::new((hash_of(value) as u32) | 1).expect("odd, so not zero")
}

/// The counts every `Metered` adapter of one stack adds to.
#[derive(Debug, Default)]
pub struct Meter {
    usage: Mutex<BTreeMap<(Function, Driver), Usage>>,
    shapes: Mutex<HashMap<u64, Shape>>,
}

impl Meter {
    pub fn new() -> Arc<Meter> {
        Arc::new(Meter::default())
    }

    /// Every function and driver's counts so far.
    pub fn snapshot(&self) -> Vec<UsageRow> {
        lock(&self.usage)
            .iter()
            .map(|((function, driver), usage)| UsageRow { function: *function, driver: *driver, usage: usage.clone() })
            .collect()
    }

    /// Bytes the items the meter knows of take in the table (DynamoDB adds 100 bytes per item, and
    /// per index entry the item again with its index keys), and how many items that is.
    pub fn stored_bytes(&self) -> (u64, u64) {
        let shapes = lock(&self.shapes);
        let bytes =
            shapes.values().map(|s| s.bytes() + 100 + if s.index_key.is_some() { s.bytes() + 100 } else { 0 }).sum();
        (bytes, shapes.len() as u64)
    }

    /// Runs `work` as one Lambda invocation of `function`: counts it, labels every metered call it
    /// makes, and adds its in-process time less the adapters' time.
    pub async fn invoke<F: Future>(&self, function: Function, driver: Driver, work: F) -> F::Output {
        self.invoke_if(function, driver, work, |_| true).await
    }

    /// As `invoke`, counting the invocation only when `invoked` says so of the outcome (a poll of
    /// an empty queue invokes nothing on Lambda).
    pub async fn invoke_if<F: Future>(
        &self,
        function: Function,
        driver: Driver,
        work: F,
        invoked: impl FnOnce(&F::Output) -> bool,
    ) -> F::Output {
        let scope = Arc::new(Scope { function, driver, adapter_micros: AtomicU64::new(0) });
        let started = Instant::now();
        let output = Labelled { scope: scope.clone(), inner: Box::pin(work) }.await;
        let elapsed = micros(started.elapsed());
        if invoked(&output) {
            let mut usage = lock(&self.usage);
            let usage = usage.entry((function, driver)).or_default();
            usage.invocations += 1;
            usage.handler_micros += elapsed.saturating_sub(scope.adapter_micros.load(Ordering::Relaxed));
        }
        output
    }

    fn record(&self, call: &'static str, elapsed: Duration, change: impl FnOnce(&mut Usage)) {
        let (function, driver) = current_label(elapsed);
        let mut usage = lock(&self.usage);
        let usage = usage.entry((function, driver)).or_default();
        *usage.calls.entry(call).or_default() += 1;
        usage.adapter_micros += micros(elapsed);
        change(usage);
    }

    fn shape(&self, key: &Key) -> Option<Shape> {
        lock(&self.shapes).get(&key_hash(key)).copied()
    }

    fn remember(&self, key: &Key, shape: Option<Shape>) {
        let mut shapes = lock(&self.shapes);
        match shape {
            Some(shape) => shapes.insert(key_hash(key), shape),
            None => shapes.remove(&key_hash(key)),
        };
    }

    fn remember_item(&self, item: &Item) {
        if let Some(key) = item.key() {
            self.remember(&key, Some(shape_of(item)));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn micros(duration: Duration) -> u64 {
    duration.as_micros().min(u128::from(u64::MAX)) as u64
}

fn hash_of(value: impl Hash) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

fn key_hash(key: &Key) -> u64 {
    hash_of((&key.pk, &key.sk))
}

fn shape_of(item: &Item) -> Shape {
    let index_key = match (item.get_str(GSI1_PK), item.get_str(GSI1_SK)) {
        (Some(pk), Some(sk)) => Some(short_hash((pk, sk))),
        _ => None,
    };
    Shape::new(item_size(&item.0), index_key)
}

/// The function and driver a call belongs to; adds its adapter time to the invocation around it.
fn current_label(elapsed: Duration) -> (Function, Driver) {
    CURRENT.with(|current| match current.borrow().as_ref() {
        Some(scope) => {
            scope.adapter_micros.fetch_add(micros(elapsed), Ordering::Relaxed);
            (scope.function, scope.driver)
        }
        None => (Function::Unattributed, Driver::Unattributed),
    })
}

struct Scope {
    function: Function,
    driver: Driver,
    adapter_micros: AtomicU64,
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Scope>>> = const { RefCell::new(None) };
}

/// A future that is its invocation's label while it is polled, whatever thread polls it.
struct Labelled<F> {
    scope: Arc<Scope>,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for Labelled<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        struct Restore(Option<Arc<Scope>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with(|current| *current.borrow_mut() = previous);
            }
        }
        let this = self.get_mut();
        let _restore = Restore(CURRENT.with(|current| current.replace(Some(this.scope.clone()))));
        this.inner.as_mut().poll(cx)
    }
}

/// DynamoDB's size of an item: attribute names plus values.
pub fn item_size(item: &Map<String, Value>) -> u64 {
    item.iter().map(|(name, value)| name.len() as u64 + value_size(value)).sum()
}

/// DynamoDB's size of one value, as `serde_dynamo` maps JSON (null to NULL, arrays to L, objects
/// to M).
pub fn value_size(value: &Value) -> u64 {
    match value {
        Value::Null | Value::Bool(_) => 1,
        Value::String(s) => s.len() as u64,
        Value::Number(n) => number_size(&n.to_string()),
        Value::Array(items) => 3 + items.iter().map(|v| 1 + value_size(v)).sum::<u64>(),
        Value::Object(map) => 3 + map.iter().map(|(k, v)| 1 + k.len() as u64 + value_size(v)).sum::<u64>(),
    }
}

/// One byte per two significant digits, plus one; leading and trailing zeros do not count.
fn number_size(text: &str) -> u64 {
    let mantissa = text.split(['e', 'E']).next().unwrap_or("");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len().max(1) as u64;
    significant.div_ceil(2) + 1
}

/// How a read is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Strong,
    Eventual,
    Transactional,
}

/// Write request units of one standard write of an item of `bytes` (at least one).
pub fn write_units(bytes: u64) -> f64 {
    bytes.div_ceil(WRITE_UNIT_BYTES).max(1) as f64
}

/// Read request units of one read of `bytes` (one item, or the summed items of a query page).
pub fn read_units(bytes: u64, consistency: Consistency) -> f64 {
    let units = bytes.div_ceil(READ_UNIT_BYTES).max(1) as f64;
    match consistency {
        Consistency::Strong => units,
        Consistency::Eventual => units / 2.0,
        Consistency::Transactional => units * 2.0,
    }
}

/// SQS requests a payload of `bytes` is billed as.
pub fn sqs_requests(bytes: u64) -> u64 {
    bytes.div_ceil(SQS_CHUNK_BYTES).max(1)
}

/// Index writes when an item goes from `before` to `after`: the new entry's KB, and one more
/// write deleting the old entry when the index key changed or went away.
fn index_write_units(before: Option<Shape>, after: Option<Shape>) -> f64 {
    let old = before.and_then(|s| s.index_key.map(|k| (k, s.bytes())));
    let new = after.and_then(|s| s.index_key.map(|k| (k, s.bytes())));
    match (old, new) {
        (None, None) => 0.0,
        (None, Some((_, size))) => write_units(size),
        (Some((_, size)), None) => write_units(size),
        (Some((old_key, old_size)), Some((new_key, new_size))) if old_key == new_key => {
            write_units(old_size.max(new_size))
        }
        (Some((_, old_size)), Some((_, new_size))) => write_units(old_size) + write_units(new_size),
    }
}

/// Units of a write that went through: the larger image, and the index.
fn written_units(before: Option<Shape>, after: Option<Shape>) -> f64 {
    table_write_units(before, after) + index_write_units(before, after)
}

/// A transaction's units of one write: twice the table's, once the index's.
fn transactional_units(before: Option<Shape>, after: Option<Shape>) -> f64 {
    2.0 * table_write_units(before, after) + index_write_units(before, after)
}

fn table_write_units(before: Option<Shape>, after: Option<Shape>) -> f64 {
    write_units(before.map_or(0, Shape::bytes).max(after.map_or(0, Shape::bytes)))
}

/// Units of a write whose condition failed: the stored item's size, at least one.
fn refused_units(before: Option<Shape>) -> f64 {
    write_units(before.map_or(0, Shape::bytes))
}

/// The item an update would leave, as well as can be told without reading it: attributes set
/// may replace ones of the same size, so at least the larger of the item before and the key with
/// what is set; appends grow it; a number added leaves the size alone.
fn estimated_after_update(before: Option<Shape>, key: &Key, actions: &[UpdateAction]) -> Shape {
    let key_size = (2 + key.pk.len() + 2 + key.sk.len()) as u64;
    let mut set = key_size;
    let mut appended = 0;
    let mut index_key = before.and_then(|s| s.index_key);
    for action in actions {
        match action {
            UpdateAction::Set(name, value) | UpdateAction::SetIfNotExists(name, value) => {
                set += name.len() as u64 + value_size(value);
                if name == GSI1_PK || name == GSI1_SK {
                    index_key = Some(short_hash((name, value.to_string())));
                }
            }
            UpdateAction::Append(name, values) => {
                appended += name.len() as u64 + values.iter().map(|v| 1 + value_size(v)).sum::<u64>()
            }
            UpdateAction::Add(name, value) => set += name.len() as u64 + value_size(value),
            UpdateAction::Remove(_) => {}
        }
    }
    Shape::new(before.map_or(0, Shape::bytes).max(set) + appended, index_key)
}

/// A port adapter whose calls are counted in a `Meter`.
pub struct Metered<T> {
    inner: T,
    meter: Arc<Meter>,
}

impl<T> Metered<T> {
    pub fn new(inner: T, meter: Arc<Meter>) -> Self {
        Metered { inner, meter }
    }

    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }
}

#[async_trait]
impl<T: Store> Store for Metered<T> {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let started = Instant::now();
        let result = self.inner.get(key).await;
        let found = match &result {
            Ok(Some(item)) => {
                self.meter.remember_item(item);
                item_size(&item.0)
            }
            _ => 0,
        };
        self.meter
            .record("dynamodb.GetItem", started.elapsed(), |u| u.read_units += read_units(found, Consistency::Strong));
        result
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        let key = item.key();
        let before = key.as_ref().and_then(|k| self.meter.shape(k));
        let after = shape_of(&item);
        let started = Instant::now();
        let result = self.inner.put(item, condition).await;
        let units = match &result {
            Ok(()) => {
                if let Some(key) = &key {
                    self.meter.remember(key, Some(after));
                }
                written_units(before, Some(after))
            }
            Err(_) => refused_units(before),
        };
        self.meter.record("dynamodb.PutItem", started.elapsed(), |u| u.add_write(key.as_ref(), units));
        result
    }

    async fn update(
        &self,
        key: &Key,
        actions: Vec<UpdateAction>,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError> {
        let before = self.meter.shape(key);
        let started = Instant::now();
        let result = self.inner.update(key, actions, condition).await;
        let units = match &result {
            Ok(item) => {
                let after = shape_of(item);
                self.meter.remember(key, Some(after));
                written_units(before, Some(after))
            }
            Err(_) => refused_units(before),
        };
        self.meter.record("dynamodb.UpdateItem", started.elapsed(), |u| u.add_write(Some(key), units));
        result
    }

    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), StoreError> {
        let before = self.meter.shape(key);
        let started = Instant::now();
        let result = self.inner.delete(key, condition).await;
        let units = match &result {
            Ok(()) => {
                self.meter.remember(key, None);
                written_units(before, None)
            }
            Err(_) => refused_units(before),
        };
        self.meter.record("dynamodb.DeleteItem", started.elapsed(), |u| u.add_write(Some(key), units));
        result
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        let consistency = if query.index == Index::Table { Consistency::Strong } else { Consistency::Eventual };
        let started = Instant::now();
        let result = self.inner.query(query).await;
        let bytes = match &result {
            Ok(page) => page
                .items
                .iter()
                .map(|item| {
                    self.meter.remember_item(item);
                    item_size(&item.0)
                })
                .sum(),
            Err(_) => 0,
        };
        self.meter.record("dynamodb.Query", started.elapsed(), |u| u.read_units += read_units(bytes, consistency));
        result
    }

    async fn transact(&self, ops: Vec<TransactOp>) -> Result<(), StoreError> {
        // (key, shape before, shape after: None for a delete, the before shape for a check)
        let mut changes = Vec::with_capacity(ops.len());
        let mut units: Vec<(Key, f64)> = Vec::with_capacity(ops.len());
        for op in &ops {
            match op {
                TransactOp::Put { item, .. } => {
                    if let Some(key) = item.key() {
                        let before = self.meter.shape(&key);
                        let after = shape_of(item);
                        units.push((key.clone(), transactional_units(before, Some(after))));
                        changes.push((key, Some(after)));
                    }
                }
                TransactOp::Update { key, actions, .. } => {
                    let before = self.meter.shape(key);
                    let after = estimated_after_update(before, key, actions);
                    units.push((key.clone(), transactional_units(before, Some(after))));
                    changes.push((key.clone(), Some(after)));
                }
                TransactOp::Delete { key, .. } => {
                    let before = self.meter.shape(key);
                    units.push((key.clone(), transactional_units(before, None)));
                    changes.push((key.clone(), None));
                }
                TransactOp::Check { key, .. } => {
                    let before = self.meter.shape(key);
                    units.push((key.clone(), 2.0 * write_units(before.map_or(0, Shape::bytes))));
                }
            }
        }
        let started = Instant::now();
        let result = self.inner.transact(ops).await;
        if result.is_ok() {
            for (key, after) in changes {
                self.meter.remember(&key, after);
            }
        }
        self.meter.record("dynamodb.TransactWriteItems", started.elapsed(), |u| {
            for (key, units) in &units {
                u.add_write(Some(key), *units);
            }
        });
        result
    }

    async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        if items.is_empty() {
            return self.inner.batch_put(items).await;
        }
        let writes: Vec<(Option<Key>, Option<Shape>, Shape)> = items
            .iter()
            .map(|item| {
                let key = item.key();
                let before = key.as_ref().and_then(|k| self.meter.shape(k));
                (key, before, shape_of(item))
            })
            .collect();
        let started = Instant::now();
        let result = self.inner.batch_put(items).await;
        let units: Vec<(Option<Key>, f64)> =
            writes.iter().map(|(key, before, after)| (key.clone(), written_units(*before, Some(*after)))).collect();
        if result.is_ok() {
            for (key, _, after) in writes {
                if let Some(key) = key {
                    self.meter.remember(&key, Some(after));
                }
            }
        }
        self.meter.record("dynamodb.BatchWriteItem", started.elapsed(), |u| {
            for (key, units) in &units {
                u.add_write(key.as_ref(), *units);
            }
        });
        result
    }
}

#[async_trait]
impl<T: Queue> Queue for Metered<T> {
    async fn send_batch(
        &self,
        queue: QueueName,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<SendOutcome>, QueueError> {
        let bytes: u64 = messages.iter().map(|m| m.body.len() as u64).sum();
        let started = Instant::now();
        let result = self.inner.send_batch(queue, messages).await;
        self.meter.record("sqs.SendMessageBatch", started.elapsed(), |u| u.sqs_requests += sqs_requests(bytes));
        result
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let started = Instant::now();
        let result = self.inner.receive(queue, max, visibility).await;
        let (bytes, empty) = match &result {
            Ok(messages) => (messages.iter().map(|m| m.body.len() as u64).sum(), messages.is_empty()),
            Err(_) => (0, false),
        };
        self.meter.record("sqs.ReceiveMessage", started.elapsed(), |u| {
            u.sqs_requests += sqs_requests(bytes);
            u.empty_receives += u64::from(empty);
        });
        result
    }

    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        let started = Instant::now();
        let result = self.inner.delete(queue, receipt).await;
        self.meter.record("sqs.DeleteMessage", started.elapsed(), |u| u.sqs_requests += 1);
        result
    }

    async fn delete_batch(&self, queue: QueueName, receipts: Vec<String>) -> Result<(), QueueError> {
        let started = Instant::now();
        let result = self.inner.delete_batch(queue, receipts).await;
        self.meter.record("sqs.DeleteMessageBatch", started.elapsed(), |u| u.sqs_requests += 1);
        result
    }

    async fn dead_letter_count(&self, queue: QueueName) -> Result<u64, QueueError> {
        let started = Instant::now();
        let result = self.inner.dead_letter_count(queue).await;
        self.meter.record("sqs.GetQueueAttributes", started.elapsed(), |u| u.sqs_requests += 1);
        result
    }
}

#[async_trait]
impl<T: Mailer> Mailer for Metered<T> {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        let started = Instant::now();
        let result = self.inner.send(email).await;
        // SES bills the messages it took; a refused or throttled call sends nothing.
        let sent = u64::from(result.is_ok());
        self.meter.record("sesv2.SendEmail", started.elapsed(), |u| u.emails += sent);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item_of_size(bytes: usize) -> Map<String, Value> {
        // "pk" (2) + "p" (1) + "sk" (2) + "s" (1) + "body" (4) = 10 bytes besides the filler.
        let mut map = Map::new();
        map.insert("pk".into(), json!("p"));
        map.insert("sk".into(), json!("s"));
        map.insert("body".into(), Value::String("x".repeat(bytes - 10)));
        map
    }

    #[test]
    fn sizes_follow_dynamodbs_rules() {
        assert_eq!(item_size(&item_of_size(3584)), 3584);
        assert_eq!(value_size(&json!("héllo")), 6, "strings count UTF-8 bytes");
        assert_eq!(value_size(&json!(true)), 1);
        assert_eq!(value_size(&json!(null)), 1);
        assert_eq!(value_size(&json!(12345)), 4, "5 significant digits: 3 bytes, plus 1");
        assert_eq!(value_size(&json!(1000)), 2, "trailing zeros do not count");
        assert_eq!(value_size(&json!(0.25)), 2);
        assert_eq!(value_size(&json!(["ab", 1])), 3 + (1 + 2) + (1 + 2));
        assert_eq!(value_size(&json!({"a": "bc"})), 3 + 1 + 1 + 2);
    }

    #[test]
    fn capacity_units_match_the_documented_examples() {
        // "a 3.5 KB item write = 4 WCU"
        assert_eq!(write_units(item_size(&item_of_size(3584))), 4.0);
        assert_eq!(write_units(1024), 1.0);
        assert_eq!(write_units(1025), 2.0);
        assert_eq!(write_units(0), 1.0, "a write of a missing item still costs one unit");
        // "a 5 KB strongly consistent read = 2 RCU, eventually consistent = 1"
        assert_eq!(read_units(5 * 1024, Consistency::Strong), 2.0);
        assert_eq!(read_units(5 * 1024, Consistency::Eventual), 1.0);
        assert_eq!(read_units(5 * 1024, Consistency::Transactional), 4.0);
        assert_eq!(read_units(100, Consistency::Eventual), 0.5);
        assert_eq!(read_units(0, Consistency::Strong), 1.0, "an empty page still costs a unit");
        assert_eq!(sqs_requests(64 * 1024), 1);
        assert_eq!(sqs_requests(64 * 1024 + 1), 2);
    }

    #[test]
    fn index_entries_add_their_writes() {
        let plain = Shape::new(500, None);
        let indexed = Shape::new(1500, NonZeroU32::new(1));
        let moved = Shape::new(1500, NonZeroU32::new(2));
        assert_eq!(written_units(None, Some(plain)), 1.0);
        assert_eq!(written_units(None, Some(indexed)), 2.0 + 2.0);
        assert_eq!(written_units(Some(indexed), Some(indexed)), 4.0);
        assert_eq!(written_units(Some(indexed), Some(moved)), 2.0 + 2.0 + 2.0, "old entry deleted, new one put");
        assert_eq!(written_units(Some(indexed), None), 4.0, "a delete removes the entry too");
        assert_eq!(refused_units(Some(indexed)), 2.0);
        assert_eq!(transactional_units(None, Some(plain)), 2.0, "a transaction doubles the table's units");
        assert_eq!(transactional_units(None, Some(indexed)), 2.0 * 2.0 + 2.0, "not the index's");
    }

    #[tokio::test]
    async fn calls_count_per_invocation_label() {
        let meter = Meter::new();
        let row = |function| {
            meter.snapshot().into_iter().find(|r| r.function == function).map(|r| r.usage).unwrap_or_default()
        };
        meter.record("dynamodb.GetItem", Duration::from_micros(5), |u| u.read_units += 1.0);
        let output = meter
            .invoke(Function::Sender, Driver::Email, async {
                meter.record("sesv2.SendEmail", Duration::from_micros(7), |u| u.emails += 1);
                tokio::task::yield_now().await;
                meter.record("sesv2.SendEmail", Duration::from_micros(7), |u| u.emails += 1);
                42
            })
            .await;
        assert_eq!(output, 42);
        let sender = row(Function::Sender);
        assert_eq!((sender.invocations, sender.emails, sender.calls_of("sesv2.SendEmail")), (1, 2, 2));
        assert_eq!(sender.adapter_micros, 14);
        assert_eq!(row(Function::Unattributed).calls_of("dynamodb.GetItem"), 1);
        // Outside the invocation again: unattributed.
        meter.record("dynamodb.GetItem", Duration::ZERO, |_| {});
        assert_eq!(row(Function::Unattributed).calls_of("dynamodb.GetItem"), 2);
        let skipped = meter.invoke_if(Function::Sender, Driver::Email, async { 0 }, |n| *n > 0).await;
        assert_eq!((skipped, row(Function::Sender).invocations), (0, 1), "an empty poll invokes nothing");
    }
}
