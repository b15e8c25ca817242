//! Contacts, their email identity and anonymous ids.
//!
//! Items:
//! - `CONTACT#<id>` / `PROFILE`: the contact, also in `gsi1` under `CONTACTS#<shard>` by creation time;
//! - `EMAIL#<sha256 of identity key>` / `IDENTITY`: which contact owns an address (unique);
//! - `ANON#<anonymous id>` / `IDENTITY`: which contact an anonymous id belongs to, also in `gsi1`
//!   under `ANONS#<contact id>` so an erasure reaches every id the contact ever had, including
//!   those trimmed off the contact (`MAX_ANONYMOUS_IDS`). After an erasure the item stays as a
//!   marker `{erased_at}` (no contact, out of the index): events naming the id are dropped and no
//!   sign-up links it again, so a browser that was forgotten cannot bring its history back.
//!
//! Creating a contact puts its email identity and profile in one transaction, both conditional on
//! not existing, so concurrent submissions of one address make exactly one contact; the losers
//! retry as updates. Updates are optimistic: they check and bump `version`.
//!
//! Every write holds the contact to its bounds (`Contact::keep_within_bounds`) and stores the
//! consent receipts it gained as their own items in the same transaction.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use super::consent_receipts::{itemise_legacy_receipts, new_receipt_ops};
use crate::model::{Contact, EmailAddress};
use crate::ports::store::{GSI1_PK, GSI1_SK, PK, SK};
use crate::ports::{Condition, Index, Item, Key, Query, Store, StoreError, TransactOp, query_all};

/// Contacts are spread over this many index partitions so no single one runs hot.
pub const LISTING_SHARDS: u32 = 16;
/// Attempts before a write that keeps losing races gives up.
const MAX_ATTEMPTS: u32 = 60;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("gave up after {0} attempts: other writers kept changing the same contact")]
    Contention(u32),
    #[error("a stored item could not be read: {0}")]
    Corrupt(String),
    #[error("not found")]
    NotFound,
}

impl RepoError {
    pub fn is_retryable(&self) -> bool {
        match self {
            RepoError::Store(e) => e.is_retryable(),
            RepoError::Contention(_) => true,
            RepoError::Corrupt(_) | RepoError::NotFound => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    Created,
    Updated,
}

pub struct ContactRepository<'a> {
    store: &'a dyn Store,
}

pub fn contact_key(id: &str) -> Key {
    Key::new(format!("CONTACT#{id}"), "PROFILE")
}

pub(crate) fn email_key(email: &EmailAddress) -> Key {
    email_key_of_digest(&email.identity_digest())
}

pub(crate) fn email_key_of_digest(identity_digest: &str) -> Key {
    Key::new(format!("EMAIL#{identity_digest}"), "IDENTITY")
}

pub(crate) fn anonymous_key(anonymous_id: &str) -> Key {
    Key::new(format!("ANON#{anonymous_id}"), "IDENTITY")
}

/// The index partition listing a contact's anonymous ids.
pub(crate) fn contact_anonymous_ids_partition(contact_id: &str) -> String {
    format!("ANONS#{contact_id}")
}

fn anonymous_identity_item(anonymous_id: &str, contact_id: &str) -> Item {
    Item::new(&anonymous_key(anonymous_id), serde_json::json!({ "contact_id": contact_id }))
        .with_gsi1(contact_anonymous_ids_partition(contact_id), anonymous_id)
}

/// The attribute that makes a `CONTACT#` item an erasure tombstone rather than a contact
/// (`repo::personal_data`): no contact reads from it, no write lands on it.
pub(crate) const ERASED_AT: &str = "erased_at";

/// What a contact id stands for now.
#[derive(Debug, Clone)]
pub enum ContactLookup {
    Found(Box<Contact>),
    /// The person was erased at this time: only the tombstone is left.
    Erased(Timestamp),
    Missing,
}

pub(crate) fn lookup_of(item: Option<Item>) -> Result<ContactLookup, RepoError> {
    let Some(item) = item else { return Ok(ContactLookup::Missing) };
    if let Some(erased_at) = item.get(ERASED_AT) {
        let at = serde_json::from_value(erased_at.clone())
            .map_err(|e| RepoError::Corrupt(format!("erased contact: {e}")))?;
        return Ok(ContactLookup::Erased(at));
    }
    from_item(item).map(|contact| ContactLookup::Found(Box::new(contact)))
}

fn shard_of(id: &str) -> u32 {
    // FNV-1a: stable across builds and platforms, unlike the std hasher.
    let mut hash: u32 = 0x811c9dc5;
    for byte in id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x01000193);
    }
    hash % LISTING_SHARDS
}

