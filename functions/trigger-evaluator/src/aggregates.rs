//! The daily aggregates KPIs read, written with each event's transaction so the rollup never
//! rereads raw events and a redelivered event counts nothing twice.
//!
//! Items (`pk` / `sk`, numeric attributes added to):
//! - `AGG#<date>` / `<metric>#<channel>#<campaign>`: `value` (leads, stage_<stage>, orders,
//!   revenue, email_<kind> per template in `<channel>` = template);
//! - `ATTR#<date>` / `<model>#<channel>#<campaign>`: `conversions`, `revenue` credited by model;
//! - `JAGG#<journey>` / `<date>#<group>`: `entries`, `conversions`, `revenue`.
//!
//! Dates are calendar days in the installation's default time zone.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use voronka_domain::campaigns::Settings;
use voronka_domain::journeys::attribution::{Model, credits, touches_in_window};
use voronka_domain::model::{Contact, Event, EventType};
use voronka_domain::ports::{Key, TransactOp, UpdateAction};
use voronka_domain::repo::journey_state::Group;
use voronka_domain::sending::policy::time_zone_or_utc;

/// Counter increments, merged per item so a transaction touches each item once.
#[derive(Debug, Default)]
pub struct Counters {
    items: BTreeMap<Key, BTreeMap<String, f64>>,
}

impl Counters {
    pub fn add(&mut self, key: Key, attribute: &str, amount: f64) {
        *self.items.entry(key).or_default().entry(attribute.to_string()).or_default() += amount;
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The increments as JSON, to carry them in a follow-up of an event too large for one transaction.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.items
                .iter()
                .map(|(key, amounts)| serde_json::json!({"pk": key.pk, "sk": key.sk, "add": amounts}))
                .collect(),
        )
    }

    /// Reads what `to_json` wrote; anything else is an error naming what is wrong.
    pub fn from_json(value: &serde_json::Value) -> Result<Counters, String> {
        let mut counters = Counters::default();
        for entry in value.as_array().ok_or("counters must be a list")? {
            let (Some(pk), Some(sk)) = (entry["pk"].as_str(), entry["sk"].as_str()) else {
                return Err("a counter without pk or sk".into());
            };
            let amounts = entry["add"].as_object().ok_or("a counter without amounts")?;
            for (name, amount) in amounts {
                counters.add(Key::new(pk, sk), name, amount.as_f64().ok_or("a counter amount is not a number")?);
            }
        }
        Ok(counters)
    }

    pub fn into_ops(self) -> Vec<TransactOp> {
        self.items
            .into_iter()
            .map(|(key, amounts)| TransactOp::Update {
                key,
                actions: amounts.into_iter().map(|(name, amount)| UpdateAction::add(&name, number(amount))).collect(),
                condition: None,
            })
            .collect()
    }
}

/// Whole numbers stay integers in storage; fractions (attribution credit) stay fractions.
fn number(amount: f64) -> serde_json::Value {
    if amount.fract() == 0.0 && amount.abs() < 9.0e15 {
        serde_json::json!(amount as i64)
    } else {
        serde_json::json!(amount)
    }
}

pub fn day(at: Timestamp, settings: &Settings) -> String {
    at.to_zoned(time_zone_or_utc(&settings.default_time_zone)).date().to_string()
}

fn dims(channel: &str, campaign: Option<&str>) -> String {
    format!("{}#{}", channel, campaign.unwrap_or("-"))
}

/// What one event adds to the daily aggregates, given the contact before and after it.
pub fn record(counters: &mut Counters, settings: &Settings, event: &Event, before: &Contact, after: &Contact) {
    let date = day(event.occurred_at, settings);
    let metric = |counters: &mut Counters, name: &str, dimensions: &str, amount: f64| {
        counters.add(Key::new(format!("AGG#{date}"), format!("{name}#{dimensions}")), "value", amount);
    };
    let first_touch = after.first_touch.as_ref();
    let first =
        dims(first_touch.map_or("direct", |t| t.channel.as_str()), first_touch.and_then(|t| t.campaign.as_deref()));
    match &event.event_type {
        EventType::LeadCreated => metric(counters, "leads", &first, 1.0),
        EventType::Purchase => {
            let revenue = event.purchase().map_or(0.0, |p| p.revenue_or_zero());
            let last_touch = after.last_touch.as_ref();
            let last = dims(
                last_touch.map_or("direct", |t| t.channel.as_str()),
                last_touch.and_then(|t| t.campaign.as_deref()),
            );
            metric(counters, "orders", &last, 1.0);
            metric(counters, "revenue", &last, revenue);
            if before.orders.orders == 0 {
                metric(counters, "new_customers", &first, 1.0);
            }
            let lookback = SignedDuration::from_hours(24 * settings.attribution.lookback_days);
            let half_life = SignedDuration::from_hours(24 * settings.attribution.half_life_days);
            let touches = touches_in_window(&after.touches, event.occurred_at, lookback);
            for model in Model::ALL {
                let shares = credits(model, &touches, event.occurred_at, half_life);
                if shares.is_empty() {
                    let key = Key::new(format!("ATTR#{date}"), format!("{}#direct#-", model.as_str()));
                    counters.add(key.clone(), "conversions", 1.0);
                    counters.add(key, "revenue", revenue);
                    continue;
                }
                for (touch, share) in touches.iter().zip(shares) {
                    if share == 0.0 {
                        continue;
                    }
                    let key = Key::new(
                        format!("ATTR#{date}"),
                        format!("{}#{}", model.as_str(), dims(&touch.channel, touch.campaign.as_deref())),
                    );
                    counters.add(key.clone(), "conversions", share);
                    counters.add(key, "revenue", revenue * share);
                }
            }
        }
        kind if kind.is_about_mail() || *kind == EventType::Unsubscribed => {
            let mail = event.mail();
            let template = mail.template.as_deref().unwrap_or("-");
            metric(counters, kind.as_str(), &dims(template, mail.journey.as_deref()), 1.0);
        }
        _ => {}
    }
    if after.stage != before.stage {
        metric(counters, &format!("stage_{}", after.stage.as_str()), &first, 1.0);
    }
}

pub fn record_journey(
    counters: &mut Counters,
    settings: &Settings,
    now: Timestamp,
    journey: &str,
    group: Group,
    metric: &str,
    amount: f64,
) {
    let key = Key::new(format!("JAGG#{journey}"), format!("{}#{}", day(now, settings), group.as_str()));
    counters.add(key, metric, amount);
}
