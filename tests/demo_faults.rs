//! Fault injection end to end: the demo with every fault on still stores every acknowledged lead
//! once, and really injected each fault; and what a fault found in the sender stays fixed.

mod support;

use jiff::Timestamp;
use serde_json::{Map, json};
use support::inprocess::TestStack;
use voronka_domain::model::{Channel, Priority, SendClass, SendOrigin, SendRequest};
use voronka_domain::ports::{Delivery, Fault, FaultPlan, QueueName};
use voronka_domain::repo::SendLedger;
use voronka_local::demo::{self, DemoOptions};

#[test]
fn the_demo_with_every_fault_on_keeps_every_acknowledged_lead_and_really_injects_each_fault() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let report = runtime
        .block_on(demo::run(DemoOptions {
            seed: 7,
            visitors: 250,
            days: 3,
            data_dir: None,
            dashboard_dir: None,
            show_progress: false,
            faults: Some("all".parse().unwrap()),
        }))
        // The demo's own check: every acknowledged lead is stored once, every other contact is a
        // buyer the shop reported.
        .expect("the demo runs to its end under faults");
    let faults = report.faults.expect("a faults section");
    for fault in Fault::ALL {
        assert!(faults.injected.injected(fault) > 0, "{} never injected: {faults:?}", fault.name());
    }
    let injected = &faults.injected;
    assert!(injected.duplicates_next_receive > 0, "no message was handled by two consumers at once: {faults:?}");
    assert!(faults.workers.batches_killed > 0 && faults.client_retries > 0, "{faults:?}");
    assert_eq!(faults.client_gave_up, 0, "{faults:?}");
    assert!(report.contacts_stored > 0 && report.emails_by_template.values().sum::<u64>() > 0);
}

/// The same flags and seed replay the same run: every count of the report, faults included.
/// (Without duplicate delivery: twins racing on one message may part; see `ports::faulty`.)
#[test]
fn the_same_flags_and_seed_replay_the_same_faulty_run() {
    let run = |seed: u64| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let report = runtime
            .block_on(demo::run(DemoOptions {
                seed,
                visitors: 60,
                days: 1,
                data_dir: None,
                dashboard_dir: None,
                show_progress: false,
                faults: Some("all,duplicate-delivery=0,crash-between-steps=0.05".parse().unwrap()),
            }))
            .expect("the demo runs");
        let mut value = serde_json::to_value(&report).unwrap();
        // Wall-clock figures differ from run to run; everything the run did must not.
        // (The cost section prices Lambda duration from the wall time of each invocation.)
        for timing in ["wall_time_ms", "mean_request_micros", "micros_per_simulated_event", "peak_memory_mib", "cost"] {
            value.as_object_mut().unwrap().remove(timing);
        }
        for timing in ["outbox_read_ms", "check_ms"] {
            value["invariants"].as_object_mut().unwrap().remove(timing);
        }
        value
    };
    let first = run(5);
    assert!(first["faults"]["injected"]["crashes"].as_u64().unwrap() > 0, "{}", first["faults"]);
    let second = run(5);
    let differing = |a: &serde_json::Value, b: &serde_json::Value| -> Vec<String> {
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return vec![] };
        a.keys().filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
    };
    assert_eq!(first, second, "differing: {:?}", differing(&first, &second));
    assert_ne!(first["faults"], run(6)["faults"], "another seed, other faults");
}

#[test]
fn the_fault_flag_names_what_is_wrong() {
    let error = "ses-throttle=0.2,store-throtle=0.1".parse::<FaultPlan>().unwrap_err().to_string();
    assert!(error.contains("unknown fault `store-throtle`"), "{error}");
    let error = "crash-between-steps=2".parse::<FaultPlan>().unwrap_err().to_string();
    assert!(error.contains("crash-between-steps") && error.contains("outside 0..=1"), "{error}");
}

