//! Every shipped template rendered with hostile values, then put into MIME. What must hold:
//! the subject is one line, no value adds markup or breaks out of an HTML attribute (the HTML
//! has exactly the `<`, `>`, quotes of the same render with those characters taken out of the
//! values), and the message has exactly the headers Voronka writes, once each.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use voronka_domain::sending::mime::{Envelope, build_message};

/// The names the shipped templates use (the sender's context and the requests' own values).
const NAMES: [&str; 22] = [
    "first_name",
    "last_name",
    "unsubscribe_url",
    "shop_url",
    "shop_name",
    "discount_percent",
    "discount_expires",
    "discount_code",
    "cart_url",
    "cart_total",
    "currency",
    "lead_name",
    "lead_phone",
    "lead_email",
    "category",
    "category_url",
    "years_with_us",
    "years_word",
    "script_id",
    "score",
    "form_title",
    "confirm_url",
];

#[derive(Debug, Arbitrary)]
struct Input {
    template: u8,
    locale: String,
    values: BTreeMap<u8, String>,
    numbers: BTreeMap<u8, f64>,
    items: Vec<BTreeMap<u8, String>>,
    conversation: Vec<(String, String)>,
    to_name: String,
}

const ITEM_FIELDS: [&str; 6] = ["name", "url", "image", "price", "quantity", "sku"];

fn context(input: &Input, clean: fn(&str) -> String) -> Value {
    let mut map = Map::new();
    for (name, number) in &input.numbers {
        map.insert(NAMES[usize::from(*name) % NAMES.len()].into(), json!(number));
    }
    for (name, value) in &input.values {
        map.insert(NAMES[usize::from(*name) % NAMES.len()].into(), json!(clean(value)));
    }
    let items: Vec<Value> = (input.items.iter().take(20))
        .map(|item| {
            let fields: Map<String, Value> = item
                .iter()
                .map(|(k, v)| (ITEM_FIELDS[usize::from(*k) % ITEM_FIELDS.len()].to_string(), json!(clean(v))))
                .collect();
            Value::Object(fields)
        })
        .collect();
    map.insert("items".into(), Value::Array(items));
    let lines: Vec<Value> = (input.conversation.iter().take(20))
        .map(|(speaker, text)| json!({"speaker": clean(speaker), "text": clean(text)}))
        .collect();
    map.insert("conversation".into(), Value::Array(lines));
    Value::Object(map)
}

const MARKUP: [char; 5] = ['<', '>', '"', '\'', '&'];

fn hostile(value: &str) -> String {
    value.to_string()
}

/// The same value with every markup character replaced by a letter: same length, same truthiness.
fn defused(value: &str) -> String {
    value.chars().map(|c| if MARKUP.contains(&c) { 'x' } else { c }).collect()
}

fn markup_counts(html: &str) -> [usize; 4] {
    ['<', '>', '"', '\''].map(|m| html.chars().filter(|c| *c == m).count())
}

const HEADERS: [&str; 12] = [
    "from",
    "to",
    "subject",
    "message-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "date",
    "content-type",
    "content-transfer-encoding",
    "x-voronka-class",
    "x-voronka-contact",
];

fuzz_target!(|input: Input| {
    let set = voronka_fuzz::templates();
    let ids: Vec<&String> = set.ids().collect();
    let id = ids[usize::from(input.template) % ids.len()];
    let Ok(email) = set.render(id, &input.locale, &context(&input, hostile)) else { return };
    assert!(!email.subject.chars().any(char::is_control), "the subject is one line: {:?}", email.subject);
    let safe = set.render(id, &input.locale, &context(&input, defused)).expect("the defused values render");
    assert_eq!(markup_counts(&email.html), markup_counts(&safe.html), "a value changed the markup:\n{}", email.html);

    let envelope = Envelope {
        from_name: "Demo shop",
        from_address: "news@shop.example",
        reply_to: None,
        to_name: Some(&input.to_name),
        to_address: "anna@example.com",
        unsubscribe_url: Some("https://shop.example/v1/unsubscribe?token=abc"),
        message_id: "m1",
        message_id_domain: "shop.example",
        date: jiff::Timestamp::UNIX_EPOCH,
        class: voronka_domain::model::SendClass::Marketing,
        contact_id: Some("c_1"),
    };
    let message = build_message(&envelope, &email).expect("a rendered email becomes a message");
    let text = String::from_utf8_lossy(&message);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut seen = BTreeMap::new();
    for line in head.split("\r\n").filter(|l| !l.starts_with([' ', '\t'])) {
        let (name, _) = line.split_once(':').unwrap_or_else(|| panic!("a header line without a name: {line:?}"));
        let name = name.to_ascii_lowercase();
        assert!(HEADERS.contains(&name.as_str()), "a value wrote the header {name:?}:\n{head}");
        *seen.entry(name).or_insert(0) += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "a header was written twice:\n{head}");
});
