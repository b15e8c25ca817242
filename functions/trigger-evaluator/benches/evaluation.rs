//! Evaluation throughput per event with the bundled campaigns (shared/campaigns, a mix of the
//! event types a shop sends) and with 56 journeys loaded (the shipped ones and 52 variants with
//! other categories, windows and segments), and template rendering per email.
//!
//! `cargo bench -p trigger-evaluator`: `decide` is the pure decision per event; `apply_event` is
//! the whole path per event on the embedded store (contact, journey states, trigger counts, the
//! transaction, eager dispatch); `render` is one email of the cart template with four items, and
//! `render_bundled/<template>/<locale>` each bundled template in each of its locales.

use std::collections::BTreeMap;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use trigger_evaluator::EvaluatorDeps;
use voronka_domain::campaigns::{Campaigns, SourceFile};
use voronka_domain::deps::{Deps, Ports};
use voronka_domain::journeys::engine::{Decision, decide};
use voronka_domain::model::{ConsentReceipt, Contact, ContactRef, EmailAddress, Event, EventType};
use voronka_domain::ports::SimulatedClock;
use voronka_domain::repo::ContactRepository;
use voronka_domain::signing::Secrets;
use voronka_embedded::Embedded;

const CATEGORIES: [&str; 13] = [
    "shoes", "bags", "courses", "books", "toys", "garden", "kitchen", "sport", "kids", "beauty", "pets", "music",
    "tools",
];

fn campaigns_with_56_journeys() -> Campaigns {
    let mut files = voronka_campaigns::bundled_files();
    for (i, category) in CATEGORIES.iter().enumerate() {
        for (variant, (count, hours, segment)) in
            [(3, 24, "subscribed"), (2, 12, "returning"), (5, 72, "buyers"), (4, 48, "champions")].iter().enumerate()
        {
            let id = format!("interest_{category}_{variant}");
            files.push(SourceFile {
                path: format!("journeys/{id}.toml"),
                text: format!(
                    "id = \"{id}\"\ndescription = \"bench\"\nholdout_percent = 5\nexit_on = [\"purchase\", \"unsubscribed\"]\n\
                     [trigger]\ntype = \"event\"\nevent = \"category_view\"\nwhere = {{ category = \"{category}\" }}\n\
                     count = {count}\nwithin_hours = {hours}\ngroup_by = \"category\"\n\
                     [entry]\nsegments = [\"{segment}\"]\nre_entry = \"cooldown\"\ncooldown_days = {}\n\
                     [[steps]]\nid = \"w\"\ntype = \"wait\"\nhours = 2\n[[steps]]\nid = \"s\"\ntype = \"send\"\ntemplate = \"category_interest\"\n",
                    7 + i
                ),
            });
        }
    }
    let campaigns = Campaigns::load(&files).expect("bench campaigns are valid");
    assert!(campaigns.journeys.len() >= 50, "{} journeys", campaigns.journeys.len());
    campaigns
}

fn subscriber(now: Timestamp) -> Contact {
    let mut contact = Contact::new("c_bench".into(), now, "ru".into(), "Europe/Moscow".into());
    contact.email = Some(EmailAddress::parse("bench@example.com").unwrap());
    contact.record_consent(ConsentReceipt::granted("r", now, "v", false));
    contact.active_days = 3;
    contact
}

fn view(n: u64, now: Timestamp) -> Event {
    Event {
        event_id: format!("bench-{n}"),
        event_type: EventType::CategoryView,
        contact: ContactRef { contact_id: Some("c_bench".into()), ..Default::default() },
        occurred_at: now,
        received_at: now,
        properties: json!({"category": CATEGORIES[(n % 13) as usize]}).as_object().unwrap().clone(),
        // From the shop's back end (signed), so `contact_id` names the contact: an untrusted
        // browser event naming it finds nobody, and apply_event would return before any work.
        trusted: true,
        source: voronka_domain::model::EventSource::Shop,
    }
}

