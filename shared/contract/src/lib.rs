//! The contract suite: what every adapter of the storage and queue ports must do, written once
//! and run against the embedded adapters and the AWS adapters (against `moto_server`).
//!
//! A backend provides a [`Harness`]: fresh, empty storage and queues, plus a way to let time
//! pass (a simulated clock for the embedded adapters, real sleeping against SQS). The
//! [`contract_tests!`] macro turns every check into its own `#[tokio::test]`.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use voronka_domain::model::{Contact, EmailAddress};
use voronka_domain::ports::{
    Clock, Condition, Index, Item, Key, OutgoingMessage, Query, Queue, QueueError, QueueName, SortKeyRange, Store,
    StoreError, TransactOp, UpdateAction,
};
use voronka_domain::repo::{
    ConsentReceipts, ContactRepository, EventClaim, EventReceipts, RateDecision, RateLimiter, UpsertOutcome,
};

pub type Wait = Arc<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Fresh ports of one backend.
pub struct Harness {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    /// Lets `duration` pass as the backend sees time.
    pub wait: Wait,
    /// Receives after which a message moves to the dead-letter queue.
    pub max_receives: u32,
}

/// Declares one `#[tokio::test]` per contract check, each with a fresh harness from `$make`.
#[macro_export]
macro_rules! contract_tests {
    ($make:path) => {
        $crate::contract_tests!(@each $make;
            store_round_trips_every_value_type,
            store_get_of_a_missing_item_is_none,
            store_conditional_put_refuses_an_existing_item,
            store_optimistic_version_check,
            store_update_upserts_and_returns_the_new_item,
            store_update_conditions_see_a_missing_item_as_missing,
            store_conditional_delete,
            store_queries_sort_key_ranges_in_order_with_pages,
            store_queries_the_secondary_index_with_pages,
            store_hides_expired_items_from_reads,
            store_transactions_are_all_or_nothing,
            store_transaction_checks_and_deletes,
            store_batch_put_writes_every_item,
            store_concurrent_conditional_puts_let_exactly_one_win,
            store_concurrent_counter_increments_are_not_lost,
            store_rejects_invalid_requests,
            contacts_concurrent_spellings_of_one_address_make_one_contact,
            contacts_update_is_optimistic_and_retries,
            contacts_listing_reads_every_contact,
            contacts_keep_every_consent_receipt_as_an_item_under_concurrent_writes,
            rate_limiter_allows_the_limit_then_refuses,
            event_receipts_tell_new_unconfirmed_and_duplicate,
            aggregates_read_back_what_counters_add,
            trigger_counts_count_a_window_by_the_second,
            event_log_reads_a_subject_newest_first_and_a_day_in_time_order,
            discount_codes_are_issued_and_redeemed_once,
            erasure_removes_every_item_of_a_person_in_pages_and_keeps_a_tombstone,
            erasure_no_consent_receipt_lands_from_a_writer_that_read_the_contact_before,
            queue_round_trip_and_delete,
            queue_batches_report_each_message,
            queue_hides_received_messages_until_the_visibility_timeout,
            queue_delays_messages,
            queue_moves_poison_messages_to_the_dead_letter_queue,
            scheduler_overlapping_runs_dispatch_each_due_item_once,
            a_scheduler_run_out_of_time_leaves_the_rest_for_the_next_run
        );
    };
    (@each $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let harness = $make().await;
                $crate::$name(&harness).await;
            }
        )*
    };
}

