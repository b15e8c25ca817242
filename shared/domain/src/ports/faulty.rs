//! Fault injection at the ports: `Faulty<T>` wraps any `Store`, `Queue` or `Mailer` and makes it
//! fail the way AWS does under load, so the handlers' answers to failure can be checked end to end
//! (`voronka demo --faults ...`). The real adapters know nothing of it.
//!
//! The faults (`FaultPlan`, parsed from `ses-throttle=0.2,store-throttle=0.1,...`):
//! - `ses-throttle`: SES answers "slow down" and takes nothing (`MailError::Throttled`).
//! - `ses-error`: SES fails. Of these, 3 in 5 never reached SES (`NotSent`: a connection refused),
//!   1 in 5 is a 5xx for a message SES did not take, and 1 in 5 a 5xx for a message it DID take
//!   (the message is handed on before the error returns): both 5xx are `Ambiguous`, as the SES
//!   adapter sorts them, so the sender cannot tell them apart and must never send either again.
//! - `store-throttle`: DynamoDB throttles a request attempt before it runs. The AWS adapter keeps
//!   the SDK's standard retries (3 attempts), so the port answers `Throttled` only when all three
//!   attempts were (at 0.1, one call in a thousand); both are counted.
//! - `duplicate-delivery`: a received message is delivered again, in the same receive, in the next
//!   one (which the local workers handle concurrently with the first: two consumers on one message
//!   at once), or a few receives later, after the first copy may already be deleted.
//! - `crash-between-steps`: after a store write, a mail send or a queue send succeeds, the process
//!   dies: the call and every later port call of the same invocation fail, the invocation's answer
//!   is lost, and its queue messages stay undeleted until their visibility timeout ends.
//! - `bounce-storm`: not a port fault (the decorators ignore it) but the recipients': a bad list
//!   imported, so for one day of the run (the demo's middle day) this share of addresses bounces
//!   for good. It is what the reputation guard is for; the demo turns it into the simulated SES's
//!   `Behaviour::bounce_storm` and counts its bounces in `FaultCounts::storm_bounces`.
//!
//! Faults are injected only inside an invocation (`Faults::invocation`): what one Lambda
//! invocation runs (an HTTP request, a consumer's batch, a scheduler run). Calls outside one (the
//! demo's own reads for its report, the event source's receive and delete) see the real adapter,
//! except duplicate delivery, which is the queue's own doing and happens on every receive.
//!
//! Replay: each invocation draws its faults from its own generator, seeded from the plan's seed
//! and the invocation's number (numbered as they are created), and duplicate delivery from one
//! generator in receive order. Concurrent invocations (two consumers on one duplicated message)
//! take turns at the ports: one call at a time, first come first served, so with nothing else in
//! flight they interleave the same way every run. Without `duplicate-delivery` the same flags
//! and seed replay the same run exactly (checked: identical reports). With it, a handler that
//! sleeps in real time while its twin works (the contact repository's jittered backoff after a
//! lost race, the sender's backoff after a throttle) lets the twin take a different number of
//! turns, and the runs can part from there; each run's faults are still drawn from the seed.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::mailer::{MailError, Mailer, OutgoingEmail};
use super::queue::{OutgoingMessage, Queue, QueueError, QueueName, ReceivedMessage, SendOutcome};
use super::store::{Condition, Item, Key, Page, Query, Store, StoreError, TransactOp, UpdateAction};

/// What every port call of an invocation that died answers.
pub const KILLED: &str = "the process was killed (injected crash)";
/// Attempts the AWS SDK makes for a throttled DynamoDB request (standard retry mode).
pub const SDK_ATTEMPTS: u32 = 3;
/// Most duplicate copies waiting for a later receive; past it, no more are planned.
const MAX_PENDING_REDELIVERIES: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    SesThrottle,
    SesError,
    StoreThrottle,
    DuplicateDelivery,
    CrashBetweenSteps,
    BounceStorm,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::SesThrottle,
        Fault::SesError,
        Fault::StoreThrottle,
        Fault::DuplicateDelivery,
        Fault::CrashBetweenSteps,
        Fault::BounceStorm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::SesThrottle => "ses-throttle",
            Fault::SesError => "ses-error",
            Fault::StoreThrottle => "store-throttle",
            Fault::DuplicateDelivery => "duplicate-delivery",
            Fault::CrashBetweenSteps => "crash-between-steps",
            Fault::BounceStorm => "bounce-storm",
        }
    }

    /// The rate `all` sets: the reference fault run.
    pub fn reference_rate(self) -> f64 {
        match self {
            Fault::SesThrottle => 0.2,
            Fault::SesError => 0.05,
            Fault::StoreThrottle => 0.1,
            Fault::DuplicateDelivery => 0.1,
            Fault::CrashBetweenSteps => 0.02,
            // Far past the guard's 2.5%, as a bad list import is.
            Fault::BounceStorm => 0.3,
        }
    }

    fn index(self) -> usize {
        Fault::ALL.iter().position(|f| *f == self).expect("every fault is in ALL")
    }
}

