//! The aggregates KPIs read: daily counters, attribution credit and journey counts, added to in
//! each event's transaction so a report never rereads raw events and a redelivered event counts
//! nothing twice.
//!
//! Items (`pk` / `sk`, numeric attributes added to):
//! - daily aggregate, `AGG#<date>` / `<metric>#<channel>#<campaign>`: `value`;
//! - attribution credit, `ATTR#<date>` / `<model>#<channel>#<campaign>`: `conversions`, `revenue`;
//! - journey aggregate, `JAGG#<journey>` / `<date>#<group>`: `entries`, `exits`, `conversions`,
//!   `revenue`;
//! - cohort aggregate, `COHORT#<month of the first order>` / `<month of activity>` (`YYYY-MM`):
//!   `customers` (buyers active that month, each once), `orders`, `revenue`.
//!
//! Dates are calendar days in the installation's default time zone; a missing campaign is `-`.
//! Writers add through `Counters`; readers return typed rows, so no caller builds a key or reads
//! a sort key.

use std::borrow::Cow;
use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::campaigns::Settings;
use crate::journeys::attribution::{Model, credits, touches_in_window};
use crate::model::{Contact, Event, EventType, LifecycleStage};
use crate::ports::{Index, Item, Key, Query, SortKeyRange, Store, StoreError, TransactOp, UpdateAction, query_all};
use crate::repo::journey_state::Group;
use crate::time::time_zone_or_utc;

const DAILY_PREFIX: &str = "AGG#";
const ATTRIBUTION_PREFIX: &str = "ATTR#";
const JOURNEY_PREFIX: &str = "JAGG#";
const COHORT_PREFIX: &str = "COHORT#";
const CUSTOMERS: &str = "customers";
const ORDERS: &str = "orders";
/// The one attribute of a daily aggregate.
const VALUE: &str = "value";
const CONVERSIONS: &str = "conversions";
const REVENUE: &str = "revenue";
/// Stands for a dimension the counted thing did not have.
const NONE: &str = "-";

/// The calendar day an instant is counted under.
pub fn date(at: Timestamp, settings: &Settings) -> Date {
    date_in(at, &settings.default_time_zone)
}

fn date_in(at: Timestamp, time_zone: &str) -> Date {
    at.to_zoned(time_zone_or_utc(time_zone)).date()
}

/// What a daily aggregate counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric {
    /// New leads, by first touch.
    Leads,
    /// Orders and their revenue, by last touch.
    Orders,
    Revenue,
    /// First orders, by first touch.
    NewCustomers,
    /// Contacts reaching a lifecycle stage, by first touch.
    StageReached(LifecycleStage),
    /// An email event (`email_sent`, `email_opened`, ...) or an unsubscribe, by its event type,
    /// per template (the channel) and journey (the campaign).
    Email(String),
    /// Carts that went idle with items in them.
    CartsAbandoned,
    /// Cart reminders, skipped steps and recovered carts per step (`Dimensions::step`).
    CartReminder,
    CartStepSkipped,
    CartRecovered,
    CartRecoveredRevenue,
    DiscountCodesIssued,
    DiscountCodesRedeemed,
    /// What redeemed codes gave away.
    DiscountCost,
}

const STAGE_PREFIX: &str = "stage_";

/// The origin of discount codes the abandoned-cart sequence issues.
pub const CART_RECOVERY: &str = "cart_recovery";

impl Metric {
    const FIXED: [(Metric, &'static str); 12] = [
        (Metric::Leads, "leads"),
        (Metric::Orders, "orders"),
        (Metric::Revenue, "revenue"),
        (Metric::NewCustomers, "new_customers"),
        (Metric::CartsAbandoned, "carts_abandoned"),
        (Metric::CartReminder, "cart_reminder"),
        (Metric::CartStepSkipped, "cart_step_skipped"),
        (Metric::CartRecovered, "cart_recovered"),
        (Metric::CartRecoveredRevenue, "cart_recovered_revenue"),
        (Metric::DiscountCodesIssued, "discount_codes_issued"),
        (Metric::DiscountCodesRedeemed, "discount_codes_redeemed"),
        (Metric::DiscountCost, "discount_cost"),
    ];

    /// The name the metric is stored under, the first part of its sort key.
    pub fn name(&self) -> Cow<'_, str> {
        match self {
            Metric::StageReached(stage) => Cow::Owned(format!("{STAGE_PREFIX}{}", stage.as_str())),
            Metric::Email(kind) => Cow::Borrowed(kind),
            fixed => {
                let (_, name) =
                    Metric::FIXED.iter().find(|(metric, _)| metric == fixed).expect("every metric has a name");
                Cow::Borrowed(name)
            }
        }
    }