fn item(pk: &str, sk: &str, attributes: Value) -> Item {
    Item::new(&Key::new(pk, sk), attributes)
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub async fn store_round_trips_every_value_type(h: &Harness) {
    let attributes = json!({
        "text": "Привет, мир — ✓",
        "empty_text": "",
        "int": 42,
        "negative": -7,
        "big": 9_007_199_254_740_993_i64,
        "float": 1990.5,
        "yes": true,
        "no": false,
        "nothing": null,
        "list": [1, "two", {"three": 3}],
        "empty_list": [],
        "map": {"nested": {"deep": "value"}, "n": 1},
    });
    let stored = item("RT#1", "A", attributes.clone());
    h.store.put(stored.clone(), None).await.unwrap();
    let read = h.store.get(&Key::new("RT#1", "A")).await.unwrap().expect("the item was just written");
    assert_eq!(read, stored, "an item reads back exactly as written");
}

pub async fn store_get_of_a_missing_item_is_none(h: &Harness) {
    assert!(h.store.get(&Key::new("MISSING", "X")).await.unwrap().is_none());
}

pub async fn store_conditional_put_refuses_an_existing_item(h: &Harness) {
    let first = item("CP#1", "A", json!({"v": 1}));
    h.store.put(first.clone(), Some(Condition::NotExists)).await.unwrap();
    let second = item("CP#1", "A", json!({"v": 2}));
    let error = h.store.put(second, Some(Condition::NotExists)).await.unwrap_err();
    assert!(matches!(error, StoreError::ConditionFailed), "got {error:?}");
    assert_eq!(h.store.get(&Key::new("CP#1", "A")).await.unwrap(), Some(first), "the failed put changed nothing");
    h.store.put(item("CP#1", "A", json!({"v": 3})), Some(Condition::Exists)).await.unwrap();
    let error = h.store.put(item("CP#2", "A", json!({})), Some(Condition::Exists)).await.unwrap_err();
    assert!(matches!(error, StoreError::ConditionFailed));
}

pub async fn store_optimistic_version_check(h: &Harness) {
    h.store.put(item("OV#1", "A", json!({"version": 1, "name": "a"})), None).await.unwrap();
    h.store
        .put(item("OV#1", "A", json!({"version": 2, "name": "b"})), Some(Condition::equals("version", 1)))
        .await
        .unwrap();
    let stale =
        h.store.put(item("OV#1", "A", json!({"version": 2, "name": "c"})), Some(Condition::equals("version", 1))).await;
    assert!(matches!(stale, Err(StoreError::ConditionFailed)), "a stale version must not overwrite");
    let read = h.store.get(&Key::new("OV#1", "A")).await.unwrap().unwrap();
    assert_eq!(read.get_str("name"), Some("b"));
}

pub async fn store_update_upserts_and_returns_the_new_item(h: &Harness) {
    let key = Key::new("UP#1", "A");
    let created = h
        .store
        .update(
            &key,
            vec![
                UpdateAction::add("count", 2),
                UpdateAction::set("name", "first"),
                UpdateAction::set_if_not_exists("created", "t1"),
                UpdateAction::Append("log".into(), vec![json!("a")]),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(created.get("count"), Some(&json!(2)));
    assert_eq!(created.get("log"), Some(&json!(["a"])));
    let updated = h
        .store
        .update(
            &key,
            vec![
                UpdateAction::add("count", 3),
                UpdateAction::set_if_not_exists("created", "t2"),
                UpdateAction::Append("log".into(), vec![json!("b"), json!("c")]),
                UpdateAction::remove("name"),
                UpdateAction::add("ratio", 0.5),
            ],
            Some(Condition::equals("count", 2)),
        )
        .await
        .unwrap();
    assert_eq!(updated.get("count"), Some(&json!(5)));
    assert_eq!(updated.get_str("created"), Some("t1"), "set-if-not-exists keeps the first value");
    assert_eq!(updated.get("log"), Some(&json!(["a", "b", "c"])));
    assert_eq!(updated.get("name"), None);
    assert_eq!(updated.get("ratio").and_then(Value::as_f64), Some(0.5));
    assert_eq!(h.store.get(&key).await.unwrap(), Some(updated), "the returned item is the stored item");
}

pub async fn store_update_conditions_see_a_missing_item_as_missing(h: &Harness) {
    let key = Key::new("UC#1", "A");
    let refused = h.store.update(&key, vec![UpdateAction::add("n", 1)], Some(Condition::less_than("n", 5))).await;
    assert!(matches!(refused, Err(StoreError::ConditionFailed)), "a comparison with a missing attribute is false");
    assert!(h.store.get(&key).await.unwrap().is_none(), "a refused update creates nothing");
    let limit = Condition::Or(vec![Condition::attribute_not_exists("n"), Condition::less_than("n", 2)]);
    for _ in 0..2 {
        h.store.update(&key, vec![UpdateAction::add("n", 1)], Some(limit.clone())).await.unwrap();
    }
    let third = h.store.update(&key, vec![UpdateAction::add("n", 1)], Some(limit)).await;
    assert!(matches!(third, Err(StoreError::ConditionFailed)));
    let refused =
        h.store.update(&Key::new("UC#2", "A"), vec![UpdateAction::set("x", 1)], Some(Condition::Exists)).await;
    assert!(matches!(refused, Err(StoreError::ConditionFailed)), "an update conditioned on existence creates nothing");
}

pub async fn store_conditional_delete(h: &Harness) {
    let key = Key::new("DEL#1", "A");
    h.store.put(item("DEL#1", "A", json!({"state": "pending"})), None).await.unwrap();
    let refused = h.store.delete(&key, Some(Condition::equals("state", "done"))).await;
    assert!(matches!(refused, Err(StoreError::ConditionFailed)));
    assert!(h.store.get(&key).await.unwrap().is_some());
    h.store.delete(&key, Some(Condition::equals("state", "pending"))).await.unwrap();
    assert!(h.store.get(&key).await.unwrap().is_none());
    h.store.delete(&key, None).await.unwrap();
}

pub async fn store_queries_sort_key_ranges_in_order_with_pages(h: &Harness) {
    let partition = unique("Q");
    let sort_keys = ["a#1", "a#2", "a#3", "b#1", "b#2", "c", "ä#1"];
    for sk in sort_keys.iter().rev() {
        h.store.put(item(&partition, sk, json!({"sk_copy": sk})), None).await.unwrap();
    }
    h.store.put(item("Q-other", "a#1", json!({})), None).await.unwrap();
    let sks = |items: &[Item]| items.iter().map(|i| i.get_str("sk").unwrap().to_string()).collect::<Vec<_>>();

    let all = h.store.query(Query::partition(Index::Table, &partition)).await.unwrap();
    assert_eq!(sks(&all.items), ["a#1", "a#2", "a#3", "b#1", "b#2", "c", "ä#1"], "byte order, ascending");
    let backward = h.store.query(Query::partition(Index::Table, &partition).backward()).await.unwrap();
    assert_eq!(sks(&backward.items), ["ä#1", "c", "b#2", "b#1", "a#3", "a#2", "a#1"]);
    let prefix = h
        .store
        .query(Query::partition(Index::Table, &partition).range(SortKeyRange::BeginsWith("b#".into())))
        .await
        .unwrap();
    assert_eq!(sks(&prefix.items), ["b#1", "b#2"]);
    let between = h
        .store
        .query(Query::partition(Index::Table, &partition).range(SortKeyRange::Between("a#2".into(), "b#1".into())))
        .await
        .unwrap();
    assert_eq!(sks(&between.items), ["a#2", "a#3", "b#1"], "between is inclusive");
    let upto = h
        .store
        .query(Query::partition(Index::Table, &partition).range(SortKeyRange::LessOrEqual("a#2".into())))
        .await
        .unwrap();
    assert_eq!(sks(&upto.items), ["a#1", "a#2"]);
    let from = h
        .store
        .query(Query::partition(Index::Table, &partition).range(SortKeyRange::GreaterOrEqual("c".into())))
        .await
        .unwrap();
    assert_eq!(sks(&from.items), ["c", "ä#1"]);

    let mut pages = Vec::new();
    let mut query = Query::partition(Index::Table, &partition).limit(3);
    loop {
        let page = h.store.query(query.clone()).await.unwrap();
        assert!(page.items.len() <= 3);
        pages.extend(sks(&page.items));
        match page.next {
            Some(cursor) => query.start_after = Some(cursor),
            None => break,
        }
    }
    assert_eq!(pages, sks(&all.items), "pages join up to the whole partition, nothing twice");
    let followed =
        voronka_domain::ports::query_all(h.store.as_ref(), Query::partition(Index::Table, &partition).limit(2))
            .await
            .unwrap();
    assert_eq!(sks(&followed), sks(&all.items), "query_all follows every page");
}

pub async fn store_queries_the_secondary_index_with_pages(h: &Harness) {
    let index_partition = unique("IDX");
    for (i, due) in ["2026-01-03", "2026-01-01", "2026-01-02", "2026-01-02"].iter().enumerate() {
        let it = item(&format!("ITEM#{i}"), "DUE", json!({"n": i})).with_gsi1(&index_partition, *due);
        h.store.put(it, None).await.unwrap();
    }
    h.store.put(item("ITEM#9", "DUE", json!({"n": 9})), None).await.unwrap();
    let mut seen = Vec::new();
    let mut query =
        Query::partition(Index::Gsi1, &index_partition).range(SortKeyRange::LessOrEqual("2026-01-02".into())).limit(1);
    loop {
        let page = h.store.query(query.clone()).await.unwrap();
        seen.extend(
            page.items.iter().map(|i| (i.get_str("gsi1sk").unwrap().to_string(), i.get_str("pk").unwrap().to_string())),
        );
        match page.next {
            Some(cursor) => query.start_after = Some(cursor),
            None => break,
        }
    }
    let due: Vec<_> = seen.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(due, ["2026-01-01", "2026-01-02", "2026-01-02"], "index order, due items only");
    assert_eq!(seen.iter().map(|(_, pk)| pk).collect::<BTreeSet<_>>().len(), 3, "no item twice across pages");
}

pub async fn store_hides_expired_items_from_reads(h: &Harness) {
    let now = h.clock.now();
    let partition = unique("TTL");
    let expired = item(&partition, "old", json!({})).with_ttl((now - SignedDuration::from_secs(60)).as_second());
    let live = item(&partition, "new", json!({})).with_ttl((now + SignedDuration::from_hours(1)).as_second());
    h.store.put(expired, None).await.unwrap();
    h.store.put(live, None).await.unwrap();
    assert!(h.store.get(&Key::new(&partition, "old")).await.unwrap().is_none(), "an expired item is not read");
    assert!(h.store.get(&Key::new(&partition, "new")).await.unwrap().is_some());
    let page = h.store.query(Query::partition(Index::Table, &partition)).await.unwrap();
    assert_eq!(page.items.iter().map(|i| i.get_str("sk").unwrap()).collect::<Vec<_>>(), ["new"]);
}

pub async fn store_transactions_are_all_or_nothing(h: &Harness) {
    h.store.put(item("TX#taken", "A", json!({"owner": "someone"})), None).await.unwrap();
    let ops = vec![
        TransactOp::Put { item: item("TX#new", "A", json!({"v": 1})), condition: Some(Condition::NotExists) },
        TransactOp::Update {
            key: Key::new("TX#counter", "A"),
            actions: vec![UpdateAction::add("n", 1)],
            condition: None,
        },
        TransactOp::Put { item: item("TX#taken", "A", json!({"owner": "me"})), condition: Some(Condition::NotExists) },
    ];
    let error = h.store.transact(ops).await.unwrap_err();
    match error {
        StoreError::TransactionCancelled { failed } => {
            assert!(failed.is_empty() || failed == vec![2], "names the failing operation when it can: {failed:?}")
        }
        other => panic!("expected a cancelled transaction, got {other:?}"),
    }
    assert!(
        h.store.get(&Key::new("TX#new", "A")).await.unwrap().is_none(),
        "nothing of a cancelled transaction is written"
    );
    assert!(h.store.get(&Key::new("TX#counter", "A")).await.unwrap().is_none());
    assert_eq!(h.store.get(&Key::new("TX#taken", "A")).await.unwrap().unwrap().get_str("owner"), Some("someone"));

    let ops = vec![
        TransactOp::Put { item: item("TX#new", "A", json!({"v": 1})), condition: Some(Condition::NotExists) },
        TransactOp::Update {
            key: Key::new("TX#counter", "A"),
            actions: vec![UpdateAction::add("n", 1)],
            condition: None,
        },
    ];
    h.store.transact(ops).await.unwrap();
    assert!(h.store.get(&Key::new("TX#new", "A")).await.unwrap().is_some());
    assert_eq!(h.store.get(&Key::new("TX#counter", "A")).await.unwrap().unwrap().get("n"), Some(&json!(1)));
}

pub async fn store_transaction_checks_and_deletes(h: &Harness) {
    h.store.put(item("TC#flag", "A", json!({"open": true})), None).await.unwrap();
    h.store.put(item("TC#doomed", "A", json!({})), None).await.unwrap();
    let closed = vec![
        TransactOp::Check { key: Key::new("TC#flag", "A"), condition: Condition::equals("open", false) },
        TransactOp::Delete { key: Key::new("TC#doomed", "A"), condition: None },
    ];
    assert!(matches!(h.store.transact(closed).await, Err(StoreError::TransactionCancelled { .. })));
    assert!(h.store.get(&Key::new("TC#doomed", "A")).await.unwrap().is_some());
    let open = vec![
        TransactOp::Check { key: Key::new("TC#flag", "A"), condition: Condition::equals("open", true) },
        TransactOp::Delete { key: Key::new("TC#doomed", "A"), condition: Some(Condition::Exists) },
    ];
    h.store.transact(open).await.unwrap();
    assert!(h.store.get(&Key::new("TC#doomed", "A")).await.unwrap().is_none());
}

pub async fn store_batch_put_writes_every_item(h: &Harness) {
    let partition = unique("BATCH");
    let items: Vec<Item> = (0..25).map(|i| item(&partition, &format!("{i:03}"), json!({"i": i}))).collect();
    h.store.batch_put(items).await.unwrap();
    let page = h.store.query(Query::partition(Index::Table, &partition)).await.unwrap();
    assert_eq!(page.items.len(), 25);
    let too_many: Vec<Item> = (0..26).map(|i| item(&partition, &format!("x{i}"), json!({}))).collect();
    assert!(matches!(h.store.batch_put(too_many).await, Err(StoreError::Invalid(_))));
}

pub async fn store_concurrent_conditional_puts_let_exactly_one_win(h: &Harness) {
    let mut tasks = Vec::new();
    for writer in 0..20 {
        let store = h.store.clone();
        tasks.push(tokio::spawn(async move {
            store.put(item("RACE#1", "A", json!({"writer": writer})), Some(Condition::NotExists)).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => wins += 1,
            Err(StoreError::ConditionFailed) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(wins, 1, "exactly one conditional put wins a race");
}

pub async fn store_concurrent_counter_increments_are_not_lost(h: &Harness) {
    let key = Key::new("COUNT#1", "A");
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let store = h.store.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move { store.update(&key, vec![UpdateAction::add("n", 1)], None).await }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(h.store.get(&key).await.unwrap().unwrap().get("n"), Some(&json!(40)));
}

pub async fn store_rejects_invalid_requests(h: &Harness) {
    let too_many: Vec<TransactOp> = (0..101)
        .map(|i| TransactOp::Put { item: item(&format!("INV#{i}"), "A", json!({})), condition: None })
        .collect();
    assert!(matches!(h.store.transact(too_many).await, Err(StoreError::Invalid(_))));
    let same_key_twice = vec![
        TransactOp::Put { item: item("INV#x", "A", json!({})), condition: None },
        TransactOp::Update { key: Key::new("INV#x", "A"), actions: vec![UpdateAction::add("n", 1)], condition: None },
    ];
    assert!(matches!(h.store.transact(same_key_twice).await, Err(StoreError::Invalid(_))));
    let key_change = h.store.update(&Key::new("INV#y", "A"), vec![UpdateAction::set("pk", "other")], None).await;
    assert!(matches!(key_change, Err(StoreError::Invalid(_))));
    h.store.put(item("INV#z", "A", json!({"text": "x"})), None).await.unwrap();
    let bad_add = h.store.update(&Key::new("INV#z", "A"), vec![UpdateAction::add("text", 1)], None).await;
    assert!(matches!(bad_add, Err(StoreError::Invalid(_))), "adding to a string is refused: {bad_add:?}");
}

fn new_contact(clock: &Arc<dyn Clock>) -> impl Fn() -> Contact + '_ {
    move || Contact::new(unique("c"), clock.now(), "ru".into(), "Europe/Moscow".into())
}

pub async fn contacts_concurrent_spellings_of_one_address_make_one_contact(h: &Harness) {
    let spellings = ["anna@example.com", "Anna@Example.com", "  ANNA@EXAMPLE.COM ", "anna@EXAMPLE.com\t"];
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = h.store.clone();
        let clock = h.clock.clone();
        let spelling = spellings[i % spellings.len()].to_string();
        tasks.push(tokio::spawn(async move {
            let email = EmailAddress::parse(&spelling).unwrap();
            let repo = ContactRepository::new(store.as_ref());
            let tag = format!("t{i}");
            repo.upsert_by_email(&email, clock.now(), new_contact(&clock), move |c| {
                c.tags.insert(tag.clone());
            })
            .await
        }));
    }
    let mut ids = BTreeSet::new();
    let mut created = 0;
    for task in tasks {
        let (contact, outcome) = task.await.unwrap().expect("every submission is stored");
        ids.insert(contact.id.clone());
        if outcome == UpsertOutcome::Created {
            created += 1;
        }
    }
    assert_eq!(ids.len(), 1, "one person, one contact");
    assert_eq!(created, 1, "exactly one submission created it");
    let repo = ContactRepository::new(h.store.as_ref());
    let contact = repo.find_by_email(&EmailAddress::parse("ANNA@example.com").unwrap()).await.unwrap().unwrap();
    assert_eq!(contact.tags.len(), 20, "no submission's change was lost");
    assert_eq!(contact.version, 20);
}

pub async fn contacts_update_is_optimistic_and_retries(h: &Harness) {
    let repo = ContactRepository::new(h.store.as_ref());
    let email = EmailAddress::parse("boris@example.com").unwrap();
    let (contact, _) = repo.upsert_by_email(&email, h.clock.now(), new_contact(&h.clock), |_| {}).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let store = h.store.clone();
        let clock = h.clock.clone();
        let id = contact.id.clone();
        tasks.push(tokio::spawn(async move {
            ContactRepository::new(store.as_ref())
                .update(&id, clock.now(), |c| {
                    c.fit_score += 5;
                    true
                })
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(repo.get(&contact.id).await.unwrap().unwrap().fit_score, 50);
    assert!(matches!(
        repo.update("c_missing", h.clock.now(), |_| true).await,
        Err(voronka_domain::repo::RepoError::NotFound)
    ));
}

pub async fn contacts_listing_reads_every_contact(h: &Harness) {
    let repo = ContactRepository::new(h.store.as_ref());
    let mut expected = BTreeSet::new();
    for i in 0..30 {
        let email = EmailAddress::parse(&format!("person{i}@example.com")).unwrap();
        let (contact, _) = repo.upsert_by_email(&email, h.clock.now(), new_contact(&h.clock), |_| {}).await.unwrap();
        expected.insert(contact.id);
    }
    let listed: BTreeSet<_> = repo.list_all().await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(listed, expected);
}

/// Receipts beyond the contact's latest few are proof all the same: each is stored as its own item
/// in the transaction that records it, so racing writers lose none and a lost race writes none.
pub async fn contacts_keep_every_consent_receipt_as_an_item_under_concurrent_writes(h: &Harness) {
    use voronka_domain::model::ConsentReceipt;
    use voronka_domain::model::contact::MAX_RECEIPTS_ON_CONTACT;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = h.store.clone();
        let clock = h.clock.clone();
        tasks.push(tokio::spawn(async move {
            let email = EmailAddress::parse("vera@example.com").unwrap();
            let receipt = ConsentReceipt::granted(&format!("r{i:02}"), clock.now(), "v1", false);
            ContactRepository::new(store.as_ref())
                .upsert_by_email(&email, clock.now(), new_contact(&clock), move |c| c.record_consent(receipt.clone()))
                .await
        }));
    }
    let mut contact_id = String::new();
    for task in tasks {
        contact_id = task.await.unwrap().expect("every receipt is stored").0.id;
    }
    let contact = ContactRepository::new(h.store.as_ref()).get(&contact_id).await.unwrap().unwrap();
    assert_eq!(contact.consent_receipts.len(), MAX_RECEIPTS_ON_CONTACT, "the contact keeps the latest few");
    let listed = ConsentReceipts::new(h.store.as_ref()).list(&contact_id).await.unwrap();
    let stored: BTreeSet<String> = listed.iter().map(|r| r.id.clone()).collect();
    let expected: BTreeSet<String> = (0..12).map(|i| format!("r{i:02}")).collect();
    assert_eq!(stored, expected, "one item per receipt, none lost");
    assert_eq!(listed.len(), 12, "and none doubled");
    let newest = ConsentReceipts::new(h.store.as_ref()).newest(&contact_id, 3).await.unwrap();
    let expected_newest: Vec<_> = listed.iter().rev().take(3).cloned().collect();
    assert_eq!(newest, expected_newest, "the newest few, newest first, in one bounded read");
}

pub async fn rate_limiter_allows_the_limit_then_refuses(h: &Harness) {
    let limiter = RateLimiter::new(h.store.as_ref());
    let now = Timestamp::from_second(1_800_000_010).unwrap();
    for _ in 0..3 {
        assert_eq!(limiter.hit("ip", "abc", 3, 60, now).await.unwrap(), RateDecision::Allowed);
    }
    assert_eq!(limiter.hit("ip", "abc", 3, 60, now).await.unwrap(), RateDecision::Limited { retry_after_seconds: 50 });
    assert_eq!(limiter.hit("ip", "other", 3, 60, now).await.unwrap(), RateDecision::Allowed, "limits are per subject");
    let next_window = now + SignedDuration::from_secs(60);
    assert_eq!(limiter.hit("ip", "abc", 3, 60, next_window).await.unwrap(), RateDecision::Allowed);
}

pub async fn event_receipts_tell_new_unconfirmed_and_duplicate(h: &Harness) {
    let receipts = EventReceipts::new(h.store.as_ref());
    let now = h.clock.now();
    assert_eq!(receipts.claim("evt-1", now).await.unwrap(), EventClaim::New);
    assert_eq!(receipts.claim("evt-1", now).await.unwrap(), EventClaim::Unconfirmed, "not yet confirmed on the queue");
    receipts.mark_queued("evt-1").await.unwrap();
    assert_eq!(receipts.claim("evt-1", now).await.unwrap(), EventClaim::Duplicate);
    assert_eq!(receipts.claim("evt-2", now).await.unwrap(), EventClaim::New);
}

pub async fn aggregates_read_back_what_counters_add(h: &Harness) {
    use voronka_domain::journeys::attribution::Model;
    use voronka_domain::repo::aggregates::{
        self, Counters, DailyTotal, Dimensions, JourneyDay, JourneyMetric, Metric, attribution_credit,
    };
    use voronka_domain::repo::journey_state::Group;
    let date = jiff::civil::date(2026, 3, 1);
    let journey = unique("journey");
    let autumn = Dimensions::new("vk", Some("autumn"));
    // Two events' transactions: the second adds to what the first wrote.
    for _ in 0..2 {
        let mut counters = Counters::default();
        counters.daily(date, Metric::Orders, &autumn, 1.0);
        counters.daily(date, Metric::Revenue, &autumn, 1250.5);
        counters.daily(date, Metric::CartReminder, &Dimensions::step(1), 1.0);
        counters.attribution(date, Model::Linear, &autumn, 0.5, 625.25);
        counters.attribution(date, Model::LastTouch, &autumn, 1.0, 1250.5);
        counters.journey(&journey, date, Group::Holdout, JourneyMetric::Entries, 1.0);
        counters.journey(&journey, date, Group::Holdout, JourneyMetric::Revenue, 10.0);
        h.store.transact(counters.into_ops()).await.unwrap();
    }
    let store = h.store.as_ref();
    assert_eq!(
        aggregates::daily_totals(store, date).await.unwrap(),
        [
            DailyTotal { metric: Metric::CartReminder, dimensions: Dimensions::step(1), value: 2.0 },
            DailyTotal { metric: Metric::Orders, dimensions: autumn.clone(), value: 2.0 },
            DailyTotal { metric: Metric::Revenue, dimensions: autumn.clone(), value: 2501.0 },
        ]
    );
    assert_eq!(aggregates::daily_total(store, date, &Metric::Orders, &autumn).await.unwrap(), Some(2.0));
    assert_eq!(aggregates::daily_total(store, date, &Metric::Leads, &autumn).await.unwrap(), None);
    let linear = attribution_credit(store, date, Model::Linear).await.unwrap();
    assert_eq!(linear.len(), 1, "one model's credit only: {linear:?}");
    assert_eq!((linear[0].conversions, linear[0].revenue), (1.0, 1250.5));
    assert_eq!(linear[0].dimensions, autumn);
    assert!(attribution_credit(store, date, Model::FirstTouch).await.unwrap().is_empty());
    assert_eq!(
        aggregates::journey_aggregates(store, &journey).await.unwrap(),
        [JourneyDay { date, group: Group::Holdout, entries: 2, exits: 0, conversions: 0, revenue: 20.0 }]
    );
}

pub async fn trigger_counts_count_a_window_by_the_second(h: &Harness) {
    use voronka_domain::repo::trigger_counts;
    let subject = unique("anon:visitor");
    let start = Timestamp::from_second(1_800_000_000).unwrap();
    let expires = start + SignedDuration::from_hours(48);
    let at = |seconds: i64| start + SignedDuration::from_secs(seconds);
    let mut ops = Vec::new();
    for (n, seconds) in [0, 10, 10, 3_600].into_iter().enumerate() {
        let item = trigger_counts::item(&subject, "page_view#shoes", at(seconds), &format!("e{n}"), expires);
        ops.push(TransactOp::Put { item, condition: None });
    }
    let other_key = trigger_counts::item(&subject, "page_view#hats", at(10), "e9", expires);
    ops.push(TransactOp::Put { item: other_key, condition: None });
    h.store.transact(ops).await.unwrap();
    let count = async |from: i64, to: i64, excluding: &str| {
        trigger_counts::count_between(h.store.as_ref(), &subject, "page_view#shoes", at(from), at(to), excluding)
            .await
            .unwrap()
    };
    assert_eq!(count(0, 10, "none").await, 3, "both ends count, every event of the last second");
    assert_eq!(count(0, 10, "e1").await, 2, "the event being counted is not counted twice");
    assert_eq!(count(1, 3_600, "none").await, 3);
    assert_eq!(count(11, 3_599, "none").await, 0);
}

pub async fn event_log_reads_a_subject_newest_first_and_a_day_in_time_order(h: &Harness) {
    use voronka_domain::campaigns::Settings;
    use voronka_domain::model::{ContactRef, Event, EventSource, EventType};
    use voronka_domain::repo::event_log::{self, LogEntry};
    let settings = Settings::parse("settings.toml", include_str!("../../campaigns/settings.toml")).unwrap();
    let contact = unique("c");
    let visitor = format!("anon:{}", unique("v"));
    // Noon of a day of its own in the installation's zone, so the events share one calendar day
    // and no other run's entries share its index partition.
    let zone = voronka_domain::time::time_zone_or_utc(&settings.default_time_zone);
    let day = jiff::civil::date(2030, 3, 1) + SignedDuration::from_hours(24 * (i64::from(std::process::id()) % 300));
    let day_start = day.at(12, 0, 0, 0).to_zoned(zone).unwrap().timestamp();
    let event = |n: usize, minutes: i64, event_type: EventType| {
        let mut properties = serde_json::Map::new();
        properties.insert("revenue".into(), json!(1250.5));
        properties.insert("nested".into(), json!({"list": [1, "two", null], "empty": ""}));
        Event {
            event_id: format!("{contact}-e{n}"),
            event_type,
            contact: ContactRef { contact_id: Some(contact.clone()), ..Default::default() },
            occurred_at: day_start + SignedDuration::from_mins(minutes) + SignedDuration::from_nanos(n as i64 * 1_000),
            received_at: day_start,
            properties,
            trusted: true,
            source: EventSource::Shop,
        }
    };
    let events: Vec<Event> = (0..5).map(|n| event(n, 10 * n as i64, EventType::Purchase)).collect();
    let anonymous = event(9, 25, EventType::PageView);
    let mut ops: Vec<TransactOp> =
        events.iter().map(|e| event_log::entry_op(e, &contact, &settings, event_log::DEFAULT_RETENTION_DAYS)).collect();
    ops.push(event_log::entry_op(&anonymous, &visitor, &settings, event_log::DEFAULT_RETENTION_DAYS));
    h.store.transact(ops).await.unwrap();
    // A redelivery writes the same key again: still one entry.
    h.store.transact(vec![event_log::entry_op(&events[2], &contact, &settings, 400)]).await.unwrap();
    // Past its retention an entry is gone from every read.
    let mut old = event(7, 0, EventType::Purchase);
    old.occurred_at = h.clock.now() - SignedDuration::from_hours(72);
    h.store.transact(vec![event_log::entry_op(&old, &contact, &settings, 1)]).await.unwrap();

    let store = h.store.as_ref();
    let newest_first = event_log::timeline(store, &contact, 3).await.unwrap();
    assert_eq!(newest_first, vec![events[4].clone(), events[3].clone(), events[2].clone()], "bounded, newest first");
    assert_eq!(event_log::timeline(store, &contact, 100).await.unwrap().len(), 5);
    assert_eq!(event_log::timeline(store, &visitor, 100).await.unwrap(), vec![anonymous.clone()]);

    let date = voronka_domain::repo::aggregates::date(day_start, &settings);
    let entries = event_log::entries_on(store, date).await.unwrap();
    let mut expected: Vec<LogEntry> =
        events.iter().map(|e| LogEntry { subject: contact.clone(), event: e.clone() }).collect();
    expected.insert(3, LogEntry { subject: visitor.clone(), event: anonymous.clone() });
    assert_eq!(entries, expected, "the day in time order, each event once with its subject");
    assert_eq!(event_log::events_on(store, date).await.unwrap().len(), 6);
}

pub async fn discount_codes_are_issued_and_redeemed_once(h: &Harness) {
    use voronka_domain::repo::discount_codes::{self, DiscountCode};
    let now = h.clock.now();
    let code = DiscountCode {
        code: unique("CODE"),
        contact_id: "c_1".into(),
        cart_id: "cart-1".into(),
        step: 3,
        percent: 10,
        expires_at: Timestamp::from_second(now.as_second() + 86_400).unwrap(),
        redeemed: false,
    };
    let store = h.store.as_ref();
    assert!(!discount_codes::exists(store, &code.code).await.unwrap());
    store.transact(vec![code.issue_op()]).await.unwrap();
    let failed = store.transact(vec![code.issue_op()]).await;
    assert!(matches!(failed, Err(StoreError::TransactionCancelled { .. })), "issued once: {failed:?}");
    assert_eq!(discount_codes::load(store, &code.code).await.unwrap(), Some(code.clone()));
    assert!(code.redeemable_by("c_1", now));

    store.transact(vec![discount_codes::redeem_op(&code.code, now, json!("order-1"))]).await.unwrap();
    let again = store.transact(vec![discount_codes::redeem_op(&code.code, now, json!("order-2"))]).await;
    assert!(matches!(again, Err(StoreError::TransactionCancelled { .. })), "redeemed once: {again:?}");
    let redeemed = discount_codes::load(store, &code.code).await.unwrap().unwrap();
    assert!(redeemed.redeemed && !redeemed.redeemable_by("c_1", now));
    assert_eq!(discount_codes::load(store, "NO-SUCH-CODE").await.unwrap(), None);
}

const VISIBILITY: Duration = Duration::from_secs(2);

/// Erasure reaches every item kind that holds a person, pages through partitions larger than one
/// transaction, leaves only the tombstone and the erased-address marker, and repeats safely.
const CONTRACT_TOKEN_KEY: &str = "the contract suite's token key";

pub async fn erasure_removes_every_item_of_a_person_in_pages_and_keeps_a_tombstone(h: &Harness) {
    use voronka_domain::model::ConsentReceipt;
    use voronka_domain::ports::NoMailCopies;
    use voronka_domain::repo::bot_sessions::{BotSessions, SessionOrigin, StoredBotSession};
    use voronka_domain::repo::personal_data;
    use voronka_domain::repo::{ContactLookup, carts, consent_receipts};
    use voronka_domain::signing::{KeyRing, RingKey};
    let keys = KeyRing::single(CONTRACT_TOKEN_KEY);
    let store = h.store.as_ref();
    let repo = ContactRepository::new(store);
    let email = EmailAddress::parse(&format!("{}@example.com", unique("erase"))).unwrap();
    let anonymous_id = unique("anon");
    let (contact, _) = repo
        .upsert_by_email(&email, h.clock.now(), new_contact(&h.clock), |c| {
            c.anonymous_ids.push(anonymous_id.clone());
            c.record_consent(ConsentReceipt::granted("r-first", h.clock.now(), "v1", false));
        })
        .await
        .unwrap();
    let id = contact.id.clone();
    // Later anonymous ids push the first off the contact: the erasure reaches it through the index.
    let later_ids: Vec<String> =
        (0..voronka_domain::model::contact::MAX_ANONYMOUS_IDS).map(|_| unique("anon")).collect();
    repo.update(&id, h.clock.now(), |c| {
        c.anonymous_ids.extend(later_ids.iter().cloned());
        true
    })
    .await
    .unwrap();
    let trimmed = repo.get(&id).await.unwrap().unwrap();
    assert!(!trimmed.anonymous_ids.contains(&anonymous_id), "{:?}", trimmed.anonymous_ids);
    // More receipts and log entries than one transaction deletes.
    let receipts: Vec<Item> = (0..120)
        .map(|i| {
            let at = h.clock.now() + SignedDuration::from_secs(i);
            consent_receipts::receipt_item(&id, &ConsentReceipt::granted(&format!("r{i:03}"), at, "v1", false))
        })
        .collect();
    let log: Vec<Item> = (0..130)
        .map(|i| {
            let event = json!({"type": "email_sent", "properties": {"idempotency_key": format!("{id}:mail{i}")}});
            item(&format!("EVLOG#{id}"), &format!("t{i:04}"), json!({"event": event.to_string()}))
        })
        .collect();
    let mut others = vec![
        item(&format!("EVLOG#anon:{anonymous_id}"), "t0", json!({"event": "{}"})),
        item(&format!("JSTATE#{id}"), "welcome", json!({"run": 1})),
        item(&format!("CAP#{id}"), "DAY#2030-01-01", json!({"sent": 1})),
        item(&format!("TRIG#{id}"), "page_view#000000000001#e1", json!({"event_id": "e1"})),
        item(
            &format!("DUE#{id}"),
            "send:x",
            json!({"state": "pending",
            "work": {"kind": "send", "request": {"idempotency_key": format!("{id}:due-send")}}}),
        ),
        item(&format!("SEND#{id}:due-send"), "LEDGER", json!({"state": "processing"})),
        item(&format!("SEND#{id}:mail7"), "LEDGER", json!({"state": "sent"})),
        item(&format!("CART#{id}-cart"), "STATE", json!({"items": [], "owner": id})),
        // Listed under the person too, but the shop reused the id for someone else since.
        item(&format!("CART#{id}-reused"), "STATE", json!({"items": [], "owner": "c_someone_else"})),
    ];
    others.extend(receipts);
    others.extend(log);
    for chunk in others.chunks(25) {
        store.batch_put(chunk.to_vec()).await.unwrap();
    }
    store
        .transact(vec![
            carts::list_cart_op(&id, &format!("{id}-cart"), h.clock.now()),
            carts::list_cart_op(&id, &format!("{id}-reused"), h.clock.now()),
        ])
        .await
        .unwrap();
    let mut session = StoredBotSession::new(
        unique("bs"),
        "b2b".into(),
        json!({"answers": [email.as_typed()]}),
        SessionOrigin::default(),
        h.clock.now(),
        SignedDuration::from_hours(24),
    );
    session.contact_id = Some(id.clone());
    BotSessions::new(store).save(&mut session).await.unwrap();

    // A call with a small budget stops part-way (the log alone is two pages); the next goes on
    // from there.
    let first = personal_data::erase_within(store, &NoMailCopies, &keys, &id, h.clock.now(), 100).await.unwrap();
    assert!(!first.already_erased && !first.complete, "{first:?}");
    assert!(ContactRepository::new(store).get(&id).await.unwrap().is_none(), "the tombstone went first");
    let report = personal_data::erase(store, &NoMailCopies, &keys, &id, h.clock.now()).await.unwrap();
    assert!(report.already_erased && report.complete, "{report:?}");
    assert_eq!(report.erased_at, first.erased_at);
    let removed =
        |kind: &str| first.removed.get(kind).copied().unwrap_or(0) + report.removed.get(kind).copied().unwrap_or(0);
    assert_eq!(removed("consent_receipts"), 121, "{report:?}");
    assert_eq!(removed("event_log"), 131, "{report:?}");
    assert_eq!(removed("send_ledger"), 2, "{report:?}");
    assert_eq!(removed("anonymous_ids"), later_ids.len() + 1, "{report:?}");
    let left = store.query(Query::partition(Index::Table, format!("EVLOG#anon:{anonymous_id}"))).await.unwrap();
    assert!(left.items.is_empty(), "the trimmed id's log is left: {:?}", left.items);
    for kind in ["profile", "email_identity", "bot_sessions", "journey_states", "due_items"] {
        assert_eq!(removed(kind), 1, "{kind}: {report:?}");
    }
    assert_eq!(removed("cart_listings"), 2, "{report:?}");
    let reused = store.get(&Key::new(format!("CART#{id}-reused"), "STATE")).await.unwrap();
    assert!(reused.is_some(), "the cart someone else owns now is theirs");
    for kind in ["frequency_counters", "trigger_counts", "carts"] {
        assert_eq!(removed(kind), 1, "{kind}: {report:?}");
    }
    for partition in ["CONSENT#", "EVLOG#", "JSTATE#", "CAP#", "TRIG#", "DUE#", "CARTS#"] {
        let left = store.query(Query::partition(Index::Table, format!("{partition}{id}"))).await.unwrap();
        assert!(left.items.is_empty(), "{partition} left: {:?}", left.items);
    }
    for key in [
        Key::new(format!("CART#{id}-cart"), "STATE"),
        Key::new(format!("SEND#{id}:mail7"), "LEDGER"),
        Key::new(format!("BOTSESSION#{}", session.session_id), "SESSION"),
        Key::new(format!("EMAIL#{}", email.identity_digest()), "IDENTITY"),
    ] {
        assert_eq!(store.get(&key).await.unwrap(), None, "{key:?}");
    }
    // The anonymous id stays erased for good: a marker with no contact and out of the index.
    let marker = store.get(&Key::new(format!("ANON#{anonymous_id}"), "IDENTITY")).await.unwrap().unwrap();
    let mut attributes: Vec<&str> = marker.0.keys().map(String::as_str).collect();
    attributes.sort();
    assert_eq!(attributes, ["erased_at", "pk", "sk"], "{marker:?}");
    assert!(matches!(repo.lookup_by_anonymous_id(&anonymous_id).await.unwrap(), ContactLookup::Erased(_)));
    let tombstone = store.get(&Key::new(format!("CONTACT#{id}"), "PROFILE")).await.unwrap().unwrap();
    let mut attributes: Vec<&str> = tombstone.0.keys().map(String::as_str).collect();
    attributes.sort();
    assert_eq!(attributes, ["completed_at", "erased_at", "pk", "sk"], "the tombstone holds no data");
    assert!(matches!(repo.lookup(&id).await.unwrap(), ContactLookup::Erased(_)));
    assert!(matches!(repo.update(&id, h.clock.now(), |_| true).await, Err(voronka_domain::repo::RepoError::NotFound)));
    // The kept marker is keyed: the plain digest of the address is no key in the table.
    assert!(personal_data::address_erased_at(store, &keys, &email).await.unwrap().is_some());
    let unkeyed = Key::new(format!("ERASED#{}", email.identity_digest()), "ADDRESS");
    assert_eq!(store.get(&unkeyed).await.unwrap(), None, "a dictionary of addresses finds nothing");
    assert!(personal_data::address_erased_at(store, &KeyRing::single("another key"), &email).await.unwrap().is_none());
    // A rotation puts a new key first: the marker is still found, and moved under the new key.
    let ring_key = |id: &str, key: &str| RingKey { id: id.into(), key: key.into() };
    let rotated =
        KeyRing::new(vec![ring_key("k2", "the next contract token key"), ring_key("k1", CONTRACT_TOKEN_KEY)], "t")
            .unwrap();
    assert!(personal_data::address_erased_at(store, &rotated, &email).await.unwrap().is_some());
    let only_new = KeyRing::single("the next contract token key");
    assert!(personal_data::address_erased_at(store, &only_new, &email).await.unwrap().is_some(), "moved along");

    let again = personal_data::erase(store, &NoMailCopies, &keys, &id, h.clock.now()).await.unwrap();
    assert!(again.already_erased && again.complete && again.removed.is_empty(), "{again:?}");
    assert_eq!(again.erased_at, report.erased_at);
    let (fresh, outcome) = repo.upsert_by_email(&email, h.clock.now(), new_contact(&h.clock), |_| {}).await.unwrap();
    assert_eq!(outcome, UpsertOutcome::Created);
    assert_ne!(fresh.id, id, "a new sign-up is a new contact");
    let unknown = personal_data::erase(store, &NoMailCopies, &keys, &unique("c"), h.clock.now()).await;
    assert!(matches!(unknown, Err(personal_data::PersonalDataError::NotFound)), "{unknown:?}");
}

/// A store that answers the first read of one item with how it was before: a writer that read a
/// contact just before it was erased.
struct StaleRead {
    inner: Arc<dyn Store>,
    key: Key,
    stale: std::sync::Mutex<Option<Item>>,
}

#[async_trait::async_trait]
impl Store for StaleRead {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        if *key == self.key
            && let Some(stale) = self.stale.lock().unwrap().take()
        {
            return Ok(Some(stale));
        }
        self.inner.get(key).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        self.inner.put(item, condition).await
    }
    async fn update(
        &self,
        key: &Key,
        actions: Vec<UpdateAction>,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError> {
        self.inner.update(key, actions, condition).await
    }
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), StoreError> {
        self.inner.delete(key, condition).await
    }
    async fn query(&self, query: Query) -> Result<voronka_domain::ports::Page, StoreError> {
        self.inner.query(query).await
    }
    async fn transact(&self, ops: Vec<TransactOp>) -> Result<(), StoreError> {
        self.inner.transact(ops).await
    }
    async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        self.inner.batch_put(items).await
    }
}

pub async fn erasure_no_consent_receipt_lands_from_a_writer_that_read_the_contact_before(h: &Harness) {
    use voronka_domain::model::ConsentReceipt;
    use voronka_domain::ports::NoMailCopies;
    use voronka_domain::repo::contacts::contact_key;
    use voronka_domain::repo::personal_data;
    use voronka_domain::signing::KeyRing;
    let store = h.store.as_ref();
    let repo = ContactRepository::new(store);
    let email = EmailAddress::parse(&format!("{}@example.com", unique("stale"))).unwrap();
    let (contact, _) = repo
        .upsert_by_email(&email, h.clock.now(), new_contact(&h.clock), |c| {
            c.record_consent(ConsentReceipt::granted("r-legacy", h.clock.now(), "v1", false));
        })
        .await
        .unwrap();
    // As stored when receipts lived only on the contact: the next write itemises them.
    let key = contact_key(&contact.id);
    let mut legacy = store.get(&key).await.unwrap().unwrap();
    legacy.0.insert("receipts_itemised".into(), Value::Bool(false));
    store.put(legacy.clone(), None).await.unwrap();
    let keys = KeyRing::single(CONTRACT_TOKEN_KEY);
    personal_data::erase(store, &NoMailCopies, &keys, &contact.id, h.clock.now()).await.unwrap();
    let receipts = Query::partition(Index::Table, format!("CONSENT#{}", contact.id));
    assert!(store.query(receipts.clone()).await.unwrap().items.is_empty());

    let stale = StaleRead { inner: h.store.clone(), key, stale: std::sync::Mutex::new(Some(legacy)) };
    let written = ContactRepository::new(&stale)
        .update(&contact.id, h.clock.now(), |c| {
            c.first_name = Some("Late".into());
            true
        })
        .await;
    assert!(matches!(written, Err(voronka_domain::repo::RepoError::NotFound)), "{written:?}");
    let left = store.query(receipts).await.unwrap().items;
    assert!(left.is_empty(), "a receipt came back after the erasure: {left:?}");
}

pub async fn queue_round_trip_and_delete(h: &Harness) {
    let outcomes = h
        .queue
        .send_batch(QueueName::Events, vec![OutgoingMessage::new("a", r#"{"n":1}"#), OutgoingMessage::new("b", "два")])
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| o.error.is_none()), "{outcomes:?}");
    let mut bodies = BTreeSet::new();
    let mut received = Vec::new();
    for _ in 0..5 {
        for message in h.queue.receive(QueueName::Events, 10, VISIBILITY).await.unwrap() {
            assert_eq!(message.receive_count, 1);
            bodies.insert(message.body.clone());
            received.push(message);
        }
        if bodies.len() == 2 {
            break;
        }
    }
    assert_eq!(bodies, BTreeSet::from([r#"{"n":1}"#.to_string(), "два".to_string()]));
    assert!(h.queue.receive(QueueName::Sends, 10, VISIBILITY).await.unwrap().is_empty(), "queues are separate");
    // One deleted alone, the rest in a batch (as consumers delete).
    let (first, rest) = received.split_first().expect("two messages received");
    h.queue.delete(QueueName::Events, &first.receipt).await.unwrap();
    h.queue.delete_batch(QueueName::Events, rest.iter().map(|m| m.receipt.clone()).collect()).await.unwrap();
    (h.wait)(VISIBILITY + Duration::from_millis(500)).await;
    assert!(
        h.queue.receive(QueueName::Events, 10, VISIBILITY).await.unwrap().is_empty(),
        "deleted messages never return"
    );
}

pub async fn queue_batches_report_each_message(h: &Harness) {
    let batch: Vec<_> = (0..10).map(|i| OutgoingMessage::new(format!("m{i}"), format!("body {i}"))).collect();
    let outcomes = h.queue.send_batch(QueueName::Sends, batch).await.unwrap();
    assert_eq!(outcomes.iter().map(|o| o.id.clone()).collect::<BTreeSet<_>>().len(), 10);
    let eleven: Vec<_> = (0..11).map(|i| OutgoingMessage::new(format!("m{i}"), "x")).collect();
    assert!(matches!(h.queue.send_batch(QueueName::Sends, eleven).await, Err(QueueError::Invalid(_))));
    let too_big =
        vec![OutgoingMessage::new("ok", "small"), OutgoingMessage::new("big", "x".repeat(1024 * 1024 + 1024))];
    // SQS may instead refuse the whole call when the batch's total size is over its limit.
    if let Ok(outcomes) = h.queue.send_batch(QueueName::Sends, too_big).await {
        let big = outcomes.iter().find(|o| o.id == "big").expect("an outcome per message");
        assert!(big.error.is_some(), "an oversized message is reported failed");
    }
}

pub async fn queue_hides_received_messages_until_the_visibility_timeout(h: &Harness) {
    h.queue.send_batch(QueueName::Events, vec![OutgoingMessage::new("a", "hidden")]).await.unwrap();
    let first = h.queue.receive(QueueName::Events, 1, VISIBILITY).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(h.queue.receive(QueueName::Events, 1, VISIBILITY).await.unwrap().is_empty(), "in flight, not visible");
    (h.wait)(VISIBILITY + Duration::from_millis(800)).await;
    let again = h.queue.receive(QueueName::Events, 1, VISIBILITY).await.unwrap();
    assert_eq!(again.len(), 1, "an undeleted message comes back after its visibility timeout");
    assert_eq!(again[0].body, "hidden");
    assert_eq!(again[0].receive_count, 2);
}

pub async fn queue_delays_messages(h: &Harness) {
    let mut delayed = OutgoingMessage::new("later", "delayed");
    delayed.delay = Some(Duration::from_secs(2));
    h.queue.send_batch(QueueName::Sends, vec![delayed]).await.unwrap();
    assert!(
        h.queue.receive(QueueName::Sends, 10, VISIBILITY).await.unwrap().is_empty(),
        "not visible before its delay"
    );
    (h.wait)(Duration::from_millis(2800)).await;
    let received = h.queue.receive(QueueName::Sends, 10, VISIBILITY).await.unwrap();
    assert_eq!(received.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["delayed"]);
}

pub async fn queue_moves_poison_messages_to_the_dead_letter_queue(h: &Harness) {
    let short = Duration::from_secs(1);
    h.queue.send_batch(QueueName::Sends, vec![OutgoingMessage::new("poison", "poison")]).await.unwrap();
    let mut receives = 0;
    for _ in 0..(h.max_receives + 3) {
        let got = h.queue.receive(QueueName::Sends, 1, short).await.unwrap();
        receives += got.len() as u32;
        (h.wait)(short + Duration::from_millis(600)).await;
    }
    assert_eq!(receives, h.max_receives, "received exactly the allowed number of times");
    assert_eq!(h.queue.dead_letter_count(QueueName::Sends).await.unwrap(), 1, "then parked in the dead-letter queue");
}

pub async fn a_scheduler_run_out_of_time_leaves_the_rest_for_the_next_run(h: &Harness) {
    use voronka_domain::repo::due::{CONCURRENT_DISPATCHES, DueItem, DueWork, dispatch_due_within};
    let now = h.clock.now();
    let burst = CONCURRENT_DISPATCHES * 2 + 3;
    let ops: Vec<_> = (0..burst)
        .map(|i| {
            DueItem {
                id: format!("wait:burst:{i}"),
                contact_id: format!("c_burst_{i}"),
                due_at: now,
                group: format!("journey:burst:{i}"),
                work: DueWork::Evaluate { event_type: "journey_continue".into(), properties: serde_json::Map::new() },
            }
            .put_op()
        })
        .collect();
    h.store.transact(ops).await.unwrap();

    // A run whose time is up at once still takes one round, and says what it left.
    let zero = std::time::Duration::ZERO;
    let first = dispatch_due_within(h.store.as_ref(), h.queue.as_ref(), now, 1000, zero).await.unwrap();
    assert_eq!((first.dispatched, first.left_for_next_run), (CONCURRENT_DISPATCHES, burst - CONCURRENT_DISPATCHES));
    let second = dispatch_due_within(h.store.as_ref(), h.queue.as_ref(), now, 1000, zero).await.unwrap();
    assert_eq!(second.dispatched, CONCURRENT_DISPATCHES, "the next run goes on where it stopped");
    let rest = dispatch_due_within(h.store.as_ref(), h.queue.as_ref(), now, 1000, std::time::Duration::MAX).await;
    assert_eq!(rest.unwrap(), voronka_domain::repo::due::DispatchReport { dispatched: 3, ..Default::default() });

    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        let batch = h.queue.receive(QueueName::Events, 10, VISIBILITY).await.unwrap();
        if batch.is_empty() && seen.len() >= burst {
            break;
        }
        for message in batch {
            let event: serde_json::Value = serde_json::from_str(&message.body).unwrap();
            assert!(seen.insert(event["event_id"].as_str().unwrap().to_string()), "one message per item");
            h.queue.delete(QueueName::Events, &message.receipt).await.unwrap();
        }
    }
    assert_eq!(seen.len(), burst, "every item of the burst dispatched once over the three runs");
}

pub async fn scheduler_overlapping_runs_dispatch_each_due_item_once(h: &Harness) {
    use voronka_domain::repo::due::{DueItem, DueWork, cancel_ops, dispatch_due};
    let now = h.clock.now();
    let mut expected = BTreeSet::new();
    let mut ops = Vec::new();
    for i in 0..30 {
        let mut properties = serde_json::Map::new();
        properties.insert("n".into(), json!(i));
        let item = DueItem {
            id: format!("wait:test:{i}"),
            contact_id: format!("c_{}", i % 7),
            due_at: now - SignedDuration::from_mins(i64::from(i % 5)),
            group: format!("journey:test:{}", i % 7),
            work: DueWork::Evaluate { event_type: "journey_continue".into(), properties },
        };
        expected.insert(format!("due:{}", item.id));
        ops.push(item.put_op());
    }
    let future = DueItem {
        id: "wait:future".into(),
        contact_id: "c_future".into(),
        due_at: now + SignedDuration::from_hours(1),
        group: "journey:future".into(),
        work: DueWork::Evaluate { event_type: "journey_continue".into(), properties: serde_json::Map::new() },
    };
    let cancelled = DueItem {
        id: "wait:cancelled".into(),
        contact_id: "c_cancel".into(),
        due_at: now,
        group: "journey:cancel".into(),
        ..future.clone()
    };
    ops.push(future.put_op());
    ops.push(cancelled.put_op());
    h.store.transact(ops).await.unwrap();
    let cancel = cancel_ops(h.store.as_ref(), "c_cancel", &["journey:cancel".to_string()]).await.unwrap();
    assert_eq!(cancel.len(), 1);
    h.store.transact(cancel).await.unwrap();

    let (a, b) = tokio::join!(
        dispatch_due(h.store.as_ref(), h.queue.as_ref(), now, 1000),
        dispatch_due(h.store.as_ref(), h.queue.as_ref(), now, 1000)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.dispatched + b.dispatched, 30, "every due item once between the two runs: {a:?} {b:?}");
    assert_eq!(a.failed + b.failed, 0);
    let again = dispatch_due(h.store.as_ref(), h.queue.as_ref(), now, 1000).await.unwrap();
    assert_eq!(again.dispatched, 0, "a later run finds nothing left");

    let mut seen = Vec::new();
    for _ in 0..20 {
        let batch = h.queue.receive(QueueName::Events, 10, VISIBILITY).await.unwrap();
        if batch.is_empty() && seen.len() >= 30 {
            break;
        }
        for message in batch {
            let event: serde_json::Value = serde_json::from_str(&message.body).unwrap();
            seen.push(event["event_id"].as_str().unwrap().to_string());
            h.queue.delete(QueueName::Events, &message.receipt).await.unwrap();
        }
    }
    assert_eq!(seen.len(), 30, "exactly one message per item");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);
    let later =
        dispatch_due(h.store.as_ref(), h.queue.as_ref(), now + SignedDuration::from_hours(2), 1000).await.unwrap();
    assert_eq!(later.dispatched, 1, "the future item when its time comes; the cancelled one never");
}
