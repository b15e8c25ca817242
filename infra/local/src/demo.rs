//! `voronka demo`: a seeded simulation of a shop's visitors driven through the real handlers with
//! a simulated clock. The same seed gives the same visitors, submissions and outcomes every run.
//!
//! Visitors arrive from several channels, browse (unsigned behaviour events), some fill in the
//! newsletter or consultation form (as JSON clients or as browsers posting HTML forms), some come
//! back and submit again with their address spelled differently, bots trip the honeypot or fill
//! too fast, people mistype, and the shop back end reports purchases (signed, sometimes twice).
//! At the end the demo checks the invariants (`invariants`) from the outbox, the store and the
//! queues: among them, that every acknowledged lead and event was kept.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail};
use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode, header};
use indicatif::{ProgressBar, ProgressStyle};
use jiff::{SignedDuration, Timestamp};
use lead_capture::ClientIp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};
use tower::ServiceExt;
use voronka_domain::journeys::attribution::Model;
use voronka_domain::kpi::rollup::RollupKind;
use voronka_domain::kpi::{GroupBy, KpiQuery, KpiReport};
use voronka_domain::model::{EmailAddress, EventType};
use voronka_domain::ports::{FaultCounts, FaultPlan, Faults, Function, QueueName, SeededIds, SimulatedClock, send_all};
use voronka_domain::repo::ContactRepository;
use voronka_domain::repo::aggregates::{self, DailyTotal, Dimensions, Metric};
use voronka_domain::repo::journey_state::Group;
use voronka_domain::signing::{EVENTS_SIGNATURE_HEADER, KeyRing, Secrets, sign_events_body};

use crate::simulated_ses::{Behaviour, FeedbackReport, Recipients, SimulatedSes, feedback_messages};
use crate::stack::{Adapters, Stack, StackOptions};
use crate::workers::WorkerCounts;
use voronka_domain::ports::IdGenerator;
use voronka_embedded::Durability;

pub struct DemoOptions {
    pub seed: u64,
    pub visitors: usize,
    pub days: u32,
    pub data_dir: Option<std::path::PathBuf>,
    /// Where the dashboard is written as files that open without a server; none: not written.
    pub dashboard_dir: Option<std::path::PathBuf>,
    pub show_progress: bool,
    /// Faults injected into the handlers' ports (`--faults`), seeded by `seed`.
    pub faults: Option<FaultPlan>,
}

/// What the demo did and what the suite made of it.
#[derive(Debug, Default, Serialize)]
pub struct DemoReport {
    pub seed: u64,
    pub visitors: usize,
    pub simulated_days: u32,
    pub submissions: usize,
    pub contacts_created: usize,
    pub contacts_merged: usize,
    pub html_form_redirects: usize,
    pub spam_dropped: usize,
    pub rejected_invalid: usize,
    pub rate_limited: usize,
    pub event_batches: usize,
    pub events_accepted: usize,
    pub events_duplicate: usize,
    pub events_rejected: usize,
    pub contacts_stored: usize,
    pub confirmations_queued: u64,
    pub events_queued: u64,
    pub contacts_by_stage: BTreeMap<String, usize>,
    pub confirmations_followed: usize,
    /// What SES reported back about the mail it delivered.
    pub feedback: FeedbackReport,
    /// Per journey: entries (treatment, holdout), exits, conversions.
    pub journeys: BTreeMap<String, JourneyReport>,
    /// Emails sent, by template.
    pub emails_by_template: BTreeMap<String, u64>,
    pub scheduler_runs: usize,
    pub carts: CartReport,
    pub bots: BotReport,
    pub contacts_by_channel: BTreeMap<String, usize>,
    /// Ad spend the shop reported, day by day, through `POST /v1/spend`.
    pub spend: SpendReport,
    /// Nightly rollups run as the simulated days ended.
    pub nightly_rollups: usize,
    /// The KPI report of the whole simulated period, per channel, last-touch attribution.
    pub kpi: Option<KpiReport>,
    /// The dashboard's `index.html`, when it was written.
    pub dashboard: Option<std::path::PathBuf>,
    /// The invariants checked after the run; `voronka demo` fails on any violation.
    pub invariants: Option<crate::invariants::InvariantReport>,
    /// What `--faults` injected and how the suite and its clients lived through it.
    pub faults: Option<FaultReport>,
    pub requests: usize,
    /// Queue messages the consumers (evaluator and sender) handled.
    pub queue_messages_handled: usize,
    pub wall_time_ms: u128,
    pub mean_request_micros: u128,
    /// Wall time per simulated event (an HTTP request or a queue message handled), in µs.
    pub micros_per_simulated_event: f64,
    /// The process's peak resident memory (VmHWM), in MiB, where the system reports it.
    pub peak_memory_mib: Option<f64>,
    /// AWS requests per lead, event and email, and the monthly bill of the reference workload.
    pub cost: crate::metering::CostReport,
    /// The reputation guard as the store left it, and the marketing it held.
    pub reputation: ReputationReport,
}

/// The reputation guard's record, read from the store: its state, and the sender's ledger
/// entries of marketing it held.
#[derive(Debug, Default, Serialize)]
pub struct ReputationReport {
    /// Paused at the end of the run.
    pub paused: bool,
    /// Pauses during the run: the state alternates pause and resumption, one version each.
    pub pauses: u64,
    /// The rate that tripped the last pause.
    pub last_trip: Option<String>,
    pub paused_at: Option<Timestamp>,
    pub resumed_at: Option<Timestamp>,
    pub resumed_by: Option<String>,
    /// Marketing requests the guard held at least once, and what became of them.
    pub held: u64,
    pub held_then_sent: u64,
    pub held_still_deferred: u64,
    /// Cancelled later by their origin (a cart bought, a step gone stale while held), never lost.
    pub held_then_cancelled: u64,
    /// Blocked later (consent no longer there) or written off as unknown (a crash calling SES).
    pub held_other: u64,
    /// The guard's volume floors in this run: (min_sends, min_bounces).
    pub floors: (u64, u64),
}

/// A bounce storm must be able to trip the guard in a small run: its volume floors (500 sends and
/// 10 hard bounces in 24 h, sized for a real shop) are scaled down to the run's daily volume
/// (about a third of the visitors of a day; never below 20 sends and 5 bounces, which the normal
/// 1.5% of dead addresses does not reach by chance). The rates (pause at 2.5%) stay the shop's.
/// Returns the floors in force.
fn scale_guard_floors(stack: &mut Stack, faults: Option<&FaultPlan>, visitors: usize, days: u32) -> (u64, u64) {
    let reputation = &stack.state.shared.campaigns.settings.sending.reputation;
    let floors = (reputation.min_sends, reputation.min_bounces);
    if faults.is_none_or(|plan| plan.rate(voronka_domain::ports::Fault::BounceStorm) == 0.0) {
        return floors;
    }
    let daily = (visitors as u64 / u64::from(days.max(1)) / 3).clamp(20, floors.0);
    let scaled = (daily, (daily / 50).clamp(5, floors.1.max(5)));
    if scaled == floors {
        return floors;
    }
    let mut campaigns = (*stack.state.shared.campaigns).clone();
    campaigns.settings.sending.reputation.min_sends = scaled.0;
    campaigns.settings.sending.reputation.min_bounces = scaled.1;
    let campaigns = Arc::new(campaigns);
    // One installation, one settings file: everything that judges or counts sees the same.
    stack.state.shared.campaigns = campaigns.clone();
    stack.sender.shared.campaigns = campaigns.clone();
    stack.evaluator.shared.campaigns = campaigns;
    scaled
}

