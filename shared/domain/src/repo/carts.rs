//! Carts as stored: `CART#<cart id>` / `STATE`, written by the evaluator inside an event's
//! transaction (version-checked) and read here by whoever needs a cart's current state; and a
//! person's carts, `CARTS#<owner>` / `<cart id>` with the cart's creation time, to end them all.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::model::Cart;
use crate::ports::{Index, Item, Key, Query, Store, StoreError, TransactOp, query_all};

pub fn cart_key(cart_id: &str) -> Key {
    Key::new(format!("CART#{cart_id}"), "STATE")
}

/// The cart as stored, or `None` when there is none. A cart that does not read (a newer writer's
/// shape during a deploy) is an error to retry, never "no cart".
pub async fn load(store: &dyn Store, cart_id: &str) -> Result<Option<Cart>, StoreError> {
    let Some(item) = store.get(&cart_key(cart_id)).await? else { return Ok(None) };
    let mut map = item.0;
    map.remove("pk");
    map.remove("sk");
    serde_json::from_value(Value::Object(map))
        .map(Some)
        .map_err(|e| StoreError::Backend(format!("a stored cart cannot be read: {e}")))
}

/// A cart in its owner's listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedCart {
    pub cart_id: String,
    /// Unix seconds.
    pub created_at: i64,
}

fn owner_partition(owner: &str) -> String {
    format!("CARTS#{owner}")
}

/// Lists a cart under its owner (`<contact id>` or `anon:<id>`), for the event's transaction.
pub fn list_cart_op(owner: &str, cart_id: &str, created_at: Timestamp) -> TransactOp {
    TransactOp::Put {
        item: Item::new(
            &Key::new(owner_partition(owner), cart_id.to_string()),
            json!({"created_at": created_at.as_second()}),
        ),
        condition: None,
    }
}

/// Every cart listed under one owner.
pub async fn listed(store: &dyn Store, owner: &str) -> Result<Vec<ListedCart>, StoreError> {
    let items = query_all(store, Query::partition(Index::Table, owner_partition(owner))).await?;
    Ok(items
        .iter()
        .filter_map(|item| {
            Some(ListedCart {
                cart_id: item.get_str("sk")?.to_string(),
                created_at: item.get_i64("created_at").unwrap_or(0),
            })
        })
        .collect())
}
