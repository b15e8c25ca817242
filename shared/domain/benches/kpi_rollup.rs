//! The rollup and the KPI report over a month of aggregates, once made by 100 000 simulated events
//! and once by 10 000 000: the aggregates hold the same items either way (days × metrics ×
//! channels), so the rollup, which reads only them, takes the same time.
//!
//! `cargo bench -p voronka-domain --bench kpi_rollup`. The 10 000 000 case runs only under
//! `cargo bench` (its setup feeds ten million events through `aggregates::record`), never when
//! the bench target is built or run as a test.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use voronka_domain::campaigns::Settings;
use voronka_domain::journeys::attribution::Model;
use voronka_domain::kpi::rollup::{RollupKind, roll_up};
use voronka_domain::kpi::{GroupBy, KpiQuery, compute, load};
use voronka_domain::model::{Contact, Event, EventType, LifecycleStage, Touch};
use voronka_domain::ports::store::MAX_TRANSACTION_OPS;
use voronka_domain::ports::{SimulatedClock, Store};
use voronka_domain::repo::aggregates::{self, Counters, JourneyMetric};
use voronka_domain::repo::journey_state::Group;

const DAYS: i64 = 30;
const CHANNELS: [(&str, Option<&str>); 7] = [
    ("google", Some("brand")),
    ("yandex", Some("generic")),
    ("vk", Some("autumn_sale")),
    ("newsletter", Some("digest")),
    ("organic", None),
    ("referral", None),
    ("direct", None),
];
const TEMPLATES: [&str; 4] = ["welcome", "category_interest", "abandoned_cart_1", "cross_sell"];
const JOURNEYS: [&str; 3] = ["welcome", "category_interest", "cross_sell"];

fn settings() -> Settings {
    Settings::parse("settings.toml", include_str!("../../campaigns/settings.toml")).expect("the bundled settings")
}

fn month_start() -> Timestamp {
    "2026-03-01T09:00:00Z".parse().unwrap()
}

/// A contact before and after an event: touched by `channel` a day before `day`, buying for the
/// first time or again.
fn people(channel: usize, at: Timestamp, first_order: bool) -> (Contact, Contact) {
    let (name, campaign) = CHANNELS[channel];
    let mut before = Contact::new(format!("c{channel}"), at, "ru".into(), "Europe/Moscow".into());
    before.stage = LifecycleStage::Lead;
    for (hours, (other, other_campaign)) in [(30, CHANNELS[(channel + 3) % 7]), (24, (name, campaign))] {
        before.record_touch(Touch {
            at: at - SignedDuration::from_hours(hours),
            channel: other.to_string(),
            campaign: other_campaign.map(str::to_string),
            ..Touch::default()
        });
    }
    if !first_order {
        before.orders.orders = 1;
        before.orders.first_order_at = Some(at - SignedDuration::from_hours(24 * 40));
    }
    let mut after = before.clone();
    after.orders.orders += 1;
    after.stage = LifecycleStage::Customer;
    (before, after)
}

/// Events of every kind that counts, on each day of the month, built once and reused.
struct Simulation {
    /// Per day: (event, before, after).
    cases: Vec<Vec<(Event, Contact, Contact)>>,
}

impl Simulation {
    fn new() -> Simulation {
        let mut cases = Vec::new();
        for day in 0..DAYS {
            let at = month_start() + SignedDuration::from_hours(24 * day);
            let event = |n: usize, event_type: EventType, properties: serde_json::Value| {
                let properties = properties.as_object().cloned().unwrap_or_default();
                Event::internal(format!("e{day}-{n}"), event_type, "c", at, at, properties)
            };
            let mut today = Vec::new();
            for channel in 0..CHANNELS.len() {
                let (before, after) = people(channel, at, channel % 2 == 0);
                let mut lead = before.clone();
                lead.stage = LifecycleStage::Subscriber;
                today.push((event(channel, EventType::LeadCreated, json!({})), lead, before.clone()));
                let revenue = 990.0 + 37.0 * channel as f64;
                let purchase = json!({"order_id": format!("o{day}-{channel}"), "revenue": revenue});
                today.push((event(channel, EventType::Purchase, purchase), before.clone(), after.clone()));
                let mut mql = before.clone();
                mql.stage = LifecycleStage::Mql;
                today.push((event(channel, EventType::PageView, json!({})), before.clone(), mql));
            }
            for (n, template) in TEMPLATES.iter().enumerate() {
                for kind in [EventType::EmailSent, EventType::EmailOpened, EventType::EmailClicked] {
                    let mail = json!({"template": template, "journey": JOURNEYS[n % JOURNEYS.len()]});
                    let (before, after) = people(n, at, false);
                    today.push((event(n, kind, mail), before, after));
                }
            }
            cases.push(today);
        }
        Simulation { cases }
    }

