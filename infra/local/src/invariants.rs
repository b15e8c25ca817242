//! The invariants a run must keep, checked from what was really done: the outbox's `.eml` files
//! (headers only), the store's items and the queues' messages, never the code's own counters.
//!
//! A message says what it is in its headers: `Message-ID` is the send tag of its idempotency key
//! (`SendRequest::send_tag`), `Date` the sender's clock when it decided to send, and
//! `X-Voronka-Class` / `X-Voronka-Contact` its class and contact (`sending::mime`). Examples of a
//! violation are ids (send tags, contact ids, due-item ids, event ids), never an address.
//!
//! Explained, not violations (each counted in the table's `explained` column, with examples):
//! - A second copy of a transactional message whose ledger entry records why it may have been
//!   sent again (`send_ledger::RESENT_AFTER`: an ambiguous SES answer, or an attempt that died
//!   while calling SES). Transactional mail is at-least-once by design (SPEC §4.5: only marketing
//!   is never resent). A marketing copy, or a transactional one without that record, stays a
//!   violation: the record is written before the resend, so its absence means a broken key.
//! - Dead letters whose work was done anyway, and events kept for an operator's replay. A parked
//!   send the ledger never finished (no copy left to deliver it) or a parked due item's
//!   evaluation never processed is a violation: that work is lost until someone replays it, and
//!   the run promised it (see `check_dead_letters`; the demo replays once before it checks).
//! - A form's contact stored without the client seeing an acknowledgement (its request was killed
//!   after the write; the retry was refused or never made): nothing was lost. The violation is
//!   the other way round: an acknowledged lead not stored.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;
use serde_json::Value;
use voronka_domain::campaigns::SendingSettings;
use voronka_domain::model::{Channel, Contact, Event, SendRequest, SuppressionReason};
use voronka_domain::ports::QueueName;
use voronka_domain::repo::ContactRepository;
use voronka_domain::repo::send_ledger::RESENT_AFTER;
use voronka_domain::sending::mime::{CLASS_HEADER, CONTACT_HEADER};
use voronka_domain::sending::policy::{QuietHours, cap_windows, time_zone_or_utc};

use crate::stack::Stack;

/// Examples kept per invariant and per dead-letter kind.
pub const MAX_EXAMPLES: usize = 5;
/// Longest header block read from a message; a message's headers are a few hundred bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// What the API acknowledged during the run, as the client saw it.
#[derive(Debug, Default, Clone)]
pub struct Acknowledged {
    /// Identity keys (`EmailAddress::identity`) of addresses whose submission was answered as a
    /// stored lead (201, or 303 for a browser).
    pub leads: BTreeSet<String>,
    /// Dedupe keys (`<source>:<event_id>`) of events the events API answered `accepted`.
    pub events: BTreeSet<String>,
}

/// One invariant: how many things were checked and which broke it.
#[derive(Debug, Clone, Serialize)]
pub struct Invariant {
    pub name: &'static str,
    pub title: &'static str,
    pub checked: u64,
    pub violations: u64,
    /// A few violations, by id.
    pub examples: Vec<String>,
    /// Departures from the ideal that the design accepts, each with its record (see the module
    /// doc): not violations.
    pub explained: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub explained_examples: Vec<String>,
    /// What was not checkable and why, or what the count includes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Invariant {
    fn new(name: &'static str, title: &'static str) -> Self {
        Invariant {
            name,
            title,
            checked: 0,
            violations: 0,
            examples: Vec::new(),
            explained: 0,
            explained_examples: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn explained(&mut self, example: impl Into<String>) {
        self.explained += 1;
        if self.explained_examples.len() < MAX_EXAMPLES {
            self.explained_examples.push(example.into());
        }
    }

    fn violated(&mut self, example: impl Into<String>) {
        self.violations += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(example.into());
        }
    }
}

/// Messages parked in one dead-letter queue, of one kind, for one reason.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetters {
    pub queue: String,
    /// The body's kind: the event type, or `send:<template>`, or `unreadable`.
    pub kind: String,
    /// What the parked copy means for its work: done anyway (a redundant copy), or kept for an
    /// operator's replay, or lost (a violation).
    pub reason: String,
    pub count: u64,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct InvariantReport {
    pub invariants: Vec<Invariant>,
    pub dead_letters: Vec<DeadLetters>,
    /// Messages still on each queue after the run (delayed ones: deferred sends not yet due).
    pub queues_left: BTreeMap<String, u64>,
    /// Dead letters redriven to their queue before the check, as the runbook's replay after a fix
    /// does (filled by the caller that redrove them); what parked again is in `dead_letters`.
    pub redriven: BTreeMap<String, u64>,
    pub outbox_messages: u64,
    /// How long reading the outbox took.
    pub outbox_read_ms: u128,
    pub check_ms: u128,
}

impl InvariantReport {
    pub fn violations(&self) -> u64 {
        self.invariants.iter().map(|i| i.violations).sum()
    }

