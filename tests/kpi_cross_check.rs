//! The KPIs from aggregates against the same KPIs recomputed from the exported raw events and
//! contacts by a second, straightforward implementation (issue 11, correctness).
//!
//! A small demo runs into a data folder; `voronka export events|contacts --format jsonl` and
//! `voronka kpi --json` run as a user would run them, on that folder. The test then counts, per
//! channel, leads and new customers (by the first touch the contact had when the event happened),
//! orders and revenue (by the last touch it had then), the credit of the last-touch and linear
//! models (touches within the lookback before the purchase), spend (what the demo posted), CAC
//! and ROAS, and the funnel's leads and customers, and asserts each equals the report's; and
//! that `GET /v1/kpi` answers the same report as `voronka kpi --json`.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use support::inprocess::TempFolder;
use voronka_local::demo::{self, DemoOptions};

const TOLERANCE: f64 = 1e-6;

fn voronka(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_voronka")).args(args).output().expect("voronka runs");
    assert!(output.status.success(), "voronka {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// A touch as the contacts export carries it.
#[derive(Debug, Clone)]
struct Touch {
    at: Timestamp,
    channel: String,
}

fn touch(value: &Value) -> Option<Touch> {
    Some(Touch { at: value["at"].as_str()?.parse().ok()?, channel: value["channel"].as_str()?.to_string() })
}

/// What a contact's export says about where they came from.
struct Person {
    first_touch: Option<Touch>,
    touches: Vec<Touch>,
}

impl Person {
    /// The first touch as it stood at `at` ("direct" before there was one).
    fn first_channel_at(&self, at: Timestamp) -> String {
        match &self.first_touch {
            Some(t) if t.at <= at => t.channel.clone(),
            _ => "direct".into(),
        }
    }

    /// The latest touch at or before `at`.
    fn last_channel_at(&self, at: Timestamp) -> String {
        self.touches.iter().filter(|t| t.at <= at).max_by_key(|t| t.at).map_or("direct".into(), |t| t.channel.clone())
    }

    /// Touches a conversion at `at` credits: within the lookback, oldest first.
    fn touches_before(&self, at: Timestamp, lookback: SignedDuration) -> Vec<&Touch> {
        let mut touches: Vec<&Touch> =
            self.touches.iter().filter(|t| t.at <= at && at.duration_since(t.at) <= lookback).collect();
        touches.sort_by_key(|t| t.at);
        touches
    }
}

#[derive(Debug, Default, Clone)]
struct Channel {
    leads: f64,
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
            days: 4,
            data_dir: Some(data_dir.clone()),
            dashboard_dir: None,
            show_progress: false,
        }))
        .expect("the demo runs");
    let demo_kpi = report.kpi.as_ref().expect("the demo ends with a KPI report");
    let (from, to) = (demo_kpi.from.to_string(), demo_kpi.to.to_string());
    let dir = data_dir.to_str().unwrap();

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

    let people: BTreeMap<String, Person> = contacts
        .iter()
        .map(|c| {
            let person = Person {
                first_touch: touch(&c["first_touch"]),
                touches: c["touches"].as_array().into_iter().flatten().filter_map(touch).collect(),
            };
            (c["id"].as_str().unwrap().to_string(), person)
        })
        .collect();

    // The second implementation, from the events in the order they happened.
    let lookback = SignedDuration::from_hours(24 * 30);
    let mut channels: BTreeMap<String, Channel> = BTreeMap::new();
    let mut bought_before: BTreeMap<String, bool> = BTreeMap::new();
    let mut ordered: Vec<&Value> = events.iter().collect();
    ordered.sort_by_key(|e| e["occurred_at"].as_str().unwrap().parse::<Timestamp>().unwrap());
    let (mut leads, mut customers) = (0.0, 0.0);
    for event in ordered {
        let subject = event["subject"].as_str().unwrap();
        let Some(person) = people.get(subject) else { continue };
        let at: Timestamp = event["occurred_at"].as_str().unwrap().parse().unwrap();
        match event["type"].as_str().unwrap() {
            "lead_created" => {
                channels.entry(person.first_channel_at(at)).or_default().leads += 1.0;
                leads += 1.0;
            }
            "purchase" => {
                let revenue = event["properties"]["revenue"].as_f64().unwrap_or(0.0);
                if !bought_before.insert(subject.to_string(), true).unwrap_or(false) {
                    channels.entry(person.first_channel_at(at)).or_default().customers += 1.0;
                    customers += 1.0;
                }
                let last = channels.entry(person.last_channel_at(at)).or_default();
                last.orders += 1.0;
                last.revenue += revenue;
                let touches = person.touches_before(at, lookback);
                if touches.is_empty() {
                    for model in ["last_touch", "linear"] {
                        let credit = channels.entry("direct".into()).or_default().credit.entry(model).or_default();
                        credit.0 += 1.0;
                        credit.1 += revenue;
                    }
                    continue;
                }
                let last_touch = touches.last().unwrap();
                let credit =
                    channels.entry(last_touch.channel.clone()).or_default().credit.entry("last_touch").or_default();
                credit.0 += 1.0;
                credit.1 += revenue;
                let share = 1.0 / touches.len() as f64;
                for t in &touches {
                    let credit = channels.entry(t.channel.clone()).or_default().credit.entry("linear").or_default();
                    credit.0 += share;
                    credit.1 += revenue * share;
                }
            }
            _ => {}
        }
    }
    for (channel, amount) in &report.spend.by_channel {
        channels.entry(channel.clone()).or_default().spend += amount;
    }
    assert!(customers > 10.0 && leads > 10.0, "the demo makes leads ({leads}) and customers ({customers})");

    for model in ["last_touch", "linear"] {
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
        close(&format!("{model}: funnel leads"), kpi["funnel"]["leads"].as_f64().unwrap(), leads);
        close(&format!("{model}: funnel customers"), kpi["funnel"]["customers"].as_f64().unwrap(), customers);
        let rows: BTreeMap<String, &Value> =
            kpi["rows"].as_array().unwrap().iter().map(|r| (r["key"].as_str().unwrap().to_string(), r)).collect();
        let zero = Value::Null;
        let mut names: Vec<&String> = channels.keys().chain(rows.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let expected = channels.get(name).cloned().unwrap_or_default();
            let row = rows.get(name).copied().unwrap_or(&zero);
            let number = |field: &str| row[field].as_f64().unwrap_or(0.0);
            let what = |field: &str| format!("{model}: {name} {field}");
            close(&what("leads"), number("leads"), expected.leads);
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
        }
        let spent: f64 = channels.values().map(|c| c.spend).sum();
        assert!(spent > 0.0, "the demo's shop spends on ads");
        close(&format!("{model}: total spend"), kpi["totals"]["spend"].as_f64().unwrap(), spent);

        // `GET /v1/kpi` on the same folder answers the same report as the command line.
        let uri = format!("/v1/kpi?from={from}&to={to}&group_by=channel&attribution={model}");
        let api = runtime.block_on(get_kpi(&data_dir, &uri));
        for part in ["rows", "totals", "funnel", "attribution_by_model", "cohorts", "uplift"] {
            assert_eq!(api[part], kpi[part], "{model}: GET /v1/kpi and voronka kpi disagree on {part}");
        }
    }
}

/// `GET /v1/kpi` through the router `voronka serve` runs, with the folder's admin key.
async fn get_kpi(data_dir: &std::path::Path, uri: &str) -> Value {
    use tower::ServiceExt;
    let stack = voronka_local::stack::Stack::open(voronka_local::stack::StackOptions {
        data_dir: Some(data_dir.to_path_buf()),
        campaigns_dir: None,
        public_base_url: None,
        clock: std::sync::Arc::new(voronka_domain::ports::SystemClock),
        ids: voronka_local::stack::Stack::default_ids(),
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
