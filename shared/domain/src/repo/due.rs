//! Due items: every piece of time-based work (a journey's wait, an inactivity check, a send that
//! must go out after a commit, a cart step) is an item with a due time, read only through the
//! index by due time, and dispatched once through a conditional state change.
//!
//! Items: `DUE#<contact id>` / `<item id>`; while pending they sit in `gsi1` under
//! `DUEQ#<shard>` sorted by due time (a sparse index: dispatched and cancelled items leave it).
//! States: `pending` → `dispatching` (claimed, with a lease) → `dispatched`, or `pending` →
//! `cancelled`. A claim whose lease ran out (a crashed dispatcher) may be claimed again; what it
//! sends carries the item's id as its idempotency key, so a second dispatch changes nothing.

use futures_util::future::join_all;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::journeys::definition::stable_hash;
use crate::model::{Event, EventType, SendRequest};
use crate::ports::store::{GSI1_PK, GSI1_SK};
use crate::ports::{
    Condition, Cursor, Index, Item, Key, OutgoingMessage, Query, Queue, QueueName, SortKeyRange, Store, StoreError,
    TransactOp, UpdateAction, query_all, send_all,
};

/// Index partitions due items are spread over.
pub const DUE_SHARDS: u64 = 8;
/// How long a dispatcher owns a claimed item before another may take it over.
pub const DISPATCH_LEASE: SignedDuration = SignedDuration::from_secs(120);
/// How long dispatched and cancelled items are kept for inspection.
const RETENTION: SignedDuration = SignedDuration::from_hours(24 * 30);

/// What a due item does when its time comes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DueWork {
    /// Send this request (to `sends`).
    Send { request: SendRequest },
    /// A send the sender deferred past the queue's longest delay, parked until it is due; `hop`
    /// names this copy to the send ledger as the one that carries the wait on.
    DeferredSend { request: SendRequest, hop: String },
    /// Tell the evaluator (on `events`) with an event of this type and these properties.
    Evaluate { event_type: EventType, properties: Map<String, Value> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DueItem {
    /// Deterministic from what created it, so re-creating it is a no-op.
    pub id: String,
    pub contact_id: String,
    pub due_at: Timestamp,
    /// Items sharing a group are cancelled together (a journey run, a cart's sequence).
    pub group: String,
    pub work: DueWork,
}

/// Due-item ids (their sort keys): deterministic from what creates them, so creating an item twice
/// is a no-op, and each says what it is.
pub mod ids {
    /// A cart's idle check, for the cart as it was at `activity`.
    pub fn cart_idle(cart_id: &str, activity: u64) -> String {
        format!("cart-idle:{cart_id}:{activity}")
    }

    /// A cart's reminder step `step`, for the cart as it was at `activity`.
    pub fn cart_step(cart_id: &str, activity: u64, step: u32) -> String {
        format!("cart-step:{cart_id}:{activity}:{step}")
    }

    /// The send of a cart's reminder step.
    pub fn cart_send(cart_id: &str, activity: u64, step: u32) -> String {
        format!("send:cart:{cart_id}:{activity}:{step}")
    }

    /// A deferred send's parked copy, by its idempotency key and the time it waits for (not by
    /// its hop, whose name carries a queue message id: the id decides the item's index shard, and
    /// with it the order of dispatch, which a seeded run must replay).
    pub fn deferred_send(idempotency_key: &str, until: jiff::Timestamp) -> String {
        format!("deferred-send:{idempotency_key}:{}", until.as_second())
    }

    /// A send by its idempotency key.
    pub fn send(idempotency_key: &str) -> String {
        format!("send:{idempotency_key}")
    }

    /// An inactivity journey's check, restarted by the event with `dedupe_key`.
    pub fn inactivity(journey_id: &str, dedupe_key: &str) -> String {
        format!("inactivity:{journey_id}:{dedupe_key}")
    }

    /// A journey run's wait at `step_id`, on its `pass`th visit.
    pub fn wait(run_id: &str, step_id: &str, pass: u32) -> String {
        format!("wait:{run_id}:{step_id}:{pass}")
    }

    /// The follow-up of the event with `dedupe_key`.
    pub fn follow_up(dedupe_key: &str) -> String {
        format!("follow-up:{dedupe_key}")
    }
}

fn due_key(contact_id: &str, id: &str) -> Key {
    Key::new(format!("DUE#{contact_id}"), id.to_string())
}

/// Whether a key names a due item (and nothing else a carried list of keys could reach).
pub fn is_due_item_key(key: &Key) -> bool {
    key.pk.starts_with("DUE#")
}

fn index_sort_key(due_at: Timestamp, id: &str) -> String {
    format!("{:012}#{id}", due_at.as_second().max(0))
}

impl DueItem {
    pub fn to_item(&self) -> Item {
        let shard = stable_hash(&self.id) % DUE_SHARDS;
        Item::new(
            &due_key(&self.contact_id, &self.id),
            json!({
                "state": "pending",
                "contact_id": self.contact_id,
                "due_at": self.due_at.as_second(),
                "group": self.group,
                "work": serde_json::to_value(&self.work).expect("due work serialises"),
            }),
        )
        .with_gsi1(format!("DUEQ#{shard}"), index_sort_key(self.due_at, &self.id))
        .with_ttl((self.due_at + RETENTION).as_second())
    }

    pub fn from_item(item: &Item) -> Option<DueItem> {
        Some(DueItem {
            id: item.get_str("sk")?.to_string(),
            contact_id: item.get_str("contact_id")?.to_string(),
            due_at: Timestamp::from_second(item.get_i64("due_at")?).ok()?,
            group: item.get_str("group").unwrap_or_default().to_string(),
            work: serde_json::from_value(item.get("work")?.clone()).ok()?,
        })
    }

    /// Creates the item unless it exists (a replayed creation changes nothing).
    pub fn put_op(&self) -> TransactOp {
        TransactOp::Put { item: self.to_item(), condition: Some(Condition::NotExists) }
    }
}

/// Conditional cancellations of a contact's pending items in any of `groups`, to put in a
/// transaction (one read of the contact's due items, however many groups end).
pub async fn cancel_ops(store: &dyn Store, contact_id: &str, groups: &[String]) -> Result<Vec<TransactOp>, StoreError> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let items = query_all(store, Query::partition(Index::Table, format!("DUE#{contact_id}"))).await?;
    Ok(items
        .iter()
        .filter(|item| {
            item.get_str("state") == Some("pending")
                && item.get_str("group").is_some_and(|g| groups.iter().any(|x| x == g))
        })
        .filter_map(|item| item.key())
        .map(cancel_op)
        .collect())
}