    pub fn print(&self) {
        println!("Invariants (from the outbox's {} messages, the store and the queues)", self.outbox_messages);
        println!("  {:<52} {:>9} {:>10} {:>9}", "", "checked", "violations", "explained");
        for invariant in &self.invariants {
            println!(
                "  {:<52} {:>9} {:>10} {:>9}",
                invariant.title, invariant.checked, invariant.violations, invariant.explained
            );
            if !invariant.examples.is_empty() {
                println!("      e.g. {}", invariant.examples.join(", "));
            }
            if !invariant.explained_examples.is_empty() {
                println!("      explained, e.g. {}", invariant.explained_examples.join(", "));
            }
            for note in &invariant.notes {
                println!("      {note}");
            }
        }
        for dead in &self.dead_letters {
            println!(
                "  dead letters on {:<10} {:<30} {:>7}  {}; e.g. {}",
                dead.queue,
                dead.kind,
                dead.count,
                dead.reason,
                dead.examples.join(", ")
            );
        }
        for (queue, moved) in &self.redriven {
            println!("  redriven from {queue:<10} {moved:>7}  (the runbook's replay after the run; then a day ran)");
        }
        for (queue, left) in &self.queues_left {
            if *left > 0 {
                println!("  still on {queue:<10} {left:>7}  (delayed: deferred until later)");
            }
        }
        println!(
            "  {} violations; outbox read in {} ms, all checks in {} ms",
            self.violations(),
            self.outbox_read_ms,
            self.check_ms
        );
    }
}

/// What one sent message's headers say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SentMessage {
    pub file: String,
    /// The `Message-ID`'s local part: the send tag of the idempotency key.
    pub tag: Option<String>,
    pub date: Option<Timestamp>,
    pub marketing: bool,
    pub contact_id: Option<String>,
}

/// The header block of a message: bytes up to the first empty line.
fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut head = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            return Ok(head);
        }
        let searched_from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_blank_line(&head[searched_from..]) {
            head.truncate(searched_from + end);
            return Ok(head);
        }
        if head.len() >= MAX_HEAD_BYTES {
            return Ok(head);
        }
    }
}

fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| bytes.windows(2).position(|w| w == b"\n\n"))
}

/// The headers the invariants read, in the order of `WANTED`.
const WANTED: [&str; 5] = ["message-id", "date", CLASS_HEADER, CONTACT_HEADER, "list-unsubscribe"];

/// Reads the headers the invariants need (unfolding continuation lines, names in any case); the
/// body is never read, and no other header is copied.
pub fn parse_head(file: String, head: &[u8]) -> SentMessage {
    let mut values: [Option<String>; WANTED.len()] = Default::default();
    let mut current: Option<usize> = None;
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if let Some(value) = current.and_then(|i| values[i].as_mut()) {
                value.push(' ');
                value.push_str(String::from_utf8_lossy(line).trim());
            }
            continue;
        }
        current = None;
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let name = line[..colon].trim_ascii();
        if let Some(i) = WANTED.iter().position(|w| w.as_bytes().eq_ignore_ascii_case(name))
            && values[i].is_none()
        {
            values[i] = Some(String::from_utf8_lossy(line[colon + 1..].trim_ascii()).into_owned());
            current = Some(i);
        }
    }
    let [message_id, date, class, contact, list_unsubscribe] = values;
    let tag = message_id
        .as_deref()
        .map(|v| v.trim().trim_start_matches('<').trim_end_matches('>'))
        .and_then(|v| v.split('@').next())
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let date = date.and_then(|v| {
        let v = v.trim();
        parse_date_fast(v).or_else(|| jiff::fmt::rfc2822::parse(v).ok().map(|z| z.timestamp()))
    });
    let marketing = match class {
        Some(class) => class.trim().eq_ignore_ascii_case("marketing"),
        // Written before the class header: marketing mail is what carries one-click unsubscribe.
        None => list_unsubscribe.is_some(),
    };
    let contact_id = contact.map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
    SentMessage { file, tag, date, marketing, contact_id }
}

/// The `Date` the sender writes, `Sun, 22 Nov 2026 10:00:00 +0000`, read with integer arithmetic
/// (a hundred thousand messages are read per run); any other form goes to the full RFC 2822
/// parser.
fn parse_date_fast(value: &str) -> Option<Timestamp> {
    let rest = value.split_once(", ").map_or(value, |(_, rest)| rest);
    let mut parts = rest.split(' ');
    let day: i64 = parts.next()?.parse().ok()?;
    let month_name = parts.next()?;
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == month_name)? as i64
        + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(|n| n.parse::<i64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    let zone = parts.next()?;
    if parts.next().is_some() || zone.len() != 5 || clock.next().is_some() {
        return None;
    }
    let sign = match &zone[..1] {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    let offset = sign * (zone[1..3].parse::<i64>().ok()? * 3600 + zone[3..5].parse::<i64>().ok()? * 60);
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Timestamp::from_second(days * 86_400 + hour * 3600 + minute * 60 + second - offset).ok()
}

/// Every message of the outbox folder, headers only, read on every core.
pub fn read_outbox(dir: &Path) -> Result<Vec<SentMessage>> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing the outbox {}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|x| x == "eml"))
        .collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
    let per_thread = files.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<SentMessage>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|path| {
                            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                            // A file deleted meanwhile (an erasure) is a message no longer there.
                            match read_head(path) {
                                Ok(head) => Ok(Some(parse_head(name, &head))),
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                                Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
                            }
                        })
                        .filter_map(Result::transpose)
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("an outbox reader panicked"))))
            .collect()
    });
    let mut messages = Vec::with_capacity(files.len());
    for part in parts {
        messages.extend(part?);
    }
    messages.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(messages)
}

/// One consent decision on the email channel, as replayed.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentStep {
    pub id: String,
    pub at: Timestamp,
    pub granted: bool,
    pub double_opt_in: bool,
}

