//! Consent receipts as their own items: the proof of every consent decision, kept for good, while
//! the contact holds only the latest few (`MAX_RECEIPTS_ON_CONTACT`).
//!
//! Items: `CONSENT#<contact id>` / `<time, fixed width UTC>#<receipt id>`, one per receipt, so a
//! contact's receipts read in time order with one range query.
//!
//! Receipts are written in the same transaction as the contact write that records them: every
//! writer of a contact adds [`new_receipt_ops`] for the receipts the contact gained, as the contact
//! repository does for anonymous ids. A retried or lost write writes both or neither.

use jiff::Timestamp;
use serde_json::Value;

use super::contacts::{RepoError, contact_key};
use crate::model::contact::MAX_RECEIPTS_ON_CONTACT;
use crate::model::{ConsentReceipt, Contact};
use crate::ports::store::{MAX_TRANSACTION_OPS, PK, SK};
use crate::ports::{Condition, Index, Item, Key, Query, Store, TransactOp, query_all};

fn partition(contact_id: &str) -> String {
    format!("CONSENT#{contact_id}")
}

/// Sorts as text in time order: fixed width, always UTC, milliseconds.
fn sortable_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub fn receipt_key(contact_id: &str, receipt: &ConsentReceipt) -> Key {
    Key::new(partition(contact_id), format!("{}#{}", sortable_time(receipt.at), receipt.id))
}

pub fn receipt_item(contact_id: &str, receipt: &ConsentReceipt) -> Item {
    let mut value = serde_json::to_value(receipt).expect("receipts serialise");
    value["contact_id"] = Value::String(contact_id.to_string());
    Item::new(&receipt_key(contact_id, receipt), value)
}

/// Puts for the receipts `after` holds that `before` (the receipts on the contact as read) did
/// not: what a contact write must store alongside the contact.
pub fn new_receipt_ops(before: &[ConsentReceipt], after: &Contact) -> Vec<TransactOp> {
    after
        .consent_receipts
        .iter()
        .filter(|receipt| !before.iter().any(|known| known.id == receipt.id))
        .map(|receipt| TransactOp::Put { item: receipt_item(&after.id, receipt), condition: None })
        .collect()
}

/// Stores as their own items the receipts of a contact written when receipts lived only on the
/// contact (all it held before this write, including those the bounds now trim), once, and marks
/// it: proof is never lost. Returns the puts for the write's own transaction (a contact holds at
/// most `MAX_RECEIPTS_ON_CONTACT`), so they land with the version-checked contact write or not at
/// all: a writer that read the contact before an erasure cannot bring the receipts (an IP, a user
/// agent) back after it. A contact stored before receipts were bounded may hold more than fit:
/// those go first in transactions of their own, each checking the contact's version as read.
pub async fn itemise_legacy_receipts(
    store: &dyn Store,
    before: &[ConsentReceipt],
    contact: &mut Contact,
) -> Result<Vec<TransactOp>, crate::ports::StoreError> {
    if contact.receipts_itemised {
        return Ok(Vec::new());
    }
    contact.receipts_itemised = true;
    let puts: Vec<TransactOp> = before
        .iter()
        .map(|receipt| TransactOp::Put { item: receipt_item(&contact.id, receipt), condition: None })
        .collect();
    if puts.len() <= MAX_RECEIPTS_ON_CONTACT {
        return Ok(puts);
    }
    let unchanged =
        TransactOp::Check { key: contact_key(&contact.id), condition: Condition::equals("version", contact.version) };
    for chunk in puts.chunks(MAX_TRANSACTION_OPS - 1) {
        let mut ops = chunk.to_vec();
        ops.push(unchanged.clone());
        store.transact(ops).await?;
    }
    Ok(Vec::new())
}

pub struct ConsentReceipts<'a> {
    store: &'a dyn Store,
}

impl<'a> ConsentReceipts<'a> {
    pub fn new(store: &'a dyn Store) -> Self {
        ConsentReceipts { store }
    }

    /// Every receipt of a contact, oldest first, read a page at a time.
    pub async fn list(&self, contact_id: &str) -> Result<Vec<ConsentReceipt>, RepoError> {
        let query = Query::partition(Index::Table, partition(contact_id)).limit(500);
        query_all(self.store, query).await?.into_iter().map(read_receipt).collect()
    }

    /// A contact's newest receipts, newest first, at most `limit`: one bounded read, however
    /// many times the person's address was submitted.
    pub async fn newest(&self, contact_id: &str, limit: usize) -> Result<Vec<ConsentReceipt>, RepoError> {
        let query = Query::partition(Index::Table, partition(contact_id)).backward().limit(limit.max(1) as u32);
        let page = self.store.query(query).await?;
        page.items.into_iter().take(limit).map(read_receipt).collect()
    }
}

fn read_receipt(item: Item) -> Result<ConsentReceipt, RepoError> {
    let mut map = item.0;
    for name in [PK, SK, "contact_id"] {
        map.remove(name);
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| RepoError::Corrupt(format!("consent receipt: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_keys_sort_in_time_order() {
        let receipt = |second: i64, millis: i32| {
            let at = Timestamp::new(second, millis * 1_000_000).unwrap();
            ConsentReceipt::granted("r", at, "v1", false)
        };
        let early = receipt_key("c_1", &receipt(1_800_000_000, 0));
        let later = receipt_key("c_1", &receipt(1_800_000_000, 500));
        let much_later = receipt_key("c_1", &receipt(1_900_000_000, 7));
        assert_eq!(early.pk, "CONSENT#c_1");
        assert_eq!(early.sk, "2027-01-15T08:00:00.000Z#r");
        assert!(early.sk < later.sk && later.sk < much_later.sk);
    }
}