/// How often each fault happens: a probability per chance it has (per SES call, store call,
/// received message, successful write or send).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultPlan {
    rates: [f64; Fault::ALL.len()],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--faults: {0}")]
pub struct FaultPlanError(String);

impl FaultPlan {
    /// Every fault at the reference rate.
    pub fn reference() -> Self {
        let mut plan = FaultPlan::default();
        for fault in Fault::ALL {
            plan.rates[fault.index()] = fault.reference_rate();
        }
        plan
    }

    pub fn rate(&self, fault: Fault) -> f64 {
        self.rates[fault.index()]
    }

    /// Panics only on a programming error: a rate outside 0..=1.
    pub fn with(mut self, fault: Fault, rate: f64) -> Self {
        assert!((0.0..=1.0).contains(&rate), "a fault rate lies in 0..=1");
        self.rates[fault.index()] = rate;
        self
    }

    pub fn is_off(&self) -> bool {
        self.rates.iter().all(|r| *r == 0.0)
    }
}

/// `name=rate` pairs separated by commas; `all` sets every fault to its reference rate (the
/// issue's `ses-throttle=0.2,ses-error=0.05,store-throttle=0.1,duplicate-delivery=0.1,
/// crash-between-steps=0.02`, and `bounce-storm=0.3`), and a later pair overrides it (`all,ses-error=0`); `none` or an
/// empty text injects nothing.
impl FromStr for FaultPlan {
    type Err = FaultPlanError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut plan = FaultPlan::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "all" => plan = FaultPlan::reference(),
                "none" => plan = FaultPlan::default(),
                _ => {
                    let Some((name, rate)) = part.split_once('=') else {
                        return Err(FaultPlanError(format!(
                            "`{part}` is not name=rate (for example ses-throttle=0.2), `all` or `none`"
                        )));
                    };
                    let name = name.trim();
                    let Some(fault) = Fault::ALL.into_iter().find(|f| f.name() == name) else {
                        let known: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                        return Err(FaultPlanError(format!(
                            "unknown fault `{name}`; the faults are {}",
                            known.join(", ")
                        )));
                    };
                    let rate: f64 = rate.trim().parse().map_err(|_| {
                        FaultPlanError(format!("fault `{name}`: the rate `{}` is not a number", rate.trim()))
                    })?;
                    if !(0.0..=1.0).contains(&rate) {
                        return Err(FaultPlanError(format!(
                            "fault `{name}`: the rate {rate} is outside 0..=1 (a probability)"
                        )));
                    }
                    plan.rates[fault.index()] = rate;
                }
            }
        }
        Ok(plan)
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = Fault::ALL
            .iter()
            .filter(|fault| self.rate(**fault) > 0.0)
            .map(|fault| format!("{}={}", fault.name(), self.rate(*fault)))
            .collect();
        if parts.is_empty() { f.write_str("none") } else { f.write_str(&parts.join(",")) }
    }
}

/// What was injected, counted where it happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FaultCounts {
    pub invocations: u64,
    pub ses_throttled: u64,
    /// `ses-error` that never reached SES.
    pub ses_errors_not_sent: u64,
    /// `ses-error` 5xx for a message SES did not take.
    pub ses_errors_ambiguous_not_taken: u64,
    /// `ses-error` 5xx for a message SES took (it is in the outbox).
    pub ses_errors_ambiguous_taken: u64,
    /// Store request attempts throttled (the SDK retried most of them).
    pub store_throttled: u64,
    /// Store calls that answered `Throttled` to the handler: every SDK attempt was throttled.
    pub store_throttled_to_handler: u64,
    pub duplicates_same_receive: u64,
    /// Delivered again in the next receive, which the workers handle alongside the first.
    pub duplicates_next_receive: u64,
    pub duplicates_later: u64,
    /// Invocations killed after a successful write or send.
    pub crashes: u64,
    /// Port calls a killed invocation still tried (none happen: each one failed).
    pub calls_after_crash: u64,
    /// Hard bounces of the bounce storm (counted by whoever simulates the recipients).
    pub storm_bounces: u64,
}