/// The seconds during which marketing to a contact was allowed by its email consent, replayed
/// from its receipts the way `Consent::apply` reads them (a grant on a double opt-in form waits
/// for its confirmation unless the person confirmed before; a withdrawal ends it), with the
/// confirmation at `confirmed_at`. Each window is `[from, until]` in whole seconds (a `Date`
/// header has no finer ones), so a message in the same second as a change is not counted either
/// way. Only the last confirmation is stored: a person who confirmed, withdrew and confirmed again
/// shows the first confirmed period as unconfirmed.
fn consent_windows(steps: &[ConsentStep], confirmed_at: Option<Timestamp>) -> Vec<(i64, Option<i64>)> {
    #[derive(PartialEq)]
    enum Optin {
        NotRequired,
        Pending,
        Confirmed,
    }
    let mut changes: Vec<(Timestamp, u8, Option<&ConsentStep>)> = steps.iter().map(|s| (s.at, 0, Some(s))).collect();
    // At the same instant the receipt comes first: the link confirms what that receipt asked.
    changes.extend(confirmed_at.map(|at| (at, 1, None)));
    changes.sort_by_key(|(at, order, _)| (*at, *order));
    let (mut granted, mut optin) = (false, Optin::NotRequired);
    let mut windows: Vec<(i64, Option<i64>)> = Vec::new();
    for (at, _, step) in changes {
        match step {
            Some(step) if !step.granted => granted = false,
            Some(step) => {
                let already_confirmed = granted && optin == Optin::Confirmed;
                granted = true;
                optin = match (step.double_opt_in, already_confirmed) {
                    (_, true) => Optin::Confirmed,
                    (true, false) => Optin::Pending,
                    (false, false) if optin == Optin::Pending => Optin::Pending,
                    (false, false) => Optin::NotRequired,
                };
            }
            None => optin = Optin::Confirmed,
        }
        let allowed = granted && optin != Optin::Pending;
        let open = windows.last().is_some_and(|(_, until)| until.is_none());
        if allowed && !open {
            windows.push((at.as_second(), None));
        } else if !allowed && open {
            windows.last_mut().expect("open").1 = Some(at.as_second());
        }
    }
    windows
}

/// When Voronka knew of each of a contact's suppressions: an unsubscribe is recorded when it
/// happens, but a hard bounce or complaint carries SES's own time, which can come before Voronka
/// processed the feedback; a message sent in between was not sent to a suppressed contact as far
/// as the store could say. The feedback event's processing time is read from its processed
/// marker (written with the event, expiring `MARKER_RETENTION` after it). The consent receipt a
/// complaint withdraws consent with carries SES's time too: its step in `consents` is moved to
/// the processing time as well.
pub type KnownSuppressions = HashMap<String, BTreeMap<SuppressionReason, Timestamp>>;

async fn known_suppressions(
    stack: &Stack,
    contacts: &HashMap<String, Contact>,
    consents: &mut HashMap<String, Vec<ConsentStep>>,
) -> Result<KnownSuppressions> {
    use voronka_domain::model::EventType;
    let mut known = KnownSuppressions::new();
    for contact in contacts.values().filter(|c| !c.suppressions.is_empty()) {
        let mut times = contact.suppressions.clone();
        let from_feedback =
            |reason: &SuppressionReason| matches!(reason, SuppressionReason::HardBounce | SuppressionReason::Complaint);
        if times.keys().any(from_feedback) {
            // Read raw: the log item expires with SES's time, which may be long past.
            let partition = format!("EVLOG#{}", contact.id);
            let exact = partition.clone();
            let logged = stack
                .inspect
                .fold_items_under(&partition, Vec::new(), move |events: &mut Vec<Event>, item| {
                    if item.get_str("pk") == Some(exact.as_str())
                        && let Some(event) = item.get_str("event").and_then(|text| serde_json::from_str(text).ok())
                    {
                        events.push(event);
                    }
                })
                .await?;
            for event in logged {
                let reason = match event.event_type {
                    EventType::EmailBounced if event.is_permanent_bounce() => SuppressionReason::HardBounce,
                    EventType::EmailComplained => SuppressionReason::Complaint,
                    _ => continue,
                };
                if times.get(&reason) != Some(&event.occurred_at) {
                    continue;
                }
                let marker = format!("PROCESSED#{}", event.dedupe_key());
                let exact = marker.clone();
                let processed = stack
                    .inspect
                    .fold_items_under(&marker, None, move |found: &mut Option<i64>, item| {
                        if item.get_str("pk") == Some(exact.as_str()) {
                            *found = item.get_i64("ttl");
                        }
                    })
                    .await?
                    .and_then(|ttl| Timestamp::from_second(ttl).ok())
                    .map(|ttl| ttl - trigger_evaluator::MARKER_RETENTION);
                if let Some(processed) = processed.filter(|p| *p > event.occurred_at) {
                    times.insert(reason, processed);
                    if reason == SuppressionReason::Complaint {
                        let receipt = format!("complaint_{}", event.event_id);
                        for step in consents.get_mut(&contact.id).into_iter().flatten().filter(|s| s.id == receipt) {
                            step.at = processed;
                        }
                    }
                }
            }
        }
        known.insert(contact.id.clone(), times);
    }
    Ok(known)
}