/// The `n`th event of a shop's traffic as the bundled campaigns see it: mostly page, product and
/// category views, with pricing views and email clicks (which score) and a custom event.
fn shop_event(n: u64, now: Timestamp) -> Event {
    let (event_type, properties) = match n % 10 {
        0..=2 => (EventType::PageView, json!({"url": "https://shop.example/", "page_type": "home"})),
        3 => (EventType::PageView, json!({"url": "https://shop.example/pricing", "page_type": "pricing"})),
        4 | 5 => (EventType::ProductView, json!({"product_id": format!("p{}", n % 97), "price": 4990})),
        6 | 7 => (EventType::CategoryView, json!({"category": CATEGORIES[(n % 13) as usize]})),
        8 => (EventType::EmailClicked, json!({"template": "welcome", "url": "https://shop.example/"})),
        _ => (EventType::Custom("wishlist_add".into()), json!({"product_id": format!("p{}", n % 97)})),
    };
    Event { event_type, properties: properties.as_object().unwrap().clone(), ..view(n, now) }
}

/// One context with every variable any bundled template reads: an abandoned cart with four items,
/// a discount, a qualified lead's conversation.
fn rich_context() -> serde_json::Value {
    json!({
        "first_name": "Анна", "currency": "RUB", "shop_name": "Shop", "shop_url": "https://shop.example/",
        "cart_url": "https://shop.example/cart/1", "cart_total": 19960, "category": "shoes",
        "category_url": "https://shop.example/c/shoes", "confirm_url": "https://api.shop.example/v1/confirm?token=x",
        "unsubscribe_url": "https://api.shop.example/v1/unsubscribe?token=x", "form_title": "Newsletter",
        "discount_code": "SAVE-ABCD1234", "discount_percent": 10, "discount_expires": "2027-01-31",
        "years_with_us": 2, "years_word": "года", "bonus_points": 500,
        "lead_name": "Anna", "lead_email": "anna@acme.example", "lead_phone": "+79990000000", "score": 70,
        "script_id": "b2b_demo",
        "conversation": (0..12).map(|i| json!({"speaker": if i % 2 == 0 { "bot" } else { "visitor" }, "text": format!("line {i}")})).collect::<Vec<_>>(),
        "items": (0..4).map(|i| json!({"name": format!("Item {i}"), "quantity": 1, "price": 4990, "image": "https://shop.example/i.jpg", "url": "https://shop.example/p/1"})).collect::<Vec<_>>(),
    })
}

fn bench_bundled(c: &mut Criterion) {
    let campaigns = voronka_campaigns::bundled().expect("the bundled campaigns are valid");
    let journeys = campaigns.journeys.len();
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let contact = subscriber(now);
    let states = BTreeMap::new();
    let counts: BTreeMap<String, usize> =
        CATEGORIES.iter().map(|c| (format!("category_view#category={c}"), 1)).collect();
    let mut n = 0u64;
    c.bench_function(&format!("decide per event, bundled campaigns ({journeys} journeys), shop mix"), |b| {
        b.iter(|| {
            n += 1;
            let event = shop_event(n, now);
            let decision =
                Decision { campaigns: &campaigns, event: &event, before: &contact, now, trigger_counts: &counts };
            let mut after = contact.clone();
            decide(&decision, &mut after, &states)
        })
    });

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (clock, deps) = evaluator_on_embedded(campaigns.clone(), now, &runtime);
    let mut m = 0u64;
    c.bench_function(
        &format!("apply_event per event, bundled campaigns ({journeys} journeys), shop mix, embedded store"),
        |b| {
            b.iter(|| {
                m += 1;
                clock.advance(SignedDuration::from_secs(1));
                let event = shop_event(m, voronka_domain::ports::Clock::now(clock.as_ref()));
                runtime.block_on(trigger_evaluator::apply_event(&deps, &event)).unwrap()
            })
        },
    );

    let templates = campaigns.template_set();
    let context = rich_context();
    let mut group = c.benchmark_group("render_bundled");
    for (id, template) in &campaigns.templates {
        for locale in template.locales.keys() {
            let email = templates.render(id, locale, &context).expect("every bundled template renders");
            assert!(!email.html.is_empty() && !email.subject.is_empty(), "{id}/{locale}");
            group.bench_function(format!("{id}/{locale}"), |b| {
                b.iter(|| templates.render(id, locale, &context).unwrap())
            });
        }
    }
    group.finish();
}

