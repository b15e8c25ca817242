//! Carts as stored: `CART#<cart id>` / `STATE`, written by the evaluator inside an event's
//! transaction (version-checked) and read here by whoever needs a cart's current state.

use serde_json::Value;

use crate::model::Cart;
use crate::ports::{Key, Store, StoreError};

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