fn listing_partition(shard: u32) -> String {
    format!("CONTACTS#{shard:02}")
}

/// The stored item of a contact, for writes that put it inside a larger transaction: held to the
/// contact's bounds whatever the caller did. Such a write also adds `new_receipt_ops`.
pub fn contact_item(contact: &Contact) -> Item {
    let mut bounded = contact.clone();
    bounded.keep_within_bounds();
    let value = serde_json::to_value(&bounded).expect("contacts serialise");
    Item::new(&contact_key(&contact.id), value)
        .with_gsi1(listing_partition(shard_of(&contact.id)), format!("{}#{}", contact.created_at, contact.id))
}

fn from_item(item: Item) -> Result<Contact, RepoError> {
    let mut map = item.0;
    for name in [PK, SK, GSI1_PK, GSI1_SK] {
        map.remove(name);
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| RepoError::Corrupt(format!("contact: {e}")))
}

/// Short, growing pauses with jitter between attempts that lost a race.
async fn back_off(attempt: u32) {
    let base = 2u64.saturating_pow(attempt.min(6));
    let jitter = rand::random::<u64>() % (base + 1);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

impl<'a> ContactRepository<'a> {
    pub fn new(store: &'a dyn Store) -> Self {
        ContactRepository { store }
    }

    /// The contact, or `None` when there is none or it was erased.
    pub async fn get(&self, id: &str) -> Result<Option<Contact>, RepoError> {
        match self.lookup(id).await? {
            ContactLookup::Found(contact) => Ok(Some(*contact)),
            ContactLookup::Erased(_) | ContactLookup::Missing => Ok(None),
        }
    }

    /// The contact, or whether its id was erased.
    pub async fn lookup(&self, id: &str) -> Result<ContactLookup, RepoError> {
        lookup_of(self.store.get(&contact_key(id)).await?)
    }

    pub async fn find_by_email(&self, email: &EmailAddress) -> Result<Option<Contact>, RepoError> {
        let Some(identity) = self.store.get(&email_key(email)).await? else {
            return Ok(None);
        };
        let id = identity
            .get_str("contact_id")
            .ok_or_else(|| RepoError::Corrupt("email identity without contact_id".into()))?;
        self.get(id).await
    }

    /// The contact an anonymous id belongs to, or `None` when it belongs to nobody or to an
    /// erased person (`lookup_by_anonymous_id` tells which).
    pub async fn find_by_anonymous_id(&self, anonymous_id: &str) -> Result<Option<Contact>, RepoError> {
        match self.lookup_by_anonymous_id(anonymous_id).await? {
            ContactLookup::Found(contact) => Ok(Some(*contact)),
            ContactLookup::Erased(_) | ContactLookup::Missing => Ok(None),
        }
    }

    /// What an anonymous id stands for now: its contact, or `Erased` when the person it belonged
    /// to was erased (or is being erased).
    pub async fn lookup_by_anonymous_id(&self, anonymous_id: &str) -> Result<ContactLookup, RepoError> {
        let Some(identity) = self.store.get(&anonymous_key(anonymous_id)).await? else {
            return Ok(ContactLookup::Missing);
        };
        if identity.get(ERASED_AT).is_some() {
            return lookup_of(Some(identity));
        }
        match identity.get_str("contact_id") {
            Some(id) => self.lookup(id).await,
            None => Err(RepoError::Corrupt("anonymous identity without contact_id".into())),
        }
    }

    /// Finds the contact that owns `email` and applies `change`, or creates one with `new_contact`
    /// and then applies `change`. Safe under any number of concurrent callers for one address.
    pub async fn upsert_by_email(
        &self,
        email: &EmailAddress,
        now: Timestamp,
        new_contact: impl Fn() -> Contact,
        change: impl Fn(&mut Contact),
    ) -> Result<(Contact, UpsertOutcome), RepoError> {
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                back_off(attempt).await;
            }
            // An identity left pointing at an erased contact (an erasure not finished yet) is
            // taken over by the new contact: a fresh sign-up never lands on the tombstone.
            let mut erased_owner = None;
            let existing = match self.store.get(&email_key(email)).await? {
                Some(identity) => {
                    let id = identity
                        .get_str("contact_id")
                        .ok_or_else(|| RepoError::Corrupt("email identity without contact_id".into()))?
                        .to_string();
                    match self.lookup(&id).await? {
                        ContactLookup::Found(contact) => Some(*contact),
                        ContactLookup::Erased(_) => {
                            erased_owner = Some(id);
                            None
                        }
                        // The identity was written but the profile is not visible yet: try again.
                        ContactLookup::Missing => continue,
                    }
                }
                None => None,
            };
            let result = match existing {
                Some(mut contact) => {
                    let before = contact.anonymous_ids.clone();
                    let receipts_before = contact.consent_receipts.clone();
                    let expected_version = contact.version;
                    change(&mut contact);
                    contact.keep_within_bounds();
                    let anonymous = link_anonymous_ids(self.store, &mut contact, &before).await?;
                    let legacy = itemise_legacy_receipts(self.store, &receipts_before, &mut contact).await?;
                    contact.version = expected_version + 1;
                    contact.updated_at = now;
                    let mut ops = vec![TransactOp::Put {
                        item: contact_item(&contact),
                        condition: Some(Condition::equals("version", expected_version)),
                    }];
                    ops.extend(anonymous);
                    ops.extend(legacy);
                    ops.extend(new_receipt_ops(&receipts_before, &contact));
                    self.store.transact(ops).await.map(|()| (contact, UpsertOutcome::Updated))
                }
                None => {
                    let mut contact = new_contact();
                    contact.email = Some(email.clone());
                    change(&mut contact);
                    contact.keep_within_bounds();
                    let anonymous = link_anonymous_ids(self.store, &mut contact, &[]).await?;
                    contact.version = 1;
                    contact.updated_at = now;
                    let identity = Item::new(&email_key(email), serde_json::json!({ "contact_id": contact.id }));
                    let identity_free = match &erased_owner {
                        Some(erased) => Condition::equals("contact_id", erased.as_str()),
                        None => Condition::NotExists,
                    };
                    let mut ops = vec![
                        TransactOp::Put { item: identity, condition: Some(identity_free) },
                        TransactOp::Put { item: contact_item(&contact), condition: Some(Condition::NotExists) },
                    ];
                    ops.extend(anonymous);
                    ops.extend(new_receipt_ops(&[], &contact));
                    self.store.transact(ops).await.map(|()| (contact, UpsertOutcome::Created))
                }
            };
            match result {
                Ok(done) => return Ok(done),
                Err(
                    StoreError::TransactionCancelled { .. } | StoreError::ConditionFailed | StoreError::Throttled(_),
                ) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(RepoError::Contention(MAX_ATTEMPTS))
    }

    /// Applies `change` to an existing contact with an optimistic version check, retrying on races.
    /// `change` returns false when there is nothing to write.
    pub async fn update(
        &self,
        id: &str,
        now: Timestamp,
        change: impl Fn(&mut Contact) -> bool,
    ) -> Result<Contact, RepoError> {
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                back_off(attempt).await;
            }
            let Some(mut contact) = self.get(id).await? else {
                return Err(RepoError::NotFound);
            };
            let before = contact.anonymous_ids.clone();
            let receipts_before = contact.consent_receipts.clone();
            let expected_version = contact.version;
            if !change(&mut contact) {
                return Ok(contact);
            }
            contact.keep_within_bounds();
            let anonymous = link_anonymous_ids(self.store, &mut contact, &before).await?;
            let legacy = itemise_legacy_receipts(self.store, &receipts_before, &mut contact).await?;
            contact.version = expected_version + 1;
            contact.updated_at = now;
            let mut ops = vec![TransactOp::Put {
                item: contact_item(&contact),
                condition: Some(Condition::equals("version", expected_version)),
            }];
            ops.extend(anonymous);
            ops.extend(legacy);
            ops.extend(new_receipt_ops(&receipts_before, &contact));
            match self.store.transact(ops).await {
                Ok(()) => return Ok(contact),
                Err(
                    StoreError::TransactionCancelled { .. } | StoreError::ConditionFailed | StoreError::Throttled(_),
                ) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(RepoError::Contention(MAX_ATTEMPTS))
    }

    /// Every contact, oldest first within each shard, a page at a time per shard.
    /// For exports: reads each listing partition of the index, never the whole table.
    pub async fn list_all(&self) -> Result<Vec<Contact>, RepoError> {
        let mut contacts = Vec::new();
        for shard in 0..LISTING_SHARDS {
            let query = Query::partition(Index::Gsi1, listing_partition(shard)).limit(500);
            for item in query_all(self.store, query).await? {
                contacts.push(from_item(item)?);
            }
        }
        contacts.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(contacts)
    }

    /// The `limit` newest contacts, newest first: the newest `limit` of each listing shard (one
    /// bounded query per shard), merged. For lists a marketer opens contacts from.
    pub async fn recent(&self, limit: usize) -> Result<Vec<Contact>, RepoError> {
        let per_shard = u32::try_from(limit).unwrap_or(u32::MAX).max(1);
        let mut contacts = Vec::new();
        for shard in 0..LISTING_SHARDS {
            let query = Query::partition(Index::Gsi1, listing_partition(shard)).backward().limit(per_shard);
            for item in self.store.query(query).await?.items {
                contacts.push(from_item(item)?);
            }
        }
        contacts.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        contacts.truncate(limit);
        Ok(contacts)
    }
}

/// Links the anonymous ids the contact did not have before this write, for the write's
/// transaction. An anonymous id belongs to the first contact it was linked to: one already linked
/// to another contact is taken off this one (a page cannot move someone's browsing, or reach
/// someone, by naming their id), and the write is conditional so a racing twin loses and retries.
/// An id whose person was erased is never linked again.
pub async fn link_anonymous_ids(
    store: &dyn Store,
    contact: &mut Contact,
    before: &[String],
) -> Result<Vec<TransactOp>, StoreError> {
    let mut ops = Vec::new();
    let mut taken = Vec::new();
    for anonymous_id in contact.anonymous_ids.iter().filter(|id| !before.contains(id)) {
        let key = anonymous_key(anonymous_id);
        let identity = store.get(&key).await?;
        if identity.as_ref().is_some_and(|item| item.get(ERASED_AT).is_some()) {
            taken.push(anonymous_id.clone());
            continue;
        }
        let owner = identity.and_then(|item| item.get_str("contact_id").map(str::to_string));
        match owner {
            Some(owner) if owner != contact.id => taken.push(anonymous_id.clone()),
            Some(_) => {}
            None => ops.push(TransactOp::Put {
                item: anonymous_identity_item(anonymous_id, &contact.id),
                condition: Some(Condition::NotExists),
            }),
        }
    }
    if !taken.is_empty() {
        tracing::info!(contact_id = %contact.id, count = taken.len(), "anonymous ids linked to another contact were not linked");
        contact.anonymous_ids.retain(|id| !taken.contains(id));
    }
    Ok(ops)
}
