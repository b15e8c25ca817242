//! The KPIs from aggregates against the same KPIs recomputed from the exported raw events by a
//! second, straightforward implementation (issue 11, correctness).
//!
//! A small demo runs into a data folder, and the test adds three people who come back through
//! other channels before they buy (`add_people_who_switch_channels`: the demo's returning
//! visitors never switch, so a share given to the wrong touch would not show). Then
//! `voronka export events|contacts --format jsonl` and `voronka kpi --json` run as a user would
//! run them, on that folder. The test rebuilds every contact's touches from the exported
//! `form_submitted` events, derives each touch's channel with its own rule, and recomputes per
//! channel: leads, MQLs, SQLs and new customers (by the first touch), orders and revenue (by the
//! last touch), the credit (conversions and revenue) of all five attribution models over the
//! lookback, spend (what the demo posted), CAC and ROAS; the funnel; and each month's cohort
//! (customers, revenue to date). Each is asserted equal to the report's for every model, and
//! `GET /v1/kpi` must answer the same report as `voronka kpi --json`.
//!
//! What the event log does not carry, and where the test takes it from instead:
//! - a form submission's raw tracking fields (`utm_*`, referrer, click ids): `form_submitted`
//!   carries only the channel Voronka derived (and the campaign). The contacts export keeps them
//!   in full for each contact's first and last touch, so the test looks the touch up there (by
//!   contact and time) and derives the channel itself, asserting the logged one agrees. A touch
//!   that is neither a contact's first nor its last (only the added people's middle visits) has
//!   its raw fields nowhere, and takes the event's `channel` property; its time and existence
//!   still come from the log, not from the contact's stored touches.
//! - whether a submission recorded a touch: the event does not say; every accepted one here
//!   carries a landing page, which makes it a touch.
//! - spend: not an event; the test sums what the demo posted.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use support::inprocess::TempFolder;
use voronka_local::demo::{self, DemoOptions};

const TOLERANCE: f64 = 1e-6;
/// The attribution settings' defaults, which `shared/campaigns/settings.toml` (the demo's) does
/// not change: touches up to 30 days before a purchase count, time decay halves every 7 days.
const LOOKBACK: SignedDuration = SignedDuration::from_hours(24 * 30);
const HALF_LIFE: SignedDuration = SignedDuration::from_hours(24 * 7);
const MODELS: [&str; 5] = ["first_touch", "last_touch", "linear", "position_based", "time_decay"];