    /// Reads `name`; `None` for a name no writer here produces.
    pub fn parse(name: &str) -> Option<Metric> {
        if let Some((metric, _)) = Metric::FIXED.iter().find(|(_, known)| *known == name) {
            return Some(metric.clone());
        }
        if let Some(stage) = name.strip_prefix(STAGE_PREFIX) {
            return LifecycleStage::parse(stage).map(Metric::StageReached);
        }
        (name.starts_with("email_") || name == "unsubscribed").then(|| Metric::Email(name.to_string()))
    }
}

/// A metric travels (in KPI snapshots) as the name it is stored under.
impl serde::Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Metric, D::Error> {
        let name = String::deserialize(deserializer)?;
        Metric::parse(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown metric `{name}`")))
    }
}

/// Where a counted thing came from: a channel (a touch's channel, a template, a cart step) and
/// a campaign (a touch's campaign, a journey).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Dimensions {
    pub channel: String,
    pub campaign: Option<String>,
}

impl Dimensions {
    pub fn new(channel: &str, campaign: Option<&str>) -> Dimensions {
        Dimensions { channel: channel.to_string(), campaign: campaign.map(str::to_string) }
    }

    /// For what has no source: cart and code counts.
    pub fn none() -> Dimensions {
        Dimensions::new(NONE, None)
    }

    /// Conversions without a touch in the window.
    pub fn direct() -> Dimensions {
        Dimensions::new("direct", None)
    }

    /// A discount code's redemption and cost, by what issued the code (a journey id, or
    /// `CART_RECOVERY`), so a journey's ROMI can count what its codes gave away.
    pub fn discount_origin(origin: &str) -> Dimensions {
        Dimensions::new(NONE, Some(origin))
    }

    /// A step of the cart reminder sequence, numbered from 1.
    pub fn step(number: u32) -> Dimensions {
        Dimensions { channel: format!("step{number}"), campaign: None }
    }

    fn sort_key_part(&self) -> String {
        format!("{}#{}", self.channel, self.campaign.as_deref().unwrap_or(NONE))
    }

    /// Reads what `sort_key_part` wrote. Channels are split off at the first `#`.
    fn parse(text: &str) -> Dimensions {
        match text.split_once('#') {
            Some((channel, NONE)) => Dimensions::new(channel, None),
            Some((channel, campaign)) => Dimensions::new(channel, Some(campaign)),
            None => Dimensions::new(text, None),
        }
    }
}

/// What a journey aggregate counts per day and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JourneyMetric {
    Entries,
    Exits,
    Conversions,
    Revenue,
}

impl JourneyMetric {
    pub const ALL: [JourneyMetric; 4] =
        [JourneyMetric::Entries, JourneyMetric::Exits, JourneyMetric::Conversions, JourneyMetric::Revenue];

    pub fn as_str(self) -> &'static str {
        match self {
            JourneyMetric::Entries => "entries",
            JourneyMetric::Exits => "exits",
            JourneyMetric::Conversions => "conversions",
            JourneyMetric::Revenue => REVENUE,
        }
    }

    pub fn parse(name: &str) -> Option<JourneyMetric> {
        JourneyMetric::ALL.into_iter().find(|metric| metric.as_str() == name)
    }
}

fn daily_key(date: Date, metric: &Metric, dimensions: &Dimensions) -> Key {
    Key::new(format!("{DAILY_PREFIX}{date}"), format!("{}#{}", metric.name(), dimensions.sort_key_part()))
}

fn attribution_key(date: Date, model: Model, dimensions: &Dimensions) -> Key {
    Key::new(format!("{ATTRIBUTION_PREFIX}{date}"), format!("{}#{}", model.as_str(), dimensions.sort_key_part()))
}

fn journey_key(journey: &str, date: Date, group: Group) -> Key {
    Key::new(format!("{JOURNEY_PREFIX}{journey}"), format!("{date}#{}", group.as_str()))
}

fn cohort_key(cohort: Date, month: Date) -> Key {
    Key::new(format!("{COHORT_PREFIX}{}", month_name(cohort)), month_name(month))
}

/// `2026-03` for any day of March 2026.
pub fn month_name(date: Date) -> String {
    format!("{:04}-{:02}", date.year(), date.month())
}