impl FaultCounts {
    /// How many times a fault was injected.
    pub fn injected(&self, fault: Fault) -> u64 {
        match fault {
            Fault::SesThrottle => self.ses_throttled,
            Fault::SesError => {
                self.ses_errors_not_sent + self.ses_errors_ambiguous_not_taken + self.ses_errors_ambiguous_taken
            }
            Fault::StoreThrottle => self.store_throttled,
            Fault::DuplicateDelivery => {
                self.duplicates_same_receive + self.duplicates_next_receive + self.duplicates_later
            }
            Fault::CrashBetweenSteps => self.crashes,
            Fault::BounceStorm => self.storm_bounces,
        }
    }
}

/// The invocation died: whatever it returned, nobody received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{KILLED}")]
pub struct Killed;

struct Invocation {
    rng: Mutex<StdRng>,
    killed: AtomicBool,
}

tokio::task_local! {
    static INVOCATION: Arc<Invocation>;
}

/// A copy of a received message waiting to be delivered again.
struct Redelivery {
    queue: QueueName,
    message: ReceivedMessage,
    /// Receives of its queue still to pass before it is delivered (0: the next one).
    after_receives: u32,
    concurrent: bool,
}

/// One fault plan with its seed, shared by every `Faulty` port of a stack.
pub struct Faults {
    plan: FaultPlan,
    seed: u64,
    next_invocation: AtomicU64,
    counts: Mutex<FaultCounts>,
    deliveries: Mutex<StdRng>,
    redeliveries: Mutex<Vec<Redelivery>>,
    /// Held through each port call: concurrent invocations interleave call by call, in the
    /// order they asked (tokio's mutex is fair), never inside the adapters' own threads.
    turn: tokio::sync::Mutex<()>,
}

/// Where a port call stands.
enum Gate {
    /// Not inside an invocation: no fault.
    Outside,
    Killed,
    Live(Arc<Invocation>),
}

