//! Golden KPI tests: a small fixture put through `aggregates::record` (as the trigger-evaluator
//! does) into the embedded store, plus spend, then every KPI and every attribution model compared
//! with values worked out by hand in the comments.
//!
//! The fixture (settings as shipped: Europe/Moscow, margin 0.3, lookback 30 days, half-life 7;
//! every instant at 09:00 UTC, 12:00 in Moscow, so the UTC date is the reporting date):
//! - Ann: touches google/brand 02-17, email/welcome 02-24, vk/autumn 03-03 (first touch google).
//!   Lead on 03-02, MQL on 03-02, first order 1000 on 03-03 (14, 7 and 0 days after her touches).
//! - Boris: one touch vk/autumn on 03-02. Lead, MQL and SQL on 03-02; first order 500 on 03-03;
//!   a second order 300 on 04-06, when his only touch is 35 days old (outside the lookback).
//! - Clara: no touch (direct). Lead on 03-03, no order.
//! - Email (template welcome, journey welcome): sent 3, delivered 2, bounced 1, opened 2,
//!   clicked 1, unsubscribed 1; abandoned_cart_1 outside journeys: sent 1.
//! - Carts: 2 abandoned on 03-02; 1 recovered (step 1) on 03-03 bringing 500.
//! - Discount cost 50 from the winback journey's codes and 20 from cart recovery, on 03-03.
//! - Journey winback on 03-02: treatment 120 entered, 12 converted, revenue 6000; holdout 100,
//!   5, 2000. On 05-01 (outside the ranges) 999 more entered treatment.
//! - Spend: google/brand 300 on 03-02; vk/autumn 200 on 03-02 and 100 on 03-03; yandex 50 on
//!   03-03 (no campaign).

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::{Date, date};
use serde_json::json;
use voronka_domain::campaigns::Settings;
use voronka_domain::journeys::attribution::Model;
use voronka_domain::kpi::rollup::{RollupKind, days_of, roll_up};
use voronka_domain::kpi::uplift::{Z_95, newcombe_interval};
use voronka_domain::kpi::{self, DayInputs, GroupBy, KpiQuery, KpiReport, KpiRow};
use voronka_domain::model::{Contact, Event, EventType, LifecycleStage, Touch};
use voronka_domain::ports::{SimulatedClock, Store};
use voronka_domain::repo::aggregates::{self, CART_RECOVERY, Counters, Dimensions, JourneyMetric, Metric};
use voronka_domain::repo::journey_state::Group;
use voronka_domain::repo::kpi_snapshots;
use voronka_domain::repo::spend::{self, SpendRow};
use voronka_embedded::Embedded;

const SETTINGS: &str = include_str!("../../campaigns/settings.toml");

fn settings() -> Settings {
    SHIPPED.clone()
}

static SHIPPED: std::sync::LazyLock<Settings> =
    std::sync::LazyLock::new(|| Settings::parse("settings.toml", SETTINGS).unwrap());

fn at(day: &str) -> Timestamp {
    format!("{day}T09:00:00Z").parse().unwrap()
}

fn touch(day: &str, channel: &str, campaign: &str) -> Touch {
    Touch { at: at(day), channel: channel.into(), campaign: Some(campaign.into()), ..Touch::default() }
}

fn event(id: &str, event_type: EventType, contact: &str, day: &str, properties: serde_json::Value) -> Event {
    Event::internal(id.into(), event_type, contact, at(day), at(day), properties.as_object().unwrap().clone())
}

/// A contact with its touches: first touch the oldest, last touch the newest.
fn contact(id: &str, touches: Vec<Touch>) -> Contact {
    let mut contact = Contact::new(id.into(), at("2026-02-01"), "ru".into(), "Europe/Moscow".into());
    contact.first_touch = touches.first().cloned();
    contact.last_touch = touches.last().cloned();
    contact.touches = touches;
    contact
}

/// Records `event` for `who`, moving them to `stage` (when given) and counting a purchase on
/// their order summary, as the trigger-evaluator does.
fn step(counters: &mut Counters, who: &mut Contact, event: Event, stage: Option<LifecycleStage>) {
    let before = who.clone();
    if let Some(stage) = stage {
        who.stage = stage;
    }
    if event.event_type == EventType::Purchase {
        who.orders.orders += 1;
        who.orders.first_order_at.get_or_insert(event.occurred_at);
        who.orders.last_order_at = Some(event.occurred_at);
    }
    aggregates::record(counters, &SHIPPED, &event, &before, who);
}

async fn write(store: &dyn Store, counters: Counters) {
    let ops = counters.into_ops();
    for chunk in ops.chunks(100) {
        store.transact(chunk.to_vec()).await.unwrap();
    }
}

fn spend_row(day: &str, channel: &str, campaign: Option<&str>, amount: f64) -> SpendRow {
    SpendRow {
        date: day.parse().unwrap(),
        channel: channel.into(),
        campaign: campaign.map(str::to_string),
        amount,
        currency: "RUB".into(),
    }
}

