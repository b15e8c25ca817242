//! The reputation guard's items (decisions in `sending::reputation`), all under `REPUTATION`:
//! - hourly counters, `REPUTATION` / `HOUR#<yyyy-mm-ddThh>` (UTC): `sends`, `bounces`,
//!   `complaints`, added to with ADD updates so concurrent containers never overwrite each
//!   other; kept 8 days (the longest window is a week);
//! - the guard's state, `REPUTATION` / `STATE` (`GuardState`), replaced only under its `version`,
//!   so two containers tripping or resuming at once write it once;
//! - a marker per counted SES notification, `REPFB#<SES message id>` / `bounce|complaint`, written
//!   with the counter in one transaction: a redelivered notification counts nothing twice.

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ports::{Condition, Item, Key, Query, SortKeyRange, Store, StoreError, TransactOp, UpdateAction, query_all};

const PARTITION: &str = "REPUTATION";
const STATE_SK: &str = "STATE";
const HOUR_PREFIX: &str = "HOUR#";
/// Longer than the longest window (`ReputationSettings::window_hours` ≤ 168).
const RETENTION: SignedDuration = SignedDuration::from_hours(24 * 8);

/// What one hour (or a window of hours) counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub sends: u64,
    pub bounces: u64,
    pub complaints: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.sends += other.sends;
        self.bounces += other.bounces;
        self.complaints += other.complaints;
    }
}

/// The feedback that counts against the account's reputation: SES's bounce rate counts hard
/// (permanent) bounces only, its complaint rate every complaint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Bounce,
    Complaint,
}

impl Counted {
    fn attribute(self) -> &'static str {
        match self {
            Counted::Bounce => "bounces",
            Counted::Complaint => "complaints",
        }
    }
}

/// The start of the UTC hour `at` falls in.
pub fn hour_start(at: Timestamp) -> Timestamp {
    let second = at.as_second();
    Timestamp::from_second(second - second.rem_euclid(3600)).unwrap_or(at)
}

fn hour_sk(hour: Timestamp) -> String {
    format!("{HOUR_PREFIX}{}", hour_start(hour).strftime("%Y-%m-%dT%H"))
}

fn hour_key(at: Timestamp) -> Key {
    Key::new(PARTITION, hour_sk(at))
}

fn state_key() -> Key {
    Key::new(PARTITION, STATE_SK)
}

fn count_actions(attribute: &str, amount: u64, hour: Timestamp) -> Vec<UpdateAction> {
    vec![
        UpdateAction::add(attribute, amount),
        UpdateAction::set_if_not_exists("ttl", (hour_start(hour) + RETENTION).as_second()),
    ]
}

/// Adds `sends` messages SES accepted at `at` to their hour.
pub async fn count_sends(store: &dyn Store, at: Timestamp, sends: u64) -> Result<(), StoreError> {
    if sends == 0 {
        return Ok(());
    }
    store.update(&hour_key(at), count_actions("sends", sends, at), None).await.map(|_| ())
}

/// Counts one SES notification into the hour of `at` (the caller passes when its mail was sent),
/// once per notification: false when an earlier delivery of it counted already.
pub async fn count_feedback(
    store: &dyn Store,
    ses_message_id: &str,
    counted: Counted,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let marker =
        Item::new(&Key::new(format!("REPFB#{ses_message_id}"), counted.attribute()), json!({"hour": hour_sk(at)}))
            .with_ttl((hour_start(at) + RETENTION).as_second());
    let ops = vec![
        TransactOp::Put { item: marker, condition: Some(Condition::NotExists) },
        TransactOp::Update { key: hour_key(at), actions: count_actions(counted.attribute(), 1, at), condition: None },
    ];
    match store.transact(ops).await {
        Ok(()) => Ok(true),
        Err(StoreError::TransactionCancelled { failed }) if failed.contains(&0) => Ok(false),
        Err(other) => Err(other),
    }
}