/// Cancels one due item if it is still pending (repeating it changes nothing).
pub fn cancel_op(key: Key) -> TransactOp {
    TransactOp::Update {
        key,
        actions: vec![
            UpdateAction::set("state", "cancelled"),
            UpdateAction::remove(GSI1_PK),
            UpdateAction::remove(GSI1_SK),
        ],
        condition: Some(Condition::equals("state", "pending")),
    }
}

/// A contact's due items that are still pending, for inspection and tests.
pub async fn pending_for(store: &dyn Store, contact_id: &str) -> Result<Vec<DueItem>, StoreError> {
    let items = query_all(store, Query::partition(Index::Table, format!("DUE#{contact_id}"))).await?;
    Ok(items.iter().filter(|i| i.get_str("state") == Some("pending")).filter_map(DueItem::from_item).collect())
}

/// Every due item of a contact, whatever its state, for inspection and tests.
pub async fn items_for(store: &dyn Store, contact_id: &str) -> Result<Vec<DueItem>, StoreError> {
    let items = query_all(store, Query::partition(Index::Table, format!("DUE#{contact_id}"))).await?;
    Ok(items.iter().filter_map(DueItem::from_item).collect())
}

/// Every item due at or before `now`, from each index partition, oldest first per partition.
pub async fn due_now(store: &dyn Store, now: Timestamp, max: usize) -> Result<Vec<Item>, StoreError> {
    let upper = format!("{:012}#~", now.as_second());
    let mut found = Vec::new();
    for shard in 0..DUE_SHARDS {
        let mut start_after: Option<Cursor> = None;
        loop {
            let mut query = Query::partition(Index::Gsi1, format!("DUEQ#{shard}"))
                .range(SortKeyRange::LessOrEqual(upper.clone()))
                .limit(100);
            query.start_after = start_after.take();
            let page = store.query(query).await?;
            found.extend(page.items);
            match page.next {
                Some(cursor) if found.len() < max => start_after = Some(cursor),
                _ => break,
            }
        }
        if found.len() >= max {
            break;
        }
    }
    Ok(found)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DispatchReport {
    pub dispatched: usize,
    /// Another dispatcher had it, or it was cancelled meanwhile.
    pub skipped: usize,
    pub failed: usize,
    /// Due, but not taken before the run's time was up: the next run dispatches them.
    pub left_for_next_run: usize,
}

/// Claims one item, hands its work to its queue, and marks it dispatched. Safe to call from any
/// number of dispatchers at once: the claim lets exactly one through.
pub async fn dispatch(store: &dyn Store, queue: &dyn Queue, item: &Item, now: Timestamp) -> Result<bool, StoreError> {
    let Some(key) = item.key() else { return Ok(false) };
    let Some(due) = DueItem::from_item(item) else {
        tracing::error!(item = %key.sk, "a due item cannot be read; left in place");
        return Ok(false);
    };
    let claimable = Condition::Or(vec![
        Condition::equals("state", "pending"),
        Condition::And(vec![
            Condition::equals("state", "dispatching"),
            Condition::less_than("claimed_at", (now - DISPATCH_LEASE).as_second()),
        ]),
    ]);
    let claim = vec![UpdateAction::set("state", "dispatching"), UpdateAction::set("claimed_at", now.as_second())];
    match store.update(&key, claim, Some(claimable)).await {
        Ok(_) => {}
        Err(StoreError::ConditionFailed) => return Ok(false),
        Err(other) => return Err(other),
    }
    let (queue_name, body) = match &due.work {
        DueWork::Send { request } => (QueueName::Sends, serde_json::to_string(request).expect("serialises")),
        DueWork::DeferredSend { request, hop } => {
            let mut body = serde_json::to_value(request).expect("serialises");
            body["hop"] = Value::String(hop.clone());
            (QueueName::Sends, body.to_string())
        }
        DueWork::Evaluate { event_type, properties } => {
            let event_id = format!("due:{}", due.id);
            let event =
                Event::internal(event_id, event_type.clone(), &due.contact_id, due.due_at, now, properties.clone());
            (QueueName::Events, serde_json::to_string(&event).expect("serialises"))
        }
    };
    let outcomes = send_all(queue, queue_name, vec![OutgoingMessage::new("0", body)])
        .await
        .map_err(|e| StoreError::Backend(format!("queue: {e}")))?;
    if let Some(error) = outcomes.first().and_then(|o| o.error.clone()) {
        // Left `dispatching`: once the lease passes, the next run takes it again.
        return Err(StoreError::Backend(format!("queue refused a due item: {error}")));
    }
    let done = vec![
        UpdateAction::set("state", "dispatched"),
        UpdateAction::set("dispatched_at", now.as_second()),
        UpdateAction::remove(GSI1_PK),
        UpdateAction::remove(GSI1_SK),
    ];
    store.update(&key, done, Some(Condition::equals("state", "dispatching"))).await.map(|_| true).or_else(|e| match e {
        StoreError::ConditionFailed => Ok(true),
        other => Err(other),
    })
}

/// Dispatches everything due at `now`; what fails stays for the next run (missed minutes are
/// caught up, never skipped, because every run reads everything due up to now).
pub async fn dispatch_due(
    store: &dyn Store,
    queue: &dyn Queue,
    now: Timestamp,
    max: usize,
) -> Result<DispatchReport, StoreError> {
    dispatch_due_within(store, queue, now, max, std::time::Duration::MAX).await
}

/// Due items dispatched side by side: a burst (every message parked overnight for one time zone's
/// 09:00) takes a few round trips per 16 items instead of three per item.
pub const CONCURRENT_DISPATCHES: usize = 16;

/// As `dispatch_due`, but takes no new items once `budget` of wall time has passed (after at
/// least one round of `CONCURRENT_DISPATCHES`; a round under way finishes), so a run normally ends
/// well inside its Lambda timeout and what it records after the dispatch runs; what is left waits
/// for the next run.
pub async fn dispatch_due_within(
    store: &dyn Store,
    queue: &dyn Queue,
    now: Timestamp,
    max: usize,
    budget: std::time::Duration,
) -> Result<DispatchReport, StoreError> {
    let started = std::time::Instant::now();
    let mut report = DispatchReport::default();
    let mut to_dispatch = Vec::new();
    for item in due_now(store, now, max).await? {
        let state = item.get_str("state").unwrap_or_default();
        let lease_over = item.get_i64("claimed_at").is_some_and(|at| at < (now - DISPATCH_LEASE).as_second());
        if state != "pending" && !(state == "dispatching" && lease_over) {
            report.skipped += 1;
            continue;
        }
        to_dispatch.push(item);
    }
    let mut rounds = to_dispatch.chunks(CONCURRENT_DISPATCHES);
    for round in rounds.by_ref() {
        for outcome in join_all(round.iter().map(|item| dispatch(store, queue, item, now))).await {
            match outcome {
                Ok(true) => report.dispatched += 1,
                Ok(false) => report.skipped += 1,
                Err(error) => {
                    tracing::warn!(error = %error, "a due item could not be dispatched; the next run retries it");
                    report.failed += 1;
                }
            }
        }
        if started.elapsed() >= budget {
            break;
        }
    }
    report.left_for_next_run = rounds.map(<[Item]>::len).sum();
    if report.left_for_next_run > 0 {
        tracing::info!(left = report.left_for_next_run, "the run's time is up; the next run dispatches the rest");
    }
    Ok(report)
}

/// Dispatches the given items at once (the evaluator's sends right after its commit); anything
/// left undone is picked up by the scheduler.
pub async fn dispatch_now(store: &dyn Store, queue: &dyn Queue, items: &[DueItem], now: Timestamp) {
    for due in items {
        // Just committed as pending; the claim's condition settles any race with the scheduler.
        if let Err(error) = dispatch(store, queue, &due.to_item(), now).await {
            tracing::warn!(error = %error, "eager dispatch failed; the scheduler will retry");
        }
    }
}