async fn fixture() -> (Embedded, Arc<SimulatedClock>) {
    let clock = Arc::new(SimulatedClock::starting_at(at("2026-05-01")));
    let embedded = Embedded::in_memory(clock.clone());
    let store = embedded.store.as_ref();
    let mut c = Counters::default();
    let mail = |template: &str, journey: Option<&str>| match journey {
        Some(journey) => json!({"template": template, "journey": journey}),
        None => json!({"template": template}),
    };

    let mut ann = contact(
        "ann",
        vec![
            touch("2026-02-17", "google", "brand"),
            touch("2026-02-24", "email", "welcome"),
            touch("2026-03-03", "vk", "autumn"),
        ],
    );
    step(
        &mut c,
        &mut ann,
        event("a1", EventType::LeadCreated, "ann", "2026-03-02", json!({})),
        Some(LifecycleStage::Lead),
    );
    step(&mut c, &mut ann, event("a2", EventType::PageView, "ann", "2026-03-02", json!({})), Some(LifecycleStage::Mql));
    let order = json!({"order_id": "a-o1", "revenue": 1000});
    step(
        &mut c,
        &mut ann,
        event("a3", EventType::Purchase, "ann", "2026-03-03", order),
        Some(LifecycleStage::Customer),
    );

    let mut boris = contact("boris", vec![touch("2026-03-02", "vk", "autumn")]);
    step(
        &mut c,
        &mut boris,
        event("b1", EventType::LeadCreated, "boris", "2026-03-02", json!({})),
        Some(LifecycleStage::Lead),
    );
    step(
        &mut c,
        &mut boris,
        event("b2", EventType::PageView, "boris", "2026-03-02", json!({})),
        Some(LifecycleStage::Mql),
    );
    step(
        &mut c,
        &mut boris,
        event("b3", EventType::PageView, "boris", "2026-03-02", json!({})),
        Some(LifecycleStage::Sql),
    );
    let order = json!({"order_id": "b-o1", "revenue": 500});
    step(
        &mut c,
        &mut boris,
        event("b4", EventType::Purchase, "boris", "2026-03-03", order),
        Some(LifecycleStage::Customer),
    );
    let order = json!({"order_id": "b-o2", "revenue": 300});
    step(
        &mut c,
        &mut boris,
        event("b5", EventType::Purchase, "boris", "2026-04-06", order),
        Some(LifecycleStage::RepeatCustomer),
    );

    let mut clara = contact("clara", vec![]);
    step(
        &mut c,
        &mut clara,
        event("c1", EventType::LeadCreated, "clara", "2026-03-03", json!({})),
        Some(LifecycleStage::Lead),
    );

    let welcome = || mail("welcome", Some("welcome"));
    let emails = [
        ("ann", EventType::EmailSent, welcome()),
        ("boris", EventType::EmailSent, welcome()),
        ("clara", EventType::EmailSent, welcome()),
        ("ann", EventType::EmailDelivered, welcome()),
        ("boris", EventType::EmailDelivered, welcome()),
        ("clara", EventType::EmailBounced, welcome()),
        ("ann", EventType::EmailOpened, welcome()),
        ("boris", EventType::EmailOpened, welcome()),
        ("ann", EventType::EmailClicked, welcome()),
        ("boris", EventType::Unsubscribed, welcome()),
        ("ann", EventType::EmailSent, mail("abandoned_cart_1", None)),
    ];
    for (i, (who, kind, properties)) in emails.into_iter().enumerate() {
        let mut someone = contact(who, vec![]);
        step(&mut c, &mut someone, event(&format!("m{i}"), kind, who, "2026-03-03", properties), None);
    }

    let (d2, d3) = (date(2026, 3, 2), date(2026, 3, 3));
    c.daily(d2, Metric::CartsAbandoned, &Dimensions::none(), 2.0);
    c.daily(d3, Metric::CartRecovered, &Dimensions::step(1), 1.0);
    c.daily(d3, Metric::CartRecoveredRevenue, &Dimensions::step(1), 500.0);
    c.daily(d3, Metric::DiscountCost, &Dimensions::discount_origin("winback"), 50.0);
    c.daily(d3, Metric::DiscountCost, &Dimensions::discount_origin(CART_RECOVERY), 20.0);
    let journey = [
        (d2, Group::Treatment, 120.0, 12.0, 6000.0),
        (d2, Group::Holdout, 100.0, 5.0, 2000.0),
        (date(2026, 5, 1), Group::Treatment, 999.0, 0.0, 0.0),
    ];
    for (day, group, entries, conversions, revenue) in journey {
        c.journey("winback", day, group, JourneyMetric::Entries, entries);
        c.journey("winback", day, group, JourneyMetric::Conversions, conversions);
        c.journey("winback", day, group, JourneyMetric::Revenue, revenue);
    }
    write(store, c).await;

    let rows = [
        spend_row("2026-03-02", "google", Some("brand"), 300.0),
        spend_row("2026-03-02", "vk", Some("autumn"), 200.0),
        spend_row("2026-03-03", "vk", Some("autumn"), 100.0),
        spend_row("2026-03-03", "yandex", None, 50.0),
    ];
    spend::upsert(store, &rows, at("2026-04-01")).await.unwrap();
    (embedded, clock)
}

