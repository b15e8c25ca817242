//! Whether what asked for a message still wants it when the message is about to go out.
//!
//! A send request waits on the queue, and a deferred one (quiet hours, a full frequency cap) for
//! hours; meanwhile the cart it reminds of may be bought, or the journey run that issued it may
//! have exited or started over. So the sender asks its origin at send time:
//! - a cart step is live while the cart is `Abandoned` with the activity counter the step was
//!   issued for, and before the step's own staleness limits (`stale_after_hours` past its time, or
//!   the next step's time, as the evaluator's catch-up rule has it);
//! - a journey send is live while the journey's current run is the one that issued it and has not
//!   exited;
//! - forms and bot sessions have nothing to end.
//!
//! The issuing cart activity and journey run travel in the idempotency key, whose shape the
//! evaluator and this module share through [`cart_step_send_key`] and [`journey_send_key`].

use std::fmt;

use jiff::{SignedDuration, Timestamp};

use crate::campaigns::settings::CartSettings;
use crate::model::{Cart, CartStatus, SendOrigin, SendRequest};
use crate::ports::{Store, StoreError};
use crate::repo::journey_state::{JourneyState, RunStatus};
use crate::sending::policy::DeferReason;

/// What the origin says about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// Still wanted; when `expires_at` is set, only strictly before that instant.
    Live { expires_at: Option<Timestamp> },
    /// No longer wanted, and why (recorded in the ledger).
    Ended { reason: EndReason },
}

/// Why an origin no longer wants its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    CartNotFound,
    CartPurchased,
    CartEmptied,
    /// The buyer came back to the cart (it is open again).
    CartActiveAgain,
    /// The cart was abandoned again since: a later activity's steps take over.
    CartChangedSinceTheStep,
    CartStepUnknown,
    /// The next step's time has come.
    CartStepSuperseded,
    /// Past the step's `stale_after_hours`.
    CartStepStale,
    JourneyRunNotFound,
    /// The contact started the journey over since the send was issued.
    JourneyRunReplaced,
    JourneyRunExited,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::CartNotFound => "cart_not_found",
            EndReason::CartPurchased => "cart_purchased",
            EndReason::CartEmptied => "cart_emptied",
            EndReason::CartActiveAgain => "cart_active_again",
            EndReason::CartChangedSinceTheStep => "cart_changed_since_the_step",
            EndReason::CartStepUnknown => "cart_step_unknown",
            EndReason::CartStepSuperseded => "cart_step_superseded",
            EndReason::CartStepStale => "cart_step_stale",
            EndReason::JourneyRunNotFound => "journey_run_not_found",
            EndReason::JourneyRunReplaced => "journey_run_replaced",
            EndReason::JourneyRunExited => "journey_run_exited",
        }
    }
}

/// Why the sender drops a message its origin asked for. Its `Display` is what the send ledger
/// and the logs record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The origin no longer wants it.
    Ended(EndReason),
    /// It would have to wait past the origin's own deadline (e.g. quiet hours that end after the
    /// next cart step is due).
    StaleBeforeDeferralEnds(DeferReason),
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelReason::Ended(reason) => f.write_str(reason.as_str()),
            // The name only: a reputation hold's details (its rate) would make each trip its own reason.
            CancelReason::StaleBeforeDeferralEnds(deferral) => write!(f, "stale_before_{}_ends", deferral.as_str()),
        }
    }
}

impl Liveness {
    fn ended(reason: EndReason) -> Liveness {
        Liveness::Ended { reason }
    }

    /// Whether a message live now would still be live at `at` (a deferral's end).
    pub fn still_live_at(&self, at: Timestamp) -> bool {
        match self {
            Liveness::Live { expires_at } => expires_at.is_none_or(|expires| at < expires),
            Liveness::Ended { .. } => false,
        }
    }
}

/// The idempotency key of reminder `step` of a cart's abandonment at `activity`.
pub fn cart_step_send_key(cart_id: &str, activity: u64, step: u32) -> String {
    format!("cart:{cart_id}:{activity}:step{step}")
}

/// The idempotency key of a journey step's email in run `run` of a contact, on the run's
/// `pass`-th step (a run that loops sends each pass's email under its own key).
pub fn journey_send_key(journey_id: &str, contact_id: &str, run: u32, step_id: &str, pass: u32) -> String {
    format!("journey:{journey_id}:{contact_id}:{run}:{step_id}:{pass}")
}

/// The part of `key` between a known prefix and suffix, parsed.
fn between<T: std::str::FromStr>(key: &str, prefix: &str, suffix: &str) -> Option<T> {
    key.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
}

/// The cart activity counter a cart step was issued for, read from its key.
pub fn issued_cart_activity(request: &SendRequest) -> Option<u64> {
    let SendOrigin::Cart { cart_id, step } = &request.origin else { return None };
    between(&request.idempotency_key, &format!("cart:{cart_id}:"), &format!(":step{step}"))
}