fn voronka(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_voronka")).args(args).output().expect("voronka runs");
    assert!(output.status.success(), "voronka {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

fn timestamp(value: &Value) -> Timestamp {
    value.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("a timestamp: {value}"))
}

/// The documented rule, written again: the lowercased `utm_source` when given; else the ad
/// platform of a click id; else organic search, a referral or direct, judged from the referrer.
fn channel_of(raw: &Value) -> String {
    let text = |name: &str| raw[name].as_str().map(str::trim).filter(|s| !s.is_empty());
    if let Some(source) = text("source") {
        return source.to_lowercase();
    }
    let platforms =
        [("fbclid", "facebook"), ("gclid", "google"), ("msclkid", "bing"), ("ttclid", "tiktok"), ("yclid", "yandex")];
    if let Some(click_ids) = raw["click_ids"].as_object() {
        // With several click ids the first by name wins, whichever platform that is.
        if let Some((_, platform)) = platforms.iter().find(|(name, _)| click_ids.contains_key(*name)) {
            return platform.to_string();
        }
    }
    let host = text("referrer").and_then(|referrer| {
        let (_, rest) = referrer.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?;
        let host = authority.rsplit('@').next()?.split(':').next()?;
        (!host.is_empty()).then(|| host.to_lowercase())
    });
    match host {
        None => "direct".into(),
        Some(host)
            if ["google.", "yandex.", "bing.", "duckduckgo.", "search.yahoo."].iter().any(|e| host.contains(e)) =>
        {
            "organic".into()
        }
        Some(_) => "referral".into(),
    }
}

/// One visit that brought a person to a form, as the test rebuilt it.
#[derive(Debug, Clone)]
struct Touch {
    at: Timestamp,
    channel: String,
}

/// Every touch of one person, oldest first.
#[derive(Debug, Default)]
struct Person {
    touches: Vec<Touch>,
}

impl Person {
    /// The first touch the person had at `at` ("direct" before there was one).
    fn first_channel_at(&self, at: Timestamp) -> String {
        self.touches.first().filter(|t| t.at <= at).map_or("direct".into(), |t| t.channel.clone())
    }

    /// The latest touch at or before `at`.
    fn last_channel_at(&self, at: Timestamp) -> String {
        self.touches.iter().rev().find(|t| t.at <= at).map_or("direct".into(), |t| t.channel.clone())
    }

    /// Touches a conversion at `at` credits: within the lookback, oldest first.
    fn touches_before(&self, at: Timestamp) -> Vec<&Touch> {
        self.touches.iter().filter(|t| t.at <= at && at.duration_since(t.at) <= LOOKBACK).collect()
    }
}

/// Each touch's share of one conversion under `model`; they sum to 1.
fn shares(model: &str, touches: &[&Touch], at: Timestamp) -> Vec<f64> {
    let n = touches.len();
    match model {
        "first_touch" => (0..n).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect(),
        "last_touch" => (0..n).map(|i| if i + 1 == n { 1.0 } else { 0.0 }).collect(),
        "linear" => vec![1.0 / n as f64; n],
        "position_based" => match n {
            1 => vec![1.0],
            2 => vec![0.5, 0.5],
            _ => (0..n).map(|i| if i == 0 || i + 1 == n { 0.4 } else { 0.2 / (n - 2) as f64 }).collect(),
        },
        "time_decay" => {
            let weights: Vec<f64> = touches
                .iter()
                .map(|t| 0.5f64.powf(at.duration_since(t.at).as_secs_f64() / HALF_LIFE.as_secs_f64()))
                .collect();
            let total: f64 = weights.iter().sum();
            weights.iter().map(|w| w / total).collect()
        }
        other => panic!("no model {other}"),
    }
}

#[derive(Debug, Default, Clone)]
struct Channel {
    leads: f64,
    mql: f64,
    sql: f64,
    customers: f64,
    orders: f64,
    revenue: f64,
    spend: f64,
    /// Per model: conversions, revenue.
    credit: BTreeMap<&'static str, (f64, f64)>,
}

fn close(what: &str, actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= TOLERANCE * expected.abs().max(1.0),
        "{what}: the report says {actual}, the events say {expected}"
    );
}

fn close_option(what: &str, actual: &Value, expected: Option<f64>) {
    match (actual.as_f64(), expected) {
        (Some(actual), Some(expected)) => close(what, actual, expected),
        (None, None) => {}
        (actual, expected) => panic!("{what}: the report says {actual:?}, the events say {expected:?}"),
    }
}