/// Why a marketing message at `date` broke consent or suppression, if it did; `suppressed` are
/// the contact's suppressions with the time Voronka knew of each.
fn consent_violation(
    suppressed: Option<&BTreeMap<SuppressionReason, Timestamp>>,
    contact: &Contact,
    steps: &[ConsentStep],
    date: Timestamp,
) -> Option<&'static str> {
    let second = date.as_second();
    if let Some((reason, since)) = suppressed.into_iter().flatten().min_by_key(|(_, at)| **at)
        && second > since.as_second()
    {
        return Some(match reason {
            SuppressionReason::Unsubscribed => "after unsubscribing",
            SuppressionReason::HardBounce => "after a hard bounce",
            SuppressionReason::Complaint => "after a complaint",
        });
    }
    let confirmed_at = contact.consents.get(&Channel::Email).and_then(|c| c.confirmed_at);
    let windows = consent_windows(steps, confirmed_at);
    if windows.is_empty() {
        return Some("without consent");
    }
    let inside = windows.iter().any(|(from, until)| *from <= second && until.is_none_or(|u| second <= u));
    (!inside).then_some("outside its consent (none yet, unconfirmed, or withdrawn)")
}

/// Every contact's email consent receipts: the `CONSENT#` items (every receipt, kept past the
/// contact's own bounded list) and those on the contact.
async fn consent_steps(
    stack: &Stack,
    contacts: &HashMap<String, Contact>,
) -> Result<HashMap<String, Vec<ConsentStep>>> {
    let mut steps: HashMap<String, Vec<ConsentStep>> = stack
        .inspect
        .fold_items_under("CONSENT#", HashMap::new(), |steps: &mut HashMap<String, Vec<ConsentStep>>, item| {
            let Some(contact_id) = item.get_str("pk").and_then(|pk| pk.strip_prefix("CONSENT#")) else { return };
            if item.get_str("channel") != Some("email") {
                return;
            }
            let Some(at) = item.get_str("at").and_then(|at| at.parse::<Timestamp>().ok()) else { return };
            let step = ConsentStep {
                id: item.get_str("id").unwrap_or_default().to_string(),
                at,
                granted: item.get("granted").and_then(Value::as_bool).unwrap_or(false),
                double_opt_in: item.get("double_opt_in").and_then(Value::as_bool).unwrap_or(false),
            };
            steps.entry(contact_id.to_string()).or_default().push(step);
        })
        .await?;
    for contact in contacts.values() {
        let known = steps.entry(contact.id.clone()).or_default();
        for receipt in contact.consent_receipts.iter().filter(|r| r.channel == Channel::Email) {
            if !known.iter().any(|s| s.id == receipt.id) {
                known.push(ConsentStep {
                    id: receipt.id.clone(),
                    at: receipt.at,
                    granted: receipt.granted,
                    double_opt_in: receipt.double_opt_in,
                });
            }
        }
    }
    Ok(steps)
}

struct Zones(HashMap<String, TimeZone>);

impl Zones {
    fn of(&mut self, name: &str) -> TimeZone {
        self.0.entry(name.to_string()).or_insert_with(|| time_zone_or_utc(name)).clone()
    }
}