/// The simulated recipients: a healthy list, and a bad one imported for the run's middle day
/// when `--faults` has a `bounce-storm`.
fn behaviour(faults: Option<&FaultPlan>, start: Timestamp, days: u32) -> Behaviour {
    let rate = faults.map_or(0.0, |plan| plan.rate(voronka_domain::ports::Fault::BounceStorm));
    let first_midnight =
        Timestamp::from_second(start.as_second() - start.as_second().rem_euclid(86_400)).expect("a midnight in range");
    let from = first_midnight + SignedDuration::from_hours(24 * i64::from(days / 2));
    Behaviour {
        bounce_storm: (rate > 0.0).then_some((from, from + SignedDuration::from_hours(24), rate)),
        ..Behaviour::default()
    }
}

async fn reputation_report(stack: &Stack) -> Result<ReputationReport> {
    let state = voronka_domain::repo::reputation::load_state(stack.state.store.as_ref()).await?;
    let mut report = stack
        .inspect
        .fold_items_under("SEND#", ReputationReport::default(), |report: &mut ReputationReport, item| {
            if item.get_str("sk") != Some("LEDGER")
                || item.get(voronka_domain::repo::send_ledger::HELD_BY_REPUTATION).is_none()
            {
                return;
            }
            report.held += 1;
            match item.get_str("state").unwrap_or_default() {
                "sent" => report.held_then_sent += 1,
                "deferred" => report.held_still_deferred += 1,
                "cancelled" => report.held_then_cancelled += 1,
                _ => report.held_other += 1,
            }
        })
        .await?;
    report.paused = state.paused;
    report.pauses = state.version.div_ceil(2);
    report.last_trip = state.trip.map(|trip| trip.to_string());
    report.paused_at = state.paused_at;
    report.resumed_at = state.resumed_at;
    report.resumed_by = state.resumed_by.map(|by| format!("{by:?}").to_lowercase());
    Ok(report)
}

impl ReputationReport {
    fn print(&self) {
        println!(
            "Reputation guard: {} pause(s){}; {}",
            self.pauses,
            self.last_trip.as_ref().map_or(String::new(), |trip| format!(", last at {trip}")),
            if self.paused { "paused at the end" } else { "sending at the end" }
        );
        if let Some(at) = self.paused_at {
            let resumed = match (self.resumed_at, &self.resumed_by) {
                (Some(resumed), Some(by)) if resumed > at => format!(", resumed {resumed} ({by})"),
                _ => String::new(),
            };
            println!("  last paused {at}{resumed}");
        }
        println!(
            "  marketing held {:>6}: {} sent after, {} still deferred, {} cancelled by their origin, {} blocked or unknown",
            self.held, self.held_then_sent, self.held_still_deferred, self.held_then_cancelled, self.held_other
        );
        println!("  judged over at least {} sends and {} hard bounces in 24 h", self.floors.0, self.floors.1);
    }
}

/// The faults of a `--faults` run: what was injected where, what the consumers and the scheduler
/// lived through, how often clients retried, and what ended in the dead-letter queues.
#[derive(Debug, Default, Serialize)]
pub struct FaultReport {
    pub plan: String,
    pub injected: FaultCounts,
    pub workers: WorkerCounts,
    /// Requests tried again after a 5xx or a killed invocation (502), as browsers and the shop
    /// back end do.
    pub client_retries: u64,
    /// Requests still failing after `CLIENT_TRIES` tries: the client gave up, nothing acknowledged.
    pub client_gave_up: u64,
    /// Messages in each queue's dead-letter queue at the end (received too often, never finished).
    pub dead_letters: BTreeMap<String, u64>,
}

/// How often the simulated clients try a request that failed with a 5xx (the shop back end's
/// retry queue, a person pressing Send again). At the reference rates about one request in ten
/// needs a second try (mostly a crash: 0.02 per write); ten tries leave a give-up to chance
/// below one in a million; a give-up is counted, and the caller stops the demo on its 5xx.
const CLIENT_TRIES: u32 = 10;
/// The simulated time between two tries (well inside the event signatures' tolerance over
/// `CLIENT_TRIES`).
const CLIENT_RETRY_PAUSE: SignedDuration = SignedDuration::from_secs(2);

/// Conversations with the qualification bots, and how they ended.
#[derive(Debug, Default, Serialize)]
pub struct BotReport {
    pub conversations: u64,
    /// Answers the bot asked again (a mistyped address).
    pub reasked: u64,
    /// By outcome: qualified, nurture, disqualified.
    pub outcomes: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct SpendReport {
    pub days: usize,
    pub rows: usize,
    /// Per channel, in the shop's currency.
    pub by_channel: BTreeMap<String, f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct CartReport {
    pub carts_started: u64,
    pub abandoned: u64,
    pub reminders_by_step: BTreeMap<String, u64>,
    pub steps_skipped_as_stale: u64,
    pub recovered: u64,
    pub recovered_revenue: f64,
    pub codes_issued: u64,
    pub codes_redeemed: u64,
    pub discount_cost: f64,
}

/// A purchase the simulation will make later: (when, email, cart, revenue, use the step-3 code).
type PlannedPurchase = (Timestamp, String, String, f64, bool);

#[derive(Debug, Default, Serialize)]
pub struct JourneyReport {
    pub entries_treatment: u64,
    pub entries_holdout: u64,
    pub exits: u64,
    pub conversions_treatment: u64,
    pub conversions_holdout: u64,
}

const CHANNELS: [(&str, &str, &str, u32); 7] = [
    ("google", "cpc", "brand", 20),
    ("yandex", "cpc", "generic", 20),
    ("vk", "social", "autumn_sale", 15),
    ("newsletter", "email", "digest", 10),
    ("", "", "organic", 15),
    ("", "", "direct", 12),
    ("", "", "referral", 8),
];
/// What the shop pays per visitor a paid channel brings: (channel, campaign, cost per visitor).
/// A simulated visitor is one who engages (browses, fills a form, talks to the bot); each stands
/// for the eight or so paid clicks that bounced before it (about 60, 50 and 35 roubles a click),
/// which puts the channels' ROAS where a shop's usually is (3 to 6) rather than in the hundreds.
/// Organic search, the newsletter and referrals bring visitors at no media cost, and are
/// reported as zero rows so every channel appears in the spend table.
const PAID_CHANNELS: [(&str, &str, f64); 3] =
    [("google", "brand", 496.0), ("yandex", "generic", 384.0), ("vk", "autumn_sale", 280.0)];
const FREE_CHANNELS: [(&str, Option<&str>); 3] =
    [("organic", None), ("newsletter", Some("digest")), ("referral", None)];
const FIRST_NAMES: [&str; 12] =
    ["Anna", "Ivan", "Olga", "Dmitry", "Maria", "Sergey", "Elena", "Pavel", "Kate", "John", "Svetlana", "Alexei"];
const LAST_NAMES: [&str; 10] =
    ["Petrova", "Ivanov", "Smirnova", "Kuznetsov", "Popova", "Sokolov", "Lebedeva", "Novikov", "Brown", "Morozov"];
const DOMAINS: [&str; 5] = ["example.com", "mail.example", "inbox.example", "school.example", "shop.example"];
const CATEGORIES: [&str; 6] = ["shoes", "bags", "courses", "books", "toys", "garden"];
const TIME_ZONES: [&str; 5] =
    ["Europe/Moscow", "Asia/Yekaterinburg", "Asia/Novosibirsk", "Europe/Berlin", "Asia/Kolkata"];

struct Visitor {
    index: usize,
    anonymous_id: String,
    ip: IpAddr,
    channel: usize,
    email: String,
    first_name: String,
    last_name: String,
}

struct Driver {
    app: Router,
    /// The shop back end's keys, and the simulated time it signs its requests at.
    events_keys: KeyRing,
    clock: Arc<SimulatedClock>,
    report: DemoReport,
    request_micros: u128,
    /// Identity keys of every address whose submission was acknowledged as a real lead.
    acknowledged: BTreeSet<String>,
    /// Dedupe keys of every event the events API answered `accepted`.
    acknowledged_events: BTreeSet<String>,
    /// The admin routes' bearer key, for reporting spend.
    admin_key: String,
    /// Each request is one invocation of these faults, when injected.
    faults: Option<Arc<Faults>>,
    client_retries: u64,
    client_gave_up: u64,
}

impl Driver {
    /// The shop back end reports a cart bought, with the personal code when the buyer uses it.
    async fn buy(&mut self, stack: &Stack, email: &str, cart_id: &str, total: f64, use_code: bool) -> Result<()> {
        let code = if use_code {
            let cart = trigger_evaluator::carts::load(stack.state.store.as_ref(), cart_id).await?;
            cart.and_then(|c| c.codes.values().next().cloned())
        } else {
            None
        };
        let revenue = if code.is_some() { (total * 0.9).round() } else { total };
        let mut properties =
            json!({"order_id": format!("order-{cart_id}"), "revenue": revenue, "currency": "RUB", "cart_id": cart_id});
        if let Some(code) = code {
            properties["discount_code"] = json!(code);
        }
        let event = json!({"event_id": format!("order-{cart_id}:purchase"), "type": EventType::Purchase, "email": email, "properties": properties});
        self.send_events(vec![event], IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)), true).await
    }

