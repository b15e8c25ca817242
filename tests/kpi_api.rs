//! The KPI admin routes over HTTP on the local stack (the router `voronka serve` runs): every
//! admin route refuses a caller without the key; ad spend goes in as JSON or CSV, validated row by
//! row and stored idempotently; `GET /v1/kpi` reports spend against purchases the shop sent
//! through `/v1/events`, in JSON and CSV; `GET /v1/contacts?email=` finds a contact. Also the
//! scheduled rollup's event handling, and the local schedule that runs it.

mod support;

use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use jiff::civil::Date;
use serde_json::{Value, json};
use support::inprocess::{Answer, TestStack};
use voronka_domain::kpi::rollup::RollupKind;
use voronka_domain::ports::Clock;
use voronka_domain::repo::{kpi_snapshots, spend};

/// Spend goes on days in the past of both the stack's simulated clock (2027-01-15) and the real
/// one, so the dates are valid whenever the test runs.
const SPEND_DAY: &str = "2026-11-20";
const SPEND_DAY_2: &str = "2026-11-21";
const CSV_TYPE: &str = "text/csv";
const JSON_TYPE: &str = "application/json";

fn date(text: &str) -> Date {
    text.parse().unwrap()
}

fn today(t: &TestStack) -> Date {
    voronka_domain::repo::aggregates::date(t.clock.now(), &t.stack.state.campaigns.settings)
}

async fn admin(t: &TestStack, method: Method, uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {}", t.stack.admin_key));
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    t.send(request.body(body.into()).unwrap()).await
}

async fn post_spend(t: &TestStack, content_type: &str, body: impl Into<Body>) -> Answer {
    admin(t, Method::POST, "/v1/spend", Some(content_type), body).await
}

async fn get_kpi(t: &TestStack, query: &str) -> Answer {
    admin(t, Method::GET, &format!("/v1/kpi?{query}"), None, Body::empty()).await
}

async fn stored_spend(t: &TestStack, day: &str) -> Vec<spend::SpendRow> {
    spend::spend_on(t.stack.state.store.as_ref(), date(day)).await.unwrap()
}

/// `(line, field)` of every row error of an `invalid_rows` answer.
fn row_errors(answer: &Answer) -> Vec<(u64, String)> {
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
    let body = answer.json();
    assert_eq!(body["error"], "invalid_rows", "{body}");
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(!e["message"].as_str().unwrap_or_default().is_empty(), "every error says why: {e}");
            (e["line"].as_u64().unwrap(), e["field"].as_str().unwrap().to_string())
        })
        .collect()
}

fn assert_close(actual: &Value, expected: f64, what: &str) {
    let actual = actual.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {actual}"));
    assert!((actual - expected).abs() < 1e-9, "{what}: {actual} != {expected}");
}

fn row<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key"] == key)
        .unwrap_or_else(|| panic!("no row `{key}` in {}", report["rows"]))
}

#[tokio::test]
async fn every_admin_route_refuses_a_caller_without_the_key() {
    let t = TestStack::new();
    let routes: Vec<(String, String)> =
        lead_capture::admin_route_table().into_iter().chain(kpi_rollup::admin_route_table()).collect();
    for route in [("POST", "/v1/spend"), ("GET", "/v1/kpi"), ("GET", "/v1/contacts"), ("GET", "/v1/contacts/{id}")] {
        assert!(routes.contains(&(route.0.to_string(), route.1.to_string())), "{route:?} is in the admin tables");
    }
    for (method, path) in routes {
        let path = path.replace("{id}", "c_nobody");
        assert!(!path.contains('{'), "fill every parameter of {path}");
        let request = |key: Option<&str>| {
            let mut request = Request::builder().method(method.as_str()).uri(&path);
            if let Some(key) = key {
                request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
            }
            request.header(header::CONTENT_TYPE, JSON_TYPE).body(Body::from("{\"rows\": []}")).unwrap()
        };
        let without = t.send(request(None)).await;
        assert_eq!(without.status, StatusCode::UNAUTHORIZED, "{method} {path}: {}", without.text);
        assert_eq!(without.error_code(), "unauthorized");
        assert_eq!(without.headers[header::WWW_AUTHENTICATE], "Bearer");
        let wrong = t.send(request(Some("not-the-admin-key-but-long-enough-to-look-like-one"))).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{method} {path} with a wrong key");
        let with_key = t.send(request(Some(&t.stack.admin_key))).await;
        assert_ne!(with_key.status, StatusCode::UNAUTHORIZED, "{method} {path} with the key");
    }
    assert!(stored_spend(&t, SPEND_DAY).await.is_empty());
}

