//! Shopping carts, built from `add_to_cart`, `remove_from_cart`, `checkout_started` and `purchase`
//! events, keyed by the shop's cart id. A person may have several carts.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::payload::{CartAction, CartChange};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartItem {
    pub sku: String,
    pub name: String,
    /// Unit price in major units of the cart's currency.
    pub price: f64,
    pub quantity: f64,
    pub image: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CartStatus {
    Open,
    Abandoned,
    Purchased,
    Emptied,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    pub cart_id: String,
    /// `<contact id>` or `anon:<anonymous id>` until the visitor identifies.
    pub owner: String,
    pub items: BTreeMap<String, CartItem>,
    pub currency: Option<String>,
    pub cart_url: Option<String>,
    pub status: CartStatus,
    pub created_at: Timestamp,
    pub last_activity_at: Timestamp,
    /// Bumped by every change; an idle check only counts if nothing happened since it was set.
    pub activity: u64,
    pub abandoned_at: Option<Timestamp>,
    /// Reminder steps sent (1-based), and those skipped as stale.
    #[serde(default)]
    pub reminders_sent: Vec<u32>,
    #[serde(default)]
    pub reminders_skipped: Vec<u32>,
    /// Discount codes issued, by step.
    #[serde(default)]
    pub codes: BTreeMap<u32, String>,
    pub purchased_at: Option<Timestamp>,
    /// The last reminder step before the purchase, when the purchase recovered the cart.
    pub recovered_by_step: Option<u32>,
    #[serde(default)]
    pub version: u64,
}

/// Most distinct items a cart holds; adds of further skus are ignored (the item must stay small).
pub const MAX_CART_ITEMS: usize = 100;

/// Longest item name kept from an event; longer ones are cut.
pub const MAX_ITEM_NAME_CHARS: usize = 120;
/// Longest sku kept from an event.
pub const MAX_SKU_CHARS: usize = 64;
/// Longest link or image address kept from an event.
pub const MAX_LINK_CHARS: usize = 1024;

/// Text from an event as it may appear in email: one line, no control characters, at most
/// `max_chars` characters. Templates escape it for HTML; this keeps it short and on one line.
pub fn plain_text(value: &str, max_chars: usize) -> String {
    let single_line: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    single_line.chars().take(max_chars).collect()
}

/// Cart-event properties made safe for email: names and skus as short plain text; item links,
/// images and the cart link only as `safe_link` returns them (on the shop's own hosts). Returns
/// the cleaned properties and the names of the links that were dropped.
pub fn clean_cart_properties(
    properties: &Map<String, Value>,
    safe_link: impl Fn(&str) -> Option<String>,
) -> (Map<String, Value>, Vec<&'static str>) {
    let mut cleaned = properties.clone();
    let mut dropped = Vec::new();
    for (name, max) in [("name", MAX_ITEM_NAME_CHARS), ("sku", MAX_SKU_CHARS)] {
        if let Some(text) = properties.get(name).and_then(Value::as_str) {
            cleaned.insert(name.into(), Value::String(plain_text(text, max)));
        }
    }
    for name in ["url", "image", "cart_url"] {
        let Some(value) = properties.get(name) else { continue };
        let safe = value.as_str().map(str::trim).filter(|link| link.len() <= MAX_LINK_CHARS).and_then(&safe_link);
        match safe {
            Some(link) => {
                cleaned.insert(name.into(), Value::String(link));
            }
            None => {
                cleaned.remove(name);
                dropped.push(name);
            }
        }
    }
    (cleaned, dropped)
}

impl Cart {
    pub fn new(cart_id: &str, owner: &str, now: Timestamp) -> Cart {
        Cart {
            cart_id: cart_id.to_string(),
            owner: owner.to_string(),
            items: BTreeMap::new(),
            currency: None,
            cart_url: None,
            status: CartStatus::Open,
            created_at: now,
            last_activity_at: now,
            activity: 0,
            abandoned_at: None,
            reminders_sent: Vec::new(),
            reminders_skipped: Vec::new(),
            codes: BTreeMap::new(),
            purchased_at: None,
            recovered_by_step: None,
            version: 0,
        }
    }

