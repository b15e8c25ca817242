//! The journey engine: decides, for one event and one contact, which journeys the contact enters,
//! exits, continues or converts in, and what that writes. Everything it decides goes into the
//! event's one transaction (see trigger-evaluator's `lib.rs`); sends are due items due now, dispatched right after.

use std::collections::BTreeMap;

use crate::campaigns::Campaigns;
use crate::journeys::definition::{Condition as StepCondition, filters_match, in_holdout, pick_variant};
use crate::journeys::{Journey, ReEntry, StepKind, Trigger, WaitFor};
use crate::model::cart::plain_text;
use crate::model::{Channel, Contact, DueWorkPayload, Event, EventType, LifecycleStage, SendOrigin, SendRequest};
use crate::repo::aggregates::JourneyMetric;
use crate::repo::due::{self, DueItem, DueWork};
use crate::repo::journey_state::{Group, JourneyState, RunStatus};
use crate::sending::origin::journey_send_key;
use crate::time::time_zone_or_utc;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

/// Longest category name from an event that reaches an email.
const MAX_CATEGORY_CHARS: usize = 60;
/// A run that loops without waiting stops here.
const MAX_STEPS_PER_PASS: usize = 64;

/// What one event does to the journeys of one contact.
#[derive(Debug, Default)]
pub struct JourneyEffects {
    /// Journey states to write (changed ones only).
    pub states: Vec<JourneyState>,
    /// Due items to create.
    pub due: Vec<DueItem>,
    /// Groups whose pending due items are to be cancelled.
    pub cancel_groups: Vec<String>,
    /// What the journey aggregates count.
    pub journey_counts: Vec<JourneyCount>,
    pub entered: Vec<String>,
    pub exited: Vec<String>,
}

/// One addition to a journey's aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct JourneyCount {
    pub journey: String,
    pub group: Group,
    pub metric: JourneyMetric,
    pub amount: f64,
    /// The day it is counted under. A conversion is counted under its run's entry, so a day's
    /// conversions are those of the people who entered that day and a group's conversion rate
    /// over any range stays a share of that range's entries.
    pub counted_at: Timestamp,
}

impl JourneyCount {
    fn new(journey: &str, group: Group, metric: JourneyMetric, amount: f64, counted_at: Timestamp) -> JourneyCount {
        JourneyCount { journey: journey.to_string(), group, metric, amount, counted_at }
    }
}

pub fn run_group(state: &JourneyState) -> String {
    format!("journey:{}", state.run_id())
}

pub fn inactivity_group(journey_id: &str) -> String {
    format!("inactivity:{journey_id}")
}

/// Context for deciding: the contact before and after the event's own profile changes.
pub struct Decision<'a> {
    pub campaigns: &'a Campaigns,
    pub event: &'a Event,
    pub before: &'a Contact,
    pub now: Timestamp,
    /// How many matching events (this one included) fell in each counting trigger's window.
    pub trigger_counts: &'a BTreeMap<String, usize>,
}