/// Invariants 1 to 4, from the messages and the contacts they were sent to.
fn check_messages(
    messages: &[SentMessage],
    contacts: &HashMap<String, Contact>,
    consents: &HashMap<String, Vec<ConsentStep>>,
    suppressed: &KnownSuppressions,
    settings: &SendingSettings,
    resent: &HashMap<String, String>,
) -> [Invariant; 4] {
    let mut once = Invariant::new("one_send_per_idempotency_key", "no email sent twice for one idempotency key");
    let mut consent =
        Invariant::new("marketing_only_with_consent", "no marketing without consent, no mail when suppressed");
    let mut quiet = Invariant::new("no_marketing_in_quiet_hours", "no marketing in the contact's quiet hours");
    let mut capped = Invariant::new("frequency_cap_held", "the frequency cap never exceeded");

    // Copies per tag, and whether the message is marketing.
    let mut copies: HashMap<&str, (u64, bool)> = HashMap::with_capacity(messages.len());
    for message in messages {
        once.checked += 1;
        match &message.tag {
            Some(tag) => {
                let entry = copies.entry(tag.as_str()).or_insert((0, message.marketing));
                entry.0 += 1;
            }
            None => once.violated(format!("{} (no Message-ID)", message.file)),
        }
    }
    let mut doubled: Vec<(&str, (u64, bool))> = copies.into_iter().filter(|(_, (n, _))| *n > 1).collect();
    doubled.sort();
    for (tag, (n, marketing)) in doubled {
        for _ in 1..n {
            // Transactional mail is sent at least once (SPEC §4.5): a second copy after the ledger
            // recorded that SES may have taken the first is the design, not a broken key.
            match resent.get(tag).filter(|_| !marketing) {
                Some(reason) => once.explained(format!("{tag} (transactional, resent after {reason})")),
                None => once.violated(format!("{tag} ({})", if marketing { "marketing" } else { "transactional" })),
            }
        }
    }
    if once.explained > 0 {
        once.notes.push(format!(
            "{} transactional copies explained: resent after the ledger recorded an ambiguous SES answer or an \
             attempt that died while calling SES",
            once.explained
        ));
    }

    let quiet_hours = QuietHours::of(settings);
    let mut zones = Zones(HashMap::new());
    let (mut erased, mut undated) = (0u64, 0u64);
    // A hard bounce or a complaint stops transactional mail too (`check_recipient`).
    for message in messages.iter().filter(|m| !m.marketing) {
        let (Some(contact_id), Some(date)) = (message.contact_id.as_deref(), message.date) else { continue };
        if !contacts.contains_key(contact_id) {
            continue;
        }
        consent.checked += 1;
        let stopped = [SuppressionReason::HardBounce, SuppressionReason::Complaint]
            .into_iter()
            .filter_map(|reason| suppressed.get(contact_id).and_then(|known| known.get(&reason)))
            .min();
        if stopped.is_some_and(|since| date.as_second() > since.as_second()) {
            let tag = message.tag.as_deref().unwrap_or(&message.file);
            consent.violated(format!("{tag} to {contact_id} (transactional) after a hard bounce or complaint"));
        }
    }
    let mut per_day: HashMap<(&str, String), u64> = HashMap::new();
    let mut per_week: HashMap<(&str, String), u64> = HashMap::new();
    for message in messages.iter().filter(|m| m.marketing) {
        let Some(contact_id) = message.contact_id.as_deref() else {
            consent.violated(format!("{} (marketing without a contact)", message.file));
            continue;
        };
        let Some(date) = message.date else {
            undated += 1;
            continue;
        };
        let Some(contact) = contacts.get(contact_id) else {
            // Erased since: nothing left to check the message against.
            erased += 1;
            continue;
        };
        consent.checked += 1;
        let steps = consents.get(contact_id).map_or(&[][..], Vec::as_slice);
        if let Some(why) = consent_violation(suppressed.get(contact_id), contact, steps, date) {
            consent.violated(format!("{} to {contact_id} {why}", message.tag.as_deref().unwrap_or(&message.file)));
        }
        let zone = zones.of(&contact.time_zone);
        quiet.checked += 1;
        if quiet_hours.next_allowed(date, &zone).is_some() {
            let local = date.to_zoned(zone.clone());
            quiet.violated(format!(
                "{} to {contact_id} at {} local",
                message.tag.as_deref().unwrap_or(&message.file),
                local.strftime("%H:%M")
            ));
        }
        capped.checked += 1;
        let windows = cap_windows(date, &zone);
        *per_day.entry((contact_id, windows.day)).or_default() += 1;
        *per_week.entry((contact_id, windows.week)).or_default() += 1;
    }
    let mut over: Vec<String> = Vec::new();
    for ((contact_id, day), n) in &per_day {
        for _ in u64::from(settings.marketing_per_day)..*n {
            over.push(format!("{contact_id} on {day}"));
        }
    }
    for ((contact_id, week), n) in &per_week {
        for _ in u64::from(settings.marketing_per_week)..*n {
            over.push(format!("{contact_id} in {week}"));
        }
    }
    over.sort();
    for example in over {
        capped.violated(example);
    }
    for invariant in [&mut consent, &mut quiet, &mut capped] {
        if erased > 0 {
            invariant.notes.push(format!("{erased} marketing messages to contacts erased since: not checkable"));
        }
        if undated > 0 {
            invariant.notes.push(format!("{undated} marketing messages without a readable Date: not checkable"));
        }
    }
    [once, consent, quiet, capped]
}

/// The store's view of one send request in the sender's ledger.
pub struct LedgerEntry {
    state: String,
    until: Option<i64>,
    /// Why a transactional request may have been sent again (`send_ledger::RESENT_AFTER`).
    resent_after: Option<String>,
}

impl LedgerEntry {
    /// Nothing more will be sent for it: sent, blocked, cancelled, or written off as unknown.
    fn finished(&self) -> bool {
        matches!(self.state.as_str(), "sent" | "blocked" | "cancelled" | "unknown")
    }
}

/// The sender's ledger by idempotency key.
async fn read_ledger(stack: &Stack) -> Result<HashMap<String, LedgerEntry>> {
    Ok(stack
        .inspect
        .fold_items_under("SEND#", HashMap::new(), |ledger: &mut HashMap<String, LedgerEntry>, item| {
            if item.get_str("sk") != Some("LEDGER") {
                return;
            }
            let Some(key) = item.get_str("pk").and_then(|pk| pk.strip_prefix("SEND#")) else { return };
            let entry = LedgerEntry {
                state: item.get_str("state").unwrap_or_default().to_string(),
                until: item.get_i64("until"),
                resent_after: item.get_str(RESENT_AFTER).map(str::to_string),
            };
            ledger.insert(key.to_string(), entry);
        })
        .await?)
}