fn query(from: &str, to: &str, group_by: GroupBy, attribution: Model) -> KpiQuery {
    KpiQuery { from: from.parse().unwrap(), to: to.parse().unwrap(), group_by, attribution }
}

fn journeys() -> Vec<String> {
    vec!["winback".to_string()]
}

async fn report(store: &dyn Store, query: &KpiQuery, today: Date) -> KpiReport {
    let settings = settings();
    let inputs = kpi::load(store, &settings, query, today, &journeys()).await.unwrap();
    kpi::compute(&inputs, query, &settings)
}

fn today() -> Date {
    date(2026, 5, 1)
}

/// A row with counts and money; ratios follow from them and are checked separately.
fn counts(row: &KpiRow) -> (&str, [u64; 5], [f64; 4]) {
    (
        row.key.as_str(),
        [row.leads, row.mql, row.sql, row.customers, row.orders],
        [row.revenue, row.spend, row.attributed_conversions, row.attributed_revenue],
    )
}

fn ratios(row: &KpiRow) -> [Option<f64>; 5] {
    [row.aov, row.lead_to_customer, row.cac, row.roas, row.romi]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn per_channel_kpis_funnel_cohorts_email_carts_and_uplift_match_the_hand_computed_values() {
    let (embedded, _) = fixture().await;
    let store = embedded.store.as_ref();
    let q = query("2026-03-01", "2026-04-30", GroupBy::Channel, Model::LastTouch);
    let r = report(store, &q, today()).await;

    // Channels: leads, MQL, SQL and customers by first touch; orders and revenue by last touch;
    // attributed by last touch (Ann's order → vk, Boris's first → vk, his second → direct: no
    // touch within 30 days); spend by its channel.
    let got: Vec<_> = r.rows.iter().map(counts).collect();
    assert_eq!(
        got,
        [
            // Clara's lead; Boris's April order credited to direct (1 conversion, 300).
            ("direct", [1, 0, 0, 0, 0], [0.0, 0.0, 1.0, 300.0]),
            // Ann: lead, MQL, first order; spend 300.
            ("google", [1, 1, 0, 1, 0], [0.0, 300.0, 0.0, 0.0]),
            // Boris: lead, MQL, SQL, first order; orders: Ann 1000 + Boris 500 + Boris 300 = 1800;
            // spend 200 + 100 = 300; last touch credit: Ann 1000 + Boris 500 = 1500 in 2.
            ("vk", [1, 1, 1, 1, 3], [1800.0, 300.0, 2.0, 1500.0]),
            ("yandex", [0, 0, 0, 0, 0], [0.0, 50.0, 0.0, 0.0]),
        ]
    );
    let got: Vec<_> = r.rows.iter().map(ratios).collect();
    assert_eq!(
        got,
        [
            // direct: no orders, 0 of 1 lead bought, no spend: CAC, ROAS, ROMI undefined.
            [None, Some(0.0), None, None, None],
            // google: CAC 300 / 1; ROAS 0 / 300 = 0; ROMI (0 × 0.3 − 300) / 300 = −1.
            [None, Some(1.0), Some(300.0), Some(0.0), Some(-1.0)],
            // vk: AOV 1800 / 3 = 600; CAC 300 / 1; ROAS 1500 / 300 = 5;
            // ROMI (1500 × 0.3 − 300) / 300 = 150 / 300 = 0.5.
            [Some(600.0), Some(1.0), Some(300.0), Some(5.0), Some(0.5)],
            // yandex: no customers (CAC undefined); ROAS 0; ROMI −50 / 50 = −1.
            [None, None, None, Some(0.0), Some(-1.0)],
        ]
    );
    // Totals: leads 3, MQL 2, SQL 1, customers 2, orders 3, revenue 1800, spend 650,
    // attributed 3 conversions and 1800. AOV 600; lead → customer 2/3; CAC 650 / 2 = 325;
    // ROAS 1800 / 650 = 2.769230769…; ROMI (540 − 650) / 650 = −0.169230769….
    assert_eq!(counts(&r.totals), ("total", [3, 2, 1, 2, 3], [1800.0, 650.0, 3.0, 1800.0]));
    assert_eq!(
        ratios(&r.totals),
        [Some(600.0), Some(0.6666666666666666), Some(325.0), Some(2.769230769230769), Some(-0.16923076923076924)]
    );

    // Funnel over the range: 3 → 2 → 1 → 2 (Ann skipped SQL: flow rates, not the same people).
    let f = &r.funnel;
    assert_eq!((f.leads, f.mql, f.sql, f.customers), (3, 2, 1, 2));
    assert_eq!(f.lead_to_mql, Some(0.6666666666666666));
    assert_eq!(f.mql_to_sql, Some(0.5));
    assert_eq!(f.sql_to_customer, Some(2.0));
    assert_eq!(f.lead_to_customer, Some(0.6666666666666666));

    // Cohort 2026-03: Ann and Boris (2 customers); March revenue 1000 + 500 = 1500, April: Boris
    // 300. Retention [2/2, 1/2]; LTV [1500 / 2, 1800 / 2] = [750, 900]. Boris's April order is
    // in the March cohort, so there is no April cohort.
    assert_eq!(r.cohorts.len(), 1);
    let cohort = &r.cohorts[0];
    assert_eq!((cohort.cohort.as_str(), cohort.customers), ("2026-03", 2));
    assert_eq!(cohort.retention, [Some(1.0), Some(0.5)]);
    assert_eq!(cohort.ltv, [750.0, 900.0]);
    // LTV / CAC = (1800 / 2) / 325 = 900 / 325 = 2.769230769….
    assert_eq!(r.ltv_cac, Some(2.769230769230769));

    // Email per template and journey.
    let email: Vec<_> = r
        .email
        .iter()
        .map(|e| {
            (
                e.template.as_str(),
                e.journey.as_deref(),
                [e.sent, e.delivered, e.bounced, e.complained, e.opened, e.clicked, e.unsubscribed],
            )
        })
        .collect();
    assert_eq!(
        email,
        [("abandoned_cart_1", None, [1, 0, 0, 0, 0, 0, 0]), ("welcome", Some("welcome"), [3, 2, 1, 0, 2, 1, 1])]
    );

    // Carts.
    assert_eq!((r.carts_abandoned, r.carts_recovered, r.recovered_cart_revenue), (2, 1, 500.0));

    // Uplift of winback over 03-01..04-30 (the 999 entries of 05-01 are outside): treatment
    // 12 / 120 = 0.1, holdout 5 / 100 = 0.05, absolute +0.05, relative 0.05 / 0.05 = 1;
    // revenue per contact 6000 / 120 = 50 vs 2000 / 100 = 20: incremental (50 − 20) × 120 = 3600;
    // its discount cost is winback's 50 (not cart recovery's 20): ROMI (3600 × 0.3 − 50) / 50 = 20.6.
    assert_eq!(r.uplift.len(), 1);
    let u = &r.uplift[0];
    assert_eq!(u.journey, "winback");
    assert_eq!((u.treatment.contacts, u.treatment.conversions, u.treatment.revenue), (120, 12, 6000.0));
    assert_eq!((u.holdout.contacts, u.holdout.conversions, u.holdout.revenue), (100, 5, 2000.0));
    assert!(close(u.absolute_uplift.unwrap(), 0.05));
    assert!(close(u.relative_uplift.unwrap(), 1.0));
    assert!(close(u.incremental_revenue.unwrap(), 3600.0));
    assert_eq!(u.discount_cost, 50.0);
    assert!(close(u.romi.unwrap(), 20.6));
    assert!(!u.too_small, "both groups have at least min_group_size = 100");
    let (low, high) = newcombe_interval(12, 120, 5, 100, Z_95).unwrap();
    assert_eq!((u.ci_low, u.ci_high), (Some(low), Some(high)));

    assert_eq!((r.currency.as_str(), r.margin), ("RUB", 0.3));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["rows"][0]["aov"], serde_json::Value::Null, "an undefined ratio is null, not NaN");
    assert_eq!(json["group_by"], "channel");
    assert_eq!(json["attribution"], "last_touch");
}

