//! Abandoned carts: carts built from cart events, an idle timer re-armed by every change, the
//! reminder sequence as due items, cancellation the moment a cart is bought or emptied or its
//! owner unsubscribes, personal codes only for those who need them, and recovered revenue.
//!
//! Items: carts and a person's carts (`repo::carts`), discount codes (`repo::discount_codes`),
//! counted in the daily aggregates (`repo::aggregates`).
//! Due work: `cart_idle` (is it abandoned now?) and `cart_step` (send reminder N), grouped per
//! cart as `cart:<cart id>`.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use voronka_domain::campaigns::Campaigns;
use voronka_domain::model::cart::clean_cart_properties;
use voronka_domain::model::{
    Cart, CartAction, CartChange, CartStatus, Channel, Contact, DueWorkPayload, Event, Priority, SendClass, SendOrigin,
    SendRequest,
};
use voronka_domain::ports::{Condition, Item, Store, StoreError, TransactOp};
use voronka_domain::repo::aggregates::{self, Counters, Dimensions, Metric};
pub use voronka_domain::repo::carts::{cart_key, load};
use voronka_domain::repo::carts::{list_cart_op, listed};
use voronka_domain::repo::discount_codes::{self, DiscountCode};
use voronka_domain::repo::due::{self, DueItem, DueWork};
use voronka_domain::sending::origin::cart_step_send_key;

pub fn group(cart_id: &str) -> String {
    format!("cart:{cart_id}")
}

/// The ids of every cart of the owners given (a contact and the anonymous ids merged into it).
pub async fn carts_of(store: &dyn Store, owners: &[String]) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::new();
    for owner in owners {
        ids.extend(listed(store, owner).await?.into_iter().map(|cart| cart.cart_id));
    }
    Ok(ids)
}

/// What one event does to carts, for the event's transaction.
#[derive(Debug, Default)]
pub struct CartEffects {
    pub ops: Vec<TransactOp>,
    pub due: Vec<DueItem>,
    pub cancel_groups: Vec<String>,
    /// Codes issued by this event, to record on the contact.
    pub issued: Vec<voronka_domain::model::IssuedCode>,
    /// Codes redeemed by this event.
    pub redeemed: Vec<String>,
}

fn put_cart(effects: &mut CartEffects, cart: &mut Cart, previous_version: Option<u64>) {
    cart.version = previous_version.map_or(1, |v| v + 1);
    let item = Item::new(&cart_key(&cart.cart_id), serde_json::to_value(&*cart).expect("carts serialise"));
    let condition = match previous_version {
        Some(v) => Condition::equals("version", v),
        None => Condition::NotExists,
    };
    effects.ops.push(TransactOp::Put { item, condition: Some(condition) });
}

fn idle_check(cart: &Cart, campaigns: &Campaigns, contact_id: &str) -> DueItem {
    let wake = DueWorkPayload::CartIdle { cart_id: cart.cart_id.clone(), activity: cart.activity };
    DueItem {
        id: due::ids::cart_idle(&cart.cart_id, cart.activity),
        contact_id: contact_id.to_string(),
        due_at: cart.last_activity_at + SignedDuration::from_mins(campaigns.settings.carts.idle_minutes),
        group: group(&cart.cart_id),
        work: DueWork::Evaluate { event_type: wake.event_type(), properties: wake.to_properties() },
    }
}