/// Invariant 5: every due item whose time has passed was dispatched or cancelled, every
/// dispatched send reached the sender and ended (sent, blocked, cancelled, unknown, or deferred
/// to a time still ahead), and every message in the outbox is one the ledger knows it sent.
async fn check_due_work(
    stack: &Stack,
    messages: &[SentMessage],
    ledger: &HashMap<String, LedgerEntry>,
    now: Timestamp,
) -> Result<Invariant> {
    let mut due = Invariant::new("no_due_item_lost_or_doubled", "no due item lost or dispatched twice");
    let store = &stack.inspect;
    let now_second = now.as_second();
    // (past-due items, those left pending or claimed, sends dispatched: (item id, key))
    type DueScan = (u64, Vec<String>, Vec<(String, String)>);
    let (past_due, left, dispatched_sends): DueScan = store
        .fold_items_under("DUE#", (0, Vec::new(), Vec::new()), move |(past, left, sends): &mut DueScan, item| {
            let state = item.get_str("state").unwrap_or_default();
            let id = item.get_str("sk").unwrap_or_default().to_string();
            if item.get_i64("due_at").is_some_and(|at| at <= now_second) {
                *past += 1;
                if state == "pending" || state == "dispatching" {
                    left.push(id.clone());
                }
            }
            if (state == "dispatched" || state == "dispatching")
                && let Some(work) = item.get("work")
                && work["kind"] == "send"
                && let Some(key) = work["request"]["idempotency_key"].as_str()
            {
                sends.push((id, key.to_string()));
            }
        })
        .await?;
    due.checked += past_due;
    for id in left {
        due.violated(format!("{id} (left due in the past)"));
    }

    // Requests still on their way (delayed on the queue, or parked) are not lost.
    let mut queued: HashSet<String> = HashSet::new();
    for dead_letters in [false, true] {
        for body in stack.inspect.bodies(QueueName::Sends, dead_letters).await? {
            if let Ok(request) = serde_json::from_str::<SendRequest>(&body) {
                queued.insert(request.idempotency_key);
            }
        }
    }
    for (id, key) in &dispatched_sends {
        due.checked += 1;
        if !ledger.contains_key(key) && !queued.contains(key) {
            due.violated(format!("{id} (dispatched, never reached the sender)"));
        }
    }
    let mut sent_tags: HashSet<String> = HashSet::with_capacity(ledger.len());
    for (key, entry) in ledger {
        due.checked += 1;
        let unfinished = match entry.state.as_str() {
            "processing" | "calling" | "retry" => true,
            "deferred" => entry.until.is_none_or(|until| until <= now_second),
            _ => false,
        };
        if unfinished && !queued.contains(key) {
            due.violated(format!("{} (send left {})", SendRequest::send_tag(key), entry.state));
        }
        if matches!(entry.state.as_str(), "sent" | "unknown" | "calling") {
            sent_tags.insert(SendRequest::send_tag(key));
        }
    }
    // A ledger entry lives `LEDGER_RETENTION` past its last change (a sent one: past its send), and
    // TTL removes it then (the local stack sweeps as DynamoDB does): a message older than that has
    // no entry left to show.
    let ledger_kept_since = now - voronka_domain::repo::send_ledger::LEDGER_RETENTION;
    for message in messages {
        if let Some(tag) = &message.tag
            && !sent_tags.contains(tag)
        {
            if message.date.is_some_and(|date| date <= ledger_kept_since) {
                due.explained(format!("{tag} (sent before the ledger's retention; its entry has expired)"));
            } else {
                due.violated(format!("{tag} (in the outbox, not sent by the ledger)"));
            }
        }
    }
    Ok(due)
}

/// The dedupe keys of every processed event: in the event log or its processed marker.
async fn processed_events(stack: &Stack) -> Result<HashSet<String>> {
    let store = &stack.inspect;
    let processed = store
        .fold_keys_under("EVLOG#", HashSet::new(), |seen: &mut HashSet<String>, _pk, sk| {
            if let Some((_, dedupe_key)) = sk.split_once('#') {
                seen.insert(dedupe_key.to_string());
            }
        })
        .await?;
    Ok(store
        .fold_keys_under("PROCESSED#", processed, |seen: &mut HashSet<String>, pk, _sk| {
            if let Some(dedupe_key) = pk.strip_prefix("PROCESSED#") {
                seen.insert(dedupe_key.to_string());
            }
        })
        .await?)
}

/// Invariant 6: every acknowledged lead is a stored contact, every contact is a lead from a form
/// or a buyer the shop reported, and every acknowledged event was processed (in the event log or
/// its processed marker) or is still on the events queue or parked in its dead letters. A form's
/// contact the client never saw acknowledged (its request was killed after the write, and the
/// retry was limited or the client gave up) is explained, not a violation: nothing was lost.
async fn check_acknowledged(
    stack: &Stack,
    contacts: &HashMap<String, Contact>,
    acknowledged: &Acknowledged,
    processed: &HashSet<String>,
) -> Result<Invariant> {
    let mut kept = Invariant::new("no_acknowledged_lead_or_event_lost", "no 2xx-acknowledged lead or event lost");
    let from_forms: BTreeSet<String> = contacts
        .values()
        .filter(|c| !c.form_submissions.is_empty())
        .filter_map(|c| c.email.as_ref().map(|e| e.identity().to_string()))
        .collect();
    kept.checked += acknowledged.leads.len() as u64 + contacts.len() as u64;
    // The address is the identity; the example is a digest of it, never the address.
    let digest = |identity: &str| format!("lead {}", &SendRequest::send_tag(identity)[..12]);
    for lost in acknowledged.leads.difference(&from_forms) {
        kept.violated(format!("{} (acknowledged, not stored)", digest(lost)));
    }
    for extra in from_forms.difference(&acknowledged.leads) {
        kept.explained(format!("{} (stored without acknowledgement)", digest(extra)));
    }
    if kept.explained > 0 {
        kept.notes.push(format!(
            "{} form contacts stored without acknowledgement: the request was killed after the write and its \
             retry was refused (429) or never made",
            kept.explained
        ));
    }
    let mut unexplained: Vec<&str> = contacts
        .values()
        .filter(|c| c.form_submissions.is_empty() && c.orders.orders == 0)
        .map(|c| c.id.as_str())
        .collect();
    unexplained.sort();
    for id in unexplained {
        kept.violated(format!("{id} (neither a lead nor a buyer)"));
    }

    let mut queued: HashSet<String> = HashSet::new();
    for dead_letters in [false, true] {
        for body in stack.inspect.bodies(QueueName::Events, dead_letters).await? {
            if let Ok(event) = serde_json::from_str::<Event>(&body) {
                queued.insert(event.dedupe_key());
            }
        }
    }
    kept.checked += acknowledged.events.len() as u64;
    for key in &acknowledged.events {
        if !processed.contains(key) && !queued.contains(key) {
            kept.violated(format!("event {key} (accepted, never processed)"));
        }
    }
    Ok(kept)
}