impl Faults {
    pub fn new(plan: FaultPlan, seed: u64) -> Self {
        Faults {
            plan,
            seed,
            next_invocation: AtomicU64::new(0),
            counts: Mutex::new(FaultCounts::default()),
            deliveries: Mutex::new(StdRng::seed_from_u64(seed ^ 0xd0_0b1e_de11_7e12)),
            redeliveries: Mutex::new(Vec::new()),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    pub fn counts(&self) -> FaultCounts {
        self.counts.lock().expect("fault counts lock").clone()
    }

    fn count(&self, change: impl FnOnce(&mut FaultCounts)) {
        change(&mut self.counts.lock().expect("fault counts lock"));
    }

    /// Runs `work` as one invocation (one Lambda run): its port calls may fail, and once it is
    /// killed every later call fails. `Err(Killed)` when it died; its output is then dropped, as
    /// a dead process answers nothing. The invocation is numbered here, when it is created, so
    /// twins created in a fixed order draw fixed faults whichever runs first.
    pub fn invocation<F: Future>(&self, work: F) -> impl Future<Output = Result<F::Output, Killed>> + use<F> {
        let number = self.next_invocation.fetch_add(1, Ordering::SeqCst);
        self.count(|c| c.invocations += 1);
        let seed = self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ number.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let invocation = Arc::new(Invocation { rng: Mutex::new(StdRng::seed_from_u64(seed)), killed: false.into() });
        async move {
            let output = INVOCATION.scope(invocation.clone(), work).await;
            if invocation.killed.load(Ordering::SeqCst) { Err(Killed) } else { Ok(output) }
        }
    }

    fn gate(&self) -> Gate {
        match INVOCATION.try_with(Arc::clone) {
            Err(_) => Gate::Outside,
            Ok(invocation) if invocation.killed.load(Ordering::SeqCst) => {
                self.count(|c| c.calls_after_crash += 1);
                Gate::Killed
            }
            Ok(invocation) => Gate::Live(invocation),
        }
    }

    fn roll(&self, invocation: &Invocation, fault: Fault) -> bool {
        let rate = self.plan.rate(fault);
        rate > 0.0 && invocation.rng.lock().expect("invocation rng lock").random_bool(rate)
    }

    /// After a successful write or send: whether the process dies right here.
    fn crashes_after(&self, invocation: &Invocation) -> bool {
        if self.roll(invocation, Fault::CrashBetweenSteps) {
            invocation.killed.store(true, Ordering::SeqCst);
            self.count(|c| c.crashes += 1);
            return true;
        }
        false
    }

    /// The duplicate copies due at this receive of `queue`, at most `max`; the others come one
    /// receive closer.
    fn due_copies(&self, queue: QueueName, max: usize) -> Vec<ReceivedMessage> {
        let mut pending = self.redeliveries.lock().expect("redeliveries lock");
        let mut due = Vec::new();
        let mut index = 0;
        while index < pending.len() {
            let entry = &mut pending[index];
            if entry.queue != queue {
                index += 1;
            } else if entry.after_receives == 0 && due.len() < max {
                let entry = pending.remove(index);
                self.count(|c| if entry.concurrent { c.duplicates_next_receive += 1 } else { c.duplicates_later += 1 });
                due.push(entry.message);
            } else {
                entry.after_receives = entry.after_receives.saturating_sub(1);
                index += 1;
            }
        }
        due
    }

    /// Plans copies of what a receive got: beside it (while the receive has room for `max`), in
    /// the next receive, or a few later.
    fn plan_copies(&self, queue: QueueName, received: &mut Vec<ReceivedMessage>, max: usize) {
        let rate = self.plan.rate(Fault::DuplicateDelivery);
        if rate == 0.0 {
            return;
        }
        let mut pending = self.redeliveries.lock().expect("redeliveries lock");
        let mut rng = self.deliveries.lock().expect("delivery rng lock");
        let mut beside = Vec::new();
        for message in received.iter() {
            if !rng.random_bool(rate) {
                continue;
            }
            let kind = rng.random_range(0..3);
            let after_receives = if kind == 2 { rng.random_range(1..=3) } else { 0 };
            if kind == 0 && received.len() + beside.len() < max {
                beside.push(message.clone());
            } else if pending.len() < MAX_PENDING_REDELIVERIES {
                pending.push(Redelivery { queue, message: message.clone(), after_receives, concurrent: kind != 2 });
            }
        }
        self.count(|c| c.duplicates_same_receive += beside.len() as u64);
        received.extend(beside);
    }

    /// Whether copies are waiting to be delivered again on this queue (a consumer polling until the
    /// queue looks empty must not stop before them).
    pub fn has_pending_redeliveries(&self, queue: QueueName) -> bool {
        self.redeliveries.lock().expect("redeliveries lock").iter().any(|r| r.queue == queue)
    }
}

/// A port with faults injected in front of it. Holds the inner port behind an `Arc`, so it wraps
/// a concrete adapter or an `Arc<dyn Store>` alike.
pub struct Faulty<T: ?Sized> {
    inner: Arc<T>,
    faults: Arc<Faults>,
}

impl<T: ?Sized> Faulty<T> {
    pub fn new(inner: Arc<T>, faults: Arc<Faults>) -> Self {
        Faulty { inner, faults }
    }
}

impl<T: Store + ?Sized> Faulty<T> {
    /// Before a store call: killed, throttled, or go on (with the invocation, if any).
    fn before_store_call(&self) -> Result<Option<Arc<Invocation>>, StoreError> {
        match self.faults.gate() {
            Gate::Outside => Ok(None),
            Gate::Killed => Err(StoreError::Backend(KILLED.into())),
            Gate::Live(invocation) => {
                let mut throttled = 0;
                while throttled < SDK_ATTEMPTS && self.faults.roll(&invocation, Fault::StoreThrottle) {
                    throttled += 1;
                }
                self.faults.count(|c| c.store_throttled += u64::from(throttled));
                if throttled == SDK_ATTEMPTS {
                    self.faults.count(|c| c.store_throttled_to_handler += 1);
                    return Err(StoreError::Throttled("injected: the table's capacity is exceeded".into()));
                }
                Ok(Some(invocation))
            }
        }
    }

    fn after_write<R>(
        &self,
        invocation: Option<Arc<Invocation>>,
        result: Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        match (invocation, result) {
            (Some(invocation), Ok(_)) if self.faults.crashes_after(&invocation) => {
                Err(StoreError::Backend(KILLED.into()))
            }
            (_, result) => result,
        }
    }
}

#[async_trait]
impl<T: Store + ?Sized> Store for Faulty<T> {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let _turn = self.faults.turn.lock().await;
        self.before_store_call()?;
        self.inner.get(key).await
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        let _turn = self.faults.turn.lock().await;
        let invocation = self.before_store_call()?;
        let result = self.inner.put(item, condition).await;
        self.after_write(invocation, result)
    }

    async fn update(
        &self,
        key: &Key,
        actions: Vec<UpdateAction>,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError> {
        let _turn = self.faults.turn.lock().await;
        let invocation = self.before_store_call()?;
        let result = self.inner.update(key, actions, condition).await;
        self.after_write(invocation, result)
    }

    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), StoreError> {
        let _turn = self.faults.turn.lock().await;
        let invocation = self.before_store_call()?;
        let result = self.inner.delete(key, condition).await;
        self.after_write(invocation, result)
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        let _turn = self.faults.turn.lock().await;
        self.before_store_call()?;
        self.inner.query(query).await
    }

    async fn transact(&self, ops: Vec<TransactOp>) -> Result<(), StoreError> {
        let _turn = self.faults.turn.lock().await;
        let invocation = self.before_store_call()?;
        let result = self.inner.transact(ops).await;
        self.after_write(invocation, result)
    }

    async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let _turn = self.faults.turn.lock().await;
        let invocation = self.before_store_call()?;
        let result = self.inner.batch_put(items).await;
        self.after_write(invocation, result)
    }
}

