//! Score computation per event and per chat answer, with the bundled campaign files.
//!
//! `cargo bench -p voronka-domain --bench scoring`: `score_event` is lead scoring as the evaluator
//! runs it on every event (fit from the attributes, the event's engagement, the decayed total,
//! the thresholds), on a contact whose ledger is full (every fit rule and the most engagement
//! entries it keeps); `bot conversation` is the qualify bot's scoring: a whole b2b_demo chat,
//! started and answered to its qualified end (points per answer, branches by score).

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use voronka_domain::bots::conversation::{answer, start};
use voronka_domain::model::{Contact, Event, EventType, LifecycleStage};
use voronka_domain::scoring::ledger::MAX_ENGAGEMENT_ENTRIES;

fn event(n: u64, event_type: EventType, properties: Value, at: Timestamp) -> Event {
    let properties = properties.as_object().cloned().unwrap_or_default();
    Event::internal(format!("score-{n}"), event_type, "c_bench", at, at, properties)
}

fn bench(c: &mut Criterion) {
    let campaigns = voronka_campaigns::bundled().expect("the bundled campaigns are valid");
    let rules = campaigns.scoring.clone().expect("the bundled campaigns have scoring.toml");
    let start_at = Timestamp::from_second(1_800_000_000).unwrap();

    // A lead with every fit attribute, whose ledger already holds the most engagement entries.
    let mut lead = Contact::new("c_bench".into(), start_at, "ru".into(), "Europe/Moscow".into());
    lead.stage = LifecycleStage::Lead;
    lead.attributes = BTreeMap::from([
        ("company_size".to_string(), json!("51-200")),
        ("website".to_string(), json!("acme.example")),
        ("role".to_string(), json!("founder")),
    ]);
    let engaging = [
        (EventType::PageView, json!({"page_type": "pricing"})),
        (EventType::EmailClicked, json!({"template": "welcome"})),
        (EventType::FormSubmitted, json!({"form_id": "consultation"})),
    ];
    for n in 0..(MAX_ENGAGEMENT_ENTRIES as u64 * 2) {
        let (kind, properties) = engaging[(n % 3) as usize].clone();
        let at = start_at + SignedDuration::from_hours(25 * n as i64);
        lead.score_event(&event(n, kind, properties, at), &rules);
    }
    lead.stage = LifecycleStage::Lead;
    let entries = lead.score.entries.len();

    let later = start_at + SignedDuration::from_hours(25 * 100);
    let mut n = 1_000u64;
    c.bench_function(&format!("score_event per event, bundled scoring.toml, ledger of {entries} entries"), |b| {
        b.iter(|| {
            n += 1;
            let (kind, properties) = engaging[(n % 3) as usize].clone();
            let mut contact = lead.clone();
            let milestones = contact.score_event(&event(n, kind, properties, later), &rules);
            black_box((milestones, contact.score.entries.len()))
        })
    });

    let b2b = &campaigns.bots["b2b_demo"];
    let answers = ["acme.example", "51-200", "founder", "this_month", "anna@acme.example", "yes"].map(|a| json!(a));
    c.bench_function("bot conversation, b2b_demo start to qualified (6 answers)", |b| {
        b.iter(|| {
            let mut session = start(b2b, Some("en"), start_at).session;
            for (i, value) in answers.iter().enumerate() {
                let seq = i as u32 + 1;
                let result = answer(b2b, &mut session, seq, value, start_at + SignedDuration::from_secs(seq.into()));
                assert!(result.is_ok_and(|r| r.accepted));
            }
            assert!(session.is_finished());
            black_box(session.score)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
