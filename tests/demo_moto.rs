//! The faulty demo through the AWS adapters against moto_server: the same simulated shop (seed,
//! visitors, handlers, consumers, faults, end-of-run redrive, invariants and report) as
//! `voronka demo --faults all`, with DynamoDB, SQS and SES v2 through the official SDK in place
//! of the embedded adapters (`voronka_local::demo::run_on`). Small, as moto is slow: its
//! invariants must hold at zero violations, as the embedded run's do (`tests/demo_faults.rs`).
//!
//! How the run is read back (`tests/support/moto_inspect.rs`):
//! - Sent mail: moto keeps every raw message SES v2's `SendEmail` took (its SES backend's
//!   `sent_messages`; the test server serves them, as `/moto-api/data.json` would take minutes to
//!   dump every model); before the checks each is written to the outbox folder as an `.eml`
//!   file, the same bytes the SES adapter sent. So the invariants read what SES was given
//!   (Message-ID per idempotency key, Date, class and contact headers), not a copy the code kept.
//! - Items: DynamoDB Scan with `begins_with` on the partition key; queue depths and the DLQ
//!   redrive through SQS's API; the bodies left in a queue or a DLQ through the test server's
//!   read-only route, since SQS cannot list messages without receiving them.
//! - Time: SQS runs on the simulation's clock (`SimulatedSqsClock`), as the embedded queue does,
//!   so visibility timeouts and delays run out as simulated time passes; the consumers' empty
//!   receives do not wait (`SqsQueue::with_receive_wait(0)`), else each drain would wait a real
//!   second per queue.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::moto_inspect::{MotoInspect, SimulatedSqsClock};
use voronka_aws::{DynamoStore, QueueUrls, SesMailer, SqsQueue};
use voronka_domain::ports::{Clock, Fault};
use voronka_local::demo::{self, DemoOptions};
use voronka_local::stack::Adapters;

/// Visitors and days of the run: moto answers a call in 5 to 15 ms on this shared two-core
/// machine, and a visitor makes a few hundred calls (events, journeys, mail), so the run is small.
const VISITORS: usize = 14;
/// Two days: the bounce storm falls on the second.
const DAYS: u32 = 2;
/// Every fault on, the store's, the queue's and the crashes at the reference rates. The run sends
/// about a dozen messages, which SES throttling at 20%, SES errors at 5% and a storm bouncing 30%
/// of a day's mail would often miss. At these rates, drawn per SES call (and a throttled or failed
/// call is tried again), twelve calls miss throttling with odds of 1 in 4 000 and errors 1 in 450.
/// The storm bounces all of the second day's mail: it is drawn by address, and the day's few
/// messages went to addresses that all escaped a 60% or a 90% storm in some runs. So the test can
/// insist on every fault but the storm, which needs mail on its day. (Higher SES rates cost real time: the sender waits 0.2 s and 0.8 s
/// before its second and third try.)
const FAULTS: &str = "all,ses-throttle=0.5,ses-error=0.4,bounce-storm=1";

#[test]
fn the_faulty_demo_keeps_every_invariant_over_the_aws_adapters_against_moto() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let started = Instant::now();
    let report = runtime.block_on(async {
        let config = support::moto::sdk_config().await;
        let endpoint = support::moto::endpoint();
        let suffix = std::process::id();
        let table = format!("voronka-demo-{suffix}");
        support::moto::create_table(&config, &table).await;
        // As many receives before the DLQ as the embedded queue allows.
        let max_receives = voronka_embedded::DEFAULT_MAX_RECEIVES;
        let (events, events_dlq) =
            support::moto::create_queue(&config, &format!("events-d-{suffix}"), max_receives).await;
        let (sends, sends_dlq) = support::moto::create_queue(&config, &format!("sends-d-{suffix}"), max_receives).await;
        aws_sdk_sesv2::Client::new(&config)
            .create_email_identity()
            .email_identity("shop.example")
            .send()
            .await
            .expect("verify the sending domain in moto");
        let urls = QueueUrls { events, events_dlq: Some(events_dlq), sends, sends_dlq: Some(sends_dlq) };
        let adapters: demo::AdapterFactory = Box::new(move |clock| {
            let clock: Arc<dyn Clock> = clock;
            let dynamo = Arc::new(DynamoStore::new(&config, table, clock.clone()));
            let sqs = Arc::new(SqsQueue::new(&config, urls).with_receive_wait(Duration::ZERO));
            Ok(Adapters {
                store: dynamo.clone(),
                queue: Arc::new(SimulatedSqsClock::new(sqs.clone(), clock, endpoint.clone())),
                mailer: Some(Arc::new(SesMailer::new(&config, None))),
                inspect: Arc::new(MotoInspect::new(endpoint, dynamo, sqs)),
            })
        });
        let options = DemoOptions {
            seed: 7,
            visitors: VISITORS,
            days: DAYS,
            data_dir: None,
            dashboard_dir: None,
            show_progress: false,
            faults: Some(FAULTS.parse().unwrap()),
        };
        demo::run_on(options, adapters).await.expect("the demo runs to its end over moto")
    });
    let elapsed = started.elapsed();
    report.print();
    println!("demo over moto: {:.1} s", elapsed.as_secs_f64());

    let invariants = report.invariants.as_ref().expect("the invariants were checked");
    assert_eq!(invariants.violations(), 0, "{:#?}", invariants.invariants);
    assert!(invariants.outbox_messages > 0, "SES's sent mail was read back");
    let emails: u64 = report.emails_by_template.values().sum();
    assert!(emails > 0, "mail was sent: {:?}", report.emails_by_template);
    assert!(report.contacts_stored > 0 && report.contacts_created > 0, "leads were captured");
    assert!(report.events_accepted > 0 && report.queue_messages_handled > 0);
    let faults = report.faults.as_ref().expect("a faults section");
    assert_eq!(faults.client_gave_up, 0, "{faults:?}");
    // The bounce storm is drawn by recipient on the second day's mail, and a run this small may send
    // none that day (moto's timing moves sends across midnight): it is not required here.
    // `tests/demo_faults.rs` holds the storm to tripping the guard on the embedded run.
    let never: Vec<&str> = Fault::ALL
        .iter()
        .filter(|fault| **fault != Fault::BounceStorm && faults.injected.injected(**fault) == 0)
        .map(|fault| fault.name())
        .collect();
    assert!(never.is_empty(), "never injected over moto: {never:?} ({faults:?})");
}