/// The evaluator on an in-memory embedded store holding one subscribed contact, `c_bench`.
fn evaluator_on_embedded(
    campaigns: Campaigns,
    now: Timestamp,
    runtime: &tokio::runtime::Runtime,
) -> (Arc<SimulatedClock>, EvaluatorDeps) {
    let clock = Arc::new(SimulatedClock::starting_at(now));
    let embedded = Embedded::in_memory(clock.clone());
    let deps = EvaluatorDeps {
        shared: Deps {
            ports: Ports { store: embedded.store.clone(), queue: embedded.queue.clone(), clock: clock.clone() },
            campaigns: Arc::new(campaigns),
            secrets: Arc::new(Secrets::new(
                "bench-key-bench-key-bench-key-bench-key",
                "bench-events-key-bench-events-key",
            )),
        },
    };
    runtime.block_on(async {
        let email = EmailAddress::parse("bench@example.com").unwrap();
        ContactRepository::new(deps.store.as_ref())
            .upsert_by_email(&email, now, || subscriber(now), |_| {})
            .await
            .unwrap();
        // The measured events must reach the whole path, not an early return.
        let probe = Event { event_id: "probe".into(), ..view(0, now) };
        let outcome = trigger_evaluator::apply_event(&deps, &probe).await.unwrap();
        assert_eq!(outcome, trigger_evaluator::Outcome::Applied, "the bench contact is found");
    });
    (clock, deps)
}

fn bench(c: &mut Criterion) {
    let campaigns = campaigns_with_56_journeys();
    let now = Timestamp::from_second(1_800_000_000).unwrap();

    let contact = subscriber(now);
    let states = BTreeMap::new();
    let counts: BTreeMap<String, usize> =
        CATEGORIES.iter().map(|c| (format!("category_view#category={c}"), 3)).collect();
    let mut n = 0u64;
    c.bench_function("decide per event, 56 journeys", |b| {
        b.iter(|| {
            n += 1;
            let event = view(n, now);
            let decision =
                Decision { campaigns: &campaigns, event: &event, before: &contact, now, trigger_counts: &counts };
            let mut after = contact.clone();
            decide(&decision, &mut after, &states)
        })
    });

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (clock, deps) = evaluator_on_embedded(campaigns.clone(), now, &runtime);
    let mut m = 0u64;
    c.bench_function("apply_event per event, 56 journeys, embedded store", |b| {
        b.iter(|| {
            m += 1;
            clock.advance(SignedDuration::from_secs(1));
            let event = view(m, voronka_domain::ports::Clock::now(clock.as_ref()));
            runtime.block_on(trigger_evaluator::apply_event(&deps, &event)).unwrap()
        })
    });

    let templates = campaigns.template_set();
    let context = json!({
        "first_name": "Анна", "currency": "RUB", "cart_url": "https://shop.example/cart/1", "cart_total": 19960,
        "unsubscribe_url": "https://api.shop.example/v1/unsubscribe?token=x",
        "items": (0..4).map(|i| json!({"name": format!("Item {i}"), "quantity": 1, "price": 4990, "image": "https://shop.example/i.jpg"})).collect::<Vec<_>>(),
    });
    c.bench_function("render abandoned_cart_2 per email", |b| {
        b.iter(|| templates.render("abandoned_cart_2", "ru", &context).unwrap())
    });
}

criterion_group!(benches, bench_bundled, bench);
criterion_main!(benches);