/// Cart events: update the cart, re-arm its idle timer, or close it (bought, emptied).
/// `owner` is the contact id, or `anon:<id>` for a visitor not yet identified; `due_subject` is
/// where due items are filed (the contact, or the anonymous owner).
pub async fn on_cart_event(
    store: &dyn Store,
    campaigns: &Campaigns,
    event: &Event,
    owner: &str,
    owners: &[String],
    counters: &mut Counters,
) -> Result<CartEffects, StoreError> {
    let mut effects = CartEffects::default();
    let (properties, dropped) =
        clean_cart_properties(&event.properties, |link| campaigns.settings.sending.safe_link(link));
    let Some(change) = CartChange::read(&event.event_type, &properties) else { return Ok(effects) };
    let cart_id = match (change.cart_id.clone(), &change.action) {
        (Some(id), _) => id,
        // A purchase without a cart id closes the one cart it most likely bought: the person's
        // latest active cart. Its revenue is counted once, for that cart.
        (None, CartAction::Purchase) => match latest_active_cart(store, owners).await? {
            Some(id) => id,
            None => return Ok(effects),
        },
        (None, _) => return Ok(effects),
    };
    if !dropped.is_empty() {
        tracing::info!(cart_id = %cart_id, dropped = ?dropped, "links not on the shop's hosts were dropped from a cart event");
    }
    let date = aggregates::date(event.occurred_at, &campaigns.settings);
    let id = cart_id;
    let existing = load(store, &id).await?;
    // A cart belongs to its first owner: a page cannot fill someone else's cart by naming its
    // id (the shop's signed events may, as the shop knows its carts).
    if let Some(cart) = &existing
        && !event.trusted
        && !owners.contains(&cart.owner)
    {
        tracing::info!(cart_id = %id, "a browser event named a cart of another owner; ignored");
        return Ok(effects);
    }
    let previous_version = existing.as_ref().map(|c| c.version);
    let mut cart = match existing {
        Some(cart) => cart,
        None if matches!(change.action, CartAction::Add(_)) => {
            if listed(store, owner).await?.len() >= MAX_CARTS_PER_OWNER {
                tracing::info!(cart_id = %id, "an owner with the most carts kept started another; ignored");
                return Ok(effects);
            }
            effects.ops.push(list_cart_op(owner, &id, event.occurred_at));
            Cart::new(&id, owner, event.occurred_at)
        }
        None => return Ok(effects),
    };
    let restarting = cart.is_closed();
    if restarting && !matches!(change.action, CartAction::Add(_)) {
        return Ok(effects);
    }
    if !cart.apply(&change, event.occurred_at) {
        return Ok(effects);
    }
    // A cart id the shop reuses for another person belongs to them from its new start on, so
    // their purchase or unsubscribe finds it.
    if restarting && cart.owner != owner {
        cart.owner = owner.to_string();
        effects.ops.push(list_cart_op(owner, &id, event.occurred_at));
    }
    effects.cancel_groups.push(group(&id));
    match cart.status {
        CartStatus::Purchased => {
            if let Some(step) = cart.recovered_by_step {
                let revenue = event.purchase().and_then(|p| p.revenue).unwrap_or(cart.total());
                counters.daily(date, Metric::CartRecovered, &Dimensions::step(step), 1.0);
                counters.daily(date, Metric::CartRecoveredRevenue, &Dimensions::step(step), revenue);
            }
        }
        CartStatus::Emptied => {}
        CartStatus::Open | CartStatus::Abandoned => {
            let contact_for_due = owner.to_string();
            effects.due.push(idle_check(&cart, campaigns, &contact_for_due));
        }
    }
    put_cart(&mut effects, &mut cart, previous_version);
    Ok(effects)
}

/// Most carts listed for one owner: a person's unsubscribe ends them all, which must stay bounded.
pub const MAX_CARTS_PER_OWNER: usize = 100;

/// Carts of one owner looked at when a purchase names no cart: the most recently created.
const MAX_CARTS_CONSIDERED: usize = 20;

/// The open or abandoned cart with the latest activity among the owners' recent carts.
async fn latest_active_cart(store: &dyn Store, owners: &[String]) -> Result<Option<String>, StoreError> {
    let mut recent = Vec::new();
    for owner in owners {
        recent.extend(listed(store, owner).await?);
    }
    recent.sort_by(|a, b| (b.created_at, &b.cart_id).cmp(&(a.created_at, &a.cart_id)));
    let mut best: Option<Cart> = None;
    for listed_cart in recent.into_iter().take(MAX_CARTS_CONSIDERED) {
        if let Some(cart) = load(store, &listed_cart.cart_id).await?
            && matches!(cart.status, CartStatus::Open | CartStatus::Abandoned)
            && best.as_ref().is_none_or(|b| cart.last_activity_at > b.last_activity_at)
        {
            best = Some(cart);
        }
    }
    Ok(best.map(|c| c.cart_id))
}