/// The counts of every hour from `from`'s hour to `to`'s, each with its hour's start.
pub async fn hours(store: &dyn Store, from: Timestamp, to: Timestamp) -> Result<Vec<(Timestamp, Counts)>, StoreError> {
    let query =
        Query::partition(Default::default(), PARTITION).range(SortKeyRange::Between(hour_sk(from), hour_sk(to)));
    let number = |item: &Item, name: &str| item.get_i64(name).unwrap_or(0).max(0) as u64;
    Ok(query_all(store, query)
        .await?
        .iter()
        .filter_map(|item| {
            let text = item.get_str("sk")?.strip_prefix(HOUR_PREFIX)?;
            let hour =
                jiff::civil::DateTime::strptime("%Y-%m-%dT%H", text).ok()?.to_zoned(jiff::tz::TimeZone::UTC).ok()?;
            let counts = Counts {
                sends: number(item, "sends"),
                bounces: number(item, "bounces"),
                complaints: number(item, "complaints"),
            };
            Some((hour.timestamp(), counts))
        })
        .collect())
}

/// Which rate tripped the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKind {
    BounceRate,
    ComplaintRate,
}

impl RateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RateKind::BounceRate => "bounce_rate",
            RateKind::ComplaintRate => "complaint_rate",
        }
    }
}

/// The rate that paused marketing, in parts per million of sends, with the threshold it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trip {
    pub rate: RateKind,
    pub rate_ppm: u64,
    pub threshold_ppm: u64,
    /// Sends in the window the rate was computed over.
    pub sends: u64,
}

fn percent(ppm: u64) -> String {
    format!("{:.3}%", ppm as f64 / 10_000.0)
}

impl fmt::Display for Trip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} >= {} over {} sends",
            self.rate.as_str(),
            percent(self.rate_ppm),
            percent(self.threshold_ppm),
            self.sends
        )
    }
}

/// How marketing's resumption came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumedBy {
    /// The rolling rates fell below the resume thresholds.
    Rates,
    Operator,
}

/// The guard's stored state; `version` 0 is the state of an installation that never paused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardState {
    pub paused: bool,
    /// When marketing was paused (while paused, and kept after a resumption for the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trip: Option<Trip>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_by: Option<ResumedBy>,
    /// An operator's resumption starts the counts afresh: only hours starting after it count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counting_from: Option<Timestamp>,
    #[serde(default)]
    pub version: u64,
}

/// The guard's state as stored, or the never-paused state.
pub async fn load_state(store: &dyn Store) -> Result<GuardState, StoreError> {
    let Some(item) = store.get(&state_key()).await? else { return Ok(GuardState::default()) };
    serde_json::from_value(item.into_value())
        .map_err(|e| StoreError::Backend(format!("the reputation guard's state is unreadable: {e}")))
}

/// Writes `next` (whose `version` must be one more than the stored one's) only if the stored state
/// is still `next.version - 1`; false when another writer got there first.
pub async fn replace_state(store: &dyn Store, next: &GuardState) -> Result<bool, StoreError> {
    let previous = next.version.saturating_sub(1);
    let condition = if previous == 0 {
        Condition::Or(vec![Condition::NotExists, Condition::equals("version", 0)])
    } else {
        Condition::equals("version", previous)
    };
    let Value::Object(attributes) =
        serde_json::to_value(next).map_err(|e| StoreError::Invalid(format!("guard state: {e}")))?
    else {
        return Err(StoreError::Invalid("the guard state is not an object".into()));
    };
    match store.put(Item::new(&state_key(), Value::Object(attributes)), Some(condition)).await {
        Ok(()) => Ok(true),
        Err(StoreError::ConditionFailed) => Ok(false),
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_utc_hours_named_in_their_sort_key() {
        let at: Timestamp = "2026-11-27T01:59:59Z".parse().unwrap();
        assert_eq!(hour_start(at), "2026-11-27T01:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(hour_key(at), Key::new("REPUTATION", "HOUR#2026-11-27T01"));
    }

    #[test]
    fn a_trip_says_which_rate_and_how_high() {
        let trip = Trip { rate: RateKind::BounceRate, rate_ppm: 31_000, threshold_ppm: 25_000, sends: 1000 };
        assert_eq!(trip.to_string(), "bounce_rate 3.100% >= 2.500% over 1000 sends");
    }
}