#[async_trait]
impl<T: Queue + ?Sized> Queue for Faulty<T> {
    async fn send_batch(
        &self,
        queue: QueueName,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<SendOutcome>, QueueError> {
        let _turn = self.faults.turn.lock().await;
        let invocation = match self.faults.gate() {
            Gate::Killed => return Err(QueueError::Backend(KILLED.into())),
            Gate::Outside => None,
            Gate::Live(invocation) => Some(invocation),
        };
        let outcomes = self.inner.send_batch(queue, messages).await?;
        if let Some(invocation) = invocation
            && self.faults.crashes_after(&invocation)
        {
            return Err(QueueError::Backend(KILLED.into()));
        }
        Ok(outcomes)
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let _turn = self.faults.turn.lock().await;
        if let Gate::Killed = self.faults.gate() {
            return Err(QueueError::Backend(KILLED.into()));
        }
        let mut received = self.faults.due_copies(queue, max);
        if received.len() < max {
            let fresh = self.inner.receive(queue, max - received.len(), visibility).await?;
            received.extend(fresh);
        }
        self.faults.plan_copies(queue, &mut received, max);
        Ok(received)
    }

    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        let _turn = self.faults.turn.lock().await;
        if let Gate::Killed = self.faults.gate() {
            return Err(QueueError::Backend(KILLED.into()));
        }
        self.inner.delete(queue, receipt).await
    }

    async fn dead_letter_count(&self, queue: QueueName) -> Result<u64, QueueError> {
        self.inner.dead_letter_count(queue).await
    }
}

