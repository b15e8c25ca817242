//! A person's data, wherever it is kept: the export of everything held about a contact and its
//! erasure. The one place that knows which stored items hold personal data (ARCHITECTURE.md's
//! table); a new item kind that holds any must be added here.
//!
//! Erased (deleted): the profile (replaced by a tombstone), the email identity, the anonymous ids,
//! consent receipts, the event log (the contact's and its anonymous ids'), bot sessions (found
//! through their `BOTSESSIONS#<contact>` index and the contact's submission ids, which are the
//! session ids of chats that captured it), journey states, due items (pending sends with them, so
//! nothing goes out afterwards), frequency counters, trigger counts, carts and their listings,
//! discount codes, send ledger entries reachable from the contact (the keys of its due sends and
//! of its `email_sent` events), and the mail service's copies (`MailCopies`: the local outbox's
//! `.eml` files; SES keeps none). Kept: aggregates (`AGG#`, `ATTR#`, `JAGG#`, `COHORT#`, `SPEND#`,
//! `KPI#`: counts, no person), processed markers and event receipts (event ids), rate windows
//! (keyed digests of addresses), all without personal data.
//!
//! Order, so a crash anywhere leaves nothing that undoes the erasure and a retry finishes it:
//! 1. the tombstone replaces the profile (conditional on the version read), with the
//!    `ERASED#<keyed digest>` marker of the address, in one transaction. From here on no
//!    writer lands on the contact (every contact write is version-checked, and the tombstone has
//!    no version), readers see no contact, the evaluator drops events about it, and a new sign-up
//!    with the address makes a new contact. Until the erasure completes, the tombstone keeps what
//!    the remaining steps need to reach the other items (address, phone, anonymous ids, session
//!    ids, codes) under `pending`;
//! 2. mail copies, bot sessions, the ledger entries and partitions, the identities: deletes in
//!    pages of at most `MAX_TRANSACTION_OPS`, each page read again from the start until none is
//!    left (so memory stays one page however large a partition grew);
//! 3. the tombstone drops `pending`: `{erased_at, completed_at}` and nothing else.
//!
//! One call deletes about `WRITE_BUDGET` items and then stops with `complete: false`; the next
//! call goes on (the route answers 202 until it is done), so a long history never meets the
//! function's timeout.
//!
//! Reads here are bounded: the export caps every section (`EXPORT_CAP`, `EXPORT_MESSAGES_CAP`) and
//! says which it cut in `truncated`.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::anonymous_subject;
use super::bot_sessions::{contact_sessions_partition, session_key};
use super::carts::cart_key;
use super::contacts::{
    ContactLookup, ERASED_AT, RepoError, anonymous_key, contact_anonymous_ids_partition, contact_key,
    email_key_of_digest, lookup_of,
};
use crate::model::{Contact, EmailAddress, Event};
use crate::ports::store::MAX_TRANSACTION_OPS;
use crate::ports::{Condition, Index, Item, Key, MailCopies, PersonMarkers, Query, Store, StoreError, TransactOp};
use crate::signing::{KeyRing, keyed_digest};

/// Most items an export lists per section.
pub const EXPORT_CAP: usize = 500;
/// Most sent messages and mail copies an export lists.
pub const EXPORT_MESSAGES_CAP: usize = 100;
/// Items one `erase` call deletes at most (give or take a page): pages of 100 in one transaction
/// each, and the ledger entries a page names one by one, a few seconds of DynamoDB calls at
/// worst, inside the functions' 10 seconds.
pub const WRITE_BUDGET: usize = 1000;
/// Attempts at putting the tombstone over a contact other writers keep changing.
const TOMBSTONE_ATTEMPTS: u32 = 20;

const PENDING: &str = "pending";

/// The marker of an erased address: `ERASED#<keyed digest of the identity digest>` / `ADDRESS`.
/// Keyed (HMAC with a link-signing key, as rate windows are) because it is kept for good: an
/// unkeyed digest of an address would let anyone who reads the table confirm, by hashing
/// guesses, that a person was once a contact.
fn erased_address_key(key: &str, identity_digest: &str) -> Key {
    Key::new(format!("ERASED#{}", keyed_digest(key, identity_digest)), "ADDRESS")
}

/// The marker as the first erasures wrote it, unkeyed: read once more and moved under the key.
fn unkeyed_erased_address_key(identity_digest: &str) -> Key {
    Key::new(format!("ERASED#{identity_digest}"), "ADDRESS")
}