    pub fn total(&self) -> f64 {
        self.items.values().map(|i| i.price * i.quantity).sum()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.status, CartStatus::Purchased | CartStatus::Emptied)
    }

    /// Applies a cart event; returns whether the cart changed.
    pub fn apply(&mut self, change: &CartChange, at: Timestamp) -> bool {
        let is_add = matches!(change.action, CartAction::Add(_));
        if self.is_closed() && !is_add {
            return false;
        }
        if let Some(currency) = &change.currency {
            self.currency = Some(currency.clone());
        }
        if let Some(url) = &change.cart_url {
            self.cart_url = Some(url.clone());
        }
        match &change.action {
            CartAction::Add(line) => {
                let sku = &line.sku;
                if self.is_closed() {
                    // A bought or emptied cart id reused by the shop starts over, but its activity
                    // counter goes on: timers, steps and send keys are named by it, and the new
                    // lifecycle's must not collide with the old one's.
                    let fresh = Cart::new(&self.cart_id, &self.owner, at);
                    *self = Cart { version: self.version, activity: self.activity, ..fresh };
                }
                if !self.items.contains_key(sku) && self.items.len() >= MAX_CART_ITEMS {
                    return false;
                }
                let item = self.items.entry(sku.clone()).or_insert_with(|| CartItem {
                    sku: sku.clone(),
                    name: line.name.clone().unwrap_or_else(|| sku.clone()),
                    price: 0.0,
                    quantity: 0.0,
                    image: None,
                    url: None,
                });
                item.quantity += line.quantity.unwrap_or(1.0);
                if let Some(price) = line.price {
                    item.price = price;
                }
                if let Some(name) = &line.name {
                    item.name = name.clone();
                }
                item.image = line.image.clone().or(item.image.take());
                item.url = line.url.clone().or(item.url.take());
            }
            CartAction::Remove { sku, quantity } => {
                if let Some(item) = self.items.get_mut(sku) {
                    match quantity {
                        Some(q) if *q < item.quantity => item.quantity -= q,
                        _ => {
                            self.items.remove(sku);
                        }
                    }
                }
                if self.items.is_empty() {
                    self.status = CartStatus::Emptied;
                }
            }
            CartAction::CheckoutStarted => {}
            CartAction::Purchase => {
                self.status = CartStatus::Purchased;
                self.purchased_at = Some(at);
                self.recovered_by_step = self.reminders_sent.iter().max().copied();
            }
        }
        if at > self.last_activity_at {
            self.last_activity_at = at;
        }
        if self.status == CartStatus::Abandoned && change.action != CartAction::Purchase {
            // Back at the cart: the old sequence is over; a new idle period starts.
            self.status = CartStatus::Open;
            self.abandoned_at = None;
        }
        self.activity += 1;
        true
    }

    /// The template values of a reminder: items with their prices, the total, the link back.
    pub fn template_context(&self) -> Map<String, Value> {
        let mut context = Map::new();
        context.insert(
            "items".into(),
            Value::Array(
                self.items
                    .values()
                    .map(|i| json!({"sku": i.sku, "name": i.name, "price": i.price, "quantity": i.quantity, "image": i.image, "url": i.url}))
                    .collect(),
            ),
        );
        context.insert("cart_total".into(), json!(self.total()));
        if let Some(currency) = &self.currency {
            context.insert("currency".into(), json!(currency));
        }
        if let Some(url) = &self.cart_url {
            context.insert("cart_url".into(), json!(url));
        }
        context.insert("cart_id".into(), json!(self.cart_id));
        context
    }
}

#[cfg(test)]
mod tests {
    use super::super::event::{Event, EventType};
    use super::*;

    fn props(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn change(event_type: &str, properties: Map<String, Value>) -> CartChange {
        let t = Timestamp::UNIX_EPOCH;
        Event::internal("e".into(), EventType::from(event_type), "c_1", t, t, properties).cart_change().unwrap()
    }

    #[test]
    fn a_cart_follows_its_events() {
        let t = Timestamp::UNIX_EPOCH;
        let mut cart = Cart::new("cart-1", "c_1", t);
        cart.apply(
            &change("add_to_cart", props(json!({"sku": "A", "name": "Shoes", "price": 1990, "quantity": 2}))),
            t,
        );
        cart.apply(&change("add_to_cart", props(json!({"sku": "B", "price": 500}))), t);
        assert_eq!(cart.total(), 4480.0);
        cart.apply(&change("remove_from_cart", props(json!({"sku": "A", "quantity": 1}))), t);
        assert_eq!(cart.total(), 2490.0);
        cart.apply(&change("remove_from_cart", props(json!({"sku": "A"}))), t);
        cart.apply(&change("remove_from_cart", props(json!({"sku": "B"}))), t);
        assert_eq!(cart.status, CartStatus::Emptied);
        assert_eq!(cart.activity, 5);
    }

    #[test]
    fn a_reused_cart_id_keeps_counting_activity() {
        let t = Timestamp::UNIX_EPOCH;
        let mut cart = Cart::new("cart-1", "c_1", t);
        cart.apply(&change("add_to_cart", props(json!({"sku": "A", "price": 10}))), t);
        cart.apply(&change("purchase", props(json!({}))), t);
        let before = cart.activity;
        cart.apply(&change("add_to_cart", props(json!({"sku": "B", "price": 10}))), t);
        assert_eq!(cart.status, CartStatus::Open);
        assert!(cart.activity > before, "the new lifecycle continues the counter");
        assert_eq!(cart.items.len(), 1);
    }

    #[test]
    fn a_cart_holds_a_bounded_number_of_items() {
        let t = Timestamp::UNIX_EPOCH;
        let mut cart = Cart::new("cart-1", "c_1", t);
        for n in 0..MAX_CART_ITEMS + 50 {
            cart.apply(&change("add_to_cart", props(json!({"sku": format!("S{n}"), "price": 1}))), t);
        }
        assert_eq!(cart.items.len(), MAX_CART_ITEMS);
        assert!(
            cart.apply(&change("add_to_cart", props(json!({"sku": "S0", "price": 1}))), t),
            "known items still change"
        );
    }

    #[test]
    fn cart_text_is_short_plain_text_and_links_stay_on_allowed_hosts() {
        let raw = props(json!({"sku": "A", "name": "Shoes\n<b>Click</b>\u{7} now ".repeat(40),
            "url": "https://evil.example/phish", "image": "https://cdn.shop.example/a.jpg", "cart_url": 7}));
        let (clean, dropped) =
            clean_cart_properties(&raw, |link| link.starts_with("https://cdn.shop.example/").then(|| link.to_string()));
        let name = clean["name"].as_str().unwrap();
        assert!(name.chars().count() <= MAX_ITEM_NAME_CHARS && !name.contains('\n') && !name.contains('\u{7}'));
        assert!(clean.get("url").is_none() && clean.get("cart_url").is_none());
        assert_eq!(clean["image"], "https://cdn.shop.example/a.jpg");
        assert_eq!(dropped, vec!["url", "cart_url"]);
    }
}