/// The key under which a counting trigger's events are counted: `<type>#<group_by>=<value>`.
pub fn count_key(trigger: &Trigger, event: &Event) -> Option<String> {
    let Trigger::Event { event: event_type, filters, count: Some(_), group_by, .. } = trigger else { return None };
    if event_type != &event.event_type || !filters_match(filters, &event.properties) {
        return None;
    }
    let group = match group_by {
        Some(property) => format!("{property}={}", event.properties.get(property).map(value_text).unwrap_or_default()),
        None => "all".into(),
    };
    Some(format!("{event_type}#{group}"))
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn triggered(journey: &Journey, decision: &Decision<'_>, contact: &Contact) -> bool {
    let event = decision.event;
    let segments = &decision.campaigns.settings.segments;
    match &journey.trigger {
        Trigger::Event { event: event_type, filters, count, .. } => {
            if event_type != &event.event_type || !filters_match(filters, &event.properties) {
                return false;
            }
            match count {
                None => true,
                // Exactly on the Nth matching event inside the window, not after.
                Some(n) => count_key(&journey.trigger, event)
                    .and_then(|key| decision.trigger_counts.get(&key))
                    .is_some_and(|seen| *seen == *n as usize),
            }
        }
        Trigger::Stage { stage } => contact.stage.as_str() == stage && decision.before.stage.as_str() != stage,
        Trigger::Segment { segment } => {
            segments.matches(segment, contact, decision.now)
                && !segments.matches(segment, decision.before, decision.now)
        }
        Trigger::Inactivity { .. } => {
            matches!(event.due_work(), Some(DueWorkPayload::InactivityCheck { journey: id, .. }) if id == journey.id)
        }
    }
}

fn may_enter(
    journey: &Journey,
    state: Option<&JourneyState>,
    contact: &Contact,
    now: Timestamp,
    campaigns: &Campaigns,
) -> bool {
    let segments = &campaigns.settings.segments;
    if journey.entry.segments.iter().any(|s| !segments.matches(s, contact, now))
        || journey.entry.exclude_segments.iter().any(|s| segments.matches(s, contact, now))
    {
        return false;
    }
    match state {
        None => true,
        Some(state) if state.status == RunStatus::Active => false,
        Some(_) if journey.entry.re_entry == ReEntry::Once => false,
        Some(state) => {
            let cooldown = SignedDuration::from_hours(24 * journey.entry.cooldown_days.unwrap_or(0));
            now.duration_since(state.entered_at) >= cooldown
        }
    }
}

/// Decides everything for one contact and event. `contact` is the profile after the event's own
/// changes; journey `update` steps change it further.
pub fn decide(
    decision: &Decision<'_>,
    contact: &mut Contact,
    states: &BTreeMap<String, JourneyState>,
) -> JourneyEffects {
    let mut effects = JourneyEffects::default();
    let event = decision.event;
    let now = decision.now;
    for journey in decision.campaigns.journeys.values().filter(|j| j.enabled) {
        let mut state = states.get(&journey.id).cloned();
        let original = state.clone();

        if let Some(s) = state.as_mut() {
            // Exits apply the moment their event arrives, cancelling whatever waits.
            if s.status == RunStatus::Active && journey.exit_on.contains(&event.event_type) {
                s.status = RunStatus::Exited;
                s.finished_at = Some(now);
                s.exit_reason = Some(event.event_type.to_string());
                s.current_step = None;
                effects.cancel_groups.push(run_group(s));
                effects.exited.push(journey.id.clone());
                effects.journey_counts.push(JourneyCount::new(&journey.id, s.group, JourneyMetric::Exits, 1.0, now));
            }
            // Conversions count once per run, for the group the contact was in.
            if event.event_type == journey.conversion_event
                && !s.converted
                && event.occurred_at >= s.entered_at
                && event.occurred_at.duration_since(s.entered_at) <= journey.conversion_window
            {
                s.converted = true;
                let revenue = event.revenue().unwrap_or(0.0);
                let entry = s.entered_at;
                effects.journey_counts.push(JourneyCount::new(
                    &journey.id,
                    s.group,
                    JourneyMetric::Conversions,
                    1.0,
                    entry,
                ));
                effects.journey_counts.push(JourneyCount::new(
                    &journey.id,
                    s.group,
                    JourneyMetric::Revenue,
                    revenue,
                    entry,
                ));
            }
            if event.event_type == EventType::EmailClicked
                && s.last_send_tag.is_some()
                && event.mail().send == s.last_send_tag
            {
                s.clicked_last = true;
            }
            if s.status == RunStatus::Active
                && let Some(DueWorkPayload::JourneyContinue { journey: id, run, step }) = event.due_work()
                && id == journey.id
                && run == u64::from(s.run)
            {
                let step = step.as_str();
                run_steps(journey, s, step, contact, decision, &mut effects);
            }
        }

        // An inactivity journey's clock restarts with every event it watches.
        if let Trigger::Inactivity { days, of } = &journey.trigger
            && &event.event_type == of
        {
            effects.cancel_groups.push(inactivity_group(&journey.id));
            let wake =
                DueWorkPayload::InactivityCheck { journey: journey.id.clone(), since: event.occurred_at.as_second() };
            effects.due.push(DueItem {
                id: due::ids::inactivity(&journey.id, &event.dedupe_key()),
                contact_id: contact.id.clone(),
                due_at: event.occurred_at + SignedDuration::from_hours(24 * days),
                group: inactivity_group(&journey.id),
                work: DueWork::Evaluate { event_type: wake.event_type(), properties: wake.to_properties() },
            });
        }

        if triggered(journey, decision, contact) && may_enter(journey, state.as_ref(), contact, now, decision.campaigns)
        {
            let run = state.as_ref().map_or(1, |s| s.run + 1);
            let group = if in_holdout(&contact.id, &journey.id, journey.holdout_percent) {
                Group::Holdout
            } else {
                Group::Treatment
            };
            let mut entered = JourneyState {
                trigger_context: trigger_context(&journey.trigger, event),
                version: state.as_ref().map_or(0, |s| s.version),
                ..JourneyState::new_run(&journey.id, &contact.id, run, group, now)
            };
            effects.entered.push(journey.id.clone());
            effects.journey_counts.push(JourneyCount::new(&journey.id, group, JourneyMetric::Entries, 1.0, now));
            match group {
                // The control group gets nothing; it only counts its conversions.
                Group::Holdout => {
                    entered.status = RunStatus::Completed;
                    entered.finished_at = Some(now);
                }
                Group::Treatment => {
                    let first = journey.steps[0].id.clone();
                    run_steps(journey, &mut entered, &first, contact, decision, &mut effects);
                }
            }
            state = Some(entered);
        }

        if state != original
            && let Some(mut s) = state
        {
            s.version = original.as_ref().map_or(0, |o| o.version) + 1;
            effects.states.push(s);
        }
    }
    effects
}

/// Runs a journey's steps from `from` until it waits or ends.
fn run_steps(
    journey: &Journey,
    state: &mut JourneyState,
    from: &str,
    contact: &mut Contact,
    decision: &Decision<'_>,
    effects: &mut JourneyEffects,
) {
    let now = decision.now;
    let mut index = journey.step_index(from);
    for _ in 0..MAX_STEPS_PER_PASS {
        let Some(i) = index else {
            finish(state, now, RunStatus::Completed, None);
            return;
        };
        let Some(step) = journey.steps.get(i) else {
            finish(state, now, RunStatus::Completed, None);
            return;
        };
        let next = journey.steps.get(i + 1).map(|s| s.id.clone());
        state.steps_taken += 1;
        let pass = state.steps_taken;
        match &step.kind {
            StepKind::Send { template, priority, class, context } => {
                let key = journey_send_key(&journey.id, &contact.id, state.run, &step.id, pass);
                let mut context = context.clone();
                context.insert("journey".into(), json!(journey.id));
                for (name, value) in &state.trigger_context {
                    context.entry(name.clone()).or_insert(value.clone());
                }
                let request = SendRequest {
                    idempotency_key: key.clone(),
                    contact_id: contact.id.clone(),
                    template: template.clone(),
                    channel: Channel::Email,
                    class: *class,
                    priority: *priority,
                    context,
                    origin: SendOrigin::Journey { journey_id: journey.id.clone(), step_id: step.id.clone() },
                    requested_at: now,
                    recipient: crate::model::Recipient::Contact,
                };
                effects.due.push(DueItem {
                    id: due::ids::send(&key),
                    contact_id: contact.id.clone(),
                    due_at: now,
                    group: run_group(state),
                    work: DueWork::Send { request },
                });
                state.last_send_tag = Some(SendRequest::send_tag(&key));
                state.clicked_last = false;
                index = next.and_then(|n| journey.step_index(&n));
            }
            StepKind::Wait { .. } => {
                let Some(after) = next else {
                    finish(state, now, RunStatus::Completed, None);
                    return;
                };
                let due_at = match step.kind.wait_for() {
                    Some(WaitFor::Duration(d)) => now + d,
                    Some(WaitFor::UntilLocalTime(time)) => next_local_time(now, &contact.time_zone, time),
                    None => now,
                };
                let wake = DueWorkPayload::JourneyContinue {
                    journey: journey.id.clone(),
                    run: u64::from(state.run),
                    step: after.clone(),
                };
                effects.due.push(DueItem {
                    id: due::ids::wait(&state.run_id(), &step.id, pass),
                    contact_id: contact.id.clone(),
                    due_at,
                    group: run_group(state),
                    work: DueWork::Evaluate { event_type: wake.event_type(), properties: wake.to_properties() },
                });
                state.current_step = Some(after);
                return;
            }
            StepKind::Branch { condition, then, otherwise } => {
                let holds = match condition {
                    StepCondition::ClickedLastEmail => state.clicked_last,
                    StepCondition::InSegment(name) => decision.campaigns.settings.segments.matches(name, contact, now),
                    StepCondition::HasTag(tag) => contact.tags.contains(tag),
                };
                index = journey.step_index(if holds { then } else { otherwise });
            }
            StepKind::Split { variants } => {
                let variant = pick_variant(variants, &format!("{}:{}", state.run_id(), step.id));
                state.variants.insert(step.id.clone(), variant.name.clone());
                index = journey.step_index(&variant.step);
            }
            StepKind::Update { add_tags, stage, points } => {
                contact.tags.extend(add_tags.iter().cloned());
                if let Some(stage) = stage.as_deref().and_then(LifecycleStage::parse) {
                    contact.stage = contact.stage.advanced_to(stage);
                }
                if let Some(points) = points {
                    contact.fit_score += points;
                }
                index = next.and_then(|n| journey.step_index(&n));
            }
            StepKind::Goto { step: to } => index = journey.step_index(to),
            StepKind::End => {
                finish(state, now, RunStatus::Completed, None);
                return;
            }
        }
    }
    tracing::error!(journey = %journey.id, "a journey ran many steps without waiting; stopped");
    finish(state, now, RunStatus::Completed, Some("step_limit".into()));
}

/// What the run's emails may show of the event that started it: the category, and the value the
/// trigger groups by. Event text may reach a subject line: one short line of plain text.
fn trigger_context(trigger: &Trigger, event: &Event) -> Map<String, Value> {
    let grouped_by = match trigger {
        Trigger::Event { group_by: Some(property), .. } => Some(property.as_str()),
        _ => None,
    };
    ["category"]
        .into_iter()
        .chain(grouped_by)
        .filter_map(|name| {
            let text = event.properties.get(name).and_then(Value::as_str)?;
            Some((name.to_string(), json!(plain_text(text, MAX_CATEGORY_CHARS))))
        })
        .collect()
}

fn finish(state: &mut JourneyState, now: Timestamp, status: RunStatus, reason: Option<String>) {
    state.status = status;
    state.finished_at = Some(now);
    state.current_step = None;
    state.exit_reason = reason;
}

/// The next instant the contact's clock shows `time` (today if still ahead, else tomorrow).
pub fn next_local_time(now: Timestamp, zone: &str, time: jiff::civil::Time) -> Timestamp {
    let zone = time_zone_or_utc(zone);
    let local = now.to_zoned(zone.clone());
    let today = local.date().to_datetime(time).to_zoned(zone.clone()).map(|z| z.timestamp()).unwrap_or(now);
    if today > now {
        return today;
    }
    local
        .date()
        .tomorrow()
        .ok()
        .and_then(|d| d.to_datetime(time).to_zoned(zone).ok())
        .map(|z| z.timestamp())
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use jiff::{SignedDuration, Timestamp};
    use serde_json::{Value, json};

    use super::{Decision, decide, run_group};
    use crate::campaigns::{Campaigns, SourceFile};
    use crate::model::{Contact, DueWorkPayload, EmailAddress, Event, EventType};
    use crate::repo::aggregates::JourneyMetric;
    use crate::repo::due::DueWork;
    use crate::repo::journey_state::{JourneyState, RunStatus};

    const JOURNEY: &str = r#"
id = "trial"
description = "A trial nudge"
exit_on = ["unsubscribed"]
conversion_event = "purchase"
conversion_window_days = 7
[trigger]
type = "event"
event = "lead_created"
[entry]
re_entry = "once"
[[steps]]
id = "hello"
type = "send"
template = "welcome"
[[steps]]
id = "pause"
type = "wait"
days = 2
[[steps]]
id = "again"
type = "send"
template = "welcome"
"#;

    fn campaigns() -> Campaigns {
        let file = |path: &str, text: &str| SourceFile { path: path.into(), text: text.into() };
        Campaigns::load(&[
            file("settings.toml", include_str!("../../../campaigns/settings.toml")),
            file("templates/welcome.toml", include_str!("../../../campaigns/templates/welcome.toml")),
            file("journeys/trial.toml", JOURNEY),
        ])
        .expect("the test campaigns are valid")
    }

    fn at(hours: i64) -> Timestamp {
        Timestamp::from_second(1_790_000_000).unwrap() + SignedDuration::from_hours(hours)
    }

    fn event(event_type: EventType, hours: i64, properties: Value) -> Event {
        let properties = properties.as_object().cloned().unwrap_or_default();
        Event::internal(format!("e-{event_type}-{hours}"), event_type, "c1", at(hours), at(hours), properties)
    }

    fn contact() -> Contact {
        let mut contact = Contact::new("c1".into(), at(0), "ru".into(), "Europe/Moscow".into());
        contact.email = Some(EmailAddress::parse("anna@example.com").unwrap());
        contact
    }

    /// Decides `event` for the contact with the journey states given; returns the effects and
    /// the states as they are afterwards.
    fn run(
        campaigns: &Campaigns,
        event: &Event,
        states: &BTreeMap<String, JourneyState>,
    ) -> (super::JourneyEffects, BTreeMap<String, JourneyState>) {
        let mut person = contact();
        let before = person.clone();
        let counts = BTreeMap::new();
        let decision = Decision { campaigns, event, before: &before, now: event.occurred_at, trigger_counts: &counts };
        let effects = decide(&decision, &mut person, states);
        let mut after = states.clone();
        for state in &effects.states {
            after.insert(state.journey_id.clone(), state.clone());
        }
        (effects, after)
    }

    #[test]
    fn the_trigger_enters_the_journey_sends_the_first_step_now_and_waits_for_the_next() {
        let campaigns = campaigns();
        let (effects, states) = run(&campaigns, &event(EventType::LeadCreated, 0, json!({})), &BTreeMap::new());
        assert_eq!(effects.entered, vec!["trial".to_string()]);
        let state = &states["trial"];
        assert_eq!(state.status, RunStatus::Active);
        let held_out = state.group == crate::repo::journey_state::Group::Holdout;
        let sends = effects.due.iter().filter(|d| matches!(d.work, DueWork::Send { .. })).count();
        assert_eq!(sends, if held_out { 0 } else { 1 }, "the first email goes out now, unless held out");
        let wake = effects.due.iter().find_map(|d| match &d.work {
            DueWork::Evaluate { event_type: EventType::JourneyContinue, properties } => Some((d.due_at, properties)),
            _ => None,
        });
        let (due_at, properties) = wake.expect("the run waits for its next step");
        assert_eq!(due_at, at(48));
        assert_eq!(
            Event::internal("w".into(), EventType::JourneyContinue, "c1", due_at, due_at, properties.clone())
                .due_work(),
            Some(DueWorkPayload::JourneyContinue { journey: "trial".into(), run: 1, step: "again".into() })
        );
        assert!(
            effects
                .journey_counts
                .iter()
                .any(|c| c.journey == "trial" && c.metric == JourneyMetric::Entries && c.amount == 1.0)
        );
    }

    #[test]
    fn an_exit_event_ends_the_run_at_once_and_cancels_what_waits() {
        let campaigns = campaigns();
        let (_, states) = run(&campaigns, &event(EventType::LeadCreated, 0, json!({})), &BTreeMap::new());
        let (effects, after) = run(&campaigns, &event(EventType::Unsubscribed, 1, json!({})), &states);
        assert_eq!(effects.exited, vec!["trial".to_string()]);
        assert_eq!(after["trial"].status, RunStatus::Exited);
        assert_eq!(after["trial"].exit_reason.as_deref(), Some("unsubscribed"));
        assert!(effects.cancel_groups.contains(&run_group(&states["trial"])));
    }

    #[test]
    fn a_conversion_counts_once_per_run_with_its_revenue_and_only_within_the_window() {
        let campaigns = campaigns();
        let (_, states) = run(&campaigns, &event(EventType::LeadCreated, 0, json!({})), &BTreeMap::new());
        let purchase = |hours| event(EventType::Purchase, hours, json!({"order_id": "o", "revenue": 250.0}));
        let (late, _) = run(&campaigns, &purchase(24 * 8), &states);
        assert!(!late.journey_counts.iter().any(|c| c.metric == JourneyMetric::Conversions), "outside 7 days");
        let (first, after) = run(&campaigns, &purchase(24), &states);
        let revenue: f64 =
            first.journey_counts.iter().filter(|c| c.metric == JourneyMetric::Revenue).map(|c| c.amount).sum();
        assert_eq!(revenue, 250.0);
        assert!(
            first
                .journey_counts
                .iter()
                .filter(|c| c.metric != JourneyMetric::Exits)
                .all(|c| c.counted_at == states["trial"].entered_at),
            "a conversion is counted on its run's entry day, so a range's rate is a share of its entries"
        );
        let (second, _) = run(&campaigns, &purchase(25), &after);
        assert!(!second.journey_counts.iter().any(|c| c.metric == JourneyMetric::Conversions), "counted once");
    }

    #[test]
    fn a_wake_up_for_another_run_moves_nothing() {
        let campaigns = campaigns();
        let (_, states) = run(&campaigns, &event(EventType::LeadCreated, 0, json!({})), &BTreeMap::new());
        let stale = DueWorkPayload::JourneyContinue { journey: "trial".into(), run: 7, step: "again".into() };
        let wake = Event::internal("w".into(), stale.event_type(), "c1", at(48), at(48), stale.to_properties());
        let (effects, _) = run(&campaigns, &wake, &states);
        assert!(effects.states.is_empty() && effects.due.is_empty(), "{effects:?}");
    }
}