fn erased_at_of(item: &Item) -> Option<Timestamp> {
    item.get(ERASED_AT).and_then(|at| serde_json::from_value(at.clone()).ok())
}

/// When the address was last erased, if ever. The marker is written under the ring's signing key;
/// it is looked for under every key of the ring (and as the unkeyed marker of before), and one
/// found under another is written again under the signing key, so a rotation moves markers along
/// as their addresses come up. A key retired from the ring takes the markers never moved with it:
/// events naming such an address are then judged by their contact id alone (SECURITY.md).
pub async fn address_erased_at(
    store: &dyn Store,
    keys: &KeyRing,
    email: &EmailAddress,
) -> Result<Option<Timestamp>, StoreError> {
    let digest = email.identity_digest();
    let signing = erased_address_key(&keys.signing().key, &digest);
    let mut found: Option<(Timestamp, Key)> = None;
    let others = keys.keys().iter().map(|k| erased_address_key(&k.key, &digest));
    for key in others.chain(std::iter::once(unkeyed_erased_address_key(&digest))) {
        let Some(at) = store.get(&key).await?.as_ref().and_then(erased_at_of) else { continue };
        if key == signing {
            // Every erasure writes under the signing key: this is the latest.
            return Ok(Some(at));
        }
        if found.as_ref().is_none_or(|(latest, _)| at > *latest) {
            found = Some((at, key));
        }
    }
    let Some((at, old_key)) = found else { return Ok(None) };
    // Only where no marker stands yet: one written meanwhile by a later erasure is newer.
    match store.put(Item::new(&signing, json!({ ERASED_AT: at })), Some(Condition::NotExists)).await {
        Ok(()) | Err(StoreError::ConditionFailed) => {}
        Err(other) => return Err(other),
    }
    store.delete(&old_key, None).await?;
    Ok(Some(at))
}

/// Why an event must be dropped because of an erasure: it names an erased address and happened
/// or arrived before the address was erased (a late event from the queue cannot bring the person
/// back). Events about an erased contact id are told by `ContactRepository::lookup`.
pub async fn names_erased_address(store: &dyn Store, keys: &KeyRing, event: &Event) -> Result<bool, StoreError> {
    let Some(email) = event.contact.email.as_deref().and_then(|e| EmailAddress::parse(e).ok()) else {
        return Ok(false);
    };
    Ok(address_erased_at(store, keys, &email)
        .await?
        .is_some_and(|erased_at| event.occurred_at.min(event.received_at) < erased_at))
}

#[derive(Debug, thiserror::Error)]
pub enum PersonalDataError {
    #[error("no contact with this id")]
    NotFound,
    #[error("the contact was erased")]
    Erased(Timestamp),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the mail copies could not be reached: {0}")]
    MailCopies(String),
    #[error("gave up putting the tombstone: the contact kept changing")]
    Contention,
}

impl PersonalDataError {
    pub fn is_retryable(&self) -> bool {
        match self {
            PersonalDataError::Repo(e) => e.is_retryable(),
            PersonalDataError::Store(e) => e.is_retryable(),
            PersonalDataError::MailCopies(_) | PersonalDataError::Contention => true,
            PersonalDataError::NotFound | PersonalDataError::Erased(_) => false,
        }
    }
}

/// What an erasure in progress still has to reach, kept on the tombstone until it completes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Pending {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_digest: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    anonymous_ids: Vec<String>,
    #[serde(default)]
    submission_ids: Vec<String>,
    #[serde(default)]
    discount_codes: Vec<String>,
}

impl Pending {
    fn of(contact: &Contact) -> Pending {
        Pending {
            email: contact.email.as_ref().map(|e| e.as_typed().to_string()),
            email_digest: contact.email.as_ref().map(|e| e.identity_digest()),
            phone: contact.phone.as_ref().map(|p| p.as_str().to_string()),
            anonymous_ids: contact.anonymous_ids.clone(),
            submission_ids: contact.recent_submission_ids.clone(),
            discount_codes: contact.discount_codes.iter().map(|c| c.code.clone()).collect(),
        }
    }
}

/// What `DELETE /v1/contacts/{id}` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErasureReport {
    pub contact_id: String,
    pub erased_at: Timestamp,
    /// The contact was a tombstone already: this call finished (or repeated) an earlier erasure.
    pub already_erased: bool,
    /// Everything is gone; false when the call stopped at its write budget: call again.
    pub complete: bool,
    /// Items deleted by this call, by kind.
    pub removed: BTreeMap<&'static str, usize>,
}

