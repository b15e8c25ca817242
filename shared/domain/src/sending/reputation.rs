//! The reputation guard: pauses marketing before SES would pause the account.
//!
//! SES reviews an account at a 5% bounce rate (0.1% complaints) and may pause it at 10% (0.5%),
//! and a paused account sends no order confirmations either. So Voronka keeps rolling rates over
//! `window_hours` of hourly counters (`repo::reputation`: sends counted by the sender when SES
//! accepts a message, hard bounces and complaints by the trigger-evaluator from SES feedback) and
//! pauses marketing when a rate reaches its `pause_*` level over at least `min_sends` sends, with
//! at least `min_bounces` (`min_complaints`) of them. While paused the sender holds marketing
//! (re-queued with the rate that tripped it, never dropped) and sends transactional mail.
//!
//! Like SES, the guard counts a bounce or a complaint in the hour its mail was sent, not the hour
//! the feedback arrived: a campaign's late complaints leave the window together with its sends
//! (else the campaign's hour leaving first would leave them over a day's background volume).
//!
//! Marketing resumes by itself once both rates are below `resume_*`, judged over at least
//! `min_sends` sends (a window that merely emptied while marketing was held is not a low rate; the
//! hours that tripped it leaving the window is), or when an operator resumes it, which restarts
//! the counts: only mail sent in the hours after the resumption counts, so the old storm, late
//! feedback included, cannot trip it again.
//!
//! Each sender container trusts the state it read for `recheck_seconds` (`GuardCache`): a pause
//! reaches every container within that time, and the counters are read at most that often.

use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

use crate::campaigns::settings::ReputationSettings;
use crate::ports::{Store, StoreError};
use crate::repo::reputation::{self as repo, Counted, Counts, GuardState, RateKind, ResumedBy, Trip};
use crate::sending::feedback::{FeedbackKind, SesFeedback};

/// SES's own bounce rate leaves out the bounces it makes up for addresses on the account's
/// suppression list (nothing was sent); they still suppress the contact.
const ACCOUNT_SUPPRESSION_LIST: &str = "OnAccountSuppressionList";

/// What SES feedback counts against the reputation, if anything.
pub fn counted(feedback: &SesFeedback) -> Option<Counted> {
    match &feedback.kind {
        FeedbackKind::Bounce { permanent: true, sub_type, .. } if sub_type == ACCOUNT_SUPPRESSION_LIST => None,
        FeedbackKind::Bounce { permanent: true, .. } => Some(Counted::Bounce),
        FeedbackKind::Complaint => Some(Counted::Complaint),
        _ => None,
    }
}

/// The time whose hour `feedback` counts in: when its mail was sent (never later than `now`).
pub fn counted_at(feedback: &SesFeedback, now: Timestamp) -> Timestamp {
    feedback.sent_at.min(now)
}

/// The start of the window the rates are computed over at `now`: the last `window_hours` hours
/// (the current one included), but no hour that began before an operator's resumption.
pub fn window_start(now: Timestamp, settings: &ReputationSettings, state: &GuardState) -> Timestamp {
    let hours = i64::from(settings.window_hours.max(1)) - 1;
    let rolling = repo::hour_start(now) - SignedDuration::from_hours(hours);
    match state.counting_from {
        Some(resumed) => {
            let after_resumption = repo::hour_start(resumed) + SignedDuration::from_hours(1);
            rolling.max(after_resumption)
        }
        None => rolling,
    }
}

/// The counts of the hours that start at or after `from`.
pub fn sum_from(hours: &[(Timestamp, Counts)], from: Timestamp) -> Counts {
    let mut total = Counts::default();
    for (hour, counts) in hours {
        if *hour >= from {
            total += *counts;
        }
    }
    total
}

fn ppm(share: f64) -> u64 {
    (share * 1_000_000.0).round() as u64
}

/// `part` of `sends` in parts per million (rounded down).
fn rate_ppm(part: u64, sends: u64) -> u64 {
    if sends == 0 { 0 } else { (u128::from(part) * 1_000_000 / u128::from(sends)) as u64 }
}

/// Whether `part / sends` reaches `threshold_ppm`, in exact integers.
fn reaches(part: u64, sends: u64, threshold_ppm: u64) -> bool {
    u128::from(part) * 1_000_000 >= u128::from(threshold_ppm) * u128::from(sends)
}

/// What the guard does with the counts it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Stay,
    Pause(Trip),
    Resume,
}