/// Reads `2026-03` as the first of that month.
fn parse_month(text: &str) -> Option<Date> {
    let (year, month) = text.split_once('-')?;
    if year.len() != 4 || month.len() != 2 {
        return None;
    }
    Date::new(year.parse().ok()?, month.parse().ok()?, 1).ok()
}

fn is_aggregate_key(key: &Key) -> bool {
    [DAILY_PREFIX, ATTRIBUTION_PREFIX, JOURNEY_PREFIX, COHORT_PREFIX].iter().any(|prefix| key.pk.starts_with(prefix))
}

/// Counter increments, merged per item so a transaction touches each item once.
#[derive(Debug, Default)]
pub struct Counters {
    items: BTreeMap<Key, BTreeMap<String, f64>>,
}

impl Counters {
    fn add(&mut self, key: Key, attribute: &str, amount: f64) {
        *self.items.entry(key).or_default().entry(attribute.to_string()).or_default() += amount;
    }

    pub fn daily(&mut self, date: Date, metric: Metric, dimensions: &Dimensions, amount: f64) {
        self.add(daily_key(date, &metric, dimensions), VALUE, amount);
    }

    /// A conversion's share (1 for a whole conversion) credited to a channel and campaign.
    pub fn attribution(&mut self, date: Date, model: Model, dimensions: &Dimensions, share: f64, revenue: f64) {
        let key = attribution_key(date, model, dimensions);
        self.add(key.clone(), CONVERSIONS, share);
        self.add(key, REVENUE, revenue);
    }

    pub fn journey(&mut self, journey: &str, date: Date, group: Group, metric: JourneyMetric, amount: f64) {
        self.add(journey_key(journey, date, group), metric.as_str(), amount);
    }