#[async_trait]
impl<T: Mailer + ?Sized> Mailer for Faulty<T> {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        let _turn = self.faults.turn.lock().await;
        let invocation = match self.faults.gate() {
            Gate::Outside => return self.inner.send(email).await,
            Gate::Killed => return Err(MailError::NotSent(KILLED.into())),
            Gate::Live(invocation) => invocation,
        };
        if self.faults.roll(&invocation, Fault::SesThrottle) {
            self.faults.count(|c| c.ses_throttled += 1);
            return Err(MailError::Throttled("injected: maximum sending rate exceeded".into()));
        }
        if self.faults.roll(&invocation, Fault::SesError) {
            let kind = invocation.rng.lock().expect("invocation rng lock").random_range(0..5);
            return Err(match kind {
                0..=2 => {
                    self.faults.count(|c| c.ses_errors_not_sent += 1);
                    MailError::NotSent("injected: the connection to SES was refused".into())
                }
                3 => {
                    self.faults.count(|c| c.ses_errors_ambiguous_not_taken += 1);
                    MailError::Ambiguous("injected: SES answered 500 InternalFailure".into())
                }
                _ => {
                    // SES took it and the answer was lost: the message is on its way.
                    self.inner.send(email).await?;
                    self.faults.count(|c| c.ses_errors_ambiguous_taken += 1);
                    MailError::Ambiguous("injected: SES answered 500 InternalFailure after taking the message".into())
                }
            });
        }
        let message_id = self.inner.send(email).await?;
        if self.faults.crashes_after(&invocation) {
            return Err(MailError::NotSent(KILLED.into()));
        }
        Ok(message_id)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn the_plan_reads_the_flag_and_names_what_is_wrong() {
        let plan: FaultPlan =
            "ses-throttle=0.2, ses-error=0.05,store-throttle=0.1,duplicate-delivery=0.1,crash-between-steps=0.02,\
             bounce-storm=0.3"
                .parse()
                .unwrap();
        assert_eq!(plan, FaultPlan::reference());
        assert_eq!(plan.to_string().parse::<FaultPlan>().unwrap(), plan, "Display reads back");
        assert_eq!("all".parse::<FaultPlan>().unwrap(), FaultPlan::reference());
        let tuned: FaultPlan = "all,ses-error=0".parse().unwrap();
        assert_eq!(tuned.rate(Fault::SesError), 0.0);
        assert_eq!(tuned.rate(Fault::SesThrottle), 0.2);
        assert!("".parse::<FaultPlan>().unwrap().is_off() && "none".parse::<FaultPlan>().unwrap().is_off());

        let error = |text: &str| text.parse::<FaultPlan>().unwrap_err().to_string();
        assert!(error("ses-thortle=0.2").contains("unknown fault `ses-thortle`"), "{}", error("ses-thortle=0.2"));
        assert!(error("ses-thortle=0.2").contains("crash-between-steps"), "the known faults are listed");
        assert!(error("store-throttle=1.5").contains("`store-throttle`: the rate 1.5 is outside 0..=1"));
        assert!(error("store-throttle=-0.1").contains("store-throttle"));
        assert!(error("store-throttle=NaN").contains("outside 0..=1"), "{}", error("store-throttle=NaN"));
        assert!(error("ses-error=often").contains("`ses-error`: the rate `often` is not a number"));
        assert!(error("ses-error").contains("not name=rate"));
    }

    /// A store that keeps items in a map and answers everything else with nothing.
    #[derive(Default)]
    struct MapStore(Mutex<BTreeMap<Key, Item>>);

    #[async_trait]
    impl Store for MapStore {
        async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        async fn put(&self, item: Item, _: Option<Condition>) -> Result<(), StoreError> {
            self.0.lock().unwrap().insert(item.key().unwrap(), item);
            Ok(())
        }
        async fn update(&self, key: &Key, _: Vec<UpdateAction>, _: Option<Condition>) -> Result<Item, StoreError> {
            let item = Item::new(key, json!({}));
            self.0.lock().unwrap().insert(key.clone(), item.clone());
            Ok(item)
        }
        async fn delete(&self, key: &Key, _: Option<Condition>) -> Result<(), StoreError> {
            self.0.lock().unwrap().remove(key);
            Ok(())
        }
        async fn query(&self, _: Query) -> Result<Page, StoreError> {
            Ok(Page { items: Vec::new(), next: None })
        }
        async fn transact(&self, _: Vec<TransactOp>) -> Result<(), StoreError> {
            Ok(())
        }
        async fn batch_put(&self, _: Vec<Item>) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn key(n: usize) -> Key {
        Key::new("P", format!("{n:04}"))
    }

    /// Writes 200 items one per invocation; returns each call's outcome and what was stored.
    async fn run_writes(plan: FaultPlan, seed: u64) -> (Vec<String>, usize, FaultCounts) {
        let faults = Arc::new(Faults::new(plan, seed));
        let inner = Arc::new(MapStore::default());
        let store = Faulty::new(inner.clone(), faults.clone());
        let mut outcomes = Vec::new();
        for n in 0..200 {
            let outcome = faults.invocation(store.put(Item::new(&key(n), json!({})), None)).await;
            outcomes.push(match outcome {
                Err(Killed) => "killed".to_string(),
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(())) => "ok".to_string(),
            });
        }
        let stored = inner.0.lock().unwrap().len();
        (outcomes, stored, faults.counts())
    }