/// The index partition of tombstones whose erasure has not completed.
const PENDING_ERASURES: &str = "ERASURES#PENDING";

/// A tombstone; one with `pending` is in the unfinished erasures' index until it completes.
fn tombstone(contact_id: &str, erased_at: Timestamp, pending: Option<&Pending>) -> Item {
    let mut attributes = json!({ ERASED_AT: erased_at });
    let Some(pending) = pending else { return Item::new(&contact_key(contact_id), attributes) };
    attributes[PENDING] = serde_json::to_value(pending).expect("pending erasures serialise");
    Item::new(&contact_key(contact_id), attributes).with_gsi1(PENDING_ERASURES, contact_id)
}

/// Puts the tombstone over the contact (first, so nothing writes to the person while the rest
/// goes), or reads the one an earlier call left. Returns when it was erased, what is left to
/// reach, and whether it was erased before this call.
async fn put_tombstone(
    store: &dyn Store,
    keys: &KeyRing,
    contact_id: &str,
    now: Timestamp,
) -> Result<(Timestamp, Pending, bool), PersonalDataError> {
    for _ in 0..TOMBSTONE_ATTEMPTS {
        let item = store.get(&contact_key(contact_id)).await?;
        let pending_left = item.as_ref().and_then(|i| i.get(PENDING)).cloned();
        match lookup_of(item)? {
            ContactLookup::Missing => return Err(PersonalDataError::NotFound),
            ContactLookup::Erased(erased_at) => {
                let pending = pending_left.and_then(|p| serde_json::from_value(p).ok()).unwrap_or_default();
                return Ok((erased_at, pending, true));
            }
            ContactLookup::Found(contact) => {
                let pending = Pending::of(&contact);
                let mut ops = vec![TransactOp::Put {
                    item: tombstone(contact_id, now, Some(&pending)),
                    condition: Some(Condition::equals("version", contact.version)),
                }];
                if let Some(digest) = &pending.email_digest {
                    let marker = Item::new(&erased_address_key(&keys.signing().key, digest), json!({ ERASED_AT: now }));
                    ops.push(TransactOp::Put { item: marker, condition: None });
                }
                match store.transact(ops).await {
                    Ok(()) => return Ok((now, pending, false)),
                    Err(StoreError::TransactionCancelled { .. } | StoreError::Throttled(_)) => continue,
                    Err(other) => return Err(other.into()),
                }
            }
        }
    }
    Err(PersonalDataError::Contention)
}

/// Erases everything held about the contact but anonymous aggregates, leaving a tombstone.
/// Idempotent: a repeated call finishes what an interrupted one left and reports
/// `already_erased`.
pub async fn erase(
    store: &dyn Store,
    copies: &dyn MailCopies,
    keys: &KeyRing,
    contact_id: &str,
    now: Timestamp,
) -> Result<ErasureReport, PersonalDataError> {
    erase_within(store, copies, keys, contact_id, now, WRITE_BUDGET).await
}

/// `erase`, stopping (with `complete: false`) once about `budget` items are deleted, so one call
/// stays well inside a Lambda's and API Gateway's timeouts however much the person left; the
/// next call goes on from where this one stopped.
pub async fn erase_within(
    store: &dyn Store,
    copies: &dyn MailCopies,
    keys: &KeyRing,
    contact_id: &str,
    now: Timestamp,
    budget: usize,
) -> Result<ErasureReport, PersonalDataError> {
    let started = put_tombstone(store, keys, contact_id, now).await?;
    finish_erasure(store, copies, contact_id, started, now, budget).await
}

/// The most unfinished erasures one `finish_pending_erasures` call takes up.
pub const PENDING_ERASURES_PER_RUN: u32 = 20;

