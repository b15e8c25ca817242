//! The event log as the evaluator writes it, and the KPI command line: `voronka spend import`,
//! `voronka kpi`, `voronka rollup` and `voronka export` on a data folder, as a user runs them.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use serde_json::{Value, json};
use support::inprocess::{TempFolder, TestStack};
use voronka_domain::model::EventType;
use voronka_domain::ports::{Clock, SystemClock};
use voronka_domain::repo::event_log;
use voronka_local::export::{self, DateRange, Format};
use voronka_local::stack::{Stack, StackOptions};

fn voronka(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voronka")).args(args).output().expect("voronka runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn the_evaluator_logs_each_applied_event_once_under_its_subject() {
    let t = TestStack::new();
    let contact = t.consented_contact("log@example.com", json!({"anonymous_id": "anon-log"})).await;
    let purchase = json!({"event_id": "order-log:purchase", "type": "purchase", "contact_id": contact,
        "properties": {"order_id": "order-log", "revenue": 1200, "currency": "RUB"}});
    t.post_events(vec![purchase], true).await;
    t.post_events(
        vec![json!({"event_id": "stranger-view", "type": "page_view", "anonymous_id": "anon-stranger",
        "properties": {"url": "https://shop.example/"}})],
        false,
    )
    .await;

    let store = t.stack.state.store.as_ref();
    let timeline = event_log::timeline(store, &contact, 50).await.unwrap();
    let purchases: Vec<_> = timeline.iter().filter(|e| e.event_type == EventType::Purchase).collect();
    assert_eq!(purchases.len(), 1, "{timeline:?}");
    assert_eq!(purchases[0].event_id, "order-log:purchase");
    assert!(timeline.windows(2).all(|w| w[0].occurred_at >= w[1].occurred_at), "newest first");

    // The queue delivers the same message again: the evaluator sees a duplicate, the log keeps one.
    let body = serde_json::to_string(purchases[0]).unwrap();
    let outcome = trigger_evaluator::handle_message(&t.stack.evaluator, &body).await;
    assert_eq!(outcome, trigger_evaluator::Outcome::Duplicate);
    let again = event_log::timeline(store, &contact, 50).await.unwrap();
    assert_eq!(again.len(), timeline.len(), "a redelivery logs nothing");

    // A visitor nobody knows yet is logged under `anon:<id>`.
    let anonymous = event_log::timeline(store, "anon:anon-stranger", 10).await.unwrap();
    assert_eq!(anonymous.len(), 1);
    assert_eq!(anonymous[0].event_id, "stranger-view");
    assert!(event_log::timeline(store, &contact, 1).await.unwrap().len() == 1, "the limit bounds the read");

    // The day's export holds every logged event, the purchase once, with its subject.
    let today = voronka_domain::repo::aggregates::date(t.clock.now(), &t.stack.state.campaigns.settings);
    let mut out = Vec::new();
    let range = DateRange::new(today, today).unwrap();
    let written = export::events(&t.stack, &mut out, Format::Jsonl, range).await.unwrap();
    let lines: Vec<Value> = String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(written, lines.len());
    let exported: Vec<&Value> = lines.iter().filter(|l| l["event_id"] == "order-log:purchase").collect();
    assert_eq!(exported.len(), 1);
    assert_eq!(exported[0]["subject"], json!(contact));
    assert!(lines.iter().all(|l| l["contact"].get("email").is_none()), "addresses leave only with contacts");
}

#[tokio::test]
async fn events_export_as_csv_with_a_fixed_header_and_quoted_fields() {
    let t = TestStack::new();
    t.post_events(
        vec![json!({"event_id": "quoted", "type": "category_view", "anonymous_id": "anon-csv",
        "properties": {"category": "shoes, \"red\""}})],
        false,
    )
    .await;
    let today = voronka_domain::repo::aggregates::date(t.clock.now(), &t.stack.state.campaigns.settings);
    let mut out = Vec::new();
    export::events(&t.stack, &mut out, Format::Csv, DateRange::new(today, today).unwrap()).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.split("\r\n");
    assert_eq!(lines.next().unwrap(), export::EVENT_CSV_HEADER.join(","));
    let row = lines.next().unwrap();
    assert!(row.starts_with(&format!("{today},")), "{row}");
    assert!(row.contains(",anon:anon-csv,browser,quoted,category_view,false,,anon-csv,,,"), "{row}");
    // The properties JSON holds commas and quotes: one quoted field, quotes doubled.
    assert!(row.ends_with(r#","{""category"":""shoes, \""red\""""}""#), "{row}");

    let mut contacts = Vec::new();
    export::contacts_as(&t.stack, &mut contacts, Format::Csv, None).await.unwrap();
    let contacts = String::from_utf8(contacts).unwrap();
    assert_eq!(contacts.split("\r\n").next().unwrap(), export::CONTACT_CSV_HEADER.join(","));
}

/// A data folder with a database, as `voronka serve` leaves it.
fn data_folder() -> TempFolder {
    let folder = TempFolder::new("kpi-cli");
    Stack::open(StackOptions {
        data_dir: Some(folder.path().to_path_buf()),
        metering: None,
        campaigns_dir: None,
        public_base_url: None,
        clock: Arc::new(SystemClock),
        ids: Stack::default_ids(),
        faults: None,
    })
    .expect("the stack opens");
    folder
}

fn today() -> String {
    let settings = voronka_campaigns::bundled().unwrap().settings;
    voronka_domain::repo::aggregates::date(SystemClock.now(), &settings).to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn spend_import_lists_every_problem_by_line_and_imports_nothing_until_the_file_is_right() {
    let folder = data_folder();
    let dir = folder.path().to_str().unwrap();
    let day = today();
    let broken = write(
        folder.path(),
        "spend.csv",
        &format!(
            "date,channel,campaign,amount,currency\n{day},google,brand,100.50,RUB\n{day},,,-3,RUB\n\
             not-a-date,vk,,12,USD\n"
        ),
    );
    let output = voronka(&["spend", "import", &broken, "--data-dir", dir]);
    assert!(!output.status.success(), "a file with errors fails the command");
    let errors = stderr(&output);
    for expected in ["line 3", "channel", "amount", "line 4", "date", "currency", "nothing imported"] {
        assert!(errors.contains(expected), "{expected:?} missing from:\n{errors}");
    }
    let report = voronka(&["kpi", "--json", "--from", &day, "--to", &day, "--data-dir", dir]);
    assert!(report.status.success(), "{}", stderr(&report));
    let kpi: Value = serde_json::from_str(&stdout(&report)).unwrap();
    assert_eq!(kpi["totals"]["spend"], json!(0.0), "nothing was imported");

    let fixed = write(
        folder.path(),
        "spend.json",
        &json!({"rows": [
            {"date": day, "channel": "google", "campaign": "brand", "amount": 100.5, "currency": "RUB"},
            {"date": day, "channel": "vk", "amount": 40, "currency": "RUB"}
        ]})
        .to_string(),
    );
    let output = voronka(&["spend", "import", &fixed, "--data-dir", dir]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("2 spend row(s) upserted"), "{}", stdout(&output));
    // Importing again overwrites rather than adds.
    assert!(voronka(&["spend", "import", &fixed, "--data-dir", dir]).status.success());

    let report = voronka(&["kpi", "--json", "--group-by", "channel", "--from", &day, "--to", &day, "--data-dir", dir]);
    let kpi: Value = serde_json::from_str(&stdout(&report)).unwrap();
    assert_eq!(kpi["totals"]["spend"], json!(140.5));
    let google = kpi["rows"].as_array().unwrap().iter().find(|r| r["key"] == "google").expect("a google row");
    assert_eq!(google["spend"], json!(100.5));
    assert_eq!(google["cac"], Value::Null, "no customers: no CAC rather than infinity");

    let tables = voronka(&["kpi", "--from", &day, "--to", &day, "--data-dir", dir]);
    let text = stdout(&tables);
    for expected in ["Funnel", "By day", "Channels (last_touch attribution)", "google", "LTV/CAC", "Journey uplift"] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
    let csv = voronka(&["kpi", "--csv", "--group-by", "channel", "--from", &day, "--to", &day, "--data-dir", dir]);
    assert!(stdout(&csv).starts_with("key,leads,"), "{}", stdout(&csv));

    let wrong = voronka(&["kpi", "--group-by", "fortnight", "--data-dir", dir]);
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("--group-by"), "{}", stderr(&wrong));

    let rollup = voronka(&["rollup", "--kind", "nightly", "--data-dir", dir]);
    assert!(rollup.status.success(), "{}", stderr(&rollup));
    let outcome: Value = serde_json::from_str(&stdout(&rollup)).unwrap();
    assert_eq!(outcome["days"].as_array().unwrap().len(), 8, "yesterday and the seven days before it: {outcome}");

    let export = voronka(&["export", "events", "--format", "csv", "--data-dir", dir]);
    assert!(export.status.success(), "{}", stderr(&export));
    assert_eq!(stdout(&export).split("\r\n").next().unwrap(), export::EVENT_CSV_HEADER.join(","));
    let backwards = voronka(&["export", "events", "--from", "2026-03-02", "--to", "2026-03-01", "--data-dir", dir]);
    assert!(!backwards.status.success());
    assert!(stderr(&backwards).contains("--from"), "{}", stderr(&backwards));
}