    #[tokio::test]
    async fn the_same_seed_injects_the_same_faults_and_another_seed_others() {
        let plan: FaultPlan = "store-throttle=0.5,crash-between-steps=0.1".parse().unwrap();
        let (first, stored, counts) = run_writes(plan, 7).await;
        let (again, _, counts_again) = run_writes(plan, 7).await;
        let (other, _, _) = run_writes(plan, 8).await;
        assert_eq!(first, again);
        assert_eq!(counts, counts_again);
        assert_ne!(first, other);
        assert!(counts.store_throttled_to_handler > 10 && counts.crashes > 5, "{counts:?}");
        assert!(counts.store_throttled > 2 * counts.store_throttled_to_handler, "the SDK's retries absorb most");
        assert_eq!(counts.invocations, 200);
        // A throttled write wrote nothing; a crash came after the write.
        assert_eq!(stored as u64, 200 - counts.store_throttled_to_handler);
        assert_eq!(first.iter().filter(|o| *o == "killed").count() as u64, counts.crashes);
    }

    #[tokio::test]
    async fn outside_an_invocation_nothing_is_injected() {
        let faults = Arc::new(Faults::new(FaultPlan::default().with(Fault::StoreThrottle, 1.0), 1));
        let store = Faulty::new(Arc::new(MapStore::default()), faults.clone());
        store.put(Item::new(&key(1), json!({})), None).await.unwrap();
        assert!(store.get(&key(1)).await.unwrap().is_some());
        let throttled = faults.invocation(store.get(&key(1))).await.unwrap();
        assert!(matches!(throttled, Err(StoreError::Throttled(_))), "{throttled:?}");
    }

    #[tokio::test]
    async fn nothing_after_the_crash_point_happens_and_the_next_invocation_is_clean() {
        let faults = Arc::new(Faults::new(FaultPlan::default().with(Fault::CrashBetweenSteps, 1.0), 3));
        let inner = Arc::new(MapStore::default());
        let store = Faulty::new(inner.clone(), faults.clone());
        let mailer = Faulty::new(Arc::new(Outbox::default()), faults.clone());
        let queue = Faulty::new(Arc::new(ListQueue::default()), faults.clone());
        let outcome = faults
            .invocation(async {
                let first = store.put(Item::new(&key(1), json!({})), None).await;
                let read = store.get(&key(1)).await;
                let second = store.put(Item::new(&key(2), json!({})), None).await;
                let mail = mailer.send(&email()).await;
                let queued = queue.send_batch(QueueName::Events, vec![OutgoingMessage::new("1", "b")]).await;
                (first.is_err(), read.is_err(), second.is_err(), mail, queued.is_err())
            })
            .await;
        assert_eq!(outcome, Err(Killed), "the invocation's answer is lost");
        assert!(inner.0.lock().unwrap().contains_key(&key(1)), "the write before the crash happened");
        assert!(!inner.0.lock().unwrap().contains_key(&key(2)), "nothing after it");
        assert!(mailer.inner.0.lock().unwrap().is_empty(), "no mail after the crash");
        assert!(queue.inner.0.lock().unwrap().is_empty(), "no message after the crash");
        assert_eq!(faults.counts().crashes, 1);
        assert_eq!(faults.counts().calls_after_crash, 4);

        // A twin running beside a dying invocation, and the next invocation, start alive.
        let (dying, alive) = tokio::join!(
            faults.invocation(async {
                let _ = store.put(Item::new(&key(3), json!({})), None).await;
                tokio::task::yield_now().await;
                store.get(&key(3)).await
            }),
            faults.invocation(async {
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
                store.get(&key(3)).await
            })
        );
        assert!(matches!(dying, Err(Killed)));
        assert!(matches!(alive, Ok(Ok(Some(_)))), "{alive:?}");
        let next = faults.invocation(store.get(&key(1))).await;
        assert!(matches!(next, Ok(Ok(Some(_)))), "the next invocation starts alive: {next:?}");
    }

    #[derive(Default)]
    struct Outbox(Mutex<Vec<String>>);

