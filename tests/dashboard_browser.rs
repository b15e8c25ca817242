//! The KPI dashboard in a real browser: `voronka serve` with leads, purchases and ad spend put in
//! through its API (and journey groups through its database); headless Chromium signs in through the form, loads the dashboard and
//! the test reads back every chart from the page (the drawn size of each bar, cell and point,
//! and the number it carries) and compares the numbers with the KPI API's for the same range and
//! model, before and after changing the model through the page's form. A screenshot is kept in
//! `<target>/test-artifacts/dashboard.png`. Then a contact page is opened from the list.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{Timestamp, ToSpan};
use reqwest::StatusCode;
use serde_json::{Value, json};
use voronka_domain::kpi::{self, GroupBy, KpiQuery};
use voronka_domain::ports::{Store, SystemClock};
use voronka_domain::repo::aggregates::{self, Counters, JourneyMetric};
use voronka_domain::repo::journey_state::Group;
use voronka_domain::signing::{EVENTS_SIGNATURE_HEADER, sign_body};
use voronka_embedded::Embedded;
use voronka_local::dashboard::write_static;
use voronka_local::stack::{Stack, StackOptions};

mod support;

use support::serve::{Server, data_dir};
use support::webdriver::Browser;

/// (utm_source, utm_medium, utm_campaign) of the visitors, in turn.
const CHANNELS: [(&str, &str, &str); 3] =
    [("google", "cpc", "brand"), ("vk", "social", "autumn_sale"), ("newsletter", "email", "digest")];
const CONTACTS: usize = 9;
const BUYERS: usize = 6;
/// A name a page must show as text, never as markup.
const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)>";

fn artefact_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("test-artifacts")
}

/// Journey groups, written into the data folder before the server opens it as the evaluator
/// counts them (a group big enough to conclude, and one too small): hundreds of confirmed
/// opt-ins with their holdout draw are beyond a quick test's reach through the API.
async fn seed_journey_groups(dir: &Path, today: jiff::civil::Date) {
    let embedded = Embedded::open(&dir.join("voronka.db"), Arc::new(SystemClock)).unwrap();
    let mut counters = Counters::default();
    for (journey, group, entries, conversions, revenue) in [
        ("welcome", Group::Treatment, 400.0, 60.0, 90_000.0),
        ("welcome", Group::Holdout, 120.0, 9.0, 12_000.0),
        ("cross_sell", Group::Treatment, 12.0, 2.0, 3_000.0),
        ("cross_sell", Group::Holdout, 2.0, 0.0, 0.0),
    ] {
        counters.journey(journey, today, group, JourneyMetric::Entries, entries);
        counters.journey(journey, today, group, JourneyMetric::Conversions, conversions);
        counters.journey(journey, today, group, JourneyMetric::Revenue, revenue);
    }
    embedded.store.transact(counters.into_ops()).await.unwrap();
}