/// Finishes erasures left unfinished (a call that stopped at its budget and was not repeated, or
/// one that failed after its tombstone), found through their index: the scheduler runs this every
/// minute, so an erasure completes even if nobody calls `DELETE` again. `budget` is the whole
/// run's, shared among them (a run must end well within the scheduler's timeout, after its
/// dispatch); one that fails is logged and skipped, so it cannot hold up the ones behind it.
/// Returns how many completed.
pub async fn finish_pending_erasures(
    store: &dyn Store,
    copies: &dyn MailCopies,
    now: Timestamp,
    budget: usize,
) -> Result<usize, PersonalDataError> {
    let query = Query::partition(Index::Gsi1, PENDING_ERASURES).limit(PENDING_ERASURES_PER_RUN);
    let mut completed = 0;
    let mut spent = 0;
    for item in store.query(query).await?.items {
        if spent >= budget {
            break;
        }
        let Some(contact_id) = item.get_str("pk").and_then(|pk| pk.strip_prefix("CONTACT#")) else { continue };
        // Read again: the index may lag behind an erasure that completed meanwhile.
        let Some(tombstone) = store.get(&contact_key(contact_id)).await? else { continue };
        let (Some(erased_at), Some(pending)) = (erased_at_of(&tombstone), tombstone.get(PENDING)) else { continue };
        let pending: Pending = serde_json::from_value(pending.clone()).unwrap_or_default();
        match finish_erasure(store, copies, contact_id, (erased_at, pending, true), now, budget - spent).await {
            Ok(report) => {
                spent += report.removed.values().sum::<usize>().max(1);
                completed += usize::from(report.complete);
            }
            Err(error) => {
                spent += 1;
                tracing::warn!(contact_id, error = %error, "an unfinished erasure failed again; the next run retries it");
            }
        }
    }
    Ok(completed)
}

/// Whether the contact id is a tombstone whose erasure has not completed yet.
pub async fn erasure_unfinished(store: &dyn Store, contact_id: &str) -> Result<bool, StoreError> {
    Ok(store
        .get(&contact_key(contact_id))
        .await?
        .is_some_and(|item| item.get(ERASED_AT).is_some() && item.get(PENDING).is_some()))
}

/// Every step of an erasure after its tombstone (see the module's notes).
async fn finish_erasure(
    store: &dyn Store,
    copies: &dyn MailCopies,
    contact_id: &str,
    (erased_at, pending, already_erased): (Timestamp, Pending, bool),
    now: Timestamp,
    budget: usize,
) -> Result<ErasureReport, PersonalDataError> {
    let mut budget = budget;
    let report = |mut removed: BTreeMap<&'static str, usize>, complete: bool| {
        removed.retain(|_, count| *count > 0);
        tracing::info!(contact_id, already_erased, complete, "a contact was erased");
        ErasureReport { contact_id: contact_id.to_string(), erased_at, already_erased, complete, removed }
    };
    let mut removed: BTreeMap<&'static str, usize> = BTreeMap::new();
    if !already_erased {
        removed.insert("profile", 1);
    }

    let markers = PersonMarkers::new(
        pending.email.as_deref().into_iter().chain(pending.phone.as_deref()).chain(std::iter::once(contact_id)),
    );
    let erased_copies = copies.erase_copies_about(&markers).await.map_err(PersonalDataError::MailCopies)?;
    removed.insert("mail_copies", erased_copies);

    removed.insert("bot_sessions", erase_bot_sessions(store, contact_id, &pending.submission_ids).await?);

    let mut partitions = subject_partitions(contact_id);
    partitions.push((format!("CONSENT#{contact_id}"), "consent_receipts", "", no_extra));
    partitions.push((format!("JSTATE#{contact_id}"), "journey_states", "", no_extra));
    partitions.push((format!("CAP#{contact_id}"), "frequency_counters", "", no_extra));
    for (partition, kind, led_to_kind, leads_to) in partitions {
        let (deleted, led_to, done) = delete_partition(store, &partition, contact_id, leads_to, &mut budget).await?;
        *removed.entry(kind).or_default() += deleted;
        if !led_to_kind.is_empty() {
            *removed.entry(led_to_kind).or_default() += led_to;
        }
        if !done {
            return Ok(report(removed, false));
        }
    }

    // Every anonymous id the contact ever had: those on it, and through the index those the
    // contact's bounds trimmed off it. Each one's partitions go, then its identity becomes the
    // erased marker (which takes it out of the index).
    let mut anonymous = 0;
    for anonymous_id in &pending.anonymous_ids {
        match erase_anonymous_id(store, contact_id, anonymous_id, erased_at, &mut budget, &mut removed).await? {
            Some(marked) => anonymous += marked,
            None => return Ok(report(removed, false)),
        }
    }
    let mut query = Query::partition(Index::Gsi1, contact_anonymous_ids_partition(contact_id)).limit(100);
    loop {
        let page = store.query(query.clone()).await?;
        for item in &page.items {
            let Some(anonymous_id) = item.get_str("pk").and_then(|pk| pk.strip_prefix("ANON#")) else { continue };
            match erase_anonymous_id(store, contact_id, anonymous_id, erased_at, &mut budget, &mut removed).await? {
                Some(marked) => anonymous += marked,
                None => return Ok(report(removed, false)),
            }
        }
        match page.next {
            Some(cursor) => query.start_after = Some(cursor),
            None => break,
        }
    }
    removed.insert("anonymous_ids", anonymous);

    let owned_by_contact = || Condition::equals("contact_id", contact_id);
    let mut identities = 0;
    if let Some(digest) = &pending.email_digest {
        identities += delete_if(store, &email_key_of_digest(digest), owned_by_contact()).await?;
    }
    removed.insert("email_identity", identities);
    let mut codes = 0;
    for code in &pending.discount_codes {
        codes += delete_if(store, &Key::new(format!("DISCOUNT#{code}"), "CODE"), owned_by_contact()).await?;
    }
    removed.insert("discount_codes", codes);

    let mut done = tombstone(contact_id, erased_at, None);
    done = done.with("completed_at", serde_json::to_value(now).expect("times serialise"));
    store.put(done, Some(Condition::attribute_exists(ERASED_AT))).await?;
    Ok(report(removed, true))
}