#[tokio::test]
async fn every_attribution_model_matches_the_hand_computed_credit_and_sums_to_one_per_conversion() {
    let (embedded, _) = fixture().await;
    let q = query("2026-03-01", "2026-04-30", GroupBy::Channel, Model::LastTouch);
    let r = report(embedded.store.as_ref(), &q, today()).await;
    // Ann's order (1000) over google 14 days before, email 7 days before, vk the same day;
    // Boris's first (500): vk only; his second (300): no touch in 30 days, so direct.
    // - first touch: google 1 / 1000; vk 1 / 500; direct 1 / 300.
    // - last touch: vk 1 + 1 = 2 / 1500; direct 1 / 300.
    // - linear: Ann's thirds: 1/3 and 333.33 each; vk 1/3 + 1 = 4/3 and 333.33 + 500 = 833.33.
    // - position based (40/20/40): google 0.4 / 400, email 0.2 / 200, vk 0.4 + 1 = 1.4 / 900.
    // - time decay (half-life 7 days): weights 0.25, 0.5, 1 over 1.75 = 1/7, 2/7, 4/7:
    //   google 1/7 / 142.857…, email 2/7 / 285.714…, vk 4/7 + 1 = 11/7 / 571.43 + 500 = 1071.43.
    let third = 1.0 / 3.0;
    let expected: [(Model, &str, Option<&str>, f64, f64); 17] = [
        (Model::FirstTouch, "direct", None, 1.0, 300.0),
        (Model::FirstTouch, "google", Some("brand"), 1.0, 1000.0),
        (Model::FirstTouch, "vk", Some("autumn"), 1.0, 500.0),
        (Model::LastTouch, "direct", None, 1.0, 300.0),
        (Model::LastTouch, "vk", Some("autumn"), 2.0, 1500.0),
        (Model::Linear, "direct", None, 1.0, 300.0),
        (Model::Linear, "email", Some("welcome"), third, 1000.0 / 3.0),
        (Model::Linear, "google", Some("brand"), third, 1000.0 / 3.0),
        (Model::Linear, "vk", Some("autumn"), 1.0 + third, 1000.0 / 3.0 + 500.0),
        (Model::PositionBased, "direct", None, 1.0, 300.0),
        (Model::PositionBased, "email", Some("welcome"), 0.2, 200.0),
        (Model::PositionBased, "google", Some("brand"), 0.4, 400.0),
        (Model::PositionBased, "vk", Some("autumn"), 1.4, 900.0),
        (Model::TimeDecay, "direct", None, 1.0, 300.0),
        (Model::TimeDecay, "email", Some("welcome"), 2.0 / 7.0, 2000.0 / 7.0),
        (Model::TimeDecay, "google", Some("brand"), 1.0 / 7.0, 1000.0 / 7.0),
        (Model::TimeDecay, "vk", Some("autumn"), 11.0 / 7.0, 4000.0 / 7.0 + 500.0),
    ];
    assert_eq!(r.attribution_by_model.len(), expected.len(), "{:#?}", r.attribution_by_model);
    for (got, (model, channel, campaign, conversions, revenue)) in r.attribution_by_model.iter().zip(expected) {
        assert_eq!((got.model, got.channel.as_str(), got.campaign.as_deref()), (model, channel, campaign));
        assert!(close(got.conversions, conversions), "{got:?}: {conversions}");
        assert!(close(got.revenue, revenue), "{got:?}: {revenue}");
    }
    // Three conversions, 1800 of revenue, whatever the model: each conversion's credit sums to 1.
    for model in Model::ALL {
        let credits = r.attribution_by_model.iter().filter(|c| c.model == model);
        let (conversions, revenue) = credits.fold((0.0, 0.0), |(n, sum), c| (n + c.conversions, sum + c.revenue));
        assert!(close(conversions, 3.0) && close(revenue, 1800.0), "{model:?}: {conversions} {revenue}");
    }
    // The chosen model feeds the rows: under time decay google's row carries 1/7 and 142.857….
    let q = query("2026-03-01", "2026-04-30", GroupBy::Channel, Model::TimeDecay);
    let r = report(embedded.store.as_ref(), &q, today()).await;
    let google = r.rows.iter().find(|row| row.key == "google").unwrap();
    assert!(close(google.attributed_conversions, 1.0 / 7.0) && close(google.attributed_revenue, 1000.0 / 7.0));
    // ROAS 142.857… / 300; email has a row now (credit, no spend: ratios undefined).
    assert!(close(google.roas.unwrap(), 1000.0 / 7.0 / 300.0));
    let email = r.rows.iter().find(|row| row.key == "email").unwrap();
    assert_eq!((email.spend, email.roas, email.romi), (0.0, None, None));
}