    /// An order of a customer whose first order was in `cohort`'s month, placed in `month`'s;
    /// `first_this_month`: the customer's first order of that month (counts them active once).
    pub fn cohort_order(&mut self, cohort: Date, month: Date, first_this_month: bool, revenue: f64) {
        let key = cohort_key(cohort, month);
        if first_this_month {
            self.add(key.clone(), CUSTOMERS, 1.0);
        }
        self.add(key.clone(), ORDERS, 1.0);
        self.add(key, REVENUE, revenue);
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The increments as JSON, to carry them in a follow-up of an event too large for one transaction.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.items
                .iter()
                .map(|(key, amounts)| serde_json::json!({"pk": key.pk, "sk": key.sk, "add": amounts}))
                .collect(),
        )
    }

    /// Reads what `to_json` wrote; anything else, or a key that is not an aggregate's, is an
    /// error naming what is wrong.
    pub fn from_json(value: &Value) -> Result<Counters, String> {
        let mut counters = Counters::default();
        for entry in value.as_array().ok_or("counters must be a list")? {
            let (Some(pk), Some(sk)) = (entry["pk"].as_str(), entry["sk"].as_str()) else {
                return Err("a counter without pk or sk".into());
            };
            let key = Key::new(pk, sk);
            if !is_aggregate_key(&key) {
                return Err("a counter of an item that is not an aggregate".into());
            }
            let amounts = entry["add"].as_object().ok_or("a counter without amounts")?;
            for (name, amount) in amounts {
                counters.add(key.clone(), name, amount.as_f64().ok_or("a counter amount is not a number")?);
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
fn number(amount: f64) -> Value {
    if amount.fract() == 0.0 && amount.abs() < 9.0e15 {
        serde_json::json!(amount as i64)
    } else {
        serde_json::json!(amount)
    }
}

/// What one event adds to the daily aggregates and attribution credit, given the contact before
/// and after it.
pub fn record(counters: &mut Counters, settings: &Settings, event: &Event, before: &Contact, after: &Contact) {
    let date = date(event.occurred_at, settings);
    let touch_dimensions = |touch: Option<&crate::model::Touch>| {
        Dimensions::new(touch.map_or("direct", |t| t.channel.as_str()), touch.and_then(|t| t.campaign.as_deref()))
    };
    let first = touch_dimensions(after.first_touch.as_ref());
    match &event.event_type {
        EventType::LeadCreated => counters.daily(date, Metric::Leads, &first, 1.0),
        EventType::Purchase => {
            let revenue = event.purchase().map_or(0.0, |p| p.revenue_or_zero());
            let last = touch_dimensions(after.last_touch.as_ref());
            counters.daily(date, Metric::Orders, &last, 1.0);
            counters.daily(date, Metric::Revenue, &last, revenue);
            if before.orders.orders == 0 {
                counters.daily(date, Metric::NewCustomers, &first, 1.0);
            }
            let first_order_at = match before.orders.first_order_at {
                Some(at) if before.orders.orders > 0 => at.min(event.occurred_at),
                _ => event.occurred_at,
            };
            let cohort = self::date(first_order_at, settings);
            // Any earlier order in the same month, not only the latest: an order reported late
            // (March's after April's) must not count its customer in March twice. The contact
            // keeps its latest orders (`MAX_RECENT_ORDERS`), enough for any one month in practice.
            let month = month_name(date);
            let first_this_month = !before
                .orders
                .recent_orders
                .iter()
                .chain(before.orders.last_order_at.iter())
                .any(|at| month_name(self::date(*at, settings)) == month);
            counters.cohort_order(cohort, date, first_this_month, revenue);
            let lookback = SignedDuration::from_hours(24 * settings.attribution.lookback_days);
            let half_life = SignedDuration::from_hours(24 * settings.attribution.half_life_days);
            let touches = touches_in_window(&after.touches, event.occurred_at, lookback);
            for model in Model::ALL {
                let shares = credits(model, &touches, event.occurred_at, half_life);
                if shares.is_empty() {
                    counters.attribution(date, model, &Dimensions::direct(), 1.0, revenue);
                    continue;
                }
                for (touch, share) in touches.iter().zip(shares) {
                    if share == 0.0 {
                        continue;
                    }
                    let dimensions = Dimensions::new(&touch.channel, touch.campaign.as_deref());
                    counters.attribution(date, model, &dimensions, share, revenue * share);
                }
            }
        }
        kind if kind.is_about_mail() || *kind == EventType::Unsubscribed => {
            let mail = event.mail();
            let template = mail.template.as_deref().unwrap_or(NONE);
            let dimensions = Dimensions::new(template, mail.journey.as_deref());
            counters.daily(date, Metric::Email(kind.to_string()), &dimensions, 1.0);
        }
        _ => {}
    }
    if after.stage != before.stage {
        counters.daily(date, Metric::StageReached(after.stage), &first, 1.0);
    }
}

/// A journey's count for the day of `at` (`JourneyCount::counted_at`).
pub fn record_journey(
    counters: &mut Counters,
    settings: &Settings,
    at: Timestamp,
    journey: &str,
    group: Group,
    metric: JourneyMetric,
    amount: f64,
) {
    counters.journey(journey, date(at, settings), group, metric, amount);
}

/// One daily aggregate.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DailyTotal {
    pub metric: Metric,
    pub dimensions: Dimensions,
    pub value: f64,
}

impl DailyTotal {
    fn from_item(item: &Item) -> Option<DailyTotal> {
        let (metric, dimensions) = item.get_str("sk")?.split_once('#')?;
        Some(DailyTotal {
            metric: Metric::parse(metric)?,
            dimensions: Dimensions::parse(dimensions),
            value: item.get(VALUE).and_then(Value::as_f64).unwrap_or(0.0),
        })
    }
}

/// Every daily aggregate of `date`, in sort-key order. Items of metrics this version does not
/// know are left out.
pub async fn daily_totals(store: &dyn Store, date: Date) -> Result<Vec<DailyTotal>, StoreError> {
    let query = Query::partition(Index::Table, format!("{DAILY_PREFIX}{date}"));
    Ok(query_all(store, query).await?.iter().filter_map(DailyTotal::from_item).collect())
}

/// One daily aggregate's value, `None` when nothing was counted.
pub async fn daily_total(
    store: &dyn Store,
    date: Date,
    metric: &Metric,
    dimensions: &Dimensions,
) -> Result<Option<f64>, StoreError> {
    Ok(store.get(&daily_key(date, metric, dimensions)).await?.and_then(|item| item.get(VALUE).and_then(Value::as_f64)))
}

/// Credit one model gave a channel and campaign on one day.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Credit {
    pub dimensions: Dimensions,
    pub conversions: f64,
    pub revenue: f64,
}

/// The credit `model` gave on `date`, per channel and campaign.
pub async fn attribution_credit(store: &dyn Store, date: Date, model: Model) -> Result<Vec<Credit>, StoreError> {
    let prefix = format!("{}#", model.as_str());
    let query = Query::partition(Index::Table, format!("{ATTRIBUTION_PREFIX}{date}"))
        .range(SortKeyRange::BeginsWith(prefix.clone()));
    let amount = |item: &Item, name: &str| item.get(name).and_then(Value::as_f64).unwrap_or(0.0);
    Ok(query_all(store, query)
        .await?
        .iter()
        .filter_map(|item| {
            Some(Credit {
                dimensions: Dimensions::parse(item.get_str("sk")?.strip_prefix(&prefix)?),
                conversions: amount(item, CONVERSIONS),
                revenue: amount(item, REVENUE),
            })
        })
        .collect())
}

/// The credit every model gave on `date`, per channel and campaign: one partition read.
pub async fn all_attribution_credit(store: &dyn Store, date: Date) -> Result<Vec<(Model, Credit)>, StoreError> {
    let query = Query::partition(Index::Table, format!("{ATTRIBUTION_PREFIX}{date}"));
    let amount = |item: &Item, name: &str| item.get(name).and_then(Value::as_f64).unwrap_or(0.0);
    Ok(query_all(store, query)
        .await?
        .iter()
        .filter_map(|item| {
            let sk = item.get_str("sk")?;
            let model = Model::ALL.into_iter().find(|model| sk.starts_with(&format!("{}#", model.as_str())))?;
            let credit = Credit {
                dimensions: Dimensions::parse(&sk[model.as_str().len() + 1..]),
                conversions: amount(item, CONVERSIONS),
                revenue: amount(item, REVENUE),
            };
            Some((model, credit))
        })
        .collect())
}

/// A journey's counts for one day and group.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JourneyDay {
    pub date: Date,
    pub group: Group,
    pub entries: u64,
    pub exits: u64,
    pub conversions: u64,
    pub revenue: f64,
}