type Partitions = Vec<(String, &'static str, &'static str, LeadsTo)>;

/// The partitions filed under a subject (a contact, or `anon:<id>`): each with the kind it is
/// counted as, and what its items lead to.
fn subject_partitions(subject: &str) -> Partitions {
    vec![
        (format!("EVLOG#{subject}"), "event_log", "send_ledger", ledger_keys_of_log as LeadsTo),
        (format!("DUE#{subject}"), "due_items", "send_ledger", ledger_keys_of_due),
        (format!("TRIG#{subject}"), "trigger_counts", "", no_extra),
        (format!("CARTS#{subject}"), "cart_listings", "carts", carts_of_listing),
    ]
}

/// Erases what is filed under an anonymous id of the contact, then turns its identity into the
/// erased marker if it still belongs to the contact. `None` when the budget ran out first; else
/// whether the identity was this contact's.
async fn erase_anonymous_id(
    store: &dyn Store,
    contact_id: &str,
    anonymous_id: &str,
    erased_at: Timestamp,
    budget: &mut usize,
    removed: &mut BTreeMap<&'static str, usize>,
) -> Result<Option<usize>, StoreError> {
    for (partition, kind, led_to_kind, leads_to) in subject_partitions(&anonymous_subject(anonymous_id)) {
        let (deleted, led_to, done) = delete_partition(store, &partition, contact_id, leads_to, budget).await?;
        *removed.entry(kind).or_default() += deleted;
        if !led_to_kind.is_empty() {
            *removed.entry(led_to_kind).or_default() += led_to;
        }
        if !done {
            return Ok(None);
        }
    }
    let marker = Item::new(&anonymous_key(anonymous_id), json!({ ERASED_AT: erased_at }));
    match store.put(marker, Some(Condition::equals("contact_id", contact_id))).await {
        Ok(()) => Ok(Some(1)),
        Err(StoreError::ConditionFailed) => Ok(Some(0)),
        Err(other) => Err(other),
    }
}

/// Deletes the item if the condition holds; 1 if it did, 0 if it was gone or someone else's.
async fn delete_if(store: &dyn Store, key: &Key, condition: Condition) -> Result<usize, StoreError> {
    match store.delete(key, Some(condition)).await {
        Ok(()) => Ok(1),
        Err(StoreError::ConditionFailed) => Ok(0),
        Err(other) => Err(other),
    }
}

fn no_extra(_: &[Item], _: &str) -> Vec<(Key, Condition)> {
    Vec::new()
}

/// The send ledger entries of the `email_sent` events in a page of the event log: those of
/// Voronka's own sender, or whose key names the contact. The shop can log an `email_sent` too, and
/// must not point the erasure (or the export) at another person's ledger entries.
fn ledger_keys_of_log(items: &[Item], contact_id: &str) -> Vec<(Key, Condition)> {
    items
        .iter()
        .filter_map(|item| serde_json::from_str::<Value>(item.get_str("event")?).ok())
        .filter(|event| event["type"] == "email_sent")
        .filter_map(|event| {
            let key = event["properties"]["idempotency_key"].as_str()?;
            (event["source"] == "voronka" || key.contains(contact_id)).then(|| (ledger_key(key), Condition::Exists))
        })
        .collect()
}