    #[async_trait]
    impl Mailer for Outbox {
        async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
            let mut sent = self.0.lock().unwrap();
            sent.push(email.to.clone());
            Ok(format!("m{}", sent.len()))
        }
    }

    fn email() -> OutgoingEmail {
        OutgoingEmail { from: "shop@example.com".into(), to: "a@example.com".into(), raw: b"x".to_vec(), tags: vec![] }
    }

    #[tokio::test]
    async fn ses_faults_say_truthfully_whether_the_message_went() {
        let plan = FaultPlan::default().with(Fault::SesThrottle, 0.3).with(Fault::SesError, 0.3);
        let faults = Arc::new(Faults::new(plan, 11));
        let mailer = Faulty::new(Arc::new(Outbox::default()), faults.clone());
        let mut returned_ok = 0;
        for _ in 0..400 {
            match faults.invocation(mailer.send(&email())).await.unwrap() {
                Ok(_) => returned_ok += 1,
                Err(MailError::Throttled(_) | MailError::NotSent(_) | MailError::Ambiguous(_)) => {}
                Err(other) => panic!("unexpected {other}"),
            }
        }
        let counts = faults.counts();
        let sent = mailer.inner.0.lock().unwrap().len() as u64;
        assert!(counts.ses_throttled > 50 && counts.ses_errors_not_sent > 10, "{counts:?}");
        assert!(counts.ses_errors_ambiguous_taken > 3 && counts.ses_errors_ambiguous_not_taken > 3, "{counts:?}");
        assert_eq!(sent, returned_ok + counts.ses_errors_ambiguous_taken, "only a taken 5xx sent without Ok");
    }

    #[derive(Default)]
    struct ListQueue(Mutex<Vec<ReceivedMessage>>);

    #[async_trait]
    impl Queue for ListQueue {
        async fn send_batch(
            &self,
            _: QueueName,
            messages: Vec<OutgoingMessage>,
        ) -> Result<Vec<SendOutcome>, QueueError> {
            let mut list = self.0.lock().unwrap();
            let mut outcomes = Vec::new();
            for m in messages {
                let n = list.len();
                list.push(ReceivedMessage {
                    message_id: format!("m{n}"),
                    receipt: format!("r{n}"),
                    body: m.body,
                    receive_count: 1,
                });
                outcomes.push(SendOutcome { id: m.id, error: None });
            }
            Ok(outcomes)
        }
        async fn receive(&self, _: QueueName, max: usize, _: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
            let mut list = self.0.lock().unwrap();
            let take = list.len().min(max);
            Ok(list.drain(..take).collect())
        }
        async fn delete(&self, _: QueueName, _: &str) -> Result<(), QueueError> {
            Ok(())
        }
        async fn dead_letter_count(&self, _: QueueName) -> Result<u64, QueueError> {
            Ok(0)
        }
    }

    async fn deliveries(seed: u64) -> (Vec<String>, FaultCounts) {
        let faults = Arc::new(Faults::new(FaultPlan::default().with(Fault::DuplicateDelivery, 0.3), seed));
        let queue = Faulty::new(Arc::new(ListQueue::default()), faults.clone());
        for n in 0..30 {
            let batch = (0..10).map(|i| OutgoingMessage::new(format!("{i}"), format!("{n}-{i}"))).collect();
            queue.send_batch(QueueName::Events, batch).await.unwrap();
        }
        let mut seen = Vec::new();
        loop {
            let batch = queue.receive(QueueName::Events, 10, Duration::from_secs(30)).await.unwrap();
            assert!(batch.len() <= 10, "never more than asked for");
            if batch.is_empty() && !faults.has_pending_redeliveries(QueueName::Events) {
                break;
            }
            seen.extend(batch.into_iter().map(|m| m.body));
        }
        (seen, faults.counts())
    }

    #[tokio::test]
    async fn duplicate_delivery_redelivers_in_the_same_the_next_and_later_receives_reproducibly() {
        let (seen, counts) = deliveries(5).await;
        assert_eq!(deliveries(5).await, (seen.clone(), counts.clone()));
        assert!(
            counts.duplicates_same_receive > 0 && counts.duplicates_next_receive > 0 && counts.duplicates_later > 0,
            "{counts:?}"
        );
        let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
        assert_eq!(distinct.len(), 300, "every message delivered");
        assert_eq!(seen.len() as u64, 300 + counts.injected(Fault::DuplicateDelivery));
    }
}