#[tokio::test]
async fn spend_is_accepted_as_json_and_csv_and_shows_in_the_report() {
    let t = TestStack::new();
    let rows = json!({"rows": [
        {"date": SPEND_DAY, "channel": "VK", "campaign": "autumn", "amount": 1500.004, "currency": "RUB"},
        {"date": SPEND_DAY, "channel": "yandex", "amount": 700, "currency": "RUB"},
    ]});
    let answer = post_spend(&t, JSON_TYPE, rows.to_string()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json(), json!({"upserted": 2, "dates": [SPEND_DAY]}));
    let mut stored = stored_spend(&t, SPEND_DAY).await;
    stored.sort_by(|a, b| a.channel.cmp(&b.channel));
    let summary: Vec<_> = stored.iter().map(|r| (r.channel.as_str(), r.campaign.as_deref(), r.amount)).collect();
    assert_eq!(summary, [("vk", Some("autumn"), 1500.0), ("yandex", None, 700.0)], "lowercased, to the cent");

    // A bare array is a JSON body too.
    let bare = json!([{"date": SPEND_DAY_2, "channel": "vk", "campaign": "autumn", "amount": 10, "currency": "RUB"}]);
    assert_eq!(post_spend(&t, JSON_TYPE, bare.to_string()).await.status, StatusCode::OK);

    // CSV: the columns in any order, the campaign may be empty; charset parameters are fine.
    let csv = "channel,date,amount,currency,campaign\nemail,2026-11-21,0,RUB,\nreferral,2026-11-21,99.5,RUB,partners\n";
    let answer = post_spend(&t, "text/csv; charset=utf-8", csv).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json(), json!({"upserted": 2, "dates": [SPEND_DAY_2]}));
    assert_eq!(stored_spend(&t, SPEND_DAY_2).await.len(), 3);

    let report = get_kpi(&t, &format!("from={SPEND_DAY}&to={SPEND_DAY_2}&group_by=channel")).await.json();
    assert_close(&report["totals"]["spend"], 1500.0 + 700.0 + 10.0 + 0.0 + 99.5, "every uploaded row");
    assert_close(&row(&report, "vk")["spend"], 1510.0, "vk over both days");
}