/// An unsubscribe stops every cart sequence of the person at once.
pub async fn on_unsubscribe(store: &dyn Store, owners: &[String]) -> Result<Vec<String>, StoreError> {
    Ok(carts_of(store, owners).await?.iter().map(|id| group(id)).collect())
}

/// The idle timer fired: if nothing happened since, the cart is abandoned and its reminder steps
/// are scheduled.
pub async fn on_idle(
    store: &dyn Store,
    campaigns: &Campaigns,
    event: &Event,
    subject: &str,
    counters: &mut Counters,
) -> Result<CartEffects, StoreError> {
    let mut effects = CartEffects::default();
    let Some(DueWorkPayload::CartIdle { cart_id, activity }) = event.due_work() else { return Ok(effects) };
    let Some(mut cart) = load(store, &cart_id).await? else { return Ok(effects) };
    if cart.status != CartStatus::Open || cart.items.is_empty() || cart.activity != activity {
        return Ok(effects);
    }
    let previous = cart.version;
    let abandoned_at = cart.last_activity_at + SignedDuration::from_mins(campaigns.settings.carts.idle_minutes);
    cart.status = CartStatus::Abandoned;
    cart.abandoned_at = Some(abandoned_at);
    for (index, step) in campaigns.settings.carts.steps.iter().enumerate() {
        let number = index as u32 + 1;
        let wake = DueWorkPayload::CartStep { cart_id: cart.cart_id.clone(), step: number, activity: cart.activity };
        effects.due.push(DueItem {
            id: due::ids::cart_step(&cart.cart_id, cart.activity, number),
            contact_id: subject.to_string(),
            due_at: cart.last_activity_at + SignedDuration::from_hours(step.after_hours),
            group: group(&cart.cart_id),
            work: DueWork::Evaluate { event_type: wake.event_type(), properties: wake.to_properties() },
        });
    }
    let date = aggregates::date(abandoned_at, &campaigns.settings);
    counters.daily(date, Metric::CartsAbandoned, &Dimensions::none(), 1.0);
    put_cart(&mut effects, &mut cart, Some(previous));
    Ok(effects)
}

/// A deterministic, unguessable code per cart and step: retries make the same code.
pub fn discount_code(secret: &str, cart_id: &str, step: u32) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let digest = Sha256::digest(format!("{secret}:discount:{cart_id}:{step}").as_bytes());
    let code: String = digest.iter().take(10).map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char).collect();
    format!("{}-{}", &code[..5], &code[5..])
}