/// The send ledger entries of the sends among a page of due items (only Voronka writes those).
fn ledger_keys_of_due(items: &[Item], _: &str) -> Vec<(Key, Condition)> {
    items
        .iter()
        // A send waiting to be dispatched, or a deferred one parked past the queue's delay.
        .filter(|item| {
            matches!(
                item.get("work").and_then(|w| w.get("kind")).and_then(Value::as_str),
                Some("send" | "deferred_send")
            )
        })
        .filter_map(|item| item.get("work")?.get("request")?.get("idempotency_key")?.as_str().map(ledger_key))
        .map(|key| (key, Condition::Exists))
        .collect()
}

/// The carts a page of a person's cart listing names, each only while the listing's owner owns
/// it: a shop that reused the cart id for someone else made it theirs.
fn carts_of_listing(items: &[Item], _: &str) -> Vec<(Key, Condition)> {
    items
        .iter()
        .filter_map(|item| {
            let owner = item.get_str("pk")?.strip_prefix("CARTS#")?;
            Some((cart_key(item.get_str("sk")?), Condition::equals("owner", owner)))
        })
        .collect()
}

fn ledger_key(idempotency_key: &str) -> Key {
    Key::new(format!("SEND#{idempotency_key}"), "LEDGER")
}

/// What the items of a page lead to that goes with them (ledger entries, carts).
type LeadsTo = fn(&[Item], &str) -> Vec<(Key, Condition)>;

/// Deletes a partition a page at a time: first what each page leads to (`leads_to`, each deleted
/// only if it exists, so the count is true), then the page in one transaction. Reads from the
/// start again after each page (table queries are strongly consistent, so a deleted item is not
/// read again), so memory holds one page. Returns (items of the partition, items they led to)
/// deleted, and whether the partition is empty now (false: the budget ran out first).
async fn delete_partition(
    store: &dyn Store,
    partition: &str,
    contact_id: &str,
    leads_to: LeadsTo,
    budget: &mut usize,
) -> Result<(usize, usize, bool), StoreError> {
    let (mut deleted, mut led_to) = (0, 0);
    loop {
        if *budget == 0 {
            return Ok((deleted, led_to, false));
        }
        let query = Query::partition(Index::Table, partition).limit(MAX_TRANSACTION_OPS as u32);
        let page = store.query(query).await?;
        if page.items.is_empty() {
            return Ok((deleted, led_to, true));
        }
        let extra: BTreeMap<Key, Condition> = leads_to(&page.items, contact_id).into_iter().collect();
        *budget = budget.saturating_sub(extra.len() + page.items.len());
        for (key, condition) in extra {
            led_to += delete_if(store, &key, condition).await?;
        }
        let keys: Vec<Key> = page.items.iter().filter_map(Item::key).collect();
        deleted += keys.len();
        store.transact(keys.into_iter().map(|key| TransactOp::Delete { key, condition: None }).collect()).await?;
    }
}

/// The contact's bot sessions: those listed under it and those whose ids are its submission ids
/// (sessions captured before the listing existed), each only if it names the contact.
async fn erase_bot_sessions(
    store: &dyn Store,
    contact_id: &str,
    submission_ids: &[String],
) -> Result<usize, StoreError> {
    let mut erased = 0;
    // The index is read eventually consistently on DynamoDB: a page read again from the start
    // could still list what was just deleted, so this one follows the cursor instead.
    let mut query = Query::partition(Index::Gsi1, contact_sessions_partition(contact_id)).limit(100);
    loop {
        let page = store.query(query.clone()).await?;
        for item in &page.items {
            if let Some(key) = item.key() {
                erased += delete_if(store, &key, Condition::equals("contact_id", contact_id)).await?;
            }
        }
        match page.next {
            Some(cursor) => query.start_after = Some(cursor),
            None => break,
        }
    }
    for session_id in submission_ids {
        erased += delete_if(store, &session_key(session_id), Condition::equals("contact_id", contact_id)).await?;
    }
    Ok(erased)
}

