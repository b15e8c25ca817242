//! Journey files (`journeys/<id>.toml`): a trigger, entry rules, exits, a holdout, and steps.
//! The format is documented in `shared/campaigns/journeys/README.md`; `journey.schema.json` beside
//! it gives editors completion.

use std::collections::{BTreeMap, BTreeSet};

use jiff::SignedDuration;
use jiff::civil::Time;
use serde::Deserialize;
use serde_json::Value;

use crate::file_errors::{CampaignError, line_of_key, toml_error};
use crate::model::{EventType, Priority, SendClass};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// An event, optionally only when it is the `count`th matching one within `within_hours`,
    /// counted per value of the `group_by` property (e.g. per category).
    Event {
        event: EventType,
        #[serde(default, rename = "where")]
        filters: BTreeMap<String, Value>,
        count: Option<u32>,
        within_hours: Option<i64>,
        group_by: Option<String>,
    },
    /// No `of` event (default `purchase`) for `days` days after the last one.
    Inactivity {
        days: i64,
        #[serde(default = "default_inactivity_event")]
        of: EventType,
    },
    /// The contact's lifecycle stage becomes this one.
    Stage { stage: String },
    /// The contact enters this segment.
    Segment { segment: String },
}

fn default_inactivity_event() -> EventType {
    EventType::Purchase
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReEntry {
    /// Never enters twice.
    Once,
    /// Enters again once `cooldown_days` have passed since the last entry, if not in it now.
    Cooldown,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The contact must be in every one of these segments.
    #[serde(default)]
    pub segments: Vec<String>,
    /// ... and in none of these.
    #[serde(default)]
    pub exclude_segments: Vec<String>,
    pub re_entry: ReEntry,
    pub cooldown_days: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepKind {
    Wait {
        minutes: Option<i64>,
        hours: Option<i64>,
        days: Option<i64>,
        /// Or: until this local time of day in the contact's time zone (the next one to come).
        until_local_time: Option<String>,
    },
    Send {
        template: String,
        #[serde(default = "default_priority")]
        priority: Priority,
        #[serde(default = "default_class")]
        class: SendClass,
        /// Extra template values.
        #[serde(default)]
        context: serde_json::Map<String, Value>,
    },
    Branch {
        condition: Condition,
        then: String,
        #[serde(rename = "else")]
        otherwise: String,
    },
    Split {
        variants: Vec<Variant>,
    },
    Update {
        #[serde(default)]
        add_tags: Vec<String>,
        stage: Option<String>,
        points: Option<i64>,
    },
    Goto {
        step: String,
    },
    End,
}

fn default_priority() -> Priority {
    Priority::Journey
}

fn default_class() -> SendClass {
    SendClass::Marketing
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    pub weight: u32,
    /// The step this variant continues at.
    pub step: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// The last email this journey sent the contact was clicked.
    ClickedLastEmail,
    /// The contact is in the segment.
    InSegment(String),
    /// The contact has the tag.
    HasTag(String),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "toml::Table")]
pub struct Step {
    pub id: String,
    pub kind: StepKind,
}

/// A step is a table with an `id` and the fields of its `type`; read in two parts so that a
/// misspelt field is refused (serde cannot refuse unknown fields through `flatten`).
impl TryFrom<toml::Table> for Step {
    type Error = String;

    fn try_from(mut table: toml::Table) -> Result<Self, Self::Error> {
        let id = match table.remove("id") {
            Some(toml::Value::String(id)) => id,
            _ => return Err("every step needs a string `id`".into()),
        };
        let kind =
            toml::Value::Table(table).try_into::<StepKind>().map_err(|e| format!("step `{id}`: {}", e.message()))?;
        Ok(Step { id, kind })
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJourney {
    id: String,
    description: String,
    #[serde(default = "yes")]
    enabled: bool,
    trigger: Trigger,
    entry: Entry,
    #[serde(default)]
    exit_on: Vec<EventType>,
    #[serde(default)]
    holdout_percent: f64,
    #[serde(default = "default_conversion_event")]
    conversion_event: EventType,
    #[serde(default = "default_conversion_days")]
    conversion_window_days: i64,
    steps: Vec<Step>,
}

fn yes() -> bool {
    true
}

fn default_conversion_event() -> EventType {
    EventType::Purchase
}

fn default_conversion_days() -> i64 {
    7
}

#[derive(Debug, Clone, PartialEq)]
pub struct Journey {
    pub id: String,
    pub description: String,
    pub enabled: bool,
    pub trigger: Trigger,
    pub entry: Entry,
    pub exit_on: Vec<EventType>,
    /// Share of entrants held out as a control group, in percent (0 to 50).
    pub holdout_percent: f64,
    pub conversion_event: EventType,
    pub conversion_window: SignedDuration,
    pub steps: Vec<Step>,
}

/// How long a wait step waits: a duration, or until the next local time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    Duration(SignedDuration),
    UntilLocalTime(Time),
}

impl StepKind {
    pub fn wait_for(&self) -> Option<WaitFor> {
        let StepKind::Wait { minutes, hours, days, until_local_time } = self else { return None };
        if let Some(time) = until_local_time.as_deref().and_then(|t| t.parse::<Time>().ok()) {
            return Some(WaitFor::UntilLocalTime(time));
        }
        let minutes = minutes.unwrap_or(0) + hours.unwrap_or(0) * 60 + days.unwrap_or(0) * 24 * 60;
        Some(WaitFor::Duration(SignedDuration::from_mins(minutes)))
    }
}

impl Journey {
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }

    pub fn parse(
        file: &str,
        text: &str,
        templates: &BTreeSet<String>,
        segments: &BTreeSet<String>,
    ) -> Result<Journey, Vec<CampaignError>> {
        let raw: RawJourney = toml::from_str(text).map_err(|e| vec![toml_error(file, text, &e)])?;
        let mut errors = Vec::new();
        let mut error = |field: &str, key: &str, message: String| {
            errors.push(CampaignError { file: file.into(), line: line_of_key(text, key), field: field.into(), message })
        };
        let step_ids: BTreeSet<&str> = raw.steps.iter().map(|s| s.id.as_str()).collect();
        if step_ids.len() != raw.steps.len() {
            error("steps", "id", "step ids must be unique".into());
        }
        if raw.steps.is_empty() {
            error("steps", "steps", "a journey needs at least one step".into());
        }
        if !(0.0..=50.0).contains(&raw.holdout_percent) {
            error("holdout_percent", "holdout_percent", "must be between 0 and 50".into());
        }
        if raw.entry.re_entry == ReEntry::Cooldown && raw.entry.cooldown_days.is_none_or(|d| d < 1) {
            error("entry.cooldown_days", "re_entry", "a cooldown re-entry needs cooldown_days of 1 or more".into());
        }
        for name in raw.entry.segments.iter().chain(&raw.entry.exclude_segments) {
            if !segments.contains(name) {
                error("entry.segments", "segments", format!("`{name}` is not a segment in settings.toml"));
            }
        }
        match &raw.trigger {
            Trigger::Event { event, count, within_hours, .. } => {
                if !event.is_valid() {
                    error("trigger.event", "event", format!("`{event}` is not an event type name"));
                }
                if count.is_some() != within_hours.is_some()
                    || count.is_some_and(|c| c < 1)
                    || within_hours.is_some_and(|h| h < 1)
                {
                    error("trigger.count", "count", "count and within_hours go together, both at least 1".into());
                }
            }
            Trigger::Inactivity { days, .. } if *days < 1 => error("trigger.days", "days", "must be at least 1".into()),
            Trigger::Stage { stage } if crate::model::LifecycleStage::parse(stage).is_none() => {
                error("trigger.stage", "stage", format!("`{stage}` is not a lifecycle stage"))
            }
            Trigger::Segment { segment } if !segments.contains(segment) => {
                error("trigger.segment", "segment", format!("`{segment}` is not a segment in settings.toml"))
            }
            _ => {}
        }
        for step in &raw.steps {
            let field = format!("steps.{}", step.id);
            let mut targets: Vec<&str> = Vec::new();
            match &step.kind {
                StepKind::Wait { until_local_time, minutes, hours, days } => {
                    let duration = minutes.unwrap_or(0) + hours.unwrap_or(0) + days.unwrap_or(0);
                    match until_local_time {
                        Some(t) if t.parse::<Time>().is_err() => {
                            error(&field, "until_local_time", format!("`{t}` is not a time such as 10:00"))
                        }
                        Some(_) if duration != 0 => {
                            error(&field, "until_local_time", "wait for a duration or until a time, not both".into())
                        }
                        None if duration <= 0 => {
                            error(&field, "type", "a wait needs minutes, hours, days or until_local_time".into())
                        }
                        _ => {}
                    }
                }
                StepKind::Send { template, .. } if !templates.contains(template) => {
                    error(&field, "template", format!("`{template}` is not a template in templates/"));
                }
                StepKind::Branch { condition, then, otherwise } => {
                    targets.push(then);
                    targets.push(otherwise);
                    if let Condition::InSegment(name) = condition
                        && !segments.contains(name)
                    {
                        error(&field, "condition", format!("`{name}` is not a segment in settings.toml"));
                    }
                }
                StepKind::Split { variants } => {
                    if variants.len() < 2 || variants.iter().map(|v| v.weight).sum::<u32>() == 0 {
                        error(&field, "variants", "a split needs two or more variants with weights".into());
                    }
                    targets.extend(variants.iter().map(|v| v.step.as_str()));
                }
                StepKind::Goto { step: to } => targets.push(to),
                StepKind::Update { stage: Some(stage), .. } if crate::model::LifecycleStage::parse(stage).is_none() => {
                    error(&field, "stage", format!("`{stage}` is not a lifecycle stage"))
                }
                _ => {}
            }
            for to in targets {
                if !step_ids.contains(to) {
                    error(&field, "id", format!("goes to `{to}`, which is not a step of this journey"));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Journey {
            id: raw.id,
            description: raw.description,
            enabled: raw.enabled,
            trigger: raw.trigger,
            entry: raw.entry,
            exit_on: raw.exit_on,
            holdout_percent: raw.holdout_percent,
            conversion_event: raw.conversion_event,
            conversion_window: SignedDuration::from_hours(24 * raw.conversion_window_days),
            steps: raw.steps,
        })
    }
}

/// Whether an event's properties satisfy a trigger's filters (equality, or one of a list).
pub fn filters_match(filters: &BTreeMap<String, Value>, properties: &serde_json::Map<String, Value>) -> bool {
    filters.iter().all(|(name, wanted)| match (wanted, properties.get(name)) {
        (Value::Array(options), Some(actual)) => options.contains(actual),
        (wanted, Some(actual)) => wanted == actual,
        (_, None) => false,
    })
}

/// Deterministic per contact and journey: the same contact is always in the same group.
pub fn in_holdout(contact_id: &str, journey_id: &str, percent: f64) -> bool {
    let bucket = stable_hash(&format!("holdout:{journey_id}:{contact_id}")) % 10_000;
    (bucket as f64) < percent * 100.0
}

/// FNV-1a 64: stable across builds and platforms.
pub fn stable_hash(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    // Finalise (from splitmix64) so nearby inputs spread over all buckets.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58476d1ce4e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d049bb133111eb);
    hash ^ (hash >> 31)
}

/// Picks a split variant by weight, deterministically per contact and run.
pub fn pick_variant<'a>(variants: &'a [Variant], seed: &str) -> &'a Variant {
    let total: u32 = variants.iter().map(|v| v.weight).sum();
    let mut roll = (stable_hash(seed) % u64::from(total.max(1))) as u32;
    for variant in variants {
        if roll < variant.weight {
            return variant;
        }
        roll -= variant.weight;
    }
    &variants[variants.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holdout_is_five_percent_within_a_point_and_stable() {
        let held = (0..100_000).filter(|i| in_holdout(&format!("c_{i:08}"), "winback", 5.0)).count();
        let share = held as f64 / 100_000.0 * 100.0;
        assert!((4.0..=6.0).contains(&share), "holdout share {share}%");
        let again = (0..100_000).filter(|i| in_holdout(&format!("c_{i:08}"), "winback", 5.0)).count();
        assert_eq!(held, again, "identical across runs");
        assert!(!in_holdout("c_1", "welcome", 0.0));
    }

    #[test]
    fn filters_match_values_and_lists() {
        let props = serde_json::json!({"category": "shoes", "price": 10}).as_object().unwrap().clone();
        let mut filters = BTreeMap::new();
        filters.insert("category".to_string(), serde_json::json!("shoes"));
        assert!(filters_match(&filters, &props));
        filters.insert("category".to_string(), serde_json::json!(["bags", "shoes"]));
        assert!(filters_match(&filters, &props));
        filters.insert("brand".to_string(), serde_json::json!("x"));
        assert!(!filters_match(&filters, &props));
    }
}