/// A deferred marketing send (quiet hours) delivered again and again, as SQS may: the wait goes
/// on as one parked copy. Before each copy named its hop, every duplicate re-queued itself, each
/// 15-minute hop doubled them, and a fault run turned one request into 253 messages that ended in
/// the dead-letter queue; now a wait longer than the queue's delay is one due item the scheduler
/// dispatches when the quiet hours end.
#[tokio::test]
async fn a_deferred_send_delivered_twice_waits_on_as_one_parked_copy() {
    use voronka_domain::repo::due::{self, DueWork};
    let t = TestStack::new();
    let contact_id = t.consented_contact("twin.hops@example.com", json!({})).await;
    t.drain(QueueName::Sends).await;
    // 22:30 in Moscow: quiet hours until 09:00.
    let now = jiff::Timestamp::now();
    let evening = now.to_zoned(jiff::tz::TimeZone::UTC).date().tomorrow().unwrap().at(19, 30, 0, 0);
    t.clock.set(evening.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp());
    let request = SendRequest {
        idempotency_key: "promo:twin-hops".into(),
        contact_id: contact_id.clone(),
        template: "welcome".into(),
        channel: Channel::Email,
        class: SendClass::Marketing,
        priority: Priority::Journey,
        context: Map::new(),
        origin: SendOrigin::Form { form_id: "consultation".into(), submission_id: "s-1".into() },
        requested_at: Timestamp::from_second(1_800_000_000).unwrap(),
        recipient: voronka_domain::model::Recipient::Contact,
    };
    let deliver = |body: String, id: &str| {
        let delivery = Delivery { message_id: id.into(), body };
        sender::process_batch(&t.stack.sender, vec![delivery])
    };
    let store = t.stack.state.store.as_ref();
    let parked = || async {
        due::pending_for(store, &contact_id)
            .await
            .unwrap()
            .into_iter()
            .filter(|item| matches!(item.work, DueWork::DeferredSend { .. }))
            .count()
    };
    let original = serde_json::to_string(&request).unwrap();
    assert!(deliver(original.clone(), "m-0").await.is_empty());
    let state = SendLedger::new(store).state("promo:twin-hops").await.unwrap().unwrap();
    assert_eq!(state.get_str("state"), Some("deferred"));
    assert_eq!(parked().await, 1, "the wait is parked as one due item");
    assert!(t.drain(QueueName::Sends).await.is_empty(), "nothing waits on the queue");

    // The original delivered again, twice, during the night: dropped, nothing more parked.
    for hour in 1..=3 {
        t.advance(3600);
        deliver(original.clone(), &format!("m-0-again-{hour}")).await;
        deliver(original.clone(), &format!("m-0-twin-{hour}")).await;
        assert_eq!(parked().await, 1, "hour {hour}: still one parked copy");
        assert!(t.drain(QueueName::Sends).await.is_empty());
    }
    // The quiet hours end: the scheduler dispatches the parked copy, once.
    t.advance(8 * 3600);
    cart_scheduler::run(&t.stack.scheduler).await.unwrap();
    cart_scheduler::run(&t.stack.scheduler).await.unwrap();
    let queued = t.drain(QueueName::Sends).await;
    assert_eq!(queued.len(), 1, "one copy carries the wait to its end");
    // That copy delivered twice, and the original once more: one message goes out.
    deliver(queued[0].clone(), "m-due").await;
    deliver(queued[0].clone(), "m-due-twin").await;
    deliver(original, "m-0-late").await;
    let sent: Vec<_> = voronka_local::outbox::entries(t.stack.outbox.dir());
    assert_eq!(sent.len(), 1, "sent once");
    let state = SendLedger::new(store).state("promo:twin-hops").await.unwrap().unwrap();
    assert_eq!(state.get_str("state"), Some("sent"));
}

/// A parked copy delivered before its time (the scheduler's clock ahead of the sender's) re-defers
/// onto the same parked item: the ledger must go on naming the hop that item carries, or the next
/// early delivery of it is dropped as a duplicate and the request waits for ever.
#[tokio::test]
async fn a_parked_copy_delivered_early_keeps_the_ledger_naming_its_hop() {
    use voronka_domain::repo::due::{self, DueWork};
    let t = TestStack::new();
    let contact_id = t.consented_contact("early.parked@example.com", json!({})).await;
    t.drain(QueueName::Sends).await;
    let now = jiff::Timestamp::now();
    let evening = now.to_zoned(jiff::tz::TimeZone::UTC).date().tomorrow().unwrap().at(19, 30, 0, 0);
    t.clock.set(evening.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp());
    let request = SendRequest {
        idempotency_key: "promo:early-parked".into(),
        contact_id: contact_id.clone(),
        template: "welcome".into(),
        channel: Channel::Email,
        class: SendClass::Marketing,
        priority: Priority::Journey,
        context: Map::new(),
        origin: SendOrigin::Form { form_id: "consultation".into(), submission_id: "s-2".into() },
        requested_at: Timestamp::from_second(1_800_000_000).unwrap(),
        recipient: voronka_domain::model::Recipient::Contact,
    };
    let store = t.stack.state.store.as_ref();
    let deliver =
        |body: String, id: &str| sender::process_batch(&t.stack.sender, vec![Delivery { message_id: id.into(), body }]);
    deliver(serde_json::to_string(&request).unwrap(), "m-0").await;
    let parked_hop = || async {
        due::pending_for(store, &contact_id).await.unwrap().into_iter().find_map(|item| match item.work {
            DueWork::DeferredSend { hop, .. } => Some(hop),
            _ => None,
        })
    };
    let ledger_hop = || async {
        SendLedger::new(store).state("promo:early-parked").await.unwrap().unwrap().get_str("hop").map(str::to_string)
    };
    let hop = parked_hop().await.expect("parked");
    assert_eq!(ledger_hop().await, Some(hop.clone()));
    // The parked copy, as the scheduler would dispatch it, arrives at 23:00 and again at 01:00.
    let mut copy = serde_json::to_value(&request).unwrap();
    copy["hop"] = json!(hop);
    for (n, hours) in [(1, 1), (2, 2)] {
        t.advance(hours * 3600);
        assert!(deliver(copy.to_string(), &format!("m-early-{n}")).await.is_empty());
        assert_eq!(ledger_hop().await, Some(hop.clone()), "delivery {n}: the ledger names the parked copy's hop");
    }
    assert!(voronka_local::outbox::entries(t.stack.outbox.dir()).is_empty(), "nothing sent in quiet hours");
}