#[tokio::test]
async fn days_weeks_months_and_campaigns_group_the_same_numbers() {
    let (embedded, _) = fixture().await;
    let store = embedded.store.as_ref();

    // Per day, 03-01..03-03: an empty first day is still a row.
    // 03-02: leads Ann + Boris = 2, MQL 2, SQL 1, spend 300 + 200 = 500, nothing bought:
    //   lead → customer 0 / 2 = 0, CAC undefined, ROAS 0, ROMI −1.
    // 03-03: lead Clara, customers 2, orders 2 (1000 + 500 = 1500, AOV 750), spend 100 + 50 = 150,
    //   last touch credit 2 / 1500: lead → customer 2 / 1 = 2, CAC 75, ROAS 10,
    //   ROMI (450 − 150) / 150 = 2.
    let q = query("2026-03-01", "2026-03-03", GroupBy::Day, Model::LastTouch);
    let r = report(store, &q, today()).await;
    let got: Vec<_> = r.rows.iter().map(|row| (counts(row), ratios(row))).collect();
    assert_eq!(
        got,
        [
            (("2026-03-01", [0, 0, 0, 0, 0], [0.0, 0.0, 0.0, 0.0]), [None, None, None, None, None]),
            (("2026-03-02", [2, 2, 1, 0, 0], [0.0, 500.0, 0.0, 0.0]), [None, Some(0.0), None, Some(0.0), Some(-1.0)]),
            (
                ("2026-03-03", [1, 0, 0, 2, 2], [1500.0, 150.0, 2.0, 1500.0]),
                [Some(750.0), Some(2.0), Some(75.0), Some(10.0), Some(2.0)]
            ),
        ]
    );
    // Total: spend 650, credit 1500: ROAS 1500 / 650 = 2.3076923…, ROMI (450 − 650) / 650.
    assert_eq!(
        r.rows_csv(),
        "key,leads,mql,sql,customers,orders,revenue,aov,lead_to_customer,spend,attributed_conversions,\
         attributed_revenue,cac,roas,romi,currency\n\
         2026-03-01,0,0,0,0,0,0,,,0,0,0,,,,RUB\n\
         2026-03-02,2,2,1,0,0,0,,0,500,0,0,,0,-1,RUB\n\
         2026-03-03,1,0,0,2,2,1500,750,2,150,2,1500,75,10,2,RUB\n\
         total,3,2,1,2,2,1500,750,0.6666666666666666,650,2,1500,325,2.3076923076923075,-0.3076923076923077,RUB\n"
    );

    // ISO weeks: 2026-03-01 is a Sunday (week 9), 03-02 and 03-03 are in week 10.
    let q = query("2026-03-01", "2026-03-03", GroupBy::Week, Model::LastTouch);
    let r = report(store, &q, today()).await;
    let got: Vec<_> = r.rows.iter().map(counts).collect();
    assert_eq!(
        got,
        [
            ("2026-W09", [0, 0, 0, 0, 0], [0.0, 0.0, 0.0, 0.0]),
            ("2026-W10", [3, 2, 1, 2, 2], [1500.0, 650.0, 2.0, 1500.0])
        ]
    );

    // Months: March as above; April: Boris's 300 (last touch vk, credited to direct).
    let q = query("2026-03-01", "2026-04-30", GroupBy::Month, Model::LastTouch);
    let r = report(store, &q, today()).await;
    let got: Vec<_> = r.rows.iter().map(counts).collect();
    assert_eq!(
        got,
        [
            ("2026-03", [3, 2, 1, 2, 2], [1500.0, 650.0, 2.0, 1500.0]),
            ("2026-04", [0, 0, 0, 0, 1], [300.0, 0.0, 1.0, 300.0])
        ]
    );

    // Campaigns: `-` gathers Clara (direct), the direct credit and yandex's spend without a
    // campaign: ROAS 300 / 50 = 6, ROMI (90 − 50) / 50 = 0.8.
    let q = query("2026-03-01", "2026-04-30", GroupBy::Campaign, Model::LastTouch);
    let r = report(store, &q, today()).await;
    let got: Vec<_> = r.rows.iter().map(|row| (counts(row), row.roas, row.romi)).collect();
    assert_eq!(
        got,
        [
            (("-", [1, 0, 0, 0, 0], [0.0, 50.0, 1.0, 300.0]), Some(6.0), Some(0.8)),
            (("autumn", [1, 1, 1, 1, 3], [1800.0, 300.0, 2.0, 1500.0]), Some(5.0), Some(0.5)),
            (("brand", [1, 1, 0, 1, 0], [0.0, 300.0, 0.0, 0.0]), Some(0.0), Some(-1.0)),
        ]
    );
}