#[tokio::test]
async fn invalid_rows_are_all_named_by_line_and_field_and_nothing_is_stored() {
    let t = TestStack::new();
    let rows = json!({"rows": [
        {"date": SPEND_DAY, "channel": "vk", "amount": 100, "currency": "RUB"},
        {"date": SPEND_DAY, "channel": "paid#search", "amount": -5, "currency": "RUB"},
        {"date": "2026-02-30", "channel": "yandex", "amount": 1, "currency": "RUB"},
    ]});
    let errors = row_errors(&post_spend(&t, JSON_TYPE, rows.to_string()).await);
    for expected in [(2, "channel"), (2, "amount"), (3, "date")] {
        assert!(errors.contains(&(expected.0, expected.1.to_string())), "{expected:?} in {errors:?}");
    }
    assert!(errors.iter().all(|(line, _)| *line != 1), "the good row has no error: {errors:?}");
    assert!(stored_spend(&t, SPEND_DAY).await.is_empty(), "one bad row stores nothing");

    // CSV lines count the header as line 1.
    let csv = "date,channel,campaign,amount,currency\n2026-11-20,vk,,10,RUB\n2026-11-20,yandex,,lots,RUB\n2026-11-20,email,,1,USD\n";
    let errors = row_errors(&post_spend(&t, CSV_TYPE, csv).await);
    assert_eq!(errors, [(3, "amount".to_string()), (4, "currency".to_string())]);
    let missing_column = "date,channel,currency\n2026-11-20,vk,RUB\n";
    let errors = row_errors(&post_spend(&t, CSV_TYPE, missing_column).await);
    assert!(errors.iter().any(|(line, field)| *line == 1 && field == "amount"), "{errors:?}");
    assert!(stored_spend(&t, SPEND_DAY).await.is_empty());

    // The days one upload may touch are bounded.
    let many_days: Vec<Value> = (0..=kpi_rollup::MAX_DATES_PER_UPLOAD as i64)
        .map(|back| {
            let day = date(SPEND_DAY).checked_sub(jiff::Span::new().days(back)).unwrap();
            json!({"date": day.to_string(), "channel": "vk", "amount": 1, "currency": "RUB"})
        })
        .collect();
    let errors = row_errors(&post_spend(&t, JSON_TYPE, json!(many_days).to_string()).await);
    assert_eq!(errors, [(0, "date".to_string())]);
    assert!(stored_spend(&t, SPEND_DAY).await.is_empty());

    let not_utf8 = post_spend(&t, CSV_TYPE, vec![0xff, 0xfe, b'\n']).await;
    assert_eq!(row_errors(&not_utf8), [(0, "body".to_string())]);

    // What some tools send for a .csv is read as CSV; a sheet may leave campaign and currency out.
    let excel = post_spend(&t, "application/vnd.ms-excel", format!("date,channel,amount\n{SPEND_DAY_2},vk,5\n")).await;
    assert_eq!(excel.status, StatusCode::OK, "{}", excel.text);
    assert!(stored_spend(&t, SPEND_DAY_2).await.iter().any(|row| row.amount == 5.0 && row.currency == "RUB"));
    let wrong_type = post_spend(&t, "text/plain", "date,channel\n").await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", wrong_type.text);
    assert!(wrong_type.text.contains("Content-Type") && wrong_type.text.contains("text/csv"), "{}", wrong_type.text);
    let untyped = admin(&t, Method::POST, "/v1/spend", None, "[]").await;
    assert_eq!(untyped.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = format!("date,channel,campaign,amount,currency\n{}", "2026-11-20,vk,,1,RUB\n".repeat(110_000));
    assert!(huge.len() > kpi_rollup::MAX_SPEND_BODY_BYTES);
    let too_large = post_spend(&t, CSV_TYPE, huge).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", too_large.text);
    assert!(stored_spend(&t, SPEND_DAY).await.is_empty());
}

#[tokio::test]
async fn posting_the_same_rows_again_replaces_the_amount_and_the_report_follows() {
    let t = TestStack::new();
    let upload = |amount: f64| {
        json!({"rows": [{"date": SPEND_DAY, "channel": "vk", "campaign": "autumn", "amount": amount, "currency": "RUB"}]})
            .to_string()
    };
    let query = format!("from={SPEND_DAY}&to={SPEND_DAY}&group_by=channel");
    assert_eq!(post_spend(&t, JSON_TYPE, upload(1234.0)).await.status, StatusCode::OK);
    assert_close(&get_kpi(&t, &query).await.json()["totals"]["spend"], 1234.0, "first upload");
    // As if the nightly run had made the day final since: the report now reads its snapshot.
    let (store, settings) = (t.stack.state.store.as_ref(), &t.stack.state.campaigns.settings);
    let days = RollupKind::Days(vec![date(SPEND_DAY)]);
    voronka_domain::kpi::rollup::roll_up(store, settings, days, t.clock.now()).await.unwrap();
    for _ in 0..2 {
        assert_eq!(post_spend(&t, JSON_TYPE, upload(2000.0)).await.status, StatusCode::OK);
    }
    let stored = stored_spend(&t, SPEND_DAY).await;
    assert_eq!(stored.len(), 1, "one row per day, channel and campaign");
    assert_eq!(stored[0].amount, 2000.0, "replaced, not added");
    // The day's final snapshot still holds the old amount; the report reads spend live.
    let snapshot = kpi_snapshots::get(store, date(SPEND_DAY)).await.unwrap().unwrap();
    assert!(snapshot.is_final);
    assert_eq!(snapshot.inputs.spend.iter().map(|r| r.amount).collect::<Vec<_>>(), [1234.0]);
    let report = get_kpi(&t, &query).await.json();
    assert_close(&report["totals"]["spend"], 2000.0, "after the re-post");
    assert_close(&row(&report, "vk")["spend"], 2000.0, "vk after the re-post");
}

/// Buys `revenue` for `contact`, as the shop's back end does (signed), through the evaluator.
async fn purchase(t: &TestStack, contact: &str, order: &str, revenue: f64) {
    let event = json!({"event_id": format!("{order}:purchase"), "type": "purchase", "contact_id": contact,
        "properties": {"order_id": order, "revenue": revenue, "currency": "RUB"}});
    t.post_events(vec![event], true).await;
}

/// The report by hand. Two leads came from vk/autumn, one from yandex/brand (their forms' UTM
/// tags are their only touches). vk: two customers buy 10 000 and 5 000. yandex: one customer
/// buys 3 000 and then 2 000. Spend: vk 2 000 + 1 000 = 3 000, yandex 2 500. Margin 0.3.
///   vk:     CAC 3 000 / 2 = 1 500; ROAS 15 000 / 3 000 = 5; ROMI (15 000 × 0.3 − 3 000) / 3 000 = 0.5
///   yandex: CAC 2 500 / 1 = 2 500; ROAS 5 000 / 2 500 = 2; ROMI (1 500 − 2 500) / 2 500 = −0.4;
///           AOV 5 000 / 2 = 2 500
///   total:  CAC 5 500 / 3; ROAS 20 000 / 5 500; ROMI (6 000 − 5 500) / 5 500 = 1 / 11
#[tokio::test]
async fn the_report_reflects_spend_and_the_shops_purchases_by_hand_computed_numbers() {
    let t = TestStack::new();
    let anna = t.consented_contact("anna@example.com", json!({"utm_source": "vk", "utm_campaign": "autumn"})).await;
    let boris = t.consented_contact("boris@example.com", json!({"utm_source": "vk", "utm_campaign": "autumn"})).await;
    let vera = t.consented_contact("vera@example.com", json!({"utm_source": "yandex", "utm_campaign": "brand"})).await;
    purchase(&t, &anna, "o-1", 10_000.0).await;
    purchase(&t, &boris, "o-2", 5_000.0).await;
    purchase(&t, &vera, "o-3", 3_000.0).await;
    t.advance(60 * 60);
    purchase(&t, &vera, "o-4", 2_000.0).await;
    let spend = json!({"rows": [
        {"date": SPEND_DAY, "channel": "vk", "campaign": "autumn", "amount": 2000, "currency": "RUB"},
        {"date": SPEND_DAY_2, "channel": "vk", "campaign": "autumn", "amount": 1000, "currency": "RUB"},
        {"date": SPEND_DAY_2, "channel": "yandex", "campaign": "brand", "amount": 2500, "currency": "RUB"},
    ]});
    assert_eq!(post_spend(&t, JSON_TYPE, spend.to_string()).await.status, StatusCode::OK);
    // A hourly rollup of today, as the schedule runs it, changes nothing the report shows.
    kpi_rollup::scheduled(&t.stack.scheduler, &t.stack.state.campaigns.settings, &json!({"kind": "hourly"}))
        .await
        .unwrap();

    let today = today(&t);
    let range = format!("from={SPEND_DAY}&to={today}");
    let answer = get_kpi(&t, &format!("{range}&group_by=channel&attribution=last_touch")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let report = answer.json();
    assert_eq!((report["from"].clone(), report["to"].clone()), (json!(SPEND_DAY), json!(today.to_string())));
    assert_eq!((report["group_by"].clone(), report["attribution"].clone()), (json!("channel"), json!("last_touch")));
    assert_eq!(report["currency"], "RUB");
    let vk = row(&report, "vk");
    assert_eq!((vk["leads"].clone(), vk["customers"].clone(), vk["orders"].clone()), (json!(2), json!(2), json!(2)));
    for (field, expected) in [
        ("revenue", 15_000.0),
        ("spend", 3_000.0),
        ("attributed_conversions", 2.0),
        ("attributed_revenue", 15_000.0),
        ("cac", 1_500.0),
        ("roas", 5.0),
        ("romi", 0.5),
        ("aov", 7_500.0),
        ("lead_to_customer", 1.0),
    ] {
        assert_close(&vk[field], expected, &format!("vk {field}"));
    }
    let yandex = row(&report, "yandex");
    assert_eq!((yandex["customers"].clone(), yandex["orders"].clone()), (json!(1), json!(2)));
    for (field, expected) in
        [("revenue", 5_000.0), ("spend", 2_500.0), ("cac", 2_500.0), ("roas", 2.0), ("romi", -0.4), ("aov", 2_500.0)]
    {
        assert_close(&yandex[field], expected, &format!("yandex {field}"));
    }
    let totals = &report["totals"];
    assert_eq!((totals["customers"].clone(), totals["orders"].clone()), (json!(3), json!(4)));
    for (field, expected) in [
        ("spend", 5_500.0),
        ("revenue", 20_000.0),
        ("cac", 5_500.0 / 3.0),
        ("roas", 20_000.0 / 5_500.0),
        ("romi", 1.0 / 11.0),
    ] {
        assert_close(&totals[field], expected, &format!("total {field}"));
    }
    assert_eq!(report["funnel"]["leads"], 3);
    assert_eq!(report["funnel"]["customers"], 3);

    // Per day: the spend days have spend and no customers, so no CAC (null, never infinity).
    let by_day = get_kpi(&t, &range).await.json();
    let spend_day = row(&by_day, SPEND_DAY);
    assert_close(&spend_day["spend"], 2_000.0, "spend on the first day");
    assert_eq!((spend_day["cac"].clone(), spend_day["aov"].clone()), (Value::Null, Value::Null));
    assert_close(&row(&by_day, &today.to_string())["revenue"], 20_000.0, "today's revenue");
    assert_eq!(by_day["rows"].as_array().unwrap().len(), date(SPEND_DAY).until(today).unwrap().get_days() as usize + 1);

    // CSV: the same rows, as a download.
    let csv = get_kpi(&t, &format!("{range}&group_by=channel&format=csv")).await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.text);
    assert!(csv.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/csv"));
    let disposition = csv.headers[header::CONTENT_DISPOSITION].to_str().unwrap();
    assert_eq!(disposition, format!("attachment; filename=\"kpi-{SPEND_DAY}-{today}-channel.csv\""));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert!(lines[0].starts_with("key,leads,mql,sql,customers,orders,revenue,aov,"), "{}", lines[0]);
    let vk_line = lines.iter().find(|l| l.starts_with("vk,")).expect("a vk line");
    let fields: Vec<&str> = vk_line.split(',').collect();
    let column = |name: &str| fields[lines[0].split(',').position(|c| c == name).unwrap()].parse::<f64>().unwrap();
    assert_eq!((column("spend"), column("cac"), column("roas"), column("romi")), (3000.0, 1500.0, 5.0, 0.5));
    assert!(lines.last().unwrap().starts_with("total,"), "{}", csv.text);
    let empty_ratio = get_kpi(&t, &format!("from={SPEND_DAY}&to={SPEND_DAY}&format=csv")).await;
    let day_line = empty_ratio.text.lines().nth(1).unwrap().to_string();
    assert!(day_line.starts_with(&format!("{SPEND_DAY},")) && day_line.contains(",,"), "no CAC is empty: {day_line}");
}

#[tokio::test]
async fn bad_report_parameters_are_refused_naming_the_field() {
    let t = TestStack::new();
    for (query, field) in [
        ("group_by=year", "group_by"),
        ("attribution=last_click", "attribution"),
        ("from=2026-13-01", "from"),
        ("to=yesterday", "to"),
        ("from=2026-11-20&to=2026-11-01", "from"),
        ("from=2020-01-01&to=2026-11-01", "to"),
        ("format=xml", "format"),
        ("group_by=day&group_by=week", "group_by"),
        ("grop_by=day", "grop_by"),
    ] {
        let answer = get_kpi(&t, query).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}: {}", answer.text);
        assert_eq!(answer.error_fields(), [field], "{query}: {}", answer.text);
    }
    let defaults = get_kpi(&t, "").await;
    assert_eq!(defaults.status, StatusCode::OK, "{}", defaults.text);
    assert_eq!(defaults.json()["rows"].as_array().unwrap().len(), 30, "the last 30 days, per day");
}

async fn find(t: &TestStack, query: &str) -> Answer {
    admin(t, Method::GET, &format!("/v1/contacts{query}"), None, Body::empty()).await
}

#[tokio::test]
async fn a_contact_is_found_by_email_with_its_touches() {
    let t = TestStack::new();
    let id = t.consented_contact("Marta@Example.com", json!({"utm_source": "vk", "utm_campaign": "autumn"})).await;
    let found = find(&t, "?email=marta%40example.com").await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text);
    let body = found.json();
    assert_eq!(body["id"], id);
    let touches = body["touches"].as_array().expect("touches");
    assert!(touches.iter().any(|touch| touch["channel"] == "vk"), "{touches:?}");
    let by_id = admin(&t, Method::GET, &format!("/v1/contacts/{id}"), None, Body::empty()).await.json();
    assert_eq!(by_id, body, "the same body as /v1/contacts/{{id}}");

    let tagged = t.consented_contact("olga+shop@example.com", json!({})).await;
    for query in ["?email=olga%2Bshop%40example.com", "?email=olga+shop@example.com"] {
        let answer = find(&t, query).await;
        assert_eq!((answer.status, answer.json()["id"].clone()), (StatusCode::OK, json!(tagged)), "{query}");
    }
    let unknown = find(&t, "?email=nobody%40example.com").await;
    assert_eq!((unknown.status, unknown.error_code().as_str()), (StatusCode::NOT_FOUND, "not_found"));
    for query in ["", "?email=", "?email=not-an-address", "?mail=marta%40example.com", "?email=a%40b.c&email=d%40e.f"] {
        let answer = find(&t, query).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}: {}", answer.text);
        assert_eq!(answer.error_fields(), ["email"], "{query}");
    }
}