    /// The aggregates `events` simulated events add: each picks a day and a case by a fixed
    /// sequence, as a month of traffic would spread over them.
    fn counters(&self, events: u64, settings: &Settings) -> Counters {
        let mut counters = Counters::default();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..events {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let day = &self.cases[((state >> 33) % DAYS as u64) as usize];
            let (event, before, after) = &day[((state >> 17) % day.len() as u64) as usize];
            aggregates::record(&mut counters, settings, event, before, after);
            if event.event_type == EventType::LeadCreated {
                let journey = JOURNEYS[(state >> 7) as usize % JOURNEYS.len()];
                let group = if (state >> 11).is_multiple_of(20) { Group::Holdout } else { Group::Treatment };
                aggregates::record_journey(
                    &mut counters,
                    settings,
                    event.occurred_at,
                    journey,
                    group,
                    JourneyMetric::Entries,
                    1.0,
                );
            }
        }
        counters
    }
}

/// A store holding the aggregates of `events` simulated events; returns it and its item count.
async fn store_after(simulation: &Simulation, events: u64, settings: &Settings) -> (Arc<dyn Store>, usize) {
    let clock = Arc::new(SimulatedClock::starting_at(month_start() + SignedDuration::from_hours(24 * (DAYS + 1))));
    let store = voronka_embedded::Embedded::in_memory(clock).store;
    let started = Instant::now();
    let ops = simulation.counters(events, settings).into_ops();
    let items = ops.len();
    for chunk in ops.chunks(MAX_TRANSACTION_OPS) {
        store.transact(chunk.to_vec()).await.expect("the aggregates are written");
    }
    eprintln!("{events} simulated events → {items} aggregate items (setup {:.1} s)", started.elapsed().as_secs_f64());
    (store, items)
}

fn month_query() -> KpiQuery {
    let from: Date = month_start().to_zoned(jiff::tz::TimeZone::UTC).date();
    let to = from + SignedDuration::from_hours(24 * (DAYS - 1));
    KpiQuery { from, to, group_by: GroupBy::Channel, attribution: Model::Linear }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let settings = settings();
    let simulation = Simulation::new();
    let query = month_query();
    let now = month_start() + SignedDuration::from_hours(24 * (DAYS + 1));
    let today = aggregates::date(now, &settings);
    let journeys: Vec<String> = JOURNEYS.iter().map(|j| j.to_string()).collect();
    // Only `cargo bench` passes `--bench`; as a test the target runs the small case alone.
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let sizes: &[u64] = if benchmarking { &[100_000, 10_000_000] } else { &[100_000] };

    // Every store is made before any is measured, so each size is timed in the same process state.
    let stores: Vec<(u64, Arc<dyn Store>, usize)> = sizes
        .iter()
        .map(|&events| {
            let (store, items) = runtime.block_on(store_after(&simulation, events, &settings));
            (events, store, items)
        })
        .collect();
    let mut group = c.benchmark_group("kpi_rollup_month");
    group.sample_size(30);
    group.measurement_time(std::time::Duration::from_secs(8));
    for (events, store, _) in &stores {
        let read = runtime.block_on(roll_up(store.as_ref(), &settings, RollupKind::Days(query.days()), now)).unwrap();
        eprintln!("{events} simulated events: one rollup of the month reads {} items", read.items_read);
        group.bench_with_input(BenchmarkId::new("rollup_and_report", events), events, |b, _| {
            b.to_async(&runtime).iter(|| async {
                let days = RollupKind::Days(query.days());
                let outcome = roll_up(store.as_ref(), &settings, days, now).await.unwrap();
                let inputs = load(store.as_ref(), &settings, &query, today, &journeys).await.unwrap();
                black_box((outcome.items_read, compute(&inputs, &query, &settings)))
            });
        });
    }
    group.finish();
    let item_counts: Vec<usize> = stores.iter().map(|(_, _, items)| *items).collect();
    assert!(
        item_counts.windows(2).all(|pair| pair[0] == pair[1]),
        "every size makes the same aggregate items: {item_counts:?}"
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