#[tokio::test]
async fn reports_read_final_snapshots_for_rolled_up_days_and_live_aggregates_otherwise() {
    let (embedded, clock) = fixture().await;
    let store = embedded.store.as_ref();
    let settings = settings();
    let q = query("2026-03-01", "2026-04-30", GroupBy::Channel, Model::Linear);
    let live = report(store, &q, today()).await;

    // Rolled up (final: before today), the same report comes out of the snapshots.
    let days = q.days();
    let outcome = roll_up(store, &settings, RollupKind::Days(days.clone()), clock.now_for_test()).await.unwrap();
    assert_eq!(outcome.days, days);
    assert!(outcome.items_read > 0);
    let snapshot = kpi_snapshots::get(store, date(2026, 3, 3)).await.unwrap().unwrap();
    assert!(snapshot.is_final);
    assert_eq!(snapshot.inputs, kpi::day_inputs(store, date(2026, 3, 3)).await.unwrap());
    assert_eq!(report(store, &q, today()).await, live);

    // A late lead on 03-02 after the day was made final: the final snapshot stands until the
    // day is restated ...
    let mut late = Counters::default();
    late.daily(date(2026, 3, 2), Metric::Leads, &Dimensions::new("google", Some("brand")), 1.0);
    write(store, late).await;
    let leads = |r: &KpiReport| r.totals.leads;
    assert_eq!(leads(&report(store, &q, today()).await), 3, "a final snapshot stands for its day");
    // ... which rolling that day up again does.
    roll_up(store, &settings, RollupKind::Days(vec![date(2026, 3, 2)]), clock.now_for_test()).await.unwrap();
    assert_eq!(leads(&report(store, &q, today()).await), 4);

    // Today is always live, even with an hourly snapshot: a lead after the snapshot counts.
    let q = query("2026-03-03", "2026-03-03", GroupBy::Day, Model::LastTouch);
    let on_the_day = date(2026, 3, 3);
    clock.set("2026-03-03T10:00:00Z".parse().unwrap());
    let outcome = roll_up(store, &settings, RollupKind::Hourly, clock.now_for_test()).await.unwrap();
    assert_eq!(outcome.days, [on_the_day]);
    assert!(!kpi_snapshots::get(store, on_the_day).await.unwrap().unwrap().is_final);
    let mut later = Counters::default();
    later.daily(on_the_day, Metric::Leads, &Dimensions::direct(), 1.0);
    write(store, later).await;
    assert_eq!(leads(&report(store, &q, on_the_day).await), 2, "today is read live");
    // The next day the hourly (not final) snapshot of 03-03 is still passed over for the live day.
    assert_eq!(leads(&report(store, &q, date(2026, 3, 4)).await), 2);
}

