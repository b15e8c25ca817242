//! Typed views of the event payloads that carry meaning: purchases and cart changes. Ingestion
//! validates them once (`validate`, naming the field at fault); consumers read them through
//! `Event::purchase` and `Event::cart_change`, never a property by its name. The properties map
//! stays the wire and storage form, so queued messages and samples keep their shape.

use serde_json::{Map, Value, json};

use super::event::{Event, EventType, is_valid_client_id};

/// A property that breaks its event type's rules, with the field named as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    pub code: &'static str,
    /// `properties.<name>`.
    pub field: String,
    pub message: String,
}

fn fault(code: &'static str, name: &str, message: &str) -> PayloadError {
    PayloadError { code, field: format!("properties.{name}"), message: message.into() }
}

/// A line of a cart or an order as the shop names it.
#[derive(Debug, Clone, PartialEq)]
pub struct CartLine {
    pub sku: String,
    pub name: Option<String>,
    /// Unit price in major units of the currency.
    pub price: Option<f64>,
    pub quantity: Option<f64>,
    pub image: Option<String>,
    pub url: Option<String>,
}

impl CartLine {
    fn read(properties: &Map<String, Value>) -> Option<CartLine> {
        Some(CartLine {
            sku: text(properties, "sku")?,
            name: text(properties, "name"),
            price: number(properties, "price"),
            quantity: number(properties, "quantity"),
            image: text(properties, "image"),
            url: text(properties, "url"),
        })
    }
}

/// What a cart event does.
#[derive(Debug, Clone, PartialEq)]
pub enum CartAction {
    Add(CartLine),
    Remove { sku: String, quantity: Option<f64> },
    CheckoutStarted,
    Purchase,
}

/// A cart event's meaning: which cart, what happened to it, and what it says about the cart.
#[derive(Debug, Clone, PartialEq)]
pub struct CartChange {
    pub cart_id: Option<String>,
    pub currency: Option<String>,
    pub cart_url: Option<String>,
    pub action: CartAction,
}

/// A purchase: the shop's order, what it earned, and the cart and code it closes.
#[derive(Debug, Clone, PartialEq)]
pub struct Purchase {
    /// As the shop sent it.
    pub order_id: Option<String>,
    /// In major units. Required at ingestion; absent only in messages queued before that rule.
    pub revenue: Option<f64>,
    pub currency: Option<String>,
    pub cart_id: Option<String>,
    pub discount_code: Option<String>,
    /// What the code took off, when the shop reports it (major units).
    pub discount_amount: Option<f64>,
    /// The order's lines, when the shop lists them.
    pub items: Vec<CartLine>,
}

impl Purchase {
    /// The revenue to count: none reported counts as nothing earned.
    pub fn revenue_or_zero(&self) -> f64 {
        self.revenue.unwrap_or(0.0)
    }
}

impl Event {
    /// The purchase this event reports, if it is one.
    pub fn purchase(&self) -> Option<Purchase> {
        if self.event_type != EventType::Purchase {
            return None;
        }
        let p = &self.properties;
        let items = p.get("items").and_then(Value::as_array).into_iter().flatten();
        Some(Purchase {
            order_id: p.get("order_id").and_then(Value::as_str).map(str::to_string),
            revenue: number(p, "revenue"),
            currency: text(p, "currency"),
            cart_id: p.get("cart_id").and_then(Value::as_str).map(str::to_string),
            discount_code: p.get("discount_code").and_then(Value::as_str).map(str::to_string),
            discount_amount: number(p, "discount_amount"),
            items: items.filter_map(Value::as_object).filter_map(CartLine::read).collect(),
        })
    }

    /// What this event does to a cart, if it changes one.
    pub fn cart_change(&self) -> Option<CartChange> {
        CartChange::read(&self.event_type, &self.properties)
    }
}