/// A reminder step came due: send it unless it is stale or the cart moved on.
pub async fn on_step(
    store: &dyn Store,
    campaigns: &Campaigns,
    secret: &str,
    event: &Event,
    contact: &Contact,
    now: Timestamp,
    counters: &mut Counters,
) -> Result<CartEffects, StoreError> {
    let mut effects = CartEffects::default();
    let Some(DueWorkPayload::CartStep { cart_id, step: number, activity }) = event.due_work() else {
        return Ok(effects);
    };
    let cart_id = cart_id.as_str();
    let Some(mut cart) = load(store, cart_id).await? else { return Ok(effects) };
    if cart.status != CartStatus::Abandoned || activity != cart.activity {
        return Ok(effects);
    }
    let steps = &campaigns.settings.carts.steps;
    let Some(step) = steps.get(number as usize - 1) else { return Ok(effects) };
    let due_at = cart.last_activity_at + SignedDuration::from_hours(step.after_hours);
    let next_due =
        steps.get(number as usize).map(|next| cart.last_activity_at + SignedDuration::from_hours(next.after_hours));
    let previous = cart.version;
    let date = aggregates::date(now, &campaigns.settings);
    // Catch-up rule: after an outage only the latest step still relevant goes out.
    let superseded = next_due.is_some_and(|next| now >= next);
    let too_late = step.stale_after_hours.is_some_and(|h| now.duration_since(due_at) > SignedDuration::from_hours(h));
    if superseded || too_late {
        cart.reminders_skipped.push(number);
        counters.daily(date, Metric::CartStepSkipped, &Dimensions::step(number), 1.0);
        put_cart(&mut effects, &mut cart, Some(previous));
        return Ok(effects);
    }
    let mut context = cart.template_context();
    let wants_code = step.discount_percent > 0
        && step
            .no_discount_for_segment
            .as_deref()
            .is_none_or(|segment| !campaigns.settings.segments.matches(segment, contact, now));
    if wants_code {
        let code = discount_code(secret, cart_id, number);
        let expires = now + SignedDuration::from_hours(24 * step.code_valid_days);
        context.insert("discount_code".into(), json!(code));
        context.insert("discount_percent".into(), json!(step.discount_percent));
        context.insert("discount_expires".into(), json!(expires.to_zoned(jiff::tz::TimeZone::UTC).date().to_string()));
        // Created once; a retried step finds it and changes nothing.
        if !discount_codes::exists(store, &code).await? {
            let issued = DiscountCode {
                code: code.clone(),
                contact_id: contact.id.clone(),
                cart_id: cart_id.to_string(),
                step: number,
                percent: step.discount_percent,
                expires_at: expires,
                redeemed: false,
            };
            effects.ops.push(issued.issue_op());
            counters.daily(date, Metric::DiscountCodesIssued, &Dimensions::none(), 1.0);
        }
        effects.issued.push(voronka_domain::model::IssuedCode {
            code: code.clone(),
            percent: step.discount_percent,
            reason: format!("cart:{cart_id}:step{number}"),
            expires_at: expires,
            redeemed_at: None,
        });
        cart.codes.insert(number, code);
    }
    let key = cart_step_send_key(cart_id, cart.activity, number);
    let request = SendRequest {
        idempotency_key: key,
        contact_id: contact.id.clone(),
        template: step.template.clone(),
        channel: Channel::Email,
        class: SendClass::Marketing,
        priority: Priority::Cart,
        context,
        origin: SendOrigin::Cart { cart_id: cart_id.to_string(), step: number },
        requested_at: now,
        recipient: voronka_domain::model::Recipient::Contact,
    };
    effects.due.push(DueItem {
        id: due::ids::cart_send(cart_id, cart.activity, number),
        contact_id: contact.id.clone(),
        due_at: now,
        group: group(cart_id),
        work: DueWork::Send { request },
    });
    cart.reminders_sent.push(number);
    counters.daily(date, Metric::CartReminder, &Dimensions::step(number), 1.0);
    put_cart(&mut effects, &mut cart, Some(previous));
    Ok(effects)
}

/// A purchase naming a discount code redeems it once, if it is the buyer's and still valid.
pub async fn redeem(
    store: &dyn Store,
    campaigns: &Campaigns,
    event: &Event,
    contact: &Contact,
    counters: &mut Counters,
) -> Result<Vec<TransactOp>, StoreError> {
    let Some(purchase) = event.purchase() else { return Ok(Vec::new()) };
    let Some(code) = purchase.discount_code.as_deref() else { return Ok(Vec::new()) };
    let Some(held) = discount_codes::load(store, code).await? else { return Ok(Vec::new()) };
    if !held.redeemable_by(&contact.id, event.occurred_at) {
        tracing::info!(contact_id = %contact.id, "a discount code was not redeemable (used, expired or not theirs)");
        return Ok(Vec::new());
    }
    let revenue = purchase.revenue_or_zero();
    let percent = f64::from(held.percent);
    // Revenue is what was paid after the discount; the discount cost is what was given away.
    let cost = purchase.discount_amount.unwrap_or(revenue * percent / (100.0 - percent).max(1.0));
    let date = aggregates::date(event.occurred_at, &campaigns.settings);
    // Under the code's origin, so a campaign's ROMI can count what its codes gave away.
    let origin = Dimensions::discount_origin(held.origin());
    counters.daily(date, Metric::DiscountCodesRedeemed, &origin, 1.0);
    counters.daily(date, Metric::DiscountCost, &origin, cost);
    let order_id = purchase.order_id.map_or(Value::Null, Value::String);
    Ok(vec![discount_codes::redeem_op(code, event.occurred_at, order_id)])
}
