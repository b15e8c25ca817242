//! Request parsing and validation per request, with the bundled forms and settings: what
//! lead-capture does to a body before it touches the store.
//!
//! `cargo bench -p lead-capture`: `form` is a submission's body parsed (`parse_values`) and checked
//! against its form and the hidden-field rules (`check_fields`): the newsletter form as JSON, the
//! consultation form URL-encoded as a plain HTML form posts it; `event batch` is the events route's
//! `check_batch` over one and over ten browser events.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use lead_capture::events::check_batch;
use lead_capture::http_util::BodyFormat;
use lead_capture::submissions::{check_fields, parse_values};

fn events_body(count: usize) -> Vec<u8> {
    let events: Vec<String> = (0..count)
        .map(|i| {
            format!(
                r#"{{"event_id":"bench-{i}","type":"page_view","anonymous_id":"anon-bench-{i}","occurred_at":"2027-01-15T08:00:00Z","properties":{{"url":"https://shop.example/p/{i}","page_type":"product"}}}}"#
            )
        })
        .collect();
    format!(r#"{{"events":[{}]}}"#, events.join(",")).into_bytes()
}

fn bench(c: &mut Criterion) {
    let campaigns = voronka_campaigns::bundled().expect("the bundled campaigns are valid");
    let newsletter = &campaigns.forms["newsletter"];
    let consultation = &campaigns.forms["consultation"];

    let json_body = br#"{"email":" Anna.Petrova@Example.com ","first_name":"Anna","consent":"on","utm_source":"vk","utm_medium":"cpc","utm_campaign":"autumn_sale","anonymous_id":"anon-7f3a9c","landing_page":"https://shop.example/landing?x=1","fax":""}"#;
    let values = parse_values(BodyFormat::Json, json_body).unwrap();
    assert!(check_fields(newsletter, &values).is_ok(), "the JSON sample is valid");
    c.bench_function("form newsletter, JSON: parse_values + check_fields", |b| {
        b.iter(|| {
            let values = parse_values(BodyFormat::Json, black_box(json_body)).unwrap();
            check_fields(newsletter, &values).unwrap()
        })
    });

    let urlencoded = b"name=%D0%90%D0%BD%D0%BD%D0%B0+%D0%9F%D0%B5%D1%82%D1%80%D0%BE%D0%B2%D0%B0&email=anna%40acme.example&phone=%2B7+999+123-45-67&website=https%3A%2F%2Facme.example&company_size=51-200&consent=on&utm_source=google&utm_campaign=brand";
    let values = parse_values(BodyFormat::UrlEncoded, urlencoded).unwrap();
    if let Err(errors) = check_fields(consultation, &values) {
        panic!("the URL-encoded sample is valid: {errors:?}");
    }
    c.bench_function("form consultation, URL-encoded: parse_values + check_fields", |b| {
        b.iter(|| {
            let values = parse_values(BodyFormat::UrlEncoded, black_box(urlencoded)).unwrap();
            check_fields(consultation, &values).unwrap()
        })
    });

    let limits = &campaigns.settings.limits;
    let now: Timestamp = "2027-01-15T08:00:05Z".parse().unwrap();
    for count in [1, 10] {
        let body = events_body(count);
        let verdicts = check_batch(&body, false, now, limits, None).unwrap();
        assert!(verdicts.iter().all(|(_, v)| matches!(v, lead_capture::events::Verdict::Accepted(_))));
        c.bench_function(&format!("event batch of {count}: check_batch"), |b| {
            b.iter(|| check_batch(black_box(&body), false, now, limits, None).unwrap())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