#[tokio::test]
async fn a_scheduled_event_runs_its_rollup_and_anything_else_is_refused_clearly() {
    let t = TestStack::new();
    let settings = &t.stack.state.campaigns.settings;
    let today = today(&t);
    let capture = voronka_telemetry::metrics::capture();
    let hourly = kpi_rollup::scheduled(&t.stack.scheduler, settings, &json!({"kind": "hourly"})).await.unwrap();
    assert_eq!(hourly.days, [today]);
    let lines = capture.lines();
    drop(capture);
    assert_eq!(lines.len(), 1, "one EMF line per run: {lines:?}");
    let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["Function"], "kpi-rollup");
    assert_eq!((line["RollupsRun"].as_f64(), line["DaysRolledUp"].as_f64()), (Some(1.0), Some(1.0)), "{line}");
    let store = t.stack.state.store.as_ref();
    assert!(!kpi_snapshots::get(store, today).await.unwrap().expect("today's snapshot").is_final);
    let nightly = kpi_rollup::scheduled(&t.stack.scheduler, settings, &json!({"kind": "nightly"})).await.unwrap();
    let yesterday = today.yesterday().unwrap();
    assert_eq!(nightly.days.len(), settings.kpi.restate_days as usize + 1);
    assert_eq!(nightly.days.last(), Some(&yesterday));
    assert!(kpi_snapshots::get(store, yesterday).await.unwrap().expect("yesterday's snapshot").is_final);
    for garbage in [json!({}), json!({"kind": "weekly"}), json!(null), json!({"detail": "{]"})] {
        let error = kpi_rollup::scheduled(&t.stack.scheduler, settings, &garbage).await.unwrap_err().to_string();
        assert!(error.contains("\"kind\": \"hourly\""), "{garbage}: {error}");
    }
}