    /// The shop reports a day's ad spend, as its marketer would: rows through `POST /v1/spend`
    /// with the admin key.
    async fn post_spend(&mut self, rows: Vec<Value>) -> Result<()> {
        let body = json!({ "rows": rows });
        let request = Request::post("/v1/spend")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {}", self.admin_key))
            .body(Body::from(serde_json::to_vec(&body)?))?;
        let (status, answer) = self.call(request, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20))).await?;
        if status != StatusCode::OK {
            bail!("reporting spend answered {status}: {answer}");
        }
        self.report.spend.days += 1;
        for row in &body["rows"].as_array().cloned().unwrap_or_default() {
            self.report.spend.rows += 1;
            let channel = row["channel"].as_str().unwrap_or_default().to_string();
            *self.report.spend.by_channel.entry(channel).or_default() += row["amount"].as_f64().unwrap_or(0.0);
        }
        Ok(())
    }

    /// The people who got mail react (SES delivered it a moment ago): most new subscribers follow
    /// their confirmation link, and SES publishes deliveries, bounces, complaints, opens and
    /// clicks through SNS onto the events queue, as a configuration set does on AWS.
    async fn react_to_mail(&mut self, stack: &Stack, ses: &SimulatedSes, recipients: &Recipients) -> Result<()> {
        let mut feedback = Vec::new();
        for mail in ses.take_delivered() {
            let reactions = recipients.react(&mail, &mut self.report.feedback);
            feedback.extend(reactions.feedback);
            if let (true, Some(path)) = (reactions.confirm, &mail.confirm_path) {
                // The link opens a page whose button posts; the person presses it.
                let request = Request::post(path.as_str()).body(Body::empty())?;
                let (status, _) = self.call(request, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))).await?;
                if status == StatusCode::OK {
                    self.report.confirmations_followed += 1;
                }
            }
        }
        if !feedback.is_empty() {
            // SNS delivers into SQS on AWS: not a call Voronka makes.
            send_all(stack.adapter_queue.as_ref(), QueueName::Events, feedback_messages(feedback)).await?;
        }
        Ok(())
    }

    /// One request as a client makes it: with faults injected, each try is one invocation, a
    /// killed one answers 502 (as API Gateway does for a Lambda that died), and a 5xx is tried
    /// again a few simulated seconds later, up to `CLIENT_TRIES` times.
    async fn call(&mut self, request: Request<Body>, ip: IpAddr) -> Result<(StatusCode, Value)> {
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ClientIp(ip));
        let body = axum::body::to_bytes(body, usize::MAX).await?;
        let mut tries = 0;
        loop {
            tries += 1;
            let request = Request::from_parts(parts.clone(), Body::from(body.clone()));
            let started = Instant::now();
            let response = match &self.faults {
                None => Some(self.app.clone().oneshot(request).await?),
                Some(faults) => match faults.invocation(self.app.clone().oneshot(request)).await {
                    Ok(response) => Some(response?),
                    Err(voronka_domain::ports::Killed) => None,
                },
            };
            self.request_micros += started.elapsed().as_micros();
            self.report.requests += 1;
            let (status, body) = match response {
                Some(response) => {
                    let status = response.status();
                    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
                    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
                }
                None => (StatusCode::BAD_GATEWAY, Value::Null),
            };
            if self.faults.is_none() || !status.is_server_error() {
                return Ok((status, body));
            }
            if tries >= CLIENT_TRIES {
                self.client_gave_up += 1;
                return Ok((status, body));
            }
            self.client_retries += 1;
            self.clock.advance(CLIENT_RETRY_PAUSE);
        }
    }

    async fn render_token(&mut self, form: &str, ip: IpAddr) -> Result<String> {
        let request = Request::get(format!("/v1/forms/{form}")).body(Body::empty())?;
        let (status, body) = self.call(request, ip).await?;
        if status != StatusCode::OK {
            bail!("describing form {form} answered {status}");
        }
        Ok(body["render_token"].as_str().unwrap_or_default().to_string())
    }

    async fn send_events(&mut self, events: Vec<Value>, ip: IpAddr, signed: bool) -> Result<()> {
        let body = serde_json::to_vec(&json!({ "events": events }))?;
        let mut request = Request::post("/v1/events").header(header::CONTENT_TYPE, "application/json");
        if signed {
            let now = voronka_domain::ports::Clock::now(self.clock.as_ref());
            request = request.header(EVENTS_SIGNATURE_HEADER, sign_events_body(&self.events_keys, now, &body));
        }
        let (status, answer) = self.call(request.body(Body::from(body))?, ip).await?;
        self.report.event_batches += 1;
        match status {
            StatusCode::ACCEPTED => {
                let source = if signed { "shop" } else { "browser" };
                for result in answer["results"].as_array().into_iter().flatten() {
                    if let (Some("accepted"), Some(id)) = (result["status"].as_str(), result["event_id"].as_str()) {
                        self.acknowledged_events.insert(format!("{source}:{id}"));
                    }
                }
                self.report.events_accepted += answer["accepted"].as_u64().unwrap_or(0) as usize;
                self.report.events_duplicate += answer["duplicates"].as_u64().unwrap_or(0) as usize;
                self.report.events_rejected += answer["rejected"].as_u64().unwrap_or(0) as usize;
            }
            StatusCode::TOO_MANY_REQUESTS => self.report.rate_limited += 1,
            other => bail!("an event batch answered {other}: {answer}"),
        }
        Ok(())
    }

    /// Submits a form the way a visitor's browser or an API client would, and counts the outcome.
    async fn submit(
        &mut self,
        form: &str,
        fields: Vec<(String, String)>,
        as_browser: bool,
        ip: IpAddr,
    ) -> Result<StatusCode> {
        let (status, body) = self.post_form(form, fields, as_browser, ip).await?;
        match status {
            StatusCode::CREATED => match body["status"].as_str() {
                Some("created") => self.report.contacts_created += 1,
                Some("updated") => self.report.contacts_merged += 1,
                _ => bail!("a submission answered 201 without a status: {body}"),
            },
            StatusCode::SEE_OTHER => self.report.html_form_redirects += 1,
            StatusCode::BAD_REQUEST => self.report.rejected_invalid += 1,
            StatusCode::TOO_MANY_REQUESTS => self.report.rate_limited += 1,
            other => bail!("a submission answered {other}: {body}"),
        }
        Ok(status)
    }

    async fn post_json(&mut self, path: &str, body: &Value, ip: IpAddr) -> Result<(StatusCode, Value)> {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(body)?))?;
        self.call(request, ip).await
    }

    /// A conversation with one of the shipped bots through its HTTP routes, answering as a
    /// person would: choices at random, now and then a mistyped address first. Returns the
    /// address the bot captured, when the conversation reached an outcome.
    async fn talk_to_bot(&mut self, visitor: &Visitor, rng: &mut StdRng) -> Result<Option<String>> {
        let script = if rng.random_bool(0.6) { "b2b_demo" } else { "course_picker" };
        let start = json!({"locale": if rng.random_bool(0.5) { "ru" } else { "en" },
            "anonymous_id": visitor.anonymous_id, "page": "https://shop.example/"});
        let (status, started) = self.post_json(&format!("/v1/bot/{script}/sessions"), &start, visitor.ip).await?;
        match status {
            StatusCode::CREATED => self.report.bots.conversations += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                self.report.rate_limited += 1;
                return Ok(None);
            }
            other => bail!("starting a bot session answered {other}: {started}"),
        }
        let session = started["session_id"].as_str().unwrap_or_default().to_string();
        let mut message = started["message"].clone();
        let mut mistyped = false;
        for seq in 1..=30u64 {
            let input = &message["input"];
            let value = match input["type"].as_str().unwrap_or("text") {
                "choice" => {
                    let choices = input["choices"].as_array().cloned().unwrap_or_default();
                    let Some(pick) = choices.get(rng.random_range(0..choices.len().max(1))) else { break };
                    pick["value"].clone()
                }
                "email" if !mistyped && rng.random_bool(0.1) => {
                    mistyped = true;
                    json!(visitor.email.replace('@', " at "))
                }
                "email" => json!(visitor.email),
                "url" => json!(format!("https://{}.example", visitor.last_name.to_lowercase())),
                "phone" => json!(format!("+7 916 {:03}-{:02}-{:02}", visitor.index % 1000, visitor.index % 100, 42)),
                "number" => json!(rng.random_range(1..500)),
                _ => json!(format!("{} {}", visitor.first_name, visitor.last_name)),
            };
            let path = format!("/v1/bot/sessions/{session}/answers");
            let (status, answer) = self.post_json(&path, &json!({"seq": seq, "value": value}), visitor.ip).await?;
            match status {
                StatusCode::OK => {}
                StatusCode::TOO_MANY_REQUESTS => {
                    self.report.rate_limited += 1;
                    return Ok(None);
                }
                other => bail!("a bot answer answered {other}: {answer}"),
            }
            if answer["accepted"] == json!(false) {
                self.report.bots.reasked += 1;
            }
            if let Some(kind) = answer["outcome"]["kind"].as_str() {
                *self.report.bots.outcomes.entry(kind.to_string()).or_default() += 1;
                return Ok(Some(visitor.email.clone()));
            }
            message = answer["message"].clone();
        }
        bail!("a conversation with {script} reached no outcome in 30 answers")
    }

    /// A bot's submission: it must look accepted, and store nothing (checked at the end).
    async fn submit_as_bot(
        &mut self,
        form: &str,
        fields: Vec<(String, String)>,
        as_browser: bool,
        ip: IpAddr,
    ) -> Result<()> {
        let (status, body) = self.post_form(form, fields, as_browser, ip).await?;
        if !matches!(status, StatusCode::CREATED | StatusCode::SEE_OTHER) {
            bail!("a bot's submission answered {status}, which tells the bot it was caught: {body}");
        }
        self.report.spam_dropped += 1;
        Ok(())
    }

    async fn post_form(
        &mut self,
        form: &str,
        fields: Vec<(String, String)>,
        as_browser: bool,
        ip: IpAddr,
    ) -> Result<(StatusCode, Value)> {
        self.report.submissions += 1;
        let request = if as_browser {
            Request::post(format!("/v1/forms/{form}/submissions"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::ACCEPT, "text/html,application/xhtml+xml")
                .body(Body::from(serde_urlencoded::to_string(&fields)?))?
        } else {
            let object: serde_json::Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            Request::post(format!("/v1/forms/{form}/submissions"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&object)?))?
        };
        self.call(request, ip).await
    }
}