/// Everything held about a contact, as JSON: the profile as stored and every item that holds the
/// person's data, each section capped (`truncated` names the sections cut). `NotFound` for an
/// unknown id, `Erased` for a tombstone.
pub async fn export(
    store: &dyn Store,
    copies: &dyn MailCopies,
    contact_id: &str,
    now: Timestamp,
) -> Result<Value, PersonalDataError> {
    let contact = match lookup_of(store.get(&contact_key(contact_id)).await?)? {
        ContactLookup::Found(contact) => *contact,
        ContactLookup::Erased(at) => return Err(PersonalDataError::Erased(at)),
        ContactLookup::Missing => return Err(PersonalDataError::NotFound),
    };
    let mut truncated = Map::new();
    let mut note = |section: &str, cut: bool| {
        if cut {
            truncated.insert(section.to_string(), Value::Bool(true));
        }
    };
    // The anonymous ids on the contact and, through the index, those its bounds trimmed off it.
    let mut anonymous_ids: BTreeSet<String> = contact.anonymous_ids.iter().cloned().collect();
    let (indexed, cut) =
        read_capped(store, Query::partition(Index::Gsi1, contact_anonymous_ids_partition(contact_id)), EXPORT_CAP)
            .await?;
    note("anonymous_ids", cut);
    anonymous_ids
        .extend(indexed.iter().filter_map(|item| item.get_str("pk")?.strip_prefix("ANON#")).map(str::to_string));
    let subjects: Vec<String> =
        std::iter::once(contact.id.clone()).chain(anonymous_ids.iter().map(|a| anonymous_subject(a))).collect();

    let (consent_receipts, cut) = newest(store, &format!("CONSENT#{contact_id}"), EXPORT_CAP).await?;
    note("consent_receipts", cut);

    let mut timeline = Vec::new();
    let mut timeline_cut = false;
    for subject in &subjects {
        let (items, cut) = newest(store, &format!("EVLOG#{subject}"), EXPORT_CAP).await?;
        timeline_cut |= cut;
        timeline.extend(items.into_iter().filter_map(|item| {
            let event: Value = serde_json::from_str(item.get("event")?.as_str()?).ok()?;
            Some((
                item.get("sk").cloned().unwrap_or_default().as_str().unwrap_or_default().to_string(),
                json!({
                    "subject": subject, "event": event,
                }),
            ))
        }));
    }
    timeline.sort_by(|a, b| b.0.cmp(&a.0));
    timeline_cut |= timeline.len() > EXPORT_CAP;
    timeline.truncate(EXPORT_CAP);
    note("timeline", timeline_cut);
    let timeline: Vec<Value> = timeline.into_iter().map(|(_, entry)| entry).collect();

    let (journeys, cut) = newest(store, &format!("JSTATE#{contact_id}"), EXPORT_CAP).await?;
    note("journeys", cut);
    let mut scheduled = Vec::new();
    let mut carts = Vec::new();
    let mut trigger_counts = Vec::new();
    let (mut scheduled_cut, mut carts_cut, mut counts_cut) = (false, false, false);
    for subject in &subjects {
        let (items, cut) = newest(store, &format!("DUE#{subject}"), EXPORT_CAP).await?;
        scheduled_cut |= cut;
        scheduled.extend(items);
        let (listed, cut) = newest(store, &format!("CARTS#{subject}"), EXPORT_CAP).await?;
        carts_cut |= cut;
        for listing in listed {
            // Only while the person owns it: a reused cart id is the new owner's.
            if let Some(cart) = listing.get("sk").and_then(Value::as_str)
                && let Some(item) = store.get(&cart_key(cart)).await?
                && item.get_str("owner") == Some(subject.as_str())
            {
                carts.push(without_keys(item));
            }
        }
        let (items, cut) = newest(store, &format!("TRIG#{subject}"), EXPORT_CAP).await?;
        counts_cut |= cut;
        trigger_counts.extend(items);
    }
    note("scheduled", scheduled_cut);
    note("carts", carts_cut);
    note("trigger_counts", counts_cut);
    let (frequency_counters, cut) = newest(store, &format!("CAP#{contact_id}"), EXPORT_CAP).await?;
    note("frequency_counters", cut);

    let mut bot_sessions = Vec::new();
    let mut seen_sessions = BTreeSet::new();
    let (sessions, cut) =
        read_capped(store, Query::partition(Index::Gsi1, contact_sessions_partition(contact_id)), EXPORT_CAP).await?;
    note("bot_sessions", cut);
    for item in sessions {
        seen_sessions.insert(item.get_str("pk").unwrap_or_default().to_string());
        bot_sessions.push(without_keys(item));
    }
    for session_id in &contact.recent_submission_ids {
        let key = session_key(session_id);
        if seen_sessions.contains(&key.pk) {
            continue;
        }
        if let Some(item) = store.get(&key).await?
            && item.get_str("contact_id") == Some(contact_id)
        {
            bot_sessions.push(without_keys(item));
        }
    }

    // The ledger entries of the sends the timeline and the schedule name, newest first.
    let sent_keys: Vec<Key> = {
        let log_items: Vec<Item> = timeline
            .iter()
            .map(|entry| Item(Map::from_iter([("event".to_string(), Value::String(entry["event"].to_string()))])))
            .collect();
        let due_items: Vec<Item> = scheduled.iter().cloned().map(item_of_value).collect();
        let mut keys: Vec<Key> = ledger_keys_of_log(&log_items, contact_id).into_iter().map(|(key, _)| key).collect();
        keys.extend(ledger_keys_of_due(&due_items, contact_id).into_iter().map(|(key, _)| key));
        let mut seen = BTreeSet::new();
        keys.retain(|key| seen.insert(key.clone()));
        keys
    };
    note("messages", sent_keys.len() > EXPORT_MESSAGES_CAP);
    let mut ledger = Vec::new();
    for key in sent_keys.iter().take(EXPORT_MESSAGES_CAP) {
        if let Some(item) = store.get(key).await? {
            let idempotency_key = key.pk.trim_start_matches("SEND#").to_string();
            let mut entry = without_keys(item);
            entry["idempotency_key"] = Value::String(idempotency_key);
            ledger.push(entry);
        }
    }
    let markers = PersonMarkers::new(
        contact
            .email
            .as_ref()
            .map(|e| e.as_typed())
            .into_iter()
            .chain(contact.phone.as_ref().map(|p| p.as_str()))
            .chain(std::iter::once(contact_id)),
    );
    let (mail_copies, copies_cut) =
        copies.copies_about(&markers, EXPORT_MESSAGES_CAP).await.map_err(PersonalDataError::MailCopies)?;
    note("mail_copies", copies_cut);

    let discount_codes = contact.discount_codes.clone();
    let orders = contact.orders.clone();
    Ok(json!({
        "exported_at": now,
        "contact": contact,
        "consent_receipts": consent_receipts,
        "timeline": timeline,
        "journeys": journeys,
        "scheduled": scheduled,
        "carts": carts,
        "orders": orders,
        "discount_codes": discount_codes,
        "bot_sessions": bot_sessions,
        "messages": {"ledger": ledger, "mail_copies": mail_copies},
        "frequency_counters": frequency_counters,
        "trigger_counts": trigger_counts,
        "limits": {"per_section": EXPORT_CAP, "messages": EXPORT_MESSAGES_CAP},
        "truncated": truncated,
    }))
}