#[test]
fn kpis_from_aggregates_equal_kpis_recomputed_from_exported_events() {
    let folder = TempFolder::new("kpi-cross-check");
    let data_dir = folder.path().join("data");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let report = runtime
        .block_on(demo::run(DemoOptions {
            seed: 11,
            visitors: 300,
            days: 10,
            data_dir: Some(data_dir.clone()),
            dashboard_dir: None,
            show_progress: false,
            faults: None,
        }))
        .expect("the demo runs");
    let demo_kpi = report.kpi.as_ref().expect("the demo ends with a KPI report");
    let (from, to) = (demo_kpi.from.to_string(), demo_kpi.to.to_string());
    let dir = data_dir.to_str().unwrap();
    // The range's last day: after the demo's last visitor and not rolled up yet, so what these
    // people do shows in the live aggregates the report reads.
    let last_day: Timestamp = format!("{to}T01:00:00Z").parse().unwrap();
    runtime.block_on(add_people_who_switch_channels(&data_dir, last_day));

    let events = json_lines(&voronka(&[
        "export",
        "events",
        "--format",
        "jsonl",
        "--from",
        &from,
        "--to",
        &to,
        "--data-dir",
        dir,
    ]));
    let contacts = json_lines(&voronka(&["export", "contacts", "--format", "jsonl", "--data-dir", dir]));
    assert!(events.len() > 1000, "the demo's events are exported: {}", events.len());

    // The raw tracking fields of each contact's first and last touch, by contact and time: the
    // one place an export keeps them (see the module's comment).
    let mut raw_touches: BTreeMap<(String, Timestamp), &Value> = BTreeMap::new();
    for contact in &contacts {
        let id = contact["id"].as_str().expect("a contact id");
        for raw in [&contact["first_touch"], &contact["last_touch"]] {
            if raw.is_object() {
                raw_touches.insert((id.to_string(), timestamp(&raw["at"])), raw);
            }
        }
    }

    let mut ordered: Vec<&Value> = events.iter().collect();
    ordered.sort_by_key(|e| timestamp(&e["occurred_at"]));

    // Touches, from the log: every accepted form submission is one.
    let mut people: BTreeMap<String, Person> = BTreeMap::new();
    let (mut derived_here, mut taken_from_event) = (0, 0);
    for event in ordered.iter().filter(|e| e["type"] == "form_submitted") {
        let subject = event["subject"].as_str().unwrap().to_string();
        let at = timestamp(&event["occurred_at"]);
        let logged_channel = event["properties"]["channel"].as_str().expect("form_submitted has a channel");
        let channel = match raw_touches.get(&(subject.clone(), at)) {
            Some(raw) => {
                derived_here += 1;
                let channel = channel_of(raw);
                assert_eq!(channel, logged_channel, "the channel of {raw} by the documented rule");
                channel
            }
            None => {
                taken_from_event += 1;
                logged_channel.to_string()
            }
        };
        people.entry(subject).or_default().touches.push(Touch { at, channel });
    }
    // Only the added people's middle visits (one of the second person's, two of the third's).
    assert!(
        derived_here > 50 && taken_from_event <= 3,
        "touches whose channel the test derived: {derived_here}; taken from the event: {taken_from_event}"
    );
    let multi_touch = people.values().filter(|p| p.touches.len() > 1).count();
    assert!(multi_touch > 3, "some people have several touches: {multi_touch}");

    // The second implementation, from the events in the order they happened.
    let nobody = Person::default();
    let mut channels: BTreeMap<String, Channel> = BTreeMap::new();
    let mut cohort_month: BTreeMap<String, String> = BTreeMap::new();
    let mut cohorts: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let (mut leads, mut mql, mut sql, mut customers) = (0.0, 0.0, 0.0, 0.0);
    // Purchases whose credit the models share among several channels, and among three or more
    // touches (position-based's middle share).
    let (mut across_channels, mut three_or_more) = (0, 0);
    for event in ordered {
        let subject = event["subject"].as_str().unwrap();
        let person = people.get(subject).unwrap_or(&nobody);
        let at = timestamp(&event["occurred_at"]);
        match event["type"].as_str().unwrap() {
            "lead_created" => {
                channels.entry(person.first_channel_at(at)).or_default().leads += 1.0;
                leads += 1.0;
            }
            "became_mql" => {
                channels.entry(person.first_channel_at(at)).or_default().mql += 1.0;
                mql += 1.0;
            }
            "became_sql" => {
                channels.entry(person.first_channel_at(at)).or_default().sql += 1.0;
                sql += 1.0;
            }
            "purchase" => {
                let revenue = event["properties"]["revenue"].as_f64().unwrap_or(0.0);
                let month = event["date"].as_str().expect("an exported event has its day")[..7].to_string();
                let cohort = match cohort_month.get(subject) {
                    Some(cohort) => cohort.clone(),
                    None => {
                        cohort_month.insert(subject.to_string(), month.clone());
                        channels.entry(person.first_channel_at(at)).or_default().customers += 1.0;
                        customers += 1.0;
                        cohorts.entry(month.clone()).or_default().0 += 1.0;
                        month
                    }
                };
                cohorts.entry(cohort).or_default().1 += revenue;
                let last = channels.entry(person.last_channel_at(at)).or_default();
                last.orders += 1.0;
                last.revenue += revenue;
                let touches = person.touches_before(at);
                if touches.iter().any(|t| t.channel != touches[0].channel) {
                    across_channels += 1;
                }
                if touches.len() >= 3 {
                    three_or_more += 1;
                }
                for model in MODELS {
                    if touches.is_empty() {
                        let credit = channels.entry("direct".into()).or_default().credit.entry(model).or_default();
                        credit.0 += 1.0;
                        credit.1 += revenue;
                        continue;
                    }
                    for (touch, share) in touches.iter().zip(shares(model, &touches, at)) {
                        let credit =
                            channels.entry(touch.channel.clone()).or_default().credit.entry(model).or_default();
                        credit.0 += share;
                        credit.1 += revenue * share;
                    }
                }
            }
            _ => {}
        }
    }
    for (channel, amount) in &report.spend.by_channel {
        channels.entry(channel.clone()).or_default().spend += amount;
    }
    assert!(customers > 10.0 && leads > 10.0, "the demo makes leads ({leads}) and customers ({customers})");
    assert!(mql > 0.0, "the demo makes MQLs");
    assert!(
        across_channels >= 3 && three_or_more >= 2,
        "purchases credit several channels ({across_channels}) and 3+ touches ({three_or_more})"
    );

    for model in MODELS {
        let text = voronka(&[
            "kpi",
            "--json",
            "--group-by",
            "channel",
            "--attribution",
            model,
            "--from",
            &from,
            "--to",
            &to,
            "--data-dir",
            dir,
        ]);
        let kpi: Value = serde_json::from_str(&text).expect("the report is JSON");
        let funnel = |field: &str| kpi["funnel"][field].as_f64().unwrap();
        close(&format!("{model}: funnel leads"), funnel("leads"), leads);
        close(&format!("{model}: funnel mql"), funnel("mql"), mql);
        close(&format!("{model}: funnel sql"), funnel("sql"), sql);
        close(&format!("{model}: funnel customers"), funnel("customers"), customers);
        let rows: BTreeMap<String, &Value> =
            kpi["rows"].as_array().unwrap().iter().map(|r| (r["key"].as_str().unwrap().to_string(), r)).collect();
        // Every model's credit per channel, whichever model the rows use (campaigns summed).
        let mut by_model: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
        for entry in kpi["attribution_by_model"].as_array().unwrap() {
            let key = (entry["model"].as_str().unwrap().to_string(), entry["channel"].as_str().unwrap().to_string());
            let sum = by_model.entry(key).or_default();
            sum.0 += entry["conversions"].as_f64().unwrap();
            sum.1 += entry["revenue"].as_f64().unwrap();
        }
        let zero = Value::Null;
        let mut names: Vec<&String> =
            channels.keys().chain(rows.keys()).chain(by_model.keys().map(|(_, channel)| channel)).collect();
        names.sort();
        names.dedup();
        for name in names {
            let expected = channels.get(name).cloned().unwrap_or_default();
            let row = rows.get(name).copied().unwrap_or(&zero);
            let number = |field: &str| row[field].as_f64().unwrap_or(0.0);
            let what = |field: &str| format!("{model}: {name} {field}");
            close(&what("leads"), number("leads"), expected.leads);
            close(&what("mql"), number("mql"), expected.mql);
            close(&what("sql"), number("sql"), expected.sql);
            close(&what("customers"), number("customers"), expected.customers);
            close(&what("orders"), number("orders"), expected.orders);
            close(&what("revenue"), number("revenue"), expected.revenue);
            close(&what("spend"), number("spend"), expected.spend);
            let (conversions, revenue) = expected.credit.get(model).copied().unwrap_or_default();
            close(&what("attributed_conversions"), number("attributed_conversions"), conversions);
            close(&what("attributed_revenue"), number("attributed_revenue"), revenue);
            let ratio = |n: f64, d: f64| (d > 0.0).then(|| n / d);
            close_option(&what("cac"), &row["cac"], ratio(expected.spend, expected.customers));
            close_option(&what("roas"), &row["roas"], ratio(revenue, expected.spend));
            for other in MODELS {
                let (conversions, revenue) = expected.credit.get(other).copied().unwrap_or_default();
                let reported = by_model.get(&(other.to_string(), name.clone())).copied().unwrap_or_default();
                close(&format!("{model}: attribution_by_model {other} {name} conversions"), reported.0, conversions);
                close(&format!("{model}: attribution_by_model {other} {name} revenue"), reported.1, revenue);
            }
        }
        let spent: f64 = channels.values().map(|c| c.spend).sum();
        assert!(spent > 0.0, "the demo's shop spends on ads");
        close(&format!("{model}: total spend"), kpi["totals"]["spend"].as_f64().unwrap(), spent);

        // The cohorts of the range's months: customers by the month of their first order, and
        // what they spent to date (the last month's LTV times the customers).
        let reported: BTreeMap<String, (f64, f64)> = kpi["cohorts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let customers = row["customers"].as_f64().unwrap();
                let ltv = row["ltv"].as_array().and_then(|l| l.last()).and_then(Value::as_f64).unwrap_or(0.0);
                (row["cohort"].as_str().unwrap().to_string(), (customers, ltv * customers))
            })
            .collect();
        assert_eq!(reported.keys().collect::<Vec<_>>(), cohorts.keys().collect::<Vec<_>>(), "{model}: cohort months");
        for (month, (customers, revenue)) in &cohorts {
            close(&format!("{model}: cohort {month} customers"), reported[month].0, *customers);
            close(&format!("{model}: cohort {month} revenue"), reported[month].1, *revenue);
        }

        // `GET /v1/kpi` on the same folder answers the same report as the command line.
        let uri = format!("/v1/kpi?from={from}&to={to}&group_by=channel&attribution={model}");
        let api = runtime.block_on(get_kpi(&data_dir, &uri));
        for part in ["rows", "totals", "funnel", "attribution_by_model", "cohorts", "uplift"] {
            assert_eq!(api[part], kpi[part], "{model}: GET /v1/kpi and voronka kpi disagree on {part}");
        }
    }
}