fn tracking_fields(visitor: &Visitor, rng: &mut StdRng) -> Vec<(String, String)> {
    let (source, medium, campaign, _) = CHANNELS[visitor.channel];
    let mut fields = vec![
        ("anonymous_id".to_string(), visitor.anonymous_id.clone()),
        ("time_zone".to_string(), TIME_ZONES[visitor.index % TIME_ZONES.len()].to_string()),
        ("locale".to_string(), if rng.random_bool(0.8) { "ru-RU" } else { "en-GB" }.to_string()),
        ("landing_page".to_string(), format!("https://shop.example/{}", CATEGORIES[visitor.index % CATEGORIES.len()])),
    ];
    if !source.is_empty() {
        fields.push(("utm_source".into(), source.into()));
        fields.push(("utm_medium".into(), medium.into()));
        fields.push(("utm_campaign".into(), campaign.into()));
    } else if campaign == "organic" {
        fields.push(("referrer".into(), "https://www.google.com/search?q=shop".into()));
    } else if campaign == "referral" {
        fields.push(("referrer".into(), "https://blog.example.org/review".into()));
    }
    fields
}

fn pick_channel(rng: &mut StdRng) -> usize {
    let total: u32 = CHANNELS.iter().map(|c| c.3).sum();
    let mut roll = rng.random_range(0..total);
    for (i, channel) in CHANNELS.iter().enumerate() {
        if roll < channel.3 {
            return i;
        }
        roll -= channel.3;
    }
    0
}

/// A day's spend rows: each paid channel's visitors (expected from its share of traffic) times
/// its cost per visitor, give or take a fifth, and a zero row for each free channel.
fn daily_spend(date: jiff::civil::Date, visitors_per_day: f64, currency: &str, rng: &mut StdRng) -> Vec<Value> {
    let weights: u32 = CHANNELS.iter().map(|c| c.3).sum();
    let mut rows = Vec::new();
    for (channel, campaign, cost_per_visitor) in PAID_CHANNELS {
        let weight = CHANNELS.iter().find(|c| c.0 == channel).map_or(0, |c| c.3);
        let visitors = visitors_per_day * f64::from(weight) / f64::from(weights);
        let amount = (visitors * cost_per_visitor * rng.random_range(0.8..1.2) * 100.0).round() / 100.0;
        rows.push(json!({"date": date.to_string(), "channel": channel, "campaign": campaign, "amount": amount,
            "currency": currency}));
    }
    for (channel, campaign) in FREE_CHANNELS {
        rows.push(json!({"date": date.to_string(), "channel": channel, "campaign": campaign, "amount": 0,
            "currency": currency}));
    }
    rows
}

/// Spells an address the way people retype it: other case, stray spaces.
fn respell(email: &str, rng: &mut StdRng) -> String {
    match rng.random_range(0..3) {
        0 => format!("  {}  ", email.to_uppercase()),
        1 => {
            let (local, domain) = email.split_once('@').unwrap();
            let mut chars = local.chars();
            let first = chars.next().map(|c| c.to_uppercase().collect::<String>()).unwrap_or_default();
            format!("{first}{}@{}", chars.as_str(), domain.to_uppercase())
        }
        _ => format!("{email} "),
    }
}