/// The pure decision: a running guard pauses when a rate over at least `min_sends` sends, with at
/// least `min_bounces` (`min_complaints`) events, reaches its pause level (the bounce rate named
/// first when both do); a paused one resumes when both rates, judged over at least `min_sends`
/// sends, are below their resume levels.
pub fn decide(state: &GuardState, counts: Counts, settings: &ReputationSettings) -> Transition {
    let min_sends = settings.min_sends.max(1);
    if !state.paused {
        if counts.sends < min_sends {
            return Transition::Stay;
        }
        for (rate, part, min_events, threshold) in [
            (RateKind::BounceRate, counts.bounces, settings.min_bounces, ppm(settings.pause_bounce_rate)),
            (RateKind::ComplaintRate, counts.complaints, settings.min_complaints, ppm(settings.pause_complaint_rate)),
        ] {
            if part >= min_events && reaches(part, counts.sends, threshold) {
                let rate_ppm = rate_ppm(part, counts.sends);
                return Transition::Pause(Trip { rate, rate_ppm, threshold_ppm: threshold, sends: counts.sends });
            }
        }
        return Transition::Stay;
    }
    // Held marketing sends nothing, so the window empties; fewer sends than `min_sends` count as
    // `min_sends`, so only fewer bounces and complaints resume it, not less mail.
    let base = counts.sends.max(min_sends);
    let still_high = reaches(counts.bounces, base, ppm(settings.resume_bounce_rate))
        || reaches(counts.complaints, base, ppm(settings.resume_complaint_rate));
    if still_high { Transition::Stay } else { Transition::Resume }
}

/// The guard as an operator sees it: its state, and the counts of the current window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub state: GuardState,
    pub window_from: Timestamp,
    pub counts: Counts,
    pub bounce_rate: f64,
    pub complaint_rate: f64,
}

impl Status {
    fn new(state: GuardState, window_from: Timestamp, counts: Counts) -> Status {
        let share = |part: u64| if counts.sends == 0 { 0.0 } else { part as f64 / counts.sends as f64 };
        Status {
            bounce_rate: share(counts.bounces),
            complaint_rate: share(counts.complaints),
            state,
            window_from,
            counts,
        }
    }
}

async fn window_counts(
    store: &dyn Store,
    settings: &ReputationSettings,
    state: &GuardState,
    now: Timestamp,
) -> Result<(Timestamp, Counts), StoreError> {
    let from = window_start(now, settings, state);
    if from > now {
        return Ok((from, Counts::default()));
    }
    let hours = repo::hours(store, from, now).await?;
    Ok((from, sum_from(&hours, from)))
}

/// Reads the counts, decides, and writes a pause or a resumption. Race-safe: the state is
/// replaced only under the version it was read at, so of two containers tripping at once one
/// writes and the other reads what it wrote (a pause is recorded once, with one `paused_at`).
pub async fn evaluate(store: &dyn Store, settings: &ReputationSettings, now: Timestamp) -> Result<Status, StoreError> {
    for _ in 0..3 {
        let state = repo::load_state(store).await?;
        let (from, counts) = window_counts(store, settings, &state, now).await?;
        let next = match decide(&state, counts, settings) {
            Transition::Stay => return Ok(Status::new(state, from, counts)),
            Transition::Pause(trip) => {
                tracing::warn!(trip = %trip, "reputation guard: marketing paused");
                GuardState { paused: true, paused_at: Some(now), trip: Some(trip), version: state.version + 1, ..state }
            }
            Transition::Resume => {
                tracing::info!(
                    bounces = counts.bounces,
                    complaints = counts.complaints,
                    sends = counts.sends,
                    "reputation guard: marketing resumed, the rates fell"
                );
                GuardState {
                    paused: false,
                    resumed_at: Some(now),
                    resumed_by: Some(ResumedBy::Rates),
                    version: state.version + 1,
                    ..state
                }
            }
        };
        if repo::replace_state(store, &next).await? {
            return Ok(Status::new(next, from, counts));
        }
    }
    Err(StoreError::Throttled("the reputation guard's state kept changing while it was evaluated".into()))
}

/// An operator's resumption: marketing goes out again and the counts start afresh after `now`.
/// Idempotent: resuming a running guard changes nothing.
pub async fn resume_by_operator(
    store: &dyn Store,
    settings: &ReputationSettings,
    now: Timestamp,
) -> Result<Status, StoreError> {
    for _ in 0..3 {
        let state = repo::load_state(store).await?;
        if !state.paused {
            let (from, counts) = window_counts(store, settings, &state, now).await?;
            return Ok(Status::new(state, from, counts));
        }
        let next = GuardState {
            paused: false,
            resumed_at: Some(now),
            resumed_by: Some(ResumedBy::Operator),
            counting_from: Some(now),
            version: state.version + 1,
            ..state
        };
        if repo::replace_state(store, &next).await? {
            tracing::warn!("reputation guard: marketing resumed by an operator");
            let (from, counts) = window_counts(store, settings, &next, now).await?;
            return Ok(Status::new(next, from, counts));
        }
    }
    Err(StoreError::Throttled("the reputation guard's state kept changing while it was resumed".into()))
}