impl JourneyDay {
    fn from_item(item: &Item) -> Option<JourneyDay> {
        let (date, group) = item.get_str("sk")?.split_once('#')?;
        let group = [Group::Treatment, Group::Holdout].into_iter().find(|g| g.as_str() == group)?;
        let count = |metric: JourneyMetric| item.get_i64(metric.as_str()).unwrap_or(0) as u64;
        Some(JourneyDay {
            date: date.parse().ok()?,
            group,
            entries: count(JourneyMetric::Entries),
            exits: count(JourneyMetric::Exits),
            conversions: count(JourneyMetric::Conversions),
            revenue: item.get(REVENUE).and_then(Value::as_f64).unwrap_or(0.0),
        })
    }
}

/// Every day and group a journey counted, oldest first.
pub async fn journey_aggregates(store: &dyn Store, journey: &str) -> Result<Vec<JourneyDay>, StoreError> {
    let query = Query::partition(Index::Table, format!("{JOURNEY_PREFIX}{journey}"));
    Ok(query_all(store, query).await?.iter().filter_map(JourneyDay::from_item).collect())
}

/// The days `from..=to` a journey counted, oldest first: at most two items a day are read.
pub async fn journey_aggregates_between(
    store: &dyn Store,
    journey: &str,
    from: Date,
    to: Date,
) -> Result<Vec<JourneyDay>, StoreError> {
    // Sort keys are `<date>#<group>`; `~` sorts after every group name.
    let range = SortKeyRange::Between(format!("{from}#"), format!("{to}#~"));
    let query = Query::partition(Index::Table, format!("{JOURNEY_PREFIX}{journey}")).range(range);
    Ok(query_all(store, query).await?.iter().filter_map(JourneyDay::from_item).collect())
}

/// One cohort's activity in one month.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CohortMonth {
    /// The first of the month of the customers' first order.
    pub cohort: Date,
    /// The first of the month of activity.
    pub month: Date,
    /// Customers of the cohort who ordered that month, each once.
    pub customers: u64,
    pub orders: u64,
    pub revenue: f64,
}

/// Most months after its first a cohort is followed.
pub const COHORT_MONTHS_FOLLOWED: i32 = 12;
/// Most cohorts one `cohorts` call reads (three years).
pub const MAX_COHORTS_READ: usize = 36;