#[tokio::test]
async fn the_rollup_chooses_its_days_and_their_finality() {
    let mut settings = settings();
    settings.kpi.restate_days = 7;
    let today = date(2026, 3, 10);
    assert_eq!(days_of(&RollupKind::Hourly, &settings, today), [(today, false)]);
    // Nightly: yesterday (03-09) and the 7 days before it, 03-02..03-09, all final.
    let nightly = days_of(&RollupKind::Nightly, &settings, today);
    let expected: Vec<(Date, bool)> = (2..=9).map(|day| (date(2026, 3, day), true)).collect();
    assert_eq!(nightly, expected);
    // Given days: sorted, once each, final before today, today not final, the future skipped.
    let given = RollupKind::Days(vec![date(2026, 3, 11), today, date(2026, 3, 1), date(2026, 3, 1)]);
    assert_eq!(days_of(&given, &settings, today), [(date(2026, 3, 1), true), (today, false)]);

    // The nightly run at 02:30 Moscow time on 03-10 snapshots exactly those days, finally.
    let clock = Arc::new(SimulatedClock::starting_at("2026-03-09T23:30:00Z".parse().unwrap()));
    let embedded = Embedded::in_memory(clock.clone());
    let store = embedded.store.as_ref();
    let outcome = roll_up(store, &settings, RollupKind::Nightly, clock.now_for_test()).await.unwrap();
    assert_eq!(outcome.days, expected.iter().map(|(day, _)| *day).collect::<Vec<_>>());
    for (day, _) in &expected {
        assert!(kpi_snapshots::get(store, *day).await.unwrap().unwrap().is_final, "{day}");
    }
    assert!(kpi_snapshots::get(store, today).await.unwrap().is_none(), "today is not rolled up nightly");
    assert!(kpi_snapshots::get(store, date(2026, 3, 1)).await.unwrap().is_none(), "nor before the restated days");
}

#[tokio::test]
async fn spend_upserts_per_day_channel_and_campaign() {
    let clock = Arc::new(SimulatedClock::starting_at(at("2026-03-05")));
    let embedded = Embedded::in_memory(clock);
    let store = embedded.store.as_ref();
    let first = [spend_row("2026-03-02", "vk", Some("autumn"), 100.123), spend_row("2026-03-02", "vk", None, 5.0)];
    spend::upsert(store, &first, at("2026-03-03")).await.unwrap();
    // The same key again replaces the amount; nothing is added up.
    spend::upsert(store, &[spend_row("2026-03-02", "vk", Some("autumn"), 80.0)], at("2026-03-04")).await.unwrap();
    let stored = spend::spend_on(store, date(2026, 3, 2)).await.unwrap();
    // In sort-key order: `vk#-` before `vk#autumn`.
    assert_eq!(stored, [spend_row("2026-03-02", "vk", None, 5.0), spend_row("2026-03-02", "vk", Some("autumn"), 80.0)]);
    spend::upsert(store, &first[..1], at("2026-03-04")).await.unwrap();
    assert_eq!(spend::spend_on(store, date(2026, 3, 2)).await.unwrap()[1].amount, 100.12, "rounded to cents");
    assert!(spend::spend_on(store, date(2026, 3, 3)).await.unwrap().is_empty());
    let inputs: DayInputs = kpi::day_inputs(store, date(2026, 3, 2)).await.unwrap();
    assert_eq!(inputs.spend.len(), 2);
}

