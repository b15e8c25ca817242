//! Discount codes: `DISCOUNT#<code>` / `CODE`, issued once by a cart reminder step (conditional
//! put, so a retried step changes nothing) and redeemed once by a purchase (conditional on not
//! being redeemed). The contact keeps a copy of what it was given; these items are the truth.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::ports::{Condition, Item, Key, Store, StoreError, TransactOp, UpdateAction};

fn code_key(code: &str) -> Key {
    Key::new(format!("DISCOUNT#{code}"), "CODE")
}

/// A code as issued.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscountCode {
    pub code: String,
    /// Whose it is: only they may redeem it.
    pub contact_id: String,
    pub cart_id: String,
    pub step: u32,
    pub percent: u32,
    pub expires_at: Timestamp,
    pub redeemed: bool,
}

impl DiscountCode {
    fn from_item(item: &Item) -> Option<DiscountCode> {
        Some(DiscountCode {
            code: item.get_str("pk")?.strip_prefix("DISCOUNT#")?.to_string(),
            contact_id: item.get_str("contact_id")?.to_string(),
            cart_id: item.get_str("cart_id")?.to_string(),
            step: u32::try_from(item.get_i64("step")?).ok()?,
            percent: u32::try_from(item.get_i64("percent")?).ok()?,
            expires_at: Timestamp::from_second(item.get_i64("expires_at")?).ok()?,
            redeemed: item.get("redeemed")?.as_bool()?,
        })
    }

    /// What issued the code, the campaign its redemptions and cost are counted under: only the
    /// abandoned-cart sequence issues codes today (a code item names its cart).
    pub fn origin(&self) -> &'static str {
        crate::repo::aggregates::CART_RECOVERY
    }

    /// Whether `contact_id` may redeem it at `at`: theirs, unused, and not expired (by the second).
    pub fn redeemable_by(&self, contact_id: &str, at: Timestamp) -> bool {
        self.contact_id == contact_id && !self.redeemed && self.expires_at.as_second() >= at.as_second()
    }

    /// Creates the code, unredeemed, unless it exists.
    pub fn issue_op(&self) -> TransactOp {
        TransactOp::Put {
            item: Item::new(
                &code_key(&self.code),
                json!({"contact_id": self.contact_id, "cart_id": self.cart_id, "step": self.step,
                       "percent": self.percent, "expires_at": self.expires_at.as_second(), "redeemed": false}),
            ),
            condition: Some(Condition::NotExists),
        }
    }
}

pub async fn exists(store: &dyn Store, code: &str) -> Result<bool, StoreError> {
    Ok(store.get(&code_key(code)).await?.is_some())
}

/// The code as stored, or `None` when there is none or it cannot be read (logged).
pub async fn load(store: &dyn Store, code: &str) -> Result<Option<DiscountCode>, StoreError> {
    let Some(item) = store.get(&code_key(code)).await? else { return Ok(None) };
    // A code that cannot be read redeems nothing, but must not hold up the purchase naming it:
    // the order, revenue and journeys still count.
    let code = DiscountCode::from_item(&item);
    if code.is_none() {
        tracing::error!("a stored discount code cannot be read; it is treated as not redeemable");
    }
    Ok(code)
}

/// Redeems a code for an order, only if nobody redeemed it first.
pub fn redeem_op(code: &str, at: Timestamp, order_id: Value) -> TransactOp {
    TransactOp::Update {
        key: code_key(code),
        actions: vec![
            UpdateAction::set("redeemed", true),
            UpdateAction::set("redeemed_at", at.as_second()),
            UpdateAction::set("order_id", order_id),
        ],
        condition: Some(Condition::equals("redeemed", false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> DiscountCode {
        DiscountCode {
            code: "ABCDE-FGHJK".into(),
            contact_id: "c_1".into(),
            cart_id: "cart-1".into(),
            step: 3,
            percent: 10,
            expires_at: "2026-03-08T12:00:00Z".parse().unwrap(),
            redeemed: false,
        }
    }

    #[test]
    fn an_issued_code_reads_back() {
        let TransactOp::Put { item, condition } = code().issue_op() else { panic!("issuing puts") };
        assert_eq!(item.key(), Some(Key::new("DISCOUNT#ABCDE-FGHJK", "CODE")));
        assert_eq!(condition, Some(Condition::NotExists));
        assert_eq!(item.get("redeemed"), Some(&json!(false)));
        assert_eq!(DiscountCode::from_item(&item), Some(code()));
    }

    #[test]
    fn only_the_holder_redeems_an_unused_code_before_it_expires() {
        let code = code();
        let before: Timestamp = "2026-03-08T12:00:00.5Z".parse().unwrap();
        assert!(code.redeemable_by("c_1", before), "expiry counts by the second");
        assert!(!code.redeemable_by("c_2", before));
        assert!(!code.redeemable_by("c_1", "2026-03-08T12:00:01Z".parse().unwrap()));
        assert!(!DiscountCode { redeemed: true, ..code }.redeemable_by("c_1", before));
    }
}