/// A stack with these faults and one page view acknowledged on the events queue.
async fn stack_with_one_event(
    plan: FaultPlan,
) -> (voronka_local::stack::Stack, std::sync::Arc<voronka_domain::ports::SimulatedClock>) {
    use std::sync::Arc;

    use axum::body::Body;
    use http::{Request, StatusCode, header};
    use tower::ServiceExt;
    use voronka_domain::ports::{Faults, SeededIds, SimulatedClock};
    use voronka_local::stack::{Stack, StackOptions};

    let clock = Arc::new(SimulatedClock::starting_at("2026-11-02T10:00:00Z".parse().unwrap()));
    let stack = Stack::open(StackOptions {
        data_dir: None,
        metering: None,
        campaigns_dir: None,
        public_base_url: None,
        clock: clock.clone(),
        ids: Arc::new(SeededIds::new(1)),
        faults: Some(Arc::new(Faults::new(plan, 1))),
    })
    .unwrap();
    let app = voronka_local::serve::app(stack.state.clone(), stack.outbox.dir().to_path_buf());
    let body = json!({"events": [{"event_id": "anon-1:pv", "type": "page_view", "anonymous_id": "anon-1",
        "properties": {"url": "https://shop.example/"}}]});
    let mut request = Request::post("/v1/events")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    request.extensions_mut().insert(lead_capture::ClientIp("198.51.100.7".parse().unwrap()));
    // Outside an invocation: no fault.
    assert_eq!(app.oneshot(request).await.unwrap().status(), StatusCode::ACCEPTED);
    (stack, clock)
}

/// A consumer killed after its first write deletes nothing: the message is hidden until the
/// simulated clock passes its visibility timeout, then comes back to a fresh invocation, which
/// finds the work done and deletes it.
#[tokio::test]
async fn a_killed_consumer_leaves_its_message_to_come_back_after_the_visibility_timeout() {
    use voronka_local::workers;
    let (stack, clock) = stack_with_one_event(FaultPlan::default().with(Fault::CrashBetweenSteps, 1.0)).await;
    assert_eq!(workers::run_events_once(&stack).await.unwrap(), 1);
    assert_eq!(stack.worker_stats.counts().batches_killed, 1);
    assert_eq!(stack.embedded().queue.depth(QueueName::Events).await.unwrap(), 1, "not deleted");
    assert_eq!(workers::run_events_once(&stack).await.unwrap(), 0, "hidden until its visibility timeout");
    clock.advance(jiff::SignedDuration::from_secs(workers::VISIBILITY.as_secs() as i64 + 1));
    assert_eq!(workers::run_events_once(&stack).await.unwrap(), 1, "back");
    assert_eq!(stack.worker_stats.counts().batches_killed, 1, "the next invocation is not killed");
    assert_eq!(stack.embedded().queue.depth(QueueName::Events).await.unwrap(), 0, "done and deleted");
}

/// A message its consumer fails at every receive (the store throttled through every SDK
/// attempt) goes to the dead-letter queue after the fifth receive, where it is counted.
#[tokio::test]
async fn a_message_failed_at_every_receive_ends_in_the_dead_letter_queue_counted() {
    use voronka_domain::ports::Queue;
    use voronka_local::workers;
    let (stack, clock) = stack_with_one_event(FaultPlan::default().with(Fault::StoreThrottle, 1.0)).await;
    for receive in 1..=voronka_embedded::DEFAULT_MAX_RECEIVES {
        assert_eq!(workers::run_events_once(&stack).await.unwrap(), 1, "receive {receive}");
        clock.advance(jiff::SignedDuration::from_secs(workers::VISIBILITY.as_secs() as i64 + 1));
    }
    assert_eq!(workers::run_events_once(&stack).await.unwrap(), 0);
    assert_eq!(stack.embedded().queue.dead_letter_count(QueueName::Events).await.unwrap(), 1);
    assert_eq!(stack.worker_stats.counts().messages_failed, u64::from(voronka_embedded::DEFAULT_MAX_RECEIVES));
}