/// The cohorts whose first month lies in `from_month..=to_month` (any day of a month stands for
/// it), each with its activity from its first month up to `COHORT_MONTHS_FOLLOWED` months later
/// and not after `to_month`: at most 13 × 13 items for a year.
pub async fn cohorts(store: &dyn Store, from_month: Date, to_month: Date) -> Result<Vec<CohortMonth>, StoreError> {
    let first = from_month.first_of_month();
    let last = to_month.first_of_month();
    let mut rows = Vec::new();
    let mut cohort = first;
    let mut read = 0;
    while cohort <= last {
        read += 1;
        if read > MAX_COHORTS_READ {
            return Err(StoreError::Invalid(format!("at most {MAX_COHORTS_READ} cohorts are read at once")));
        }
        let followed_until = cohort.saturating_add(jiff::Span::new().months(COHORT_MONTHS_FOLLOWED)).min(last);
        let range = SortKeyRange::Between(month_name(cohort), month_name(followed_until));
        let query = Query::partition(Index::Table, format!("{COHORT_PREFIX}{}", month_name(cohort))).range(range);
        for item in query_all(store, query).await? {
            let Some(month) = item.get_str("sk").and_then(parse_month) else { continue };
            let count = |name: &str| item.get_i64(name).unwrap_or(0).max(0) as u64;
            rows.push(CohortMonth {
                cohort,
                month,
                customers: count(CUSTOMERS),
                orders: count(ORDERS),
                revenue: item.get(REVENUE).and_then(Value::as_f64).unwrap_or(0.0),
            });
        }
        cohort = cohort.saturating_add(jiff::Span::new().months(1));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date() -> Date {
        jiff::civil::date(2026, 3, 1)
    }

    /// The items `ops` leave in an empty table: each update adds its amounts to nothing.
    fn stored(ops: Vec<TransactOp>) -> Vec<Item> {
        ops.into_iter()
            .map(|op| {
                let TransactOp::Update { key, actions, condition: None } = op else { panic!("counters only add") };
                let mut attributes = serde_json::Map::new();
                for action in actions {
                    let UpdateAction::Add(name, amount) = action else { panic!("counters only add: {action:?}") };
                    attributes.insert(name, amount);
                }
                Item::new(&key, Value::Object(attributes))
            })
            .collect()
    }

    #[test]
    fn keys_are_the_stored_ones() {
        let mut counters = Counters::default();
        counters.daily(date(), Metric::Orders, &Dimensions::new("vk", Some("autumn")), 1.0);
        counters.daily(date(), Metric::CartReminder, &Dimensions::step(2), 1.0);
        counters.daily(date(), Metric::DiscountCost, &Dimensions::none(), 12.5);
        counters.daily(date(), Metric::StageReached(LifecycleStage::Customer), &Dimensions::direct(), 1.0);
        counters.attribution(date(), Model::TimeDecay, &Dimensions::new("email", Some("welcome")), 0.25, 100.0);
        counters.journey("winback", date(), Group::Holdout, JourneyMetric::Entries, 1.0);
        let keys: Vec<(String, String)> = stored(counters.into_ops())
            .iter()
            .map(|item| (item.get_str("pk").unwrap().to_string(), item.get_str("sk").unwrap().to_string()))
            .collect();
        let expected = [
            ("AGG#2026-03-01", "cart_reminder#step2#-"),
            ("AGG#2026-03-01", "discount_cost#-#-"),
            ("AGG#2026-03-01", "orders#vk#autumn"),
            ("AGG#2026-03-01", "stage_customer#direct#-"),
            ("ATTR#2026-03-01", "time_decay#email#welcome"),
            ("JAGG#winback", "2026-03-01#holdout"),
        ];
        assert_eq!(keys, expected.map(|(pk, sk)| (pk.to_string(), sk.to_string())));
    }

    /// The keys and amounts what an event counts lands under, written out literally: reports
    /// written before this module (and the KPI rollup) read these exact keys.
    #[test]
    fn what_events_count_lands_under_the_literal_keys() {
        use crate::model::{EventType, Touch};
        let settings = Settings::parse("settings.toml", include_str!("../../../campaigns/settings.toml")).unwrap();
        let at: Timestamp = "2026-03-01T09:00:00Z".parse().unwrap();
        let event = |event_type: EventType, properties: serde_json::Value| {
            Event::internal("e1".into(), event_type, "c1", at, at, properties.as_object().unwrap().clone())
        };
        let before = Contact::new("c1".into(), at, "ru".into(), "Europe/Moscow".into());
        let mut after = before.clone();
        after.stage = LifecycleStage::Customer;
        after.last_touch = Some(Touch { channel: "vk".into(), campaign: Some("autumn".into()), ..Touch::default() });
        let mut counters = Counters::default();
        record(&mut counters, &settings, &event(EventType::LeadCreated, serde_json::json!({})), &before, &before);
        record(
            &mut counters,
            &settings,
            &event(EventType::Purchase, serde_json::json!({"order_id": "o", "revenue": 90})),
            &before,
            &after,
        );
        let clicked = serde_json::json!({"template": "welcome", "journey": "welcome"});
        record(&mut counters, &settings, &event(EventType::EmailClicked, clicked), &after, &after);
        record_journey(&mut counters, &settings, at, "winback", Group::Treatment, JourneyMetric::Exits, 1.0);
        let items: Vec<String> = stored(counters.into_ops())
            .iter()
            .map(|item| {
                let mut amounts: Vec<String> = ["value", "conversions", "revenue", "exits", "customers", "orders"]
                    .iter()
                    .filter_map(|name| item.get(name).map(|v| format!("{name}={v}")))
                    .collect();
                amounts.sort();
                format!("{} {} {}", item.get_str("pk").unwrap(), item.get_str("sk").unwrap(), amounts.join(","))
            })
            .collect();
        let expected = [
            "AGG#2026-03-01 email_clicked#welcome#welcome value=1",
            "AGG#2026-03-01 leads#direct#- value=1",
            "AGG#2026-03-01 new_customers#direct#- value=1",
            "AGG#2026-03-01 orders#vk#autumn value=1",
            "AGG#2026-03-01 revenue#vk#autumn value=90",
            "AGG#2026-03-01 stage_customer#direct#- value=1",
            "ATTR#2026-03-01 first_touch#direct#- conversions=1,revenue=90",
            "ATTR#2026-03-01 last_touch#direct#- conversions=1,revenue=90",
            "ATTR#2026-03-01 linear#direct#- conversions=1,revenue=90",
            "ATTR#2026-03-01 position_based#direct#- conversions=1,revenue=90",
            "ATTR#2026-03-01 time_decay#direct#- conversions=1,revenue=90",
            "COHORT#2026-03 2026-03 customers=1,orders=1,revenue=90",
            "JAGG#winback 2026-03-01#treatment exits=1",
        ];
        assert_eq!(items, expected);
    }

    /// A customer counts once per month of activity in the cohort of their first order's month;
    /// every order adds to orders and revenue.
    #[test]
    fn purchases_fill_the_cohort_of_the_first_order_month() {
        use crate::model::EventType;
        let settings = Settings::parse("settings.toml", include_str!("../../../campaigns/settings.toml")).unwrap();
        let mut contact = Contact::new("c1".into(), "2026-01-01T00:00:00Z".parse().unwrap(), "ru".into(), "UTC".into());
        let mut counters = Counters::default();
        // Moscow time: 2026-03-31T22:00Z is already April 1st there.
        let orders = [
            ("2026-03-05T09:00:00Z", 100.0),
            ("2026-03-20T09:00:00Z", 50.0),
            ("2026-03-31T22:00:00Z", 30.0),
            ("2026-05-02T09:00:00Z", 20.0),
            // Reported late, after May's: March's customer is not counted twice.
            ("2026-03-25T09:00:00Z", 5.0),
        ];
        for (i, (at, revenue)) in orders.into_iter().enumerate() {
            let at: Timestamp = at.parse().unwrap();
            let properties = serde_json::json!({"order_id": format!("o{i}"), "revenue": revenue});
            let event = Event::internal(
                format!("e{i}"),
                EventType::Purchase,
                "c1",
                at,
                at,
                properties.as_object().unwrap().clone(),
            );
            let before = contact.clone();
            contact.apply_event(&event, &time_zone_or_utc("UTC"));
            record(&mut counters, &settings, &event, &before, &contact);
        }
        let cohorts: Vec<String> = stored(counters.into_ops())
            .iter()
            .filter(|item| item.get_str("pk").unwrap().starts_with(COHORT_PREFIX))
            .map(|item| {
                format!(
                    "{} {} customers={} orders={} revenue={}",
                    item.get_str("pk").unwrap(),
                    item.get_str("sk").unwrap(),
                    item.get(CUSTOMERS).map_or("0".into(), |v| v.to_string()),
                    item.get(ORDERS).unwrap(),
                    item.get(REVENUE).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            cohorts,
            [
                "COHORT#2026-03 2026-03 customers=1 orders=3 revenue=155",
                "COHORT#2026-03 2026-04 customers=1 orders=1 revenue=30",
                "COHORT#2026-03 2026-05 customers=1 orders=1 revenue=20",
            ]
        );
    }

    #[test]
    fn months_are_named_and_read_back() {
        assert_eq!(month_name(jiff::civil::date(2026, 3, 31)), "2026-03");
        assert_eq!(parse_month("2026-03"), Some(jiff::civil::date(2026, 3, 1)));
        for bad in ["2026-3", "2026-13", "26-03", "2026-03-01", ""] {
            assert_eq!(parse_month(bad), None, "{bad}");
        }
    }

    #[test]
    fn whole_amounts_are_stored_as_integers_and_shares_as_fractions() {
        let mut counters = Counters::default();
        counters.daily(date(), Metric::Leads, &Dimensions::direct(), 1.0);
        counters.daily(date(), Metric::Leads, &Dimensions::direct(), 1.0);
        counters.attribution(date(), Model::Linear, &Dimensions::direct(), 0.5, 50.0);
        let items = stored(counters.into_ops());
        assert_eq!(items[0].get(VALUE), Some(&serde_json::json!(2)));
        assert_eq!(items[1].get(CONVERSIONS), Some(&serde_json::json!(0.5)));
        assert_eq!(items[1].get(REVENUE), Some(&serde_json::json!(50)));
    }

    #[test]
    fn every_metric_reads_back_from_its_name() {
        let mut metrics: Vec<Metric> = Metric::FIXED.iter().map(|(metric, _)| metric.clone()).collect();
        metrics.extend(LifecycleStage::ALL.map(Metric::StageReached));
        metrics.extend(["email_sent", "email_clicked", "unsubscribed"].map(|kind| Metric::Email(kind.into())));
        for metric in metrics {
            assert_eq!(Metric::parse(&metric.name()), Some(metric.clone()), "{metric:?}");
        }
        assert_eq!(Metric::parse("stage_nonsense"), None);
        assert_eq!(Metric::parse("somebody_elses_metric"), None);
        for metric in JourneyMetric::ALL {
            assert_eq!(JourneyMetric::parse(metric.as_str()), Some(metric));
        }
    }

    #[test]
    fn the_readers_parse_what_the_writer_writes() {
        let mut counters = Counters::default();
        let autumn = Dimensions::new("vk", Some("autumn"));
        counters.daily(date(), Metric::Revenue, &autumn, 5000.0);
        counters.daily(date(), Metric::Email("email_sent".into()), &Dimensions::new("welcome", None), 1.0);
        counters.daily(date(), Metric::CartRecovered, &Dimensions::step(1), 1.0);
        counters.attribution(date(), Model::FirstTouch, &autumn, 1.0, 5000.0);
        counters.journey("winback", date(), Group::Treatment, JourneyMetric::Entries, 1.0);
        counters.journey("winback", date(), Group::Treatment, JourneyMetric::Conversions, 1.0);
        counters.journey("winback", date(), Group::Treatment, JourneyMetric::Revenue, 99.5);
        let items = stored(counters.into_ops());

        let daily: Vec<DailyTotal> = items.iter().filter_map(DailyTotal::from_item).collect();
        assert_eq!(
            daily,
            [
                DailyTotal { metric: Metric::CartRecovered, dimensions: Dimensions::step(1), value: 1.0 },
                DailyTotal {
                    metric: Metric::Email("email_sent".into()),
                    dimensions: Dimensions::new("welcome", None),
                    value: 1.0
                },
                DailyTotal { metric: Metric::Revenue, dimensions: autumn.clone(), value: 5000.0 },
            ]
        );
        let credit = items.iter().find(|i| i.get_str("pk") == Some("ATTR#2026-03-01")).unwrap();
        assert_eq!(credit.get_str("sk"), Some("first_touch#vk#autumn"));
        let journey: Vec<JourneyDay> = items.iter().filter_map(JourneyDay::from_item).collect();
        assert_eq!(
            journey,
            [JourneyDay { date: date(), group: Group::Treatment, entries: 1, exits: 0, conversions: 1, revenue: 99.5 }]
        );
    }

    #[test]
    fn counters_travel_as_json_and_only_to_aggregates() {
        let mut counters = Counters::default();
        counters.daily(date(), Metric::Leads, &Dimensions::direct(), 1.0);
        counters.attribution(date(), Model::Linear, &Dimensions::direct(), 0.5, 10.0);
        let json = counters.to_json();
        let back = Counters::from_json(&json).unwrap();
        assert_eq!(back.to_json(), json);
        let forged = serde_json::json!([{"pk": "CONTACT#c_1", "sk": "PROFILE", "add": {"version": 5}}]);
        assert!(Counters::from_json(&forged).is_err());
    }

    #[test]
    fn days_are_the_installations_calendar_days() {
        let evening_utc: Timestamp = "2026-02-28T22:30:00Z".parse().unwrap();
        assert_eq!(date_in(evening_utc, "Europe/Moscow").to_string(), "2026-03-01");
        assert_eq!(date_in(evening_utc, "UTC").to_string(), "2026-02-28");
    }
}
