//! What the fuzz targets share: the bundled campaign files (loaded once), a fixed clock, and the
//! checks each target makes. The checks are the properties that must hold for ANY input, beyond
//! "no panic": errors name a field, accepted data survives the JSON trip to the queue or the
//! store, bounds hold, and no value escapes its HTML or header context.

use std::sync::OnceLock;

use jiff::Timestamp;
use lead_capture::events::{Verdict, check_batch};
use lead_capture::http_util::BodyFormat;
use lead_capture::submissions::{check_fields, parse_values};
use serde_json::Value;
use voronka_domain::campaigns::form::is_accepted_hidden_field;
use voronka_domain::campaigns::{Campaigns, SourceFile, TemplateSet};
use voronka_domain::model::{EmailAddress, Event, EventType};

pub fn campaigns() -> &'static Campaigns {
    static CAMPAIGNS: OnceLock<Campaigns> = OnceLock::new();
    CAMPAIGNS.get_or_init(|| voronka_campaigns::bundled().expect("the bundled campaign files are valid"))
}

pub fn templates() -> &'static TemplateSet {
    static TEMPLATES: OnceLock<TemplateSet> = OnceLock::new();
    TEMPLATES.get_or_init(|| campaigns().template_set())
}

/// A fixed "now", so a crash reproduces from its input alone.
pub fn now() -> Timestamp {
    "2026-11-26T12:00:00Z".parse().expect("a valid time")
}

/// A form body, as `POST /v1/forms/{id}/submissions` reads it, checked against every shipped form.
pub fn form_body(format: BodyFormat, body: &[u8]) {
    let Ok(values) = parse_values(format, body) else { return };
    for form in campaigns().forms.values() {
        match check_fields(form, &values) {
            Ok(checked) => {
                let typed = checked.email.as_typed();
                let again = EmailAddress::parse(typed).expect("an accepted address parses again");
                assert_eq!(again.identity(), checked.email.identity(), "the identity of an address is stable");
                for (name, value) in &checked.hidden {
                    assert!(is_accepted_hidden_field(name), "hidden field {name} is not one of the accepted ones");
                    let text = value.as_str().expect("hidden fields are text");
                    assert!(text.chars().count() <= 2000, "hidden field {name} is unbounded");
                    assert!(!text.chars().any(char::is_control), "hidden field {name} carries control characters");
                }
                for (name, value) in &checked.valid.attributes {
                    let json = serde_json::to_string(value).expect("attributes serialise");
                    let back: Value = serde_json::from_str(&json).expect("attributes read back");
                    assert_eq!(&back, value, "attribute {name} does not survive the store");
                }
            }
            Err(errors) => {
                assert!(!errors.is_empty(), "a refusal names at least one problem");
                for error in errors {
                    let named = !error.field.is_empty() || error.code == "empty_field_name";
                    assert!(named, "every problem names its field: {error:?}");
                }
            }
        }
    }
}

/// An event batch body as `POST /v1/events` judges it, unsigned or signed.
pub fn event_batch(body: &[u8], signed: bool) {
    let limits = &campaigns().settings.limits;
    // A signed batch is judged as a legacy-signed one would be, the path with the extra age rule.
    let oldest_allowed = signed.then(|| now() - voronka_domain::repo::event_receipts::RECEIPT_RETENTION);
    let verdicts = match check_batch(body, signed, now(), limits, oldest_allowed) {
        Ok(verdicts) => verdicts,
        Err(error) => {
            assert!(error.status.is_client_error(), "a bad batch is the client's error: {error:?}");
            return;
        }
    };
    assert!(!verdicts.is_empty() && verdicts.len() <= limits.max_events_per_batch);
    for (index, (_, verdict)) in verdicts.into_iter().enumerate() {
        match verdict {
            Verdict::Accepted(event) => accepted_event(&event, signed),
            Verdict::Rejected { field, .. } => {
                assert!(field.starts_with(&format!("events[{index}]")), "a rejection names its event: {field}")
            }
        }
    }
}

fn accepted_event(event: &Event, signed: bool) {
    assert_eq!(event.trusted, signed);
    if !signed {
        assert!(event.contact.email.is_none() && event.contact.contact_id.is_none(), "unsigned events name nobody");
        assert!(event.event_type.trust() != voronka_domain::model::EventTrust::Server);
    }
    assert!(!event.event_type.is_due_work(), "clients cannot raise Voronka's own work");
    // The queue carries the event as JSON; the evaluator must read back exactly what was accepted.
    let json = serde_json::to_string(event).expect("events serialise");
    let back: Event = serde_json::from_str(&json).expect("an accepted event reads back from the queue");
    assert_eq!(&back, event, "the event changes on its way through the queue");
    let limit = campaigns().settings.limits.max_event_properties_bytes;
    assert!(serde_json::to_vec(&event.properties).expect("properties serialise").len() <= limit);
    match event.event_type {
        EventType::Purchase => assert!(event.purchase().is_some()),
        EventType::AddToCart | EventType::RemoveFromCart => {
            assert!(event.cart_change().is_some(), "an accepted cart event changes a cart")
        }
        _ => {}
    }
}

/// The campaign files with one replaced (or added): `path` on the first line, the text after it.
pub fn campaign_files(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let (path, replacement) = text.split_once('\n').unwrap_or((&text, ""));
    let mut files: Vec<SourceFile> = voronka_campaigns::bundled_files();
    match files.iter_mut().find(|f| f.path == path) {
        Some(file) => file.text = replacement.to_string(),
        None => files.push(SourceFile { path: path.to_string(), text: replacement.to_string() }),
    }
    match Campaigns::load(&files) {
        Ok(loaded) => {
            // A set that loads must work: every template renders, every bot starts.
            let set = loaded.template_set();
            let context = serde_json::json!({});
            for id in loaded.templates.keys() {
                for locale in loaded.templates[id].locales.keys() {
                    let _ = set.render(id, locale, &context);
                }
            }
            for script in loaded.bots.values() {
                let started = voronka_domain::bots::start(script, None, now());
                assert!(!started.session.node.is_empty());
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            for error in &errors.0 {
                assert!(!error.file.is_empty() && !error.message.is_empty(), "errors name file and problem: {error:?}");
            }
        }
    }
}