/// Five days of ad spend on two paid channels, through `POST /v1/spend` with the admin key.
async fn post_spend(base: &str, key: &str, today: jiff::civil::Date) {
    let mut rows = Vec::new();
    for back in 0..5 {
        let date = today.checked_sub(back.days()).unwrap();
        for (channel, campaign, amount) in [("google", "brand", 120.0), ("vk", "autumn_sale", 80.5)] {
            rows.push(json!({"date": date.to_string(), "channel": channel, "campaign": campaign, "amount": amount, "currency": "RUB"}));
        }
    }
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/spend"))
        .bearer_auth(key)
        .json(&json!({ "rows": rows }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap());
}

/// Leads from three channels (one with a hostile name), then purchases by most of them, through
/// the public API like a site and a shop back end.
async fn put_in_leads_and_orders(base: &str, dir: &Path) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut emails = Vec::new();
    for i in 0..CONTACTS {
        let (source, medium, campaign) = CHANNELS[i % CHANNELS.len()];
        let email = format!("buyer{i}@example.com");
        let first_name = if i == 0 { HOSTILE_NAME.to_string() } else { format!("Buyer{i}") };
        let response = client
            .post(format!("{base}/v1/forms/newsletter/submissions"))
            .json(&json!({"email": email, "first_name": first_name, "consent": true,
                "utm_source": source, "utm_medium": medium, "utm_campaign": campaign}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap());
        emails.push(email);
    }
    let secrets: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("secrets.json")).unwrap()).unwrap();
    let events: Vec<Value> = (0..BUYERS)
        .map(|i| {
            json!({"event_id": format!("order-{i}:purchase"), "type": "purchase", "email": emails[i],
                "properties": {"order_id": format!("order-{i}"), "revenue": 1000.0 + 250.0 * i as f64, "currency": "RUB"}})
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
    let response = client
        .post(format!("{base}/v1/events"))
        .header("content-type", "application/json")
        .header(EVENTS_SIGNATURE_HEADER, sign_body(secrets["events_key"].as_str().unwrap(), &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED, "{}", response.text().await.unwrap());
    emails
}

/// The KPI report for a range and model, grouped by channel: `GET /v1/kpi` with the admin key.
async fn kpi_report(base: &str, key: &str, from: &str, to: &str, model: &str) -> Value {
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/kpi"))
        .query(&[("from", from), ("to", to), ("group_by", "channel"), ("attribution", model)])
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Everything the page draws, read in the browser: the range, each `data-kpi` figure, and per
/// chart each shape's drawn size and the number it carries.
const READ_PAGE: &str = r#"
const range = document.getElementById('report-range').dataset;
const figures = {};
document.querySelectorAll('[data-kpi]').forEach(e => { figures[e.dataset.kpi] = e.dataset.value; });
const charts = {};
for (const svg of document.querySelectorAll('svg[data-chart]')) {
  charts[svg.dataset.chart] = [...svg.querySelectorAll('rect.bar, rect.cell, circle.point')].map(s => {
    const box = s.getBBox();
    return { label: s.dataset.label || s.dataset.row || '', series: s.dataset.series || '',
             column: s.dataset.column || '', value: s.dataset.value, width: box.width, height: box.height };
  });
}
return { from: range.from, to: range.to, model: range.attribution, figures, charts };
"#;

fn number(text: &Value) -> Option<f64> {
    match text.as_str() {
        Some("") | None => None,
        Some(text) => Some(text.parse().unwrap_or_else(|_| panic!("`{text}` is a number"))),
    }
}

fn assert_same(what: &str, shown: Option<f64>, expected: Option<f64>) {
    match (shown, expected) {
        (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{what}: page {a}, API {b}"),
        (a, b) => assert_eq!(a, b, "{what}: page and API"),
    }
}

/// Every chart has something drawn, and every number on the page is the API's.
fn compare(page: &Value, report: &Value) {
    let charts = page["charts"].as_object().unwrap();
    for chart in ["funnel", "cac", "roas", "attribution", "retention", "ltv", "uplift"] {
        let shapes =
            charts.get(chart).and_then(Value::as_array).unwrap_or_else(|| panic!("chart {chart} is on the page"));
        assert!(
            shapes.iter().any(|s| s["width"].as_f64().unwrap() > 0.0 && s["height"].as_f64().unwrap() > 0.0),
            "chart {chart} draws something: {shapes:?}"
        );
    }
    for (kpi, shown) in page["figures"].as_object().unwrap() {
        let pointer = format!("/{}", kpi.replace('.', "/"));
        let expected = report.pointer(&pointer).unwrap_or_else(|| panic!("{kpi} is in the API's report"));
        assert_same(kpi, number(shown), expected.as_f64());
    }
    assert!(page["figures"].as_object().unwrap().len() >= 17, "tiles and rates are all there");

    let funnel = &report["funnel"];
    for shape in charts["funnel"].as_array().unwrap() {
        let field = match shape["label"].as_str().unwrap() {
            "Leads" => "leads",
            "MQL" => "mql",
            "SQL" => "sql",
            "Customers" => "customers",
            other => panic!("unexpected funnel bar {other}"),
        };
        assert_same(field, number(&shape["value"]), funnel[field].as_f64());
    }
    let rows = report["rows"].as_array().unwrap();
    for (chart, field) in [("cac", "cac"), ("roas", "roas")] {
        let shapes = charts[chart].as_array().unwrap();
        assert_eq!(shapes.len(), rows.len(), "{chart}: one bar per channel");
        for shape in shapes {
            let channel = shape["label"].as_str().unwrap();
            let row = rows.iter().find(|r| r["key"] == channel).unwrap_or_else(|| panic!("{channel} is a row"));
            assert_same(&format!("{chart} of {channel}"), number(&shape["value"]), row[field].as_f64());
        }
    }
    let credits = report["attribution_by_model"].as_array().unwrap();
    let attribution = charts["attribution"].as_array().unwrap();
    assert!(!attribution.is_empty());
    for shape in attribution {
        let (channel, model) = (shape["label"].as_str().unwrap(), shape["series"].as_str().unwrap());
        let expected: f64 = credits
            .iter()
            .filter(|c| c["channel"] == channel && c["model"] == model)
            .map(|c| c["revenue"].as_f64().unwrap())
            .sum();
        assert_same(&format!("{model} revenue of {channel}"), number(&shape["value"]), Some(expected));
    }
    let cohorts = report["cohorts"].as_array().unwrap();
    let cells = charts["retention"].as_array().unwrap();
    let expected_cells: usize =
        cohorts.iter().map(|c| c["retention"].as_array().unwrap().iter().filter(|v| !v.is_null()).count()).sum();
    assert_eq!(cells.len(), expected_cells, "one cell per cohort month with data");
    for cell in cells {
        let row = cell["label"].as_str().unwrap();
        let cohort = cohorts
            .iter()
            .find(|c| row.starts_with(c["cohort"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("cohort {row}"));
        let month: usize = cell["column"].as_str().unwrap().trim_start_matches('M').parse().unwrap();
        assert_same(&format!("retention {row} M{month}"), number(&cell["value"]), cohort["retention"][month].as_f64());
    }
    for bar in charts["ltv"].as_array().unwrap() {
        let cohort = cohorts.iter().find(|c| c["cohort"] == bar["label"]).unwrap();
        let latest = cohort["ltv"].as_array().unwrap().last().and_then(Value::as_f64);
        assert_same("LTV to date", number(&bar["value"]), latest);
    }
    let uplift: Vec<f64> =
        report["uplift"].as_array().unwrap().iter().filter_map(|u| u["absolute_uplift"].as_f64()).collect();
    let points: Vec<Option<f64>> = charts["uplift"].as_array().unwrap().iter().map(|p| number(&p["value"])).collect();
    assert_eq!(points.len(), uplift.len(), "a point per journey with an uplift");
    for (shown, expected) in points.iter().zip(&uplift) {
        assert_same("uplift", *shown, Some(*expected));
    }
}

/// Waits until the workers have applied the purchases and the figures stop moving.
async fn settled_report(base: &str, key: &str, from: &str, to: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Value::Null;
    loop {
        assert!(Instant::now() < deadline, "the purchases were not counted within 60 s: {last}");
        let report = kpi_report(base, key, from, to, "last_touch").await;
        if report["totals"]["customers"] == BUYERS as u64 && report == last {
            return report;
        }
        last = report;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}

#[tokio::test]
async fn the_dashboard_draws_every_chart_with_the_numbers_of_the_kpi_api() {
    let dir = data_dir("dashboard");
    let campaigns = voronka_campaigns::bundled().unwrap();
    let today = aggregates::date(Timestamp::now(), &campaigns.settings);
    seed_journey_groups(&dir, today).await;
    let server = Server::start(&dir);
    let base = server.base.clone();
    let key = std::fs::read_to_string(dir.join("admin-key")).unwrap().trim().to_string();
    post_spend(&base, &key, today).await;
    put_in_leads_and_orders(&base, &dir).await;
    let from = today.checked_sub(29.days()).unwrap().to_string();
    let to = today.to_string();
    let report = settled_report(&base, &key, &from, &to).await;
    assert!(report["totals"]["spend"].as_f64().unwrap() > 0.0 && !report["cohorts"].as_array().unwrap().is_empty());

    // Without a session: a page sends the browser to sign in, anything else is refused.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let anonymous = http.get(format!("{base}/admin/dashboard")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()["location"], "/admin/login?next=%2Fadmin%2Fdashboard");
    assert_eq!(http.post(format!("{base}/admin/logout")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let scripted = http.get(format!("{base}/admin/dashboard")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(scripted.status(), StatusCode::OK, "a script may send the key as a bearer header");
    let policy = scripted.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(scripted.headers()["cache-control"], "no-store");

    let browser = Browser::start().await;
    browser.resize(1300, 4200).await;
    browser.visit(&format!("{base}/admin/dashboard")).await;
    let field = browser.wait_for("#admin-key").await;
    browser.type_text(&field, "not-the-key").await;
    browser.click(&browser.wait_for("#sign-in").await).await;
    browser.wait_for("p.error").await;
    let field = browser.wait_for("#admin-key").await;
    browser.type_text(&field, &key).await;
    browser.click(&browser.wait_for("#sign-in").await).await;
    browser.wait_for("svg[data-chart='uplift']").await;
    assert!(browser.current_url().await.ends_with("/admin/dashboard"), "back where the browser wanted to go");
    let cookie_visible = browser.execute("return document.cookie;", vec![]).await;
    assert_eq!(cookie_visible, json!(""), "the session cookie is HttpOnly");

    let page = browser.execute(READ_PAGE, vec![]).await;
    assert_eq!(
        (page["from"].as_str(), page["to"].as_str(), page["model"].as_str()),
        (Some(&*from), Some(&*to), Some("last_touch"))
    );
    compare(&page, &report);

    let shot = browser.screenshot_png().await;
    assert!(shot.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::create_dir_all(artefact_dir()).unwrap();
    std::fs::write(artefact_dir().join("dashboard.png"), &shot).unwrap();

    // The form asks for another model; the page's numbers follow it.
    browser.click(&browser.wait_for("select[name='attribution'] option[value='first_touch']").await).await;
    browser.click(&browser.wait_for("form.range button").await).await;
    browser.wait_for("#report-range[data-attribution='first_touch']").await;
    let page = browser.execute(READ_PAGE, vec![]).await;
    compare(&page, &kpi_report(&base, &key, &from, &to, "first_touch").await);

    // The newest contacts are listed as text (the hostile name too) and open their pages.
    let listed = browser
        .execute(
            "return [...document.querySelectorAll('table.contacts a.contact-link')].map(a => a.textContent);",
            vec![],
        )
        .await;
    let listed: Vec<&str> = listed.as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(listed.len(), CONTACTS, "{listed:?}");
    assert!(listed.contains(&HOSTILE_NAME), "a hostile name is shown as text: {listed:?}");
    assert_eq!(browser.execute("return document.querySelectorAll('main img').length;", vec![]).await, json!(0));
    // A buyer's page: who they are and everything that happened to them, newest first.
    let buyer_name = format!("Buyer{}", BUYERS - 1);
    let position = listed.iter().position(|n| *n == buyer_name).expect("the last buyer is listed");
    let buyer = browser.find_all("table.contacts a.contact-link").await[position].clone();
    browser.click(&buyer).await;
    let heading = browser.wait_for("h1[data-contact-id]").await;
    assert_eq!(browser.text(&heading).await, buyer_name);
    let timeline = browser
        .execute(
            "return [...document.querySelectorAll('ol.timeline li')].map(li => [li.className, li.textContent]);",
            vec![],
        )
        .await;
    let entries: Vec<(&str, &str)> =
        timeline.as_array().unwrap().iter().map(|e| (e[0].as_str().unwrap(), e[1].as_str().unwrap())).collect();
    for kind in ["t-contact", "t-consent", "t-touch", "t-order", "t-event"] {
        assert!(entries.iter().any(|(k, _)| *k == kind), "the timeline shows {kind}: {entries:?}");
    }
    assert!(
        entries.iter().any(|(k, text)| *k == "t-event" && text.contains("purchase")),
        "the purchase event from the event log: {entries:?}"
    );
    assert!(!browser.find_all("table.receipts tr td").await.is_empty(), "consent receipts are listed");

    // The demo's files: the same dashboard from disk, no server, contact pages beside it.
    let stack = Stack::open(StackOptions {
        data_dir: Some(dir.clone()),
        metering: None,
        campaigns_dir: None,
        public_base_url: None,
        clock: Arc::new(SystemClock),
        ids: Stack::default_ids(),
        faults: None,
    })
    .unwrap();
    let query = KpiQuery {
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
        group_by: GroupBy::Day,
        attribution: kpi::parse_model("linear").unwrap(),
    };
    let expected = kpi_report(&base, &key, &from, &to, "linear").await;
    let files = dir.join("dashboard-files");
    let index = write_static(&files, &stack, &query).await.unwrap();
    drop(server);
    browser.visit(&format!("file://{}", index.display())).await;
    browser.wait_for("svg[data-chart='uplift']").await;
    let page = browser.execute(READ_PAGE, vec![]).await;
    assert_eq!(page["model"], "linear");
    compare(&page, &expected);
    let link = browser.wait_for("table.contacts a.contact-link").await;
    browser.click(&link).await;
    browser.wait_for("h1[data-contact-id]").await;
    assert!(browser.current_url().await.starts_with("file://"), "the contact page is a file too");
    browser.click(&browser.wait_for("header.top a").await).await;
    browser.wait_for("svg[data-chart='funnel']").await;

    browser.quit().await;
    std::fs::remove_dir_all(&dir).ok();
}