#[tokio::test]
async fn the_local_schedule_runs_the_hourly_and_nightly_rollups_through_the_same_function() {
    let t = TestStack::new();
    let mut schedule = voronka_local::workers::RollupSchedule::default();
    voronka_local::workers::run_due_rollups(&t.stack, &mut schedule).await.unwrap();
    let store = t.stack.state.store.as_ref();
    let today = today(&t);
    assert!(kpi_snapshots::get(store, today).await.unwrap().is_some(), "the hourly ran at start");
    // The stack's clock is 08:00 UTC: past 02:30, so the nightly ran too.
    assert!(kpi_snapshots::get(store, today.yesterday().unwrap()).await.unwrap().is_some_and(|s| s.is_final));
}

/// A purchase reported a day late, after the nightly rollup made its day final: the event's own
/// transaction deletes that day's snapshot, so the report shows the order at once.
#[tokio::test]
async fn a_late_event_for_a_day_already_rolled_up_shows_in_the_report_at_once() {
    let t = TestStack::new();
    let anna = t.consented_contact("anna@example.com", json!({"utm_source": "vk"})).await;
    let yesterday = today(&t).yesterday().unwrap();
    let (store, settings) = (t.stack.state.store.as_ref(), &t.stack.state.campaigns.settings);
    voronka_domain::kpi::rollup::roll_up(store, settings, RollupKind::Nightly, t.clock.now()).await.unwrap();
    assert!(kpi_snapshots::get(store, yesterday).await.unwrap().is_some_and(|s| s.is_final));
    let query = format!("from={yesterday}&to={yesterday}&group_by=channel");
    assert_close(&get_kpi(&t, &query).await.json()["totals"]["revenue"], 0.0, "before the late order");

    let at = t.clock.now() - jiff::SignedDuration::from_hours(24);
    let late = json!({"event_id": "late:purchase", "type": "purchase", "contact_id": anna, "occurred_at": at.to_string(),
        "properties": {"order_id": "late", "revenue": 900.0, "currency": "RUB"}});
    t.post_events(vec![late], true).await;
    assert!(kpi_snapshots::get(store, yesterday).await.unwrap().is_none(), "the stale snapshot is gone");
    let report = get_kpi(&t, &query).await.json();
    assert_close(&report["totals"]["revenue"], 900.0, "the late order");
    assert_close(&row(&report, "vk")["revenue"], 900.0, "under its channel");
}