impl CartChange {
    /// A cart change from an event's type and properties (the carts read cleaned properties).
    /// An add or remove without a sku changes nothing: ingestion refuses those.
    pub fn read(event_type: &EventType, p: &Map<String, Value>) -> Option<CartChange> {
        let action = match event_type {
            EventType::AddToCart => CartAction::Add(CartLine::read(p)?),
            EventType::RemoveFromCart => CartAction::Remove { sku: text(p, "sku")?, quantity: number(p, "quantity") },
            EventType::CheckoutStarted => CartAction::CheckoutStarted,
            EventType::Purchase => CartAction::Purchase,
            _ => return None,
        };
        Some(CartChange {
            cart_id: p.get("cart_id").and_then(Value::as_str).map(str::to_string),
            currency: text(p, "currency"),
            cart_url: text(p, "cart_url"),
            action,
        })
    }
}

/// What a mail event (sent, delivered, opened, clicked, bounced, complained, unsubscribed) says
/// about the message it concerns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MailFacts {
    /// The mail service's message id.
    pub message_id: Option<String>,
    pub template: Option<String>,
    pub journey: Option<String>,
    /// The send tag of a journey's message, matched by clicks.
    pub send: Option<String>,
}

impl Event {
    /// The revenue an event reports: a purchase's, or that of a custom conversion event that
    /// carries one.
    pub fn revenue(&self) -> Option<f64> {
        number(&self.properties, "revenue")
    }

    /// A bounce after which no address will ever accept mail.
    pub fn is_permanent_bounce(&self) -> bool {
        self.event_type == EventType::EmailBounced && self.properties.get("permanent") == Some(&Value::Bool(true))
    }

    /// The message a mail event is about.
    pub fn mail(&self) -> MailFacts {
        let p = &self.properties;
        let raw = |name: &str| p.get(name).and_then(Value::as_str).map(str::to_string);
        MailFacts {
            message_id: raw("message_id"),
            template: raw("template"),
            journey: raw("journey"),
            send: raw("send"),
        }
    }
}

/// The due work Voronka schedules for itself, as the properties of the event the scheduler
/// raises when it is due. Each view writes and reads its own shape, so the two stay together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DueWorkPayload {
    /// A journey run's wait is over: go on after `step`.
    JourneyContinue { journey: String, run: u64, step: String },
    /// An inactivity journey's time has come, counted `since` (seconds) the last watched event.
    InactivityCheck { journey: String, since: i64 },
    /// A cart may have been idle long enough to count as abandoned.
    CartIdle { cart_id: String, activity: u64 },
    /// A cart reminder step is due, for the cart as it was at `activity`.
    CartStep { cart_id: String, step: u32, activity: u64 },
}

impl DueWorkPayload {
    pub fn event_type(&self) -> EventType {
        match self {
            DueWorkPayload::JourneyContinue { .. } => EventType::JourneyContinue,
            DueWorkPayload::InactivityCheck { .. } => EventType::InactivityCheck,
            DueWorkPayload::CartIdle { .. } => EventType::CartIdle,
            DueWorkPayload::CartStep { .. } => EventType::CartStep,
        }
    }