/// The journey run a journey send was issued by, read from its key.
pub fn issued_journey_run(request: &SendRequest) -> Option<u32> {
    let SendOrigin::Journey { journey_id, step_id } = &request.origin else { return None };
    let prefix = format!("journey:{journey_id}:{}:", request.contact_id);
    let (run, rest) = request.idempotency_key.strip_prefix(&prefix)?.split_once(':')?;
    // `<step>:<pass>`, or `<step>` in keys issued before runs counted their passes.
    let same_step = rest == step_id || rest.strip_prefix(step_id.as_str()).is_some_and(|pass| pass.starts_with(':'));
    if same_step { run.parse().ok() } else { None }
}

/// A cart step's liveness, given the cart as stored now.
pub fn cart_step_liveness(
    cart: Option<&Cart>,
    issued_activity: Option<u64>,
    step: u32,
    settings: &CartSettings,
    now: Timestamp,
) -> Liveness {
    let Some(cart) = cart else { return Liveness::ended(EndReason::CartNotFound) };
    match cart.status {
        CartStatus::Abandoned => {}
        CartStatus::Purchased => return Liveness::ended(EndReason::CartPurchased),
        CartStatus::Emptied => return Liveness::ended(EndReason::CartEmptied),
        CartStatus::Open => return Liveness::ended(EndReason::CartActiveAgain),
    }
    // Without the issuing counter (a key of another shape) the status is all that can be checked.
    if issued_activity.is_some_and(|activity| activity != cart.activity) {
        return Liveness::ended(EndReason::CartChangedSinceTheStep);
    }
    let Some(index) = (step as usize).checked_sub(1) else { return Liveness::ended(EndReason::CartStepUnknown) };
    let Some(this) = settings.steps.get(index) else { return Liveness::ended(EndReason::CartStepUnknown) };
    let due_at = cart.last_activity_at + SignedDuration::from_hours(this.after_hours);
    let stale_at = this.stale_after_hours.map(|hours| due_at + SignedDuration::from_hours(hours));
    let next_due =
        settings.steps.get(index + 1).map(|next| cart.last_activity_at + SignedDuration::from_hours(next.after_hours));
    let expires_at = [stale_at, next_due].into_iter().flatten().min();
    if expires_at.is_some_and(|expires| now >= expires) {
        let reason = if next_due.is_some_and(|next| now >= next) {
            EndReason::CartStepSuperseded
        } else {
            EndReason::CartStepStale
        };
        return Liveness::ended(reason);
    }
    Liveness::Live { expires_at }
}

/// A journey send's liveness, given the contact's state in that journey now.
pub fn journey_send_liveness(state: Option<&JourneyState>, issued_run: Option<u32>) -> Liveness {
    let Some(state) = state else { return Liveness::ended(EndReason::JourneyRunNotFound) };
    // Without the issuing run (a key of another shape) only an exit can be seen.
    if issued_run.is_some_and(|run| run != state.run) {
        return Liveness::ended(EndReason::JourneyRunReplaced);
    }
    if state.status == RunStatus::Exited {
        return Liveness::ended(EndReason::JourneyRunExited);
    }
    // A completed run still wants the email its last step issued.
    Liveness::Live { expires_at: None }
}