/// One container's view of the guard, re-evaluated at most every `recheck_seconds` of the clock
/// it is asked with (the demo's simulated clock included).
#[derive(Debug, Default)]
pub struct GuardCache {
    last: Mutex<Option<(Timestamp, GuardState)>>,
}

impl GuardCache {
    /// The guard's state, at most `recheck_seconds` old; a pause it reads now applies at once.
    pub async fn current(
        &self,
        store: &dyn Store,
        settings: &ReputationSettings,
        now: Timestamp,
    ) -> Result<GuardState, StoreError> {
        let fresh_for = SignedDuration::from_secs(i64::from(settings.recheck_seconds));
        if let Some((read_at, state)) = self.last.lock().map(|last| last.clone()).ok().flatten()
            && read_at <= now
            && now < read_at + fresh_for
        {
            return Ok(state);
        }
        let status = evaluate(store, settings, now).await?;
        if let Ok(mut last) = self.last.lock() {
            *last = Some((now, status.state.clone()));
        }
        Ok(status.state)
    }

    /// The state last read, without reading (for a metrics line).
    pub fn cached(&self) -> Option<GuardState> {
        self.last.lock().ok().and_then(|last| last.as_ref().map(|(_, state)| state.clone()))
    }

    /// Forgets what was read, so the next call evaluates (after an operator's resumption here).
    pub fn forget(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ReputationSettings {
        ReputationSettings::default()
    }

    fn counts(sends: u64, bounces: u64, complaints: u64) -> Counts {
        Counts { sends, bounces, complaints }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_bounce_rate_at_the_pause_level_pauses_and_names_the_rate() {
        let running = GuardState::default();
        assert_eq!(decide(&running, counts(1000, 24, 0), &settings()), Transition::Stay, "2.4% is below 2.5%");
        let Transition::Pause(trip) = decide(&running, counts(1000, 25, 0), &settings()) else {
            panic!("2.5% of 1000 pauses")
        };
        assert_eq!(trip, Trip { rate: RateKind::BounceRate, rate_ppm: 25_000, threshold_ppm: 25_000, sends: 1000 });
    }

    #[test]
    fn a_complaint_rate_at_the_pause_level_pauses() {
        let running = GuardState::default();
        assert_eq!(decide(&running, counts(10_000, 0, 4), &settings()), Transition::Stay, "0.04%");
        let Transition::Pause(trip) = decide(&running, counts(10_000, 0, 5), &settings()) else { panic!("0.05%") };
        assert_eq!(trip.rate, RateKind::ComplaintRate);
        assert_eq!(trip.rate_ppm, 500);
    }

    #[test]
    fn too_few_sends_never_pause() {
        let running = GuardState::default();
        assert_eq!(decide(&running, counts(499, 400, 100), &settings()), Transition::Stay);
        assert!(matches!(decide(&running, counts(500, 400, 0), &settings()), Transition::Pause(_)));
    }

    #[test]
    fn a_paused_guard_resumes_only_below_half_the_pause_level() {
        let paused = GuardState { paused: true, version: 1, ..GuardState::default() };
        // 2% is below the pause level but not below the resume level: no flapping.
        assert_eq!(decide(&paused, counts(1000, 20, 0), &settings()), Transition::Stay);
        assert_eq!(decide(&paused, counts(1000, 13, 0), &settings()), Transition::Stay, "1.3% ≥ 1.25%");
        assert_eq!(decide(&paused, counts(1000, 12, 0), &settings()), Transition::Resume);
        assert_eq!(decide(&paused, counts(10_000, 12, 3), &settings()), Transition::Stay, "complaints 0.03%");
        // The hours that tripped it have left the window, their bounces with them.
        assert_eq!(decide(&paused, counts(100, 1, 0), &settings()), Transition::Resume);
        assert_eq!(decide(&paused, counts(0, 0, 0), &settings()), Transition::Resume);
    }

    #[test]
    fn a_paused_guard_does_not_resume_because_held_marketing_emptied_the_window() {
        let paused = GuardState { paused: true, version: 1, ..GuardState::default() };
        // 20% hard bounces over 400 sends: fewer than `min_sends`, but judged over 500 it is 16%.
        assert_eq!(decide(&paused, counts(400, 80, 0), &settings()), Transition::Stay);
        assert_eq!(decide(&paused, counts(100, 7, 0), &settings()), Transition::Stay, "7 of 500 is 1.4%");
        assert_eq!(decide(&paused, counts(100, 6, 0), &settings()), Transition::Resume, "6 of 500 is 1.2%");
        assert_eq!(decide(&paused, counts(100, 0, 1), &settings()), Transition::Stay, "1 complaint of 500 is 0.2%");
    }

    #[test]
    fn too_few_bounces_or_complaints_never_pause() {
        let running = GuardState::default();
        // One "this is spam" click over a small shop's day is 0.067%, above the pause level.
        assert_eq!(decide(&running, counts(1500, 0, 1), &settings()), Transition::Stay);
        assert_eq!(decide(&running, counts(1500, 0, 2), &settings()), Transition::Stay);
        assert!(matches!(decide(&running, counts(1500, 0, 3), &settings()), Transition::Pause(_)));
        let small = ReputationSettings { min_sends: 20, ..settings() };
        assert_eq!(decide(&running, counts(20, 9, 0), &small), Transition::Stay, "45% but only 9 bounces");
        assert!(matches!(decide(&running, counts(20, 10, 0), &small), Transition::Pause(_)));
    }

    #[test]
    fn feedback_counts_in_the_hour_its_mail_was_sent() {
        let late = r#"{"eventType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"a@example.com"}],
          "timestamp":"2026-11-22T19:40:00.000Z"},"mail":{"timestamp":"2026-11-22T10:00:02.000Z","messageId":"m-1",
          "destination":["a@example.com"]}}"#;
        let feedback = crate::sending::feedback::parse(late).unwrap();
        assert_eq!(counted_at(&feedback, at("2026-11-22T19:40:01Z")), at("2026-11-22T10:00:02Z"));
        // A clock ahead of ours counts now, never in the future.
        assert_eq!(counted_at(&feedback, at("2026-11-22T09:00:00Z")), at("2026-11-22T09:00:00Z"));
        // A day after the campaign its hour leaves the window, its late complaint with it.
        let hours = [(repo::hour_start(counted_at(&feedback, at("2026-11-22T19:40:01Z"))), counts(10_000, 0, 1))];
        let next_day = window_start(at("2026-11-23T10:30:00Z"), &settings(), &GuardState::default());
        assert_eq!(sum_from(&hours, next_day), counts(0, 0, 0));
    }