    pub fn to_properties(&self) -> Map<String, Value> {
        let value = match self {
            DueWorkPayload::JourneyContinue { journey, run, step } => {
                json!({"journey": journey, "run": run, "step": step})
            }
            DueWorkPayload::InactivityCheck { journey, since } => json!({"journey": journey, "since": since}),
            DueWorkPayload::CartIdle { cart_id, activity } => json!({"cart_id": cart_id, "activity": activity}),
            DueWorkPayload::CartStep { cart_id, step, activity } => {
                json!({"cart_id": cart_id, "step": step, "activity": activity})
            }
        };
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

impl Event {
    /// The due work this event carries out, if it is one of Voronka's timers and well formed.
    pub fn due_work(&self) -> Option<DueWorkPayload> {
        let p = &self.properties;
        let raw = |name: &str| p.get(name).and_then(Value::as_str).map(str::to_string);
        let count = |name: &str| p.get(name).and_then(Value::as_u64);
        Some(match self.event_type {
            EventType::JourneyContinue => {
                DueWorkPayload::JourneyContinue { journey: raw("journey")?, run: count("run")?, step: raw("step")? }
            }
            EventType::InactivityCheck => DueWorkPayload::InactivityCheck {
                journey: raw("journey")?,
                since: p.get("since").and_then(Value::as_i64).unwrap_or_default(),
            },
            EventType::CartIdle => DueWorkPayload::CartIdle { cart_id: raw("cart_id")?, activity: count("activity")? },
            EventType::CartStep => DueWorkPayload::CartStep {
                cart_id: raw("cart_id")?,
                step: u32::try_from(count("step")?).ok().filter(|step| *step > 0)?,
                activity: count("activity")?,
            },
            _ => return None,
        })
    }
}

/// Checks the properties the suite relies on for revenue and carts, where they arrive.
/// The largest amount (revenue, price, discount) an event may carry. Amounts are summed into
/// aggregates as `f64`; an absurd one (1e308) would make a day's sum infinite, which JSON stores as
/// `null`, and the aggregate would no longer read back.
pub const MAX_AMOUNT: f64 = 1e12;
/// The largest quantity of a cart line.
pub const MAX_QUANTITY: f64 = 1e6;

pub fn validate(event_type: &EventType, properties: &Map<String, Value>) -> Result<(), PayloadError> {
    let number_of = |name: &str| properties.get(name).map(|v| v.as_f64());
    for (name, limit) in
        [("revenue", MAX_AMOUNT), ("price", MAX_AMOUNT), ("discount_amount", MAX_AMOUNT), ("quantity", MAX_QUANTITY)]
    {
        if number_of(name).flatten().is_some_and(|n| n.abs() > limit) {
            return Err(fault("out_of_range", name, &format!("must be at most {limit}")));
        }
    }
    if event_type.changes_cart() {
        // Cart ids become parts of storage keys, and currencies are printed beside every price.
        if let Some(cart_id) = properties.get("cart_id")
            && !cart_id.as_str().is_some_and(is_valid_client_id)
        {
            return Err(fault("invalid_id", "cart_id", "must be 1 to 128 of A-Z a-z 0-9 - _ . :"));
        }
        if let Some(currency) = properties.get("currency") {
            let valid = currency.as_str().is_some_and(|c| c.len() == 3 && c.chars().all(|ch| ch.is_ascii_uppercase()));
            if !valid {
                return Err(fault("invalid_currency", "currency", "must be an ISO 4217 code such as RUB"));
            }
        }
    }
    match event_type {
        EventType::Purchase => {
            if properties.get("order_id").and_then(Value::as_str).is_none_or(|s| s.trim().is_empty()) {
                return Err(fault("required", "order_id", "a purchase needs its order_id"));
            }
            match number_of("revenue") {
                None => return Err(fault("required", "revenue", "a purchase needs its revenue")),
                Some(None) => return Err(fault("invalid_number", "revenue", "must be a number")),
                Some(Some(r)) if r < 0.0 => return Err(fault("out_of_range", "revenue", "must not be negative")),
                _ => {}
            }
        }
        EventType::AddToCart | EventType::RemoveFromCart => {
            if properties.get("sku").and_then(Value::as_str).is_none_or(|s| s.trim().is_empty()) {
                return Err(fault("required", "sku", "cart events need the item's sku"));
            }
            if matches!(number_of("price"), Some(None)) || number_of("price").flatten().is_some_and(|p| p < 0.0) {
                return Err(fault("invalid_number", "price", "must be a non-negative number"));
            }
            if matches!(number_of("quantity"), Some(None)) || number_of("quantity").flatten().is_some_and(|q| q <= 0.0)
            {
                return Err(fault("invalid_number", "quantity", "must be a positive number"));
            }
        }
        _ => {}
    }
    Ok(())
}

fn text(properties: &Map<String, Value>, name: &str) -> Option<String> {
    properties.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

fn number(properties: &Map<String, Value>, name: &str) -> Option<f64> {
    properties.get(name).and_then(Value::as_f64)
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use serde_json::json;

    use super::*;

    fn event(event_type: &str, properties: Value) -> Event {
        let mut event = Event::internal(
            "e1".into(),
            EventType::from(event_type),
            "c1",
            Timestamp::UNIX_EPOCH,
            Timestamp::UNIX_EPOCH,
            properties.as_object().unwrap().clone(),
        );
        event.trusted = true;
        event
    }

    #[test]
    fn absurd_amounts_and_quantities_are_refused_by_name() {
        let props = |v: Value| v.as_object().unwrap().clone();
        let purchase = props(json!({"order_id": "o-1", "revenue": 1e308}));
        let fault = validate(&EventType::Purchase, &purchase).unwrap_err();
        assert_eq!((fault.code, fault.field.as_str()), ("out_of_range", "properties.revenue"));
        let add = props(json!({"sku": "a", "price": 10, "quantity": 1e9}));
        assert_eq!(validate(&EventType::AddToCart, &add).unwrap_err().field, "properties.quantity");
        let fine = props(json!({"sku": "a", "price": MAX_AMOUNT, "quantity": MAX_QUANTITY}));
        assert!(validate(&EventType::AddToCart, &fine).is_ok());
    }

    #[test]
    fn a_purchase_reads_its_order_revenue_cart_code_and_lines() {
        let purchase = event(
            "purchase",
            json!({"order_id": "o-1", "revenue": 120.5, "currency": "RUB", "cart_id": "k1",
                   "discount_code": "BACK-1", "items": [{"sku": "a", "price": 100.5}, {"name": "no sku"}]}),
        )
        .purchase()
        .unwrap();
        assert_eq!(purchase.order_id.as_deref(), Some("o-1"));
        assert_eq!(purchase.revenue, Some(120.5));
        assert_eq!(purchase.cart_id.as_deref(), Some("k1"));
        assert_eq!(purchase.discount_code.as_deref(), Some("BACK-1"));
        assert_eq!(purchase.items.len(), 1, "a line without a sku is not a line");
        assert!(event("page_view", json!({})).purchase().is_none());
    }

    #[test]
    fn cart_changes_name_their_action_and_a_sku_less_add_changes_nothing() {
        let add = event("add_to_cart", json!({"cart_id": "k1", "sku": "a", "quantity": 2})).cart_change().unwrap();
        assert!(
            matches!(add.action, CartAction::Add(CartLine { ref sku, quantity: Some(q), .. }) if sku == "a" && q == 2.0)
        );
        assert!(event("add_to_cart", json!({"cart_id": "k1"})).cart_change().is_none());
        assert_eq!(event("purchase", json!({"cart_id": "k1"})).cart_change().unwrap().action, CartAction::Purchase);
        assert!(event("email_opened", json!({})).cart_change().is_none());
    }

    #[test]
    fn due_work_reads_back_what_it_wrote() {
        for work in [
            DueWorkPayload::JourneyContinue { journey: "welcome".into(), run: 2, step: "s3".into() },
            DueWorkPayload::InactivityCheck { journey: "winback".into(), since: 1_700_000_000 },
            DueWorkPayload::CartIdle { cart_id: "k1".into(), activity: 4 },
            DueWorkPayload::CartStep { cart_id: "k1".into(), step: 2, activity: 4 },
        ] {
            let t = Timestamp::UNIX_EPOCH;
            let event = Event::internal("e".into(), work.event_type(), "c1", t, t, work.to_properties());
            assert_eq!(event.due_work(), Some(work));
        }
        assert_eq!(event("cart_step", json!({"cart_id": "k1", "activity": 1})).due_work(), None, "no step");
    }

    #[test]
    fn validation_names_the_field_at_fault() {
        let check = |t: &str, p: Value| validate(&EventType::from(t), p.as_object().unwrap()).err().map(|e| e.field);
        assert_eq!(check("purchase", json!({"revenue": 1})), Some("properties.order_id".into()));
        assert_eq!(check("purchase", json!({"order_id": "o", "revenue": "lots"})), Some("properties.revenue".into()));
        assert_eq!(check("purchase", json!({"order_id": "o", "revenue": -1})), Some("properties.revenue".into()));
        assert_eq!(check("add_to_cart", json!({"sku": "a", "currency": "rub"})), Some("properties.currency".into()));
        assert_eq!(check("add_to_cart", json!({"sku": "a", "cart_id": "a b"})), Some("properties.cart_id".into()));
        assert_eq!(check("remove_from_cart", json!({"sku": "a", "quantity": 0})), Some("properties.quantity".into()));
        assert_eq!(check("purchase", json!({"order_id": "o", "revenue": 0})), None);
        assert_eq!(check("webinar_attended", json!({"anything": true})), None);
    }
}