/// What a parked message is (its event type, or the template of its send request), its id, and
/// the key its work is known by (the event's dedupe key, the request's idempotency key).
fn dead_letter_kind(queue: QueueName, body: &str) -> (String, String, Option<String>) {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    match queue {
        QueueName::Sends => match serde_json::from_value::<SendRequest>(value) {
            Ok(request) => (
                format!("send:{}", request.template),
                SendRequest::send_tag(&request.idempotency_key),
                Some(request.idempotency_key),
            ),
            Err(_) => ("unreadable".into(), String::new(), None),
        },
        QueueName::Events => {
            if let Some(kind) = value["type"].as_str() {
                let id = value["event_id"].as_str().unwrap_or_default().to_string();
                let dedupe_key = serde_json::from_value::<Event>(value.clone()).ok().map(|e| e.dedupe_key());
                (kind.to_string(), id, dedupe_key)
            } else if value["Type"].is_string()
                || value["notificationType"].is_string()
                || value["eventType"].is_string()
            {
                ("ses_feedback".into(), value["MessageId"].as_str().unwrap_or_default().to_string(), None)
            } else {
                ("unreadable".into(), String::new(), None)
            }
        }
    }
}

/// Invariant 7: dead letters are counted by queue, kind and reason, and explained: a parked copy
/// whose work was done anyway (an event processed, a send the ledger finished, another copy still
/// queued) is redundant, and any other event is kept for an operator's replay after a fix (SPEC
/// §5's dead-letter alarm and replay). Only a parked due item or send whose work is thereby lost
/// for good is a violation: a send request the ledger never finished with no copy left on the
/// live queue, or a due item's evaluation (`due:<id>`) never processed. Those are the messages the
/// run promised to deliver (invariant 5); an event a client sent that cannot be processed is the
/// client's data kept for inspection, which is what the queue is for. (A parked send is not lost
/// beyond repair: the ledger makes a replay send it at most once. The demo therefore does what the
/// runbook says before it checks: redrives the dead letters and lets a day run, as
/// `InvariantReport::redriven` shows; what is still parked and unfinished after that is lost.)
async fn check_dead_letters(
    stack: &Stack,
    ledger: &HashMap<String, LedgerEntry>,
    processed: &HashSet<String>,
    report: &mut InvariantReport,
) -> Result<Invariant> {
    const REDUNDANT: &str = "done anyway (a redundant copy)";
    const KEPT: &str = "not processed: kept for replay after a fix";
    const LOST: &str = "LOST: its work never done";
    let mut parked = Invariant::new("dead_letters_explained", "no due item or send lost to dead letters");
    for queue in QueueName::ALL {
        let left = stack.inspect.bodies(queue, false).await?;
        parked.checked += left.len() as u64;
        report.queues_left.insert(queue.as_str().to_string(), left.len() as u64);
        let live: HashSet<String> = left.iter().filter_map(|body| dead_letter_kind(queue, body).2).collect();
        let mut kinds: BTreeMap<(String, &str), DeadLetters> = BTreeMap::new();
        for body in stack.inspect.bodies(queue, true).await? {
            parked.checked += 1;
            let (kind, id, key) = dead_letter_kind(queue, &body);
            let reason = match (queue, &key) {
                (_, Some(key)) if live.contains(key) => REDUNDANT,
                (QueueName::Sends, Some(key)) if ledger.get(key).is_some_and(LedgerEntry::finished) => REDUNDANT,
                (QueueName::Sends, _) => LOST,
                (QueueName::Events, Some(key)) if processed.contains(key) => REDUNDANT,
                (QueueName::Events, _) if id.starts_with("due:") => LOST,
                (QueueName::Events, _) => KEPT,
            };
            let example = format!("{}-dlq {kind} {id}", queue.as_str());
            if reason == LOST {
                parked.violated(example);
            } else {
                parked.explained(example);
            }
            let entry = kinds.entry((kind.clone(), reason)).or_insert_with(|| DeadLetters {
                queue: format!("{}-dlq", queue.as_str()),
                kind,
                reason: reason.to_string(),
                count: 0,
                examples: Vec::new(),
            });
            entry.count += 1;
            if entry.examples.len() < MAX_EXAMPLES && !id.is_empty() {
                entry.examples.push(id);
            }
        }
        report.dead_letters.extend(kinds.into_values());
    }
    Ok(parked)
}