/// Asks the request's origin whether it still wants the message now.
pub async fn check(
    store: &dyn Store,
    carts: &CartSettings,
    request: &SendRequest,
    now: Timestamp,
) -> Result<Liveness, StoreError> {
    match &request.origin {
        SendOrigin::Cart { cart_id, step } => {
            let cart = crate::repo::carts::load(store, cart_id).await?;
            Ok(cart_step_liveness(cart.as_ref(), issued_cart_activity(request), *step, carts, now))
        }
        SendOrigin::Journey { journey_id, .. } => {
            let state = crate::repo::journey_state::load(store, &request.contact_id, journey_id).await?;
            Ok(journey_send_liveness(state.as_ref(), issued_journey_run(request)))
        }
        SendOrigin::Form { .. } | SendOrigin::Bot { .. } => Ok(Liveness::Live { expires_at: None }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaigns::settings::CartStep;
    use crate::model::{Channel, Priority, SendClass};
    use crate::sending::policy::CapPeriod;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn step(after_hours: i64, stale_after_hours: Option<i64>) -> CartStep {
        CartStep {
            after_hours,
            template: "t".into(),
            discount_percent: 0,
            no_discount_for_segment: None,
            code_valid_days: 7,
            stale_after_hours,
        }
    }

    fn settings() -> CartSettings {
        CartSettings { idle_minutes: 60, steps: vec![step(1, Some(12)), step(24, Some(24)), step(72, None)] }
    }

    fn abandoned(activity: u64) -> Cart {
        let mut cart = Cart::new("cart-1", "c_1", at("2026-11-22T17:30:00Z"));
        cart.status = CartStatus::Abandoned;
        cart.activity = activity;
        cart
    }

    fn request(key: &str, origin: SendOrigin) -> SendRequest {
        SendRequest {
            idempotency_key: key.into(),
            contact_id: "c_1".into(),
            template: "t".into(),
            channel: Channel::Email,
            class: SendClass::Marketing,
            priority: Priority::Cart,
            context: Default::default(),
            origin,
            requested_at: Timestamp::UNIX_EPOCH,
            recipient: crate::model::Recipient::Contact,
        }
    }

    #[test]
    fn the_issuing_activity_and_run_are_read_back_from_the_keys_built_here() {
        let cart = request(&cart_step_send_key("cart-1", 7, 2), SendOrigin::Cart { cart_id: "cart-1".into(), step: 2 });
        assert_eq!(issued_cart_activity(&cart), Some(7));
        let journey = request(
            &journey_send_key("welcome", "c_1", 3, "s:1", 4),
            SendOrigin::Journey { journey_id: "welcome".into(), step_id: "s:1".into() },
        );
        assert_eq!(issued_journey_run(&journey), Some(3));
        let before_passes = request(
            "journey:welcome:c_1:5:s1",
            SendOrigin::Journey { journey_id: "welcome".into(), step_id: "s1".into() },
        );
        assert_eq!(issued_journey_run(&before_passes), Some(5), "keys issued before runs counted passes");
        let other = request("w:1", SendOrigin::Journey { journey_id: "welcome".into(), step_id: "s1".into() });
        assert_eq!(issued_journey_run(&other), None);
    }

    #[test]
    fn cancel_reasons_read_as_the_ledger_has_always_recorded_them() {
        assert_eq!(CancelReason::Ended(EndReason::CartPurchased).to_string(), "cart_purchased");
        assert_eq!(CancelReason::Ended(EndReason::JourneyRunExited).to_string(), "journey_run_exited");
        let stale = CancelReason::StaleBeforeDeferralEnds(DeferReason::QuietHours);
        assert_eq!(stale.to_string(), "stale_before_quiet_hours_ends");
        let capped = CancelReason::StaleBeforeDeferralEnds(DeferReason::FrequencyCap(CapPeriod::Week));
        assert_eq!(capped.to_string(), "stale_before_frequency_cap_week_ends");
        let trip = crate::repo::reputation::Trip {
            rate: crate::repo::reputation::RateKind::BounceRate,
            rate_ppm: 31_000,
            threshold_ppm: 25_000,
            sends: 1200,
        };
        let held = CancelReason::StaleBeforeDeferralEnds(DeferReason::ReputationPaused(Some(trip)));
        assert_eq!(held.to_string(), "stale_before_reputation_paused_ends");
    }

    #[test]
    fn a_cart_step_lives_while_the_same_abandonment_lasts_and_before_its_staleness() {
        let settings = settings();
        let due = at("2026-11-22T18:30:00Z");
        let live = cart_step_liveness(Some(&abandoned(3)), Some(3), 1, &settings, due);
        assert_eq!(live, Liveness::Live { expires_at: Some(at("2026-11-23T06:30:00Z")) });
        assert!(live.still_live_at(at("2026-11-23T06:00:00Z")));
        assert!(!live.still_live_at(at("2026-11-23T06:30:00Z")));
        assert_eq!(
            cart_step_liveness(Some(&abandoned(3)), Some(3), 1, &settings, at("2026-11-23T07:00:00Z")),
            Liveness::ended(EndReason::CartStepStale)
        );
        assert_eq!(
            cart_step_liveness(Some(&abandoned(4)), Some(3), 1, &settings, due),
            Liveness::ended(EndReason::CartChangedSinceTheStep)
        );
        let mut bought = abandoned(3);
        bought.status = CartStatus::Purchased;
        assert_eq!(
            cart_step_liveness(Some(&bought), Some(3), 1, &settings, due),
            Liveness::ended(EndReason::CartPurchased)
        );
        assert_eq!(cart_step_liveness(None, Some(3), 1, &settings, due), Liveness::ended(EndReason::CartNotFound));
        // Step 2 (due a day after the activity, stale a day later) gives way to step 3 at 72 hours.
        assert_eq!(
            cart_step_liveness(Some(&abandoned(3)), Some(3), 2, &settings, at("2026-11-24T17:00:00Z")),
            Liveness::Live { expires_at: Some(at("2026-11-24T17:30:00Z")) }
        );
        assert_eq!(
            cart_step_liveness(Some(&abandoned(3)), Some(3), 3, &settings, at("2026-12-30T00:00:00Z")),
            Liveness::Live { expires_at: None }
        );
    }
}