    #[test]
    fn the_window_is_the_last_hours_and_starts_after_an_operators_resumption() {
        let now = at("2026-11-27T10:30:00Z");
        let state = GuardState::default();
        assert_eq!(window_start(now, &settings(), &state), at("2026-11-26T11:00:00Z"), "24 hours with this one");
        let resumed = GuardState { counting_from: Some(at("2026-11-27T09:15:00Z")), ..state };
        assert_eq!(window_start(now, &settings(), &resumed), at("2026-11-27T10:00:00Z"));
        let hours = [
            (at("2026-11-26T10:00:00Z"), counts(1000, 900, 0)),
            (at("2026-11-26T11:00:00Z"), counts(10, 1, 0)),
            (at("2026-11-27T10:00:00Z"), counts(5, 0, 1)),
        ];
        assert_eq!(sum_from(&hours, window_start(now, &settings(), &GuardState::default())), counts(15, 1, 1));
        assert_eq!(sum_from(&hours, window_start(now, &settings(), &resumed)), counts(5, 0, 1));
    }

    #[test]
    fn only_hard_bounces_of_sent_mail_and_complaints_count() {
        let feedback = |kind| SesFeedback {
            kind,
            message_id: "m".into(),
            contact_id: None,
            template: None,
            send: None,
            at: Timestamp::UNIX_EPOCH,
            sent_at: Timestamp::UNIX_EPOCH,
            recipients: Vec::new(),
        };
        let bounce = |permanent, sub_type: &str| FeedbackKind::Bounce {
            permanent,
            bounce_type: "x".into(),
            sub_type: sub_type.into(),
        };
        assert_eq!(counted(&feedback(bounce(true, "General"))), Some(Counted::Bounce));
        assert_eq!(counted(&feedback(bounce(false, "General"))), None);
        // SES's own rate leaves these out: nothing was sent to an address on its suppression list.
        assert_eq!(counted(&feedback(bounce(true, "OnAccountSuppressionList"))), None);
        assert_eq!(counted(&feedback(FeedbackKind::Complaint)), Some(Counted::Complaint));
        assert_eq!(counted(&feedback(FeedbackKind::Delivery)), None);
    }
}