/// People who come back through other channels before they buy, each through the same form as
/// the demo's visitors and a purchase the shop reports, signed. The demo's returning visitors
/// come back the way they first came, so without these a share given to the wrong touch would
/// land on the same channel and go unseen; and their visits take every branch of the channel
/// rule the demo does not (an uppercase `utm_source`, a click id alone), and two to four touches,
/// so position-based gives the touches between first and last their 20%.
async fn add_people_who_switch_channels(data_dir: &std::path::Path, start: Timestamp) {
    use std::net::{IpAddr, Ipv4Addr};
    use tower::ServiceExt;
    use voronka_domain::ports::SimulatedClock;

    let clock = std::sync::Arc::new(SimulatedClock::starting_at(start));
    let stack = voronka_local::stack::Stack::open(voronka_local::stack::StackOptions {
        data_dir: Some(data_dir.to_path_buf()),
        metering: None,
        campaigns_dir: None,
        public_base_url: None,
        clock: clock.clone(),
        ids: voronka_local::stack::Stack::default_ids(),
        faults: None,
    })
    .expect("the stack opens on the demo's folder");
    let app = voronka_local::serve::app(stack.state.clone(), stack.outbox.dir().to_path_buf());
    let call = |request: http::Request<axum::body::Body>, ip: IpAddr| {
        let app = app.clone();
        async move {
            let mut request = request;
            request.extensions_mut().insert(lead_capture::ClientIp(ip));
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
        }
    };
    let visits: [&[(&str, &str)]; 4] = [
        &[("utm_source", "VK"), ("utm_medium", "social"), ("utm_campaign", "autumn_sale")],
        &[("referrer", "https://www.Google.com/search?q=shop")],
        &[("gclid", "cross-check-click")],
        &[("referrer", "https://blog.example.org/review")],
    ];
    for person in 0..3usize {
        let email = format!("switcher{person}@example.com");
        for step in 0..person + 2 {
            clock.advance(SignedDuration::from_mins(60));
            let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, (100 + person * 10 + step) as u8));
            let (status, form) =
                call(http::Request::get("/v1/forms/newsletter").body(axum::body::Body::empty()).unwrap(), ip).await;
            assert_eq!(status, http::StatusCode::OK, "the form is described: {form}");
            clock.advance(SignedDuration::from_secs(40));
            let mut fields = serde_json::json!({
                "_rt": form["render_token"], "email": email, "first_name": "Sam", "consent": "on",
                "landing_page": "https://shop.example/garden",
            });
            for (name, value) in visits[(person + step) % visits.len()] {
                fields[*name] = Value::from(*value);
            }
            let request = http::Request::post("/v1/forms/newsletter/submissions")
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(fields.to_string()))
                .unwrap();
            let (status, answer) = call(request, ip).await;
            assert_eq!(status, http::StatusCode::CREATED, "the submission is taken: {answer}");
            voronka_local::workers::tick(&stack).await.expect("the workers run");
        }
        clock.advance(SignedDuration::from_mins(30));
        let body =
            serde_json::json!({"events": [{"event_id": format!("switcher-{person}:purchase"), "type": "purchase",
            "email": email, "properties": {"order_id": format!("switcher-{person}"), "revenue": 4321 + 1000 * person,
            "currency": "RUB"}}]})
            .to_string();
        let request = http::Request::post("/v1/events")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                voronka_domain::signing::EVENTS_SIGNATURE_HEADER,
                voronka_domain::signing::sign_body(stack.state.secrets.events_key(), body.as_bytes()),
            )
            .body(axum::body::Body::from(body))
            .unwrap();
        let (status, answer) = call(request, IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10))).await;
        assert_eq!(
            (status, answer["accepted"].as_u64()),
            (http::StatusCode::ACCEPTED, Some(1)),
            "the purchase: {answer}"
        );
        voronka_local::workers::tick(&stack).await.expect("the workers run");
    }
}

/// `GET /v1/kpi` through the router `voronka serve` runs, with the folder's admin key.
async fn get_kpi(data_dir: &std::path::Path, uri: &str) -> Value {
    use tower::ServiceExt;
    let stack = voronka_local::stack::Stack::open(voronka_local::stack::StackOptions {
        data_dir: Some(data_dir.to_path_buf()),
        metering: None,
        campaigns_dir: None,
        public_base_url: None,
        clock: std::sync::Arc::new(voronka_domain::ports::SystemClock),
        ids: voronka_local::stack::Stack::default_ids(),
        faults: None,
    })
    .expect("the stack opens on the demo's folder");
    let app = voronka_local::serve::app(stack.state.clone(), stack.outbox.dir().to_path_buf());
    let mut request = http::Request::get(uri)
        .header(http::header::AUTHORIZATION, format!("Bearer {}", stack.admin_key))
        .body(axum::body::Body::empty())
        .unwrap();
    request.extensions_mut().insert(lead_capture::ClientIp("127.0.0.1".parse().unwrap()));
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    serde_json::from_slice(&bytes).expect("the report is JSON")
}