/// A private folder under the system's temporary folder, removed with everything in it on drop.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    /// The folder, with the installation's keys drawn from the seed: holdout groups and every
    /// other keyed choice then come out the same on every run of a seed. (A folder the user names
    /// gets random keys, as `voronka serve` may use it later; this one is private and removed.)
    fn create(seed: u64) -> Result<ScratchDir> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!(
            "voronka-demo-{}-{}",
            std::process::id(),
            voronka_domain::ports::RandomIds.random_hex(6)
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let scratch = ScratchDir(dir);
        let keys = SeededIds::new(seed ^ 0x5ec2e75);
        let secrets = Secrets::new(keys.random_hex(32), keys.random_hex(32));
        crate::stack::write_private(&scratch.0.join(crate::stack::SECRETS_FILE), &serde_json::to_string(&secrets)?)?;
        Ok(scratch)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// About 43 of every 100 visitors become contacts (by form, bot, or as a buyer the shop reports).
pub fn visitors_for_contacts(contacts: usize) -> usize {
    contacts.saturating_mul(100).div_ceil(43)
}

pub async fn run(options: DemoOptions) -> Result<DemoReport> {
    run_with(options, None).await
}

/// Builds the adapters a demo runs on, given its simulated clock.
pub type AdapterFactory = Box<dyn FnOnce(Arc<SimulatedClock>) -> Result<Adapters> + Send>;

/// The demo over other adapters than the embedded ones (the AWS adapters against moto, in
/// `tests/demo_moto.rs`): the same visitors, handlers, faults, end-of-run steps, checks and
/// report; only the adapters differ. The scratch folder then holds the secrets and the outbox
/// the sent mail is exported to for the checks.
pub async fn run_on(options: DemoOptions, adapters: AdapterFactory) -> Result<DemoReport> {
    run_with(options, Some(adapters)).await
}

async fn run_with(options: DemoOptions, adapters: Option<AdapterFactory>) -> Result<DemoReport> {
    let started = Instant::now();
    let start = Timestamp::from_second(1_793_523_600)?; // 2026-11-01 09:00 UTC
    let clock = Arc::new(SimulatedClock::starting_at(start));
    let faults = options.faults.map(|plan| Arc::new(Faults::new(plan, options.seed)));
    // Without a data folder the demo writes into a scratch folder removed when it ends: a
    // database in memory would hold every simulated person in RAM (gigabytes at 100 000).
    let scratch = match &options.data_dir {
        Some(_) => None,
        None => Some(ScratchDir::create(options.seed)?),
    };
    let data_dir = options.data_dir.clone().or_else(|| scratch.as_ref().map(|s| s.0.clone()));
    let stack_options = StackOptions {
        data_dir,
        metering: Some(voronka_domain::ports::Meter::new()),
        campaigns_dir: None,
        public_base_url: None,
        clock: clock.clone(),
        ids: Arc::new(SeededIds::new(options.seed)),
        faults: faults.clone(),
    };
    let mut stack = match adapters {
        None => Stack::open_with_durability(
            stack_options,
            // Simulated people: nothing the demo acknowledges must survive a power cut, and the
            // scratch folder nothing at all.
            if scratch.is_some() { Durability::Scratch } else { Durability::ProcessCrash },
        )?,
        Some(build) => Stack::with_adapters(stack_options, build(clock.clone())?)?,
    };
    let guard_floors = scale_guard_floors(&mut stack, options.faults.as_ref(), options.visitors, options.days);
    // No mail service to protect here: the demo does not wait on the SES rate between sends.
    stack.sender.rate = Arc::new(sender::rate::RateGate::per_second(0.0));
    let ses = Arc::new(SimulatedSes::new(stack.sender.mailer.clone(), clock.clone()));
    stack.sender.mailer = ses.clone();
    let recipients = Recipients::new(options.seed, behaviour(options.faults.as_ref(), start, options.days));
    let mut driver = Driver {
        app: crate::metering::metered_app(
            &stack,
            crate::serve::app(stack.state.clone(), stack.outbox.dir().to_path_buf()),
        ),
        events_keys: stack.state.secrets.events_keys.clone(),
        clock: clock.clone(),
        report: DemoReport {
            seed: options.seed,
            visitors: options.visitors,
            simulated_days: options.days,
            ..Default::default()
        },
        request_micros: 0,
        acknowledged: BTreeSet::new(),
        acknowledged_events: BTreeSet::new(),
        admin_key: stack.admin_key.clone(),
        faults,
        client_retries: 0,
        client_gave_up: 0,
    };
    let mut rng = StdRng::seed_from_u64(options.seed);
    let progress = if options.show_progress {
        let bar = ProgressBar::new(options.visitors as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} simulating visitors {bar:40} {pos}/{len} {elapsed}")
                .expect("valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    // Spread arrivals over the simulated period.
    let step_seconds = (i64::from(options.days) * 86_400 / options.visitors.max(1) as i64).max(1);
    let mut returning: Vec<(usize, Visitor)> = Vec::new();
    let mut planned: Vec<PlannedPurchase> = Vec::new();
    let mut buyers: Vec<String> = Vec::new();
    // Spend has its own random sequence, so the visitors of a seed stay what they were.
    let mut spend_rng = StdRng::seed_from_u64(options.seed ^ 0x5be7d);
    let settings = stack.state.campaigns.settings.clone();
    let day_of = |at: Timestamp| aggregates::date(at, &settings);
    let visitors_per_day = options.visitors as f64 / f64::from(options.days.max(1));
    let first_day = day_of(start);
    let mut open_day = first_day;
    let mut last_scheduler_run: Option<Timestamp> = None;
    for index in 0..options.visitors {
        clock.advance(SignedDuration::from_secs(rng.random_range(step_seconds / 2..=step_seconds * 3 / 2)));
        // A day ended: the marketer reports its spend, and the nightly rollup runs.
        let today = day_of(voronka_domain::ports::Clock::now(clock.as_ref()));
        while open_day < today {
            let rows = daily_spend(open_day, visitors_per_day, &settings.currency, &mut spend_rng);
            driver.post_spend(rows).await?;
            open_day = open_day.tomorrow()?;
            nightly(&stack, &mut driver.report).await?;
        }
        let first_name = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())].to_string();
        let last_name = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())].to_string();
        let visitor = Visitor {
            index,
            anonymous_id: format!("anon-{:06}", index),
            ip: IpAddr::V4(Ipv4Addr::new(198, 51, (index / 250) as u8 % 255, (index % 250) as u8 + 1)),
            channel: pick_channel(&mut rng),
            email: format!(
                "{}.{}{}@{}",
                first_name.to_lowercase(),
                last_name.to_lowercase(),
                index,
                DOMAINS[rng.random_range(0..DOMAINS.len())]
            ),
            first_name,
            last_name,
        };

        // Browsing: unsigned behaviour events, now and then delivered twice.
        let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
        let views = rng.random_range(1..=4);
        let mut events =
            vec![json!({"event_id": format!("{}:pv:0", visitor.anonymous_id), "type": EventType::PageView,
            "anonymous_id": visitor.anonymous_id, "properties": {"url": "https://shop.example/"}})];
        for view in 0..views {
            events.push(
                json!({"event_id": format!("{}:cv:{view}", visitor.anonymous_id), "type": EventType::CategoryView,
                "anonymous_id": visitor.anonymous_id, "properties": {"category": category}}),
            );
        }
        if rng.random_bool(0.01) {
            // A browser trying to report revenue: refused per event.
            events.push(
                json!({"event_id": format!("{}:fake-purchase", visitor.anonymous_id), "type": EventType::Purchase,
                "anonymous_id": visitor.anonymous_id, "properties": {"order_id": "x", "revenue": 1}}),
            );
        }
        driver.send_events(events.clone(), visitor.ip, false).await?;
        if rng.random_bool(0.05) {
            driver.send_events(events, visitor.ip, false).await?;
        }

        // Shopping: a cart, and a purchase before, during or after the reminder sequence, or never.
        let now = voronka_domain::ports::Clock::now(clock.as_ref());
        if rng.random_bool(0.25) {
            let cart_id = format!("cart-{index}");
            let items = rng.random_range(1..=3);
            let mut total = 0.0;
            let mut cart_events = Vec::new();
            for n in 0..items {
                let price = f64::from(rng.random_range(5..=150) * 100 - 10);
                total += price;
                cart_events.push(json!({"event_id": format!("{cart_id}:atc:{n}"), "type": EventType::AddToCart,
                    "anonymous_id": visitor.anonymous_id, "properties": {"cart_id": cart_id, "sku": format!("SKU-{}", rng.random_range(100..999)),
                    "name": format!("{} item {n}", category), "price": price, "quantity": 1, "currency": "RUB",
                    "cart_url": format!("https://shop.example/cart/{cart_id}")}}));
            }
            driver.send_events(cart_events, visitor.ip, false).await?;
            driver.report.carts.carts_started += 1;
            let roll: f64 = rng.random();
            let after = |minutes: i64| now + SignedDuration::from_mins(minutes);
            let plan = if roll < 0.3 {
                Some((after(rng.random_range(5..50)), false))
            } else if roll < 0.45 {
                Some((after(rng.random_range(90..1400)), false))
            } else if roll < 0.55 {
                Some((after(rng.random_range(1500..4200)), false))
            } else if roll < 0.62 {
                Some((after(rng.random_range(4400..8000)), true))
            } else {
                None
            };
            if let Some((at, use_code)) = plan {
                planned.push((at, visitor.email.clone(), cart_id, total, use_code));
            }
        }

        // Forms.
        let roll: f64 = rng.random();
        if roll < 0.35 {
            let form = if rng.random_bool(0.7) { "newsletter" } else { "consultation" };
            let token = driver.render_token(form, visitor.ip).await?;
            let kind: f64 = rng.random();
            let mut fields = tracking_fields(&visitor, &mut rng);
            fields.push(("_rt".into(), token));
            fields.push(("email".into(), visitor.email.clone()));
            fields.push(("consent".into(), "on".into()));
            if form == "newsletter" {
                fields.push(("first_name".into(), visitor.first_name.clone()));
            } else {
                fields.push(("name".into(), format!("{} {}", visitor.first_name, visitor.last_name)));
                fields.push((
                    "phone".into(),
                    format!("+7 916 {:03}-{:02}-{:02}", index % 1000, index % 100, (index / 7) % 100),
                ));
                fields.push(("website".into(), format!("{}.example", visitor.last_name.to_lowercase())));
                fields.push(("company_size".into(), ["1-10", "11-50", "51-200", "201+"][index % 4].into()));
            }
            let as_browser = rng.random_bool(0.5);
            if kind < 0.04 {
                // A bot: the honeypot is filled, or the form is sent a second after rendering.
                if rng.random_bool(0.5) {
                    fields.push(("fax".into(), "+1 555 0100".into()));
                } else {
                    clock.advance(SignedDuration::from_secs(1));
                }
                driver.submit_as_bot(form, fields, as_browser, visitor.ip).await?;
            } else if kind < 0.08 {
                // A person who mistypes: a broken address, or consent left unticked.
                if rng.random_bool(0.5) {
                    fields.retain(|(k, _)| k != "email");
                    fields.push(("email".into(), visitor.email.replace('@', " at ")));
                } else {
                    fields.retain(|(k, _)| k != "consent");
                }
                clock.advance(SignedDuration::from_secs(rng.random_range(20..120)));
                driver.submit(form, fields, as_browser, visitor.ip).await?;
            } else {
                clock.advance(SignedDuration::from_secs(rng.random_range(15..180)));
                let status = driver.submit(form, fields, as_browser, visitor.ip).await?;
                if matches!(status, StatusCode::CREATED | StatusCode::SEE_OTHER) {
                    driver.acknowledged.insert(EmailAddress::parse(&visitor.email)?.identity().to_string());
                    if rng.random_bool(0.12) {
                        returning.push((index + rng.random_range(5..40), visitor));
                        progress.inc(1);
                        continue;
                    }
                    if rng.random_bool(0.2) {
                        buyers.push(visitor.email.clone());
                    }
                }
            }
        }

        // Some visitors talk to a qualification bot instead of filling a form.
        if (0.35..0.45).contains(&roll) {
            clock.advance(SignedDuration::from_secs(rng.random_range(30..300)));
            if let Some(email) = driver.talk_to_bot(&visitor, &mut rng).await? {
                driver.acknowledged.insert(EmailAddress::parse(&email)?.identity().to_string());
            }
        }

        // Returning visitors submit again, their address spelled differently, mostly through
        // another channel (a retargeting ad, the newsletter, a search), and half of them buy: the
        // multi-touch paths on which the attribution models differ.
        let (due, later): (Vec<_>, Vec<_>) = returning.into_iter().partition(|(at, _)| *at <= index);
        returning = later;
        for (_, visitor) in due {
            let visitor = Visitor { channel: pick_channel(&mut rng), ..visitor };
            let token = driver.render_token("newsletter", visitor.ip).await?;
            clock.advance(SignedDuration::from_secs(rng.random_range(10..60)));
            let mut fields = tracking_fields(&visitor, &mut rng);
            fields.push(("_rt".into(), token));
            fields.push(("email".into(), respell(&visitor.email, &mut rng)));
            fields.push(("first_name".into(), visitor.first_name.clone()));
            fields.push(("consent".into(), "on".into()));
            driver.submit("newsletter", fields, false, visitor.ip).await?;
            if rng.random_bool(0.5) {
                buyers.push(visitor.email.clone());
            }
        }

        // Time passes for the whole suite: the scheduler dispatches what is due, consumers run,
        // and most new subscribers follow their confirmation link.
        // EventBridge runs the scheduler once a minute; the consumers take what is queued as it
        // comes.
        let now = voronka_domain::ports::Clock::now(clock.as_ref());
        if last_scheduler_run.is_none_or(|last| now.duration_since(last) >= SignedDuration::from_mins(1)) {
            last_scheduler_run = Some(now);
            driver.report.queue_messages_handled += crate::workers::tick(&stack).await?;
            driver.report.scheduler_runs += 1;
        } else {
            driver.report.queue_messages_handled += crate::workers::drain(&stack).await?;
        }
        driver.react_to_mail(&stack, &ses, &recipients).await?;
        let now = voronka_domain::ports::Clock::now(clock.as_ref());
        let (due, later): (Vec<_>, Vec<_>) = planned.into_iter().partition(|p| p.0 <= now);
        planned = later;
        for (_, email, cart_id, total, use_code) in due {
            driver.buy(&stack, &email, &cart_id, total, use_code).await?;
        }

        // The shop back end reports purchases, signed; its retries deliver some twice.
        if !buyers.is_empty() && rng.random_bool(0.3) {
            let email = buyers.swap_remove(rng.random_range(0..buyers.len()));
            let order = format!("order-{index}");
            let event = json!({"event_id": format!("{order}:purchase"), "type": EventType::Purchase, "email": email,
                "properties": {"order_id": order, "revenue": rng.random_range(990..25_000), "currency": "RUB"}});
            let shop = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
            driver.send_events(vec![event.clone()], shop, true).await?;
            if rng.random_bool(0.3) {
                driver.send_events(vec![event], shop, true).await?;
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    // The last day with visitors is paid for too.
    let rows = daily_spend(open_day, visitors_per_day, &settings.currency, &mut spend_rng);
    driver.post_spend(rows).await?;

    // Let the last waits (days) run out, hour by hour, with the nightly rollup at 02:30.
    for _ in 0..(24 * 4) {
        clock.advance(SignedDuration::from_hours(1));
        driver.report.queue_messages_handled += crate::workers::tick(&stack).await?;
        driver.react_to_mail(&stack, &ses, &recipients).await?;
        driver.report.scheduler_runs += 1;
        let now = voronka_domain::ports::Clock::now(clock.as_ref());
        if now.to_zoned(voronka_domain::time::time_zone_or_utc(&settings.default_time_zone)).hour() == 2 {
            nightly(&stack, &mut driver.report).await?;
        }
    }
    // SES's feedback on the last hour's mail.
    driver.report.queue_messages_handled += crate::workers::drain(&stack).await?;
    // The runbook's replay after a fix (README, Operations): the dead-letter alarm fired, so the
    // dead letters are redriven and a day runs for what they carry to be done (faults still on).
    // What parks again is counted and explained by the invariants; a send or due item left
    // unfinished there is a violation.
    let mut redriven = BTreeMap::new();
    for queue in QueueName::ALL {
        let moved = stack.inspect.redrive(queue).await?;
        if moved > 0 {
            redriven.insert(format!("{}-dlq", queue.as_str()), moved);
        }
    }
    if !redriven.is_empty() {
        for _ in 0..24 {
            clock.advance(SignedDuration::from_hours(1));
            driver.report.queue_messages_handled += crate::workers::tick(&stack).await?;
            driver.react_to_mail(&stack, &ses, &recipients).await?;
            driver.report.scheduler_runs += 1;
        }
        driver.report.queue_messages_handled += crate::workers::drain(&stack).await?;
    }

    let acknowledged = crate::invariants::Acknowledged {
        leads: std::mem::take(&mut driver.acknowledged),
        events: std::mem::take(&mut driver.acknowledged_events),
    };
    let mut invariants = crate::invariants::check(&stack, &acknowledged).await?;
    invariants.redriven = redriven;
    let contacts = ContactRepository::new(stack.state.store.as_ref()).list_all().await?;
    let (client_retries, client_gave_up) = (driver.client_retries, driver.client_gave_up);
    let mut report = driver.report;
    report.invariants = Some(invariants);
    report.contacts_stored = contacts.len();
    for contact in &contacts {
        *report.contacts_by_stage.entry(contact.stage.as_str().to_string()).or_default() += 1;
        let channel = contact.first_touch.as_ref().map_or("direct".to_string(), |t| t.channel.clone());
        *report.contacts_by_channel.entry(channel).or_default() += 1;
    }
    report.confirmations_queued = stack.inspect.depth(QueueName::Sends, false).await?;
    let store = stack.state.store.as_ref();
    for journey in stack.state.campaigns.journeys.keys() {
        let mut summary = JourneyReport::default();
        for row in aggregates::journey_aggregates(store, journey).await? {
            match row.group {
                Group::Holdout => {
                    summary.entries_holdout += row.entries;
                    summary.conversions_holdout += row.conversions;
                }
                Group::Treatment => {
                    summary.entries_treatment += row.entries;
                    summary.conversions_treatment += row.conversions;
                }
            }
            summary.exits += row.exits;
        }
        report.journeys.insert(journey.clone(), summary);
    }
    let mut day = start;
    let mut totals: Vec<DailyTotal> = Vec::new();
    while day <= voronka_domain::ports::Clock::now(clock.as_ref()) {
        let date = aggregates::date(day, &stack.state.campaigns.settings);
        for row in aggregates::daily_totals(store, date).await? {
            if row.metric == Metric::Email("email_sent".into()) {
                *report.emails_by_template.entry(row.dimensions.channel.clone()).or_default() += row.value as u64;
            }
            totals.push(row);
        }
        day += SignedDuration::from_hours(24);
    }
    let total = |metric: Metric, dimensions: Dimensions| {
        totals
            .iter()
            .filter(|row| row.metric == metric && row.dimensions == dimensions)
            .fold(0.0, |sum, row| sum + row.value)
    };
    let carts = &mut report.carts;
    carts.abandoned = total(Metric::CartsAbandoned, Dimensions::none()) as u64;
    for step in 1..=stack.state.campaigns.settings.carts.steps.len() as u32 {
        let reminders = total(Metric::CartReminder, Dimensions::step(step)) as u64;
        carts.reminders_by_step.insert(format!("step{step}"), reminders);
        carts.recovered += total(Metric::CartRecovered, Dimensions::step(step)) as u64;
        carts.recovered_revenue += total(Metric::CartRecoveredRevenue, Dimensions::step(step));
        carts.steps_skipped_as_stale += total(Metric::CartStepSkipped, Dimensions::step(step)) as u64;
    }
    carts.codes_issued = total(Metric::DiscountCodesIssued, Dimensions::none()) as u64;
    // Redemptions and their cost are counted under the code's origin: summed over all of them.
    let total_of_every_origin =
        |metric: Metric| totals.iter().filter(|row| row.metric == metric).fold(0.0, |sum, row| sum + row.value);
    carts.codes_redeemed = total_of_every_origin(Metric::DiscountCodesRedeemed) as u64;
    carts.discount_cost = total_of_every_origin(Metric::DiscountCost);
    report.events_queued = stack.inspect.depth(QueueName::Events, false).await?;
    let last_day = day_of(voronka_domain::ports::Clock::now(clock.as_ref()));
    let query = KpiQuery { from: first_day, to: last_day, group_by: GroupBy::Channel, attribution: Model::LastTouch };
    report.kpi = Some(crate::kpi_cli::report(&stack, &query).await?);
    if let Some(dir) = &options.dashboard_dir {
        report.dashboard = Some(crate::dashboard::write_static(dir, &stack, &query).await?);
    }
    if let Some(faults) = &stack.faults {
        let mut faulted = fault_report(&stack, faults, client_retries, client_gave_up).await?;
        faulted.injected.storm_bounces = report.feedback.storm_bounces;
        report.faults = Some(faulted);
    }
    report.reputation = reputation_report(&stack).await?;
    report.reputation.floors = guard_floors;
    report.cost =
        crate::metering::cost_report(&stack, report.contacts_stored, report.events_accepted, report.nightly_rollups)
            .await?;
    report.wall_time_ms = started.elapsed().as_millis();
    report.mean_request_micros = driver.request_micros / report.requests.max(1) as u128;
    let simulated_events = report.requests + report.queue_messages_handled;
    report.micros_per_simulated_event = started.elapsed().as_micros() as f64 / simulated_events.max(1) as f64;
    report.peak_memory_mib = peak_memory_mib();
    Ok(report)
}

/// The peak resident set of this process so far (Linux's VmHWM).
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

async fn fault_report(stack: &Stack, faults: &Faults, client_retries: u64, client_gave_up: u64) -> Result<FaultReport> {
    let mut dead_letters = BTreeMap::new();
    for queue in QueueName::ALL {
        dead_letters.insert(queue.as_str().to_string(), stack.inspect.depth(queue, true).await?);
    }
    Ok(FaultReport {
        plan: faults.plan().to_string(),
        injected: faults.counts(),
        workers: stack.worker_stats.counts(),
        client_retries,
        client_gave_up,
        dead_letters,
    })
}

/// The nightly rollup at the simulated clock: yesterday final, the days before it restated.
async fn nightly(stack: &Stack, report: &mut DemoReport) -> Result<()> {
    let rollup = crate::kpi_cli::run_rollup(stack, RollupKind::Nightly);
    crate::metering::invoke(stack, Function::KpiRollup, voronka_domain::ports::Driver::Day, rollup).await?;
    report.nightly_rollups += 1;
    Ok(())
}

impl DemoReport {
    pub fn print(&self) {
        println!(
            "Voronka demo — seed {}, {} visitors over {} simulated days",
            self.seed, self.visitors, self.simulated_days
        );
        println!();
        println!("Lead capture");
        println!("  form submissions sent        {:>7}", self.submissions);
        println!("  contacts created             {:>7}", self.contacts_created);
        println!("  merged into existing contact {:>7}", self.contacts_merged);
        println!("  browser posts redirected     {:>7}  (303 to the thank-you page)", self.html_form_redirects);
        println!("  spam dropped silently        {:>7}", self.spam_dropped);
        println!("  rejected as invalid (400)    {:>7}", self.rejected_invalid);
        println!("  rate limited (429)           {:>7}", self.rate_limited);
        println!(
            "  contacts stored              {:>7}  (every acknowledged lead once, and buyers the shop reported: see the invariants)",
            self.contacts_stored
        );
        println!("  sends still queued           {:>7}", self.confirmations_queued);
        println!();
        println!("Events");
        println!("  batches sent                 {:>7}", self.event_batches);
        println!("  accepted                     {:>7}", self.events_accepted);
        println!("  duplicates ignored           {:>7}", self.events_duplicate);
        println!("  rejected                     {:>7}", self.events_rejected);
        println!("  on the events queue          {:>7}", self.events_queued);
        println!();
        println!("  confirmation links followed  {:>7}", self.confirmations_followed);
        let f = &self.feedback;
        println!(
            "  SES feedback                 {:>7} delivered, {} hard and {} soft bounces, {} complaints, {} opens, {} clicks",
            f.delivered, f.hard_bounces, f.soft_bounces, f.complaints, f.opens, f.clicks
        );
        println!();
        println!("Journeys                  entries (treatment/holdout)   exits   conversions (treatment/holdout)");
        for (journey, j) in &self.journeys {
            println!(
                "  {journey:<24} {:>8} / {:<8}          {:>6}   {:>6} / {:<6}",
                j.entries_treatment, j.entries_holdout, j.exits, j.conversions_treatment, j.conversions_holdout
            );
        }
        let c = &self.carts;
        println!("Abandoned carts");
        println!("  carts started                {:>7}", c.carts_started);
        println!("  abandoned                    {:>7}", c.abandoned);
        for (step, n) in &c.reminders_by_step {
            println!("  reminders due, {step:<13} {n:>7}  (sent when consent allows)");
        }
        println!("  steps skipped as stale       {:>7}", c.steps_skipped_as_stale);
        println!("  recovered carts              {:>7}  ({:.0} ₽ revenue)", c.recovered, c.recovered_revenue);
        println!(
            "  codes issued / redeemed      {:>7} / {}  ({:.0} ₽ discount cost)",
            c.codes_issued, c.codes_redeemed, c.discount_cost
        );
        println!("Qualification bots");
        println!("  conversations                {:>7}", self.bots.conversations);
        println!("  answers asked again          {:>7}", self.bots.reasked);
        for outcome in ["qualified", "nurture", "disqualified"] {
            let n = self.bots.outcomes.get(outcome).copied().unwrap_or(0);
            println!("  {outcome:<28} {n:>7}");
        }
        println!("Emails sent by template");
        for (template, n) in &self.emails_by_template {
            println!("  {template:<28} {n:>7}");
        }
        println!("  scheduler runs               {:>7}", self.scheduler_runs);
        println!();
        println!("Contacts by stage");
        for (stage, n) in &self.contacts_by_stage {
            println!("  {stage:<28} {n:>7}");
        }
        println!("Contacts by first-touch channel");
        for (channel, n) in &self.contacts_by_channel {
            println!("  {channel:<28} {n:>7}");
        }
        println!();
        println!();
        println!("Ad spend reported through POST /v1/spend: {} rows over {} days", self.spend.rows, self.spend.days);
        for (channel, amount) in &self.spend.by_channel {
            println!("  {channel:<28} {amount:>10.0} ₽");
        }
        println!("  nightly rollups              {:>7}", self.nightly_rollups);
        if let Some(kpi) = &self.kpi {
            println!();
            print!("{}", crate::kpi_cli::render_tables(kpi, None));
        }
        if let Some(dashboard) = &self.dashboard {
            println!();
            println!("Dashboard (opens without a server): {}", dashboard.display());
        }
        if let Some(invariants) = &self.invariants {
            println!();
            invariants.print();
        }
        if let Some(faults) = &self.faults {
            println!();
            faults.print();
        }
        println!();
        self.reputation.print();
        println!();
        println!(
            "{} requests and {} queue messages through the handlers in {:.1} s wall time \
             ({:.0} µs per simulated event; {} µs per request on average)",
            self.requests,
            self.queue_messages_handled,
            self.wall_time_ms as f64 / 1000.0,
            self.micros_per_simulated_event,
            self.mean_request_micros
        );
        self.cost.print();
        if let Some(peak) = self.peak_memory_mib {
            println!("peak memory {peak:.0} MiB");
        }
    }
}

impl FaultReport {
    fn print(&self) {
        let i = &self.injected;
        let w = &self.workers;
        println!("Faults injected ({})", self.plan);
        println!("  invocations                  {:>7}", i.invocations);
        println!("  SES throttled                {:>7}", i.ses_throttled);
        println!(
            "  SES errors                   {:>7}  ({} never reached SES, {} 5xx not taken, {} 5xx taken)",
            i.ses_errors_not_sent + i.ses_errors_ambiguous_not_taken + i.ses_errors_ambiguous_taken,
            i.ses_errors_not_sent,
            i.ses_errors_ambiguous_not_taken,
            i.ses_errors_ambiguous_taken
        );
        println!(
            "  store throttled              {:>7}  ({} through the SDK's {} attempts to the handler)",
            i.store_throttled,
            i.store_throttled_to_handler,
            voronka_domain::ports::faulty::SDK_ATTEMPTS
        );
        println!(
            "  duplicate deliveries         {:>7}  ({} same receive, {} next receive, handled concurrently, {} later)",
            i.duplicates_same_receive + i.duplicates_next_receive + i.duplicates_later,
            i.duplicates_same_receive,
            i.duplicates_next_receive,
            i.duplicates_later
        );
        println!("  crashes between steps        {:>7}  ({} later calls refused)", i.crashes, i.calls_after_crash);
        println!("  bounce storm: hard bounces   {:>7}  (the run's middle day)", i.storm_bounces);
        println!("  consumer batches             {:>7}  ({} killed, left on the queue)", w.batches, w.batches_killed);
        println!("  messages failed, retried     {:>7}", w.messages_failed);
        println!("  scheduler runs failed        {:>7}", w.scheduler_runs_failed);
        println!("  client retries after 5xx     {:>7}  ({} gave up)", self.client_retries, self.client_gave_up);
        for (queue, n) in &self.dead_letters {
            println!(
                "  in the {queue} dead-letter queue {n:>5}  (received {} times, never finished)",
                voronka_embedded::DEFAULT_MAX_RECEIVES
            );
        }
    }
}