#[tokio::test]
async fn cohorts_are_read_for_the_range_months_and_followed_at_most_twelve_months() {
    let clock = Arc::new(SimulatedClock::starting_at(at("2027-06-01")));
    let embedded = Embedded::in_memory(clock);
    let store = embedded.store.as_ref();
    let mut c = Counters::default();
    let jan = date(2026, 1, 1);
    for month in 1..=12 {
        c.cohort_order(jan, date(2026, month, 15), true, 10.0);
    }
    c.cohort_order(jan, date(2027, 1, 15), true, 10.0);
    c.cohort_order(jan, date(2027, 2, 15), true, 10.0);
    c.cohort_order(date(2025, 12, 1), date(2026, 1, 15), true, 99.0);
    write(store, c).await;
    let rows = aggregates::cohorts(store, date(2026, 1, 20), date(2027, 5, 3)).await.unwrap();
    // January 2026 followed through January 2027 (month 12), not February 2027; December 2025
    // lies before the range.
    assert_eq!(rows.len(), 13);
    assert!(rows.iter().all(|row| row.cohort == jan && row.customers == 1 && row.revenue == 10.0));
    assert_eq!(rows.last().unwrap().month, date(2027, 1, 1));
    let q = query("2026-01-20", "2026-03-31", GroupBy::Month, Model::LastTouch);
    let inputs = kpi::KpiInputs { cohorts: rows, ..Default::default() };
    let r = kpi::compute(&inputs, &q, &settings());
    // Up to the range's last month: months 0..2, each with the one customer active, 10 a month.
    assert_eq!(r.cohorts[0].retention, [Some(1.0); 3]);
    assert_eq!(r.cohorts[0].ltv, [10.0, 20.0, 30.0]);
    assert_eq!(r.ltv_cac, None, "no spend, no CAC");
}

#[test]
fn a_query_reads_its_defaults_and_names_the_bad_field() {
    let today = date(2026, 3, 31);
    let params = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let q = KpiQuery::parse(&params(&[]), today).unwrap();
    assert_eq!(q, query("2026-03-02", "2026-03-31", GroupBy::Day, Model::LastTouch));
    let q = KpiQuery::parse(
        &params(&[
            ("from", "2025-03-31"),
            ("to", "2026-03-31"),
            ("group_by", "channel"),
            ("attribution", "time_decay"),
        ]),
        today,
    )
    .unwrap();
    assert_eq!(q.days().len(), 366);
    assert_eq!((q.group_by, q.attribution), (GroupBy::Channel, Model::TimeDecay));
    for (pairs, field) in [
        (vec![("from", "2026-3-1")], "from"),
        (vec![("to", "yesterday")], "to"),
        (vec![("from", "2026-03-05"), ("to", "2026-03-04")], "from"),
        (vec![("from", "2025-03-30"), ("to", "2026-03-31")], "to"),
        (vec![("group_by", "year")], "group_by"),
        (vec![("attribution", "magic")], "attribution"),
    ] {
        let error = KpiQuery::parse(&params(&pairs), today).unwrap_err();
        assert_eq!(error.field, field, "{pairs:?}: {error:?}");
    }
}

/// `SimulatedClock::now` through the port, without importing the trait at every call.
trait NowForTest {
    fn now_for_test(&self) -> Timestamp;
}

impl NowForTest for Arc<SimulatedClock> {
    fn now_for_test(&self) -> Timestamp {
        voronka_domain::ports::Clock::now(self.as_ref())
    }
}

/// What the rollup reads depends on the days and their channels and campaigns, not on how many
/// events were counted: ten purchases and ten thousand over the same touches read the same items.
#[tokio::test]
async fn the_rollup_reads_as_many_items_for_ten_thousand_events_as_for_ten() {
    let mut items_read = Vec::new();
    for events in [10, 10_000] {
        let clock = Arc::new(SimulatedClock::starting_at(at("2026-03-04")));
        let embedded = Embedded::in_memory(clock.clone());
        let store = embedded.store.as_ref();
        let mut counters = Counters::default();
        let channels = [("google", "brand"), ("vk", "autumn"), ("yandex", "search")];
        for i in 0..events {
            let (channel, campaign) = channels[i % channels.len()];
            let mut buyer = contact(&format!("c{i}"), vec![touch("2026-03-02", channel, campaign)]);
            let order = json!({"order_id": format!("o{i}"), "revenue": 100});
            let purchase = event(&format!("e{i}"), EventType::Purchase, &buyer.id.clone(), "2026-03-03", order);
            step(&mut counters, &mut buyer, purchase, Some(LifecycleStage::Customer));
        }
        write(store, counters).await;
        let outcome =
            roll_up(store, &settings(), RollupKind::Days(vec![date(2026, 3, 3)]), clock.now_for_test()).await.unwrap();
        let q = query("2026-03-03", "2026-03-03", GroupBy::Day, Model::LastTouch);
        assert_eq!(report(store, &q, today()).await.totals.orders, events as u64);
        items_read.push(outcome.items_read);
    }
    // Orders, revenue, new customers and stage changes for 3 channels (12) + 5 models × 3 (15).
    assert_eq!(items_read, [27, 27]);
}