/// Checks every invariant on the stack as the run left it (call it after the final drain).
pub async fn check(stack: &Stack, acknowledged: &Acknowledged) -> Result<InvariantReport> {
    let started = Instant::now();
    let mut report = InvariantReport::default();
    let dir = stack.outbox.dir().to_path_buf();
    stack.inspect.export_sent_mail(&dir).await?;
    let messages = tokio::task::spawn_blocking(move || read_outbox(&dir)).await??;
    report.outbox_messages = messages.len() as u64;
    report.outbox_read_ms = started.elapsed().as_millis();
    let contacts: HashMap<String, Contact> = ContactRepository::new(stack.state.store.as_ref())
        .list_all()
        .await?
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    let now = stack.scheduler.clock.now();
    let mut consents = consent_steps(stack, &contacts).await?;
    let suppressed = known_suppressions(stack, &contacts, &mut consents).await?;
    let settings = &stack.state.campaigns.settings.sending;
    let ledger = read_ledger(stack).await?;
    let resent: HashMap<String, String> = ledger
        .iter()
        .filter_map(|(key, entry)| Some((SendRequest::send_tag(key), entry.resent_after.clone()?)))
        .collect();
    report.invariants.extend(check_messages(&messages, &contacts, &consents, &suppressed, settings, &resent));
    report.invariants.push(check_due_work(stack, &messages, &ledger, now).await?);
    let processed = processed_events(stack).await?;
    report.invariants.push(check_acknowledged(stack, &contacts, acknowledged, &processed).await?);
    let dead = check_dead_letters(stack, &ledger, &processed, &mut report).await?;
    report.invariants.push(dead);
    report.check_ms = started.elapsed().as_millis();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn step(id: &str, when: &str, granted: bool, double_opt_in: bool) -> ConsentStep {
        ConsentStep { id: id.into(), at: at(when), granted, double_opt_in }
    }

    #[test]
    fn headers_are_read_unfolded_and_case_blind() {
        let head = b"Message-ID:\r\n <abc123@shop.example>\r\nDATE: Sun, 22 Nov 2026 10:00:00 +0300\r\n\
            x-voronka-class: marketing\r\nX-Voronka-Contact: c_1\r\nSubject: a\r\n folded";
        let message = parse_head("f.eml".into(), head);
        assert_eq!(message.tag.as_deref(), Some("abc123"));
        assert_eq!(message.date, Some(at("2026-11-22T07:00:00Z")));
        assert!(message.marketing);
        assert_eq!(message.contact_id.as_deref(), Some("c_1"));
        // Without the class header, one-click unsubscribe is what marks marketing.
        let old = parse_head("g.eml".into(), b"List-Unsubscribe: <https://x/u>\r\nMessage-ID: <t@d>");
        assert!(old.marketing && old.contact_id.is_none());
    }

    #[test]
    fn the_senders_date_reads_like_the_full_parser() {
        for text in [
            "Sun, 22 Nov 2026 10:00:00 +0000",
            "Tue, 29 Feb 2028 23:59:59 +0300",
            "Thu, 01 Jan 1970 00:00:00 -0130",
            "Fri, 31 Dec 2027 00:00:01 +1400",
        ] {
            let full = jiff::fmt::rfc2822::parse(text).unwrap().timestamp();
            assert_eq!(parse_date_fast(text), Some(full), "{text}");
        }
        assert_eq!(parse_date_fast("22 Nov 2026 10:00 +0000"), None, "another form: the full parser's");
        assert_eq!(parse_date_fast("Sun, 22 Foo 2026 10:00:00 +0000"), None);
    }

    #[test]
    fn only_the_header_block_is_read() {
        let dir = std::env::temp_dir().join(format!("voronka-invariants-head-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.eml");
        let body = "X-Voronka-Class: marketing\r\n".repeat(10_000);
        std::fs::write(&path, format!("Message-ID: <t@d>\r\n\r\n{body}")).unwrap();
        let head = read_head(&path).unwrap();
        assert_eq!(head, b"Message-ID: <t@d>");
        assert!(!parse_head("m.eml".into(), &head).marketing, "a header-like body line is not a header");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `VORONKA_OUTBOX_BENCH=<folder of .eml files> cargo test -p voronka --lib outbox_read_speed
    /// -- --ignored --nocapture`: how long reading a large outbox takes.
    #[test]
    #[ignore]
    fn outbox_read_speed() {
        let dir = std::env::var("VORONKA_OUTBOX_BENCH").expect("VORONKA_OUTBOX_BENCH names a folder");
        let started = Instant::now();
        let messages = read_outbox(Path::new(&dir)).unwrap();
        let tags: HashSet<_> = messages.iter().filter_map(|m| m.tag.as_deref()).collect();
        println!("{} messages ({} tags) read in {} ms", messages.len(), tags.len(), started.elapsed().as_millis());
    }

    #[test]
    fn a_later_double_opt_in_form_closes_the_window_until_it_is_confirmed() {
        // As in the demo: a consultation (single opt-in), then the newsletter (double opt-in).
        let steps = [step("r1", "2026-11-08T00:52:06Z", true, false), step("r2", "2026-11-09T03:16:19Z", true, true)];
        let windows = consent_windows(&steps, None);
        assert_eq!(
            windows,
            vec![(at("2026-11-08T00:52:06Z").as_second(), Some(at("2026-11-09T03:16:19Z").as_second()))]
        );
        // Confirmed in the same second as the second receipt: one window, closed and reopened.
        let confirmed = consent_windows(&steps, Some(at("2026-11-09T03:16:19Z")));
        assert!(confirmed.iter().all(|(from, _)| *from <= at("2026-11-09T03:16:19Z").as_second()));
        assert_eq!(confirmed.last().unwrap().1, None, "open since the confirmation");
    }

    #[test]
    fn a_pending_confirmation_allows_nothing_and_a_withdrawal_ends_the_window() {
        assert!(consent_windows(&[step("r1", "2026-11-08T00:00:00Z", true, true)], None).is_empty());
        let windows = consent_windows(
            &[step("r1", "2026-11-08T00:00:00Z", true, true), step("r2", "2026-11-10T00:00:00Z", false, false)],
            Some(at("2026-11-09T00:00:00Z")),
        );
        assert_eq!(
            windows,
            vec![(at("2026-11-09T00:00:00Z").as_second(), Some(at("2026-11-10T00:00:00Z").as_second()))]
        );
    }
}