/// The newest `cap` items of a partition (by sort key), without their keys' bookkeeping, and
/// whether there were more.
async fn newest(store: &dyn Store, partition: &str, cap: usize) -> Result<(Vec<Value>, bool), StoreError> {
    let (items, cut) = read_capped(store, Query::partition(Index::Table, partition).backward(), cap).await?;
    Ok((items.into_iter().map(without_keys).collect(), cut))
}

/// At most `cap` items of a query, following its pages (a page can end early: DynamoDB stops at
/// 1 MB read), and whether more were left.
async fn read_capped(store: &dyn Store, query: Query, cap: usize) -> Result<(Vec<Item>, bool), StoreError> {
    let mut items = Vec::new();
    let mut query = query;
    loop {
        let wanted = cap + 1 - items.len();
        let page = store.query(query.clone().limit(wanted as u32)).await?;
        items.extend(page.items);
        match page.next {
            Some(cursor) if items.len() <= cap => query.start_after = Some(cursor),
            _ => break,
        }
    }
    let cut = items.len() > cap;
    items.truncate(cap);
    Ok((items, cut))
}

fn without_keys(item: Item) -> Value {
    let mut map = item.0;
    for name in ["pk", "gsi1pk", "gsi1sk"] {
        map.remove(name);
    }
    Value::Object(map)
}

fn item_of_value(value: Value) -> Item {
    match value {
        Value::Object(map) => Item(map),
        _ => Item(Map::new()),
    }
}
