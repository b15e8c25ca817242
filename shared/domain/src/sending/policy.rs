//! Who may be sent what, and when: consent, suppression, quiet hours in the contact's own time
//! zone, and the calendar windows frequency caps count in.

use std::fmt;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use crate::campaigns::SendingSettings;
use crate::model::{Contact, SendClass};
use crate::repo::frequency::CapWindows;
use crate::repo::reputation::Trip;
use crate::sending::redact::Redacted;

/// Why a message will never be sent. Its `Display` is what the send ledger and the logs record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockReason {
    ContactNotFound,
    NoEmailAddress,
    /// A message for the sales inbox, and the settings name none.
    NoSalesAddress,
    NoMarketingConsent,
    ConsentNotConfirmed,
    Unsubscribed,
    HardBounce,
    Complaint,
    /// The cap was full and the message's priority does not wait for the next free slot.
    FrequencyCap(CapPeriod),
    /// The template did not render (a missing variable, a locale without it).
    TemplateError(Redacted),
    /// The rendered message could not be built (an address the MIME builder refuses).
    MessageError(Redacted),
    /// SES's verdict on the message, in its own words.
    RejectedBySes(Redacted),
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockReason::ContactNotFound => f.write_str("contact_not_found"),
            BlockReason::NoEmailAddress => f.write_str("no_email_address"),
            BlockReason::NoSalesAddress => f.write_str("no_sales_address"),
            BlockReason::NoMarketingConsent => f.write_str("no_marketing_consent"),
            BlockReason::ConsentNotConfirmed => f.write_str("consent_not_confirmed"),
            BlockReason::Unsubscribed => f.write_str("unsubscribed"),
            BlockReason::HardBounce => f.write_str("hard_bounce"),
            BlockReason::Complaint => f.write_str("complaint"),
            BlockReason::FrequencyCap(period) => f.write_str(period.as_str()),
            BlockReason::TemplateError(text) => write!(f, "template_error: {text}"),
            BlockReason::MessageError(text) => write!(f, "message_error: {text}"),
            BlockReason::RejectedBySes(text) => write!(f, "rejected_by_ses: {text}"),
        }
    }
}

impl BlockReason {
    /// The reason's name without its details (which may quote outside text): what metrics count by.
    pub fn kind(&self) -> &'static str {
        match self {
            BlockReason::ContactNotFound => "contact_not_found",
            BlockReason::NoEmailAddress => "no_email_address",
            BlockReason::NoSalesAddress => "no_sales_address",
            BlockReason::NoMarketingConsent => "no_marketing_consent",
            BlockReason::ConsentNotConfirmed => "consent_not_confirmed",
            BlockReason::Unsubscribed => "unsubscribed",
            BlockReason::HardBounce => "hard_bounce",
            BlockReason::Complaint => "complaint",
            BlockReason::FrequencyCap(period) => period.as_str(),
            BlockReason::TemplateError(_) => "template_error",
            BlockReason::MessageError(_) => "message_error",
            BlockReason::RejectedBySes(_) => "rejected_by_ses",
        }
    }
}

/// Which frequency cap is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapPeriod {
    Day,
    Week,
}

impl CapPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            CapPeriod::Day => "frequency_cap_day",
            CapPeriod::Week => "frequency_cap_week",
        }
    }
}

/// Why a message waits. Its `Display` is what the send ledger and the logs record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferReason {
    /// An earlier delivery deferred it, and its time has not come (read from the ledger).
    NotDueYet,
    QuietHours,
    FrequencyCap(CapPeriod),
    /// Marketing is paused by the reputation guard (`sending::reputation`): held, with the rate
    /// that tripped it (none in a state some other writer paused without one).
    ReputationPaused(Option<Trip>),
}

impl DeferReason {
    /// The reason's name, without its details.
    pub fn as_str(self) -> &'static str {
        match self {
            DeferReason::NotDueYet => "not due yet",
            DeferReason::QuietHours => "quiet_hours",
            DeferReason::FrequencyCap(period) => period.as_str(),
            DeferReason::ReputationPaused(_) => "reputation_paused",
        }
    }
}

/// What the ledger and the logs record: the name, and for a reputation hold the rate that tripped.
impl fmt::Display for DeferReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeferReason::ReputationPaused(Some(trip)) => write!(f, "reputation_paused: {trip}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// Whether `contact` may receive a message of `class` at all.
///
/// A hard bounce or a complaint stops every message, transactional ones too; an unsubscribe or
/// missing consent stops marketing only, so an opt-in confirmation still reaches a new subscriber.
pub fn check_recipient(contact: &Contact, class: SendClass) -> Result<(), BlockReason> {
    if contact.email.is_none() {
        return Err(BlockReason::NoEmailAddress);
    }
    if contact.suppressions.contains_key(&crate::model::SuppressionReason::HardBounce) {
        return Err(BlockReason::HardBounce);
    }
    if contact.suppressions.contains_key(&crate::model::SuppressionReason::Complaint) {
        return Err(BlockReason::Complaint);
    }
    if class == SendClass::Transactional {
        return Ok(());
    }
    if contact.suppressions.contains_key(&crate::model::SuppressionReason::Unsubscribed) {
        return Err(BlockReason::Unsubscribed);
    }
    match contact.email_consent() {
        None => Err(BlockReason::NoMarketingConsent),
        Some(consent) if consent.status != crate::model::ConsentStatus::Granted => Err(BlockReason::NoMarketingConsent),
        Some(consent) if !consent.allows_marketing() => Err(BlockReason::ConsentNotConfirmed),
        Some(_) => Ok(()),
    }
}

/// Local hours during which no marketing is sent, e.g. 21:00 to 09:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: Time,
    pub end: Time,
}

impl QuietHours {
    /// The quiet hours the settings name.
    pub fn of(settings: &SendingSettings) -> QuietHours {
        QuietHours { start: settings.quiet_hours_start, end: settings.quiet_hours_end }
    }

    fn contains(&self, time: Time) -> bool {
        if self.start <= self.end {
            time >= self.start && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }

    /// `None` when `now` is outside quiet hours in `zone`; else the first instant they end.
    /// DST is the time zone database's business: a quiet end that falls into a skipped hour
    /// moves to the first instant after the gap.
    pub fn next_allowed(&self, now: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let local = now.to_zoned(zone.clone());
        if !self.contains(local.time()) {
            return None;
        }
        let end_day: Date = if self.start > self.end && local.time() >= self.start {
            local.date().tomorrow().ok()?
        } else {
            local.date()
        };
        end_day.to_datetime(self.end).to_zoned(zone.clone()).ok().map(|z| z.timestamp())
    }
}

/// The cap windows `now` falls in, in the contact's own zone.
pub fn cap_windows(now: Timestamp, zone: &TimeZone) -> CapWindows {
    let local: Zoned = now.to_zoned(zone.clone());
    let date = local.date();
    let iso = date.iso_week_date();
    let start_of =
        |day: Date| day.to_datetime(Time::midnight()).to_zoned(zone.clone()).map(|z| z.timestamp()).unwrap_or(now);
    let days_to_monday = 7 - i64::from(iso.weekday().to_monday_zero_offset());
    let next_monday = date.checked_add(jiff::Span::new().days(days_to_monday)).unwrap_or(date);
    CapWindows {
        day: date.to_string(),
        week: format!("{}-W{:02}", iso.year(), iso.week()),
        next_day: start_of(date.tomorrow().unwrap_or(date)),
        next_week: start_of(next_monday),
    }
}

pub use crate::time::time_zone_or_utc;

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> QuietHours {
        QuietHours { start: Time::constant(21, 0, 0, 0), end: Time::constant(9, 0, 0, 0) }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn quiet_hours_hold_in_moscow() {
        let moscow = TimeZone::get("Europe/Moscow").unwrap();
        // 19:00 UTC is 22:00 in Moscow (UTC+3): quiet until 09:00 local, 06:00 UTC next day.
        assert_eq!(quiet().next_allowed(at("2026-11-22T19:00:00Z"), &moscow), Some(at("2026-11-23T06:00:00Z")));
        // 03:00 UTC is 06:00 in Moscow: quiet until 09:00 local the same day.
        assert_eq!(quiet().next_allowed(at("2026-11-22T03:00:00Z"), &moscow), Some(at("2026-11-22T06:00:00Z")));
        // 12:00 UTC is 15:00 in Moscow: fine now.
        assert_eq!(quiet().next_allowed(at("2026-11-22T12:00:00Z"), &moscow), None);
    }

    #[test]
    fn quiet_hours_hold_in_new_york_across_its_dst_change() {
        let new_york = TimeZone::get("America/New_York").unwrap();
        // Sunday 2026-03-08 02:00 local clocks jump to 03:00 (EST -5 → EDT -4).
        // Saturday 23:00 EST = Sunday 04:00 UTC: quiet until Sunday 09:00 EDT = 13:00 UTC.
        assert_eq!(quiet().next_allowed(at("2026-03-08T04:00:00Z"), &new_york), Some(at("2026-03-08T13:00:00Z")));
        // Autumn: Sunday 2026-11-01 02:00 EDT falls back to 01:00 EST.
        // Saturday 22:00 EDT = Sunday 02:00 UTC: quiet until Sunday 09:00 EST = 14:00 UTC.
        assert_eq!(quiet().next_allowed(at("2026-11-01T02:00:00Z"), &new_york), Some(at("2026-11-01T14:00:00Z")));
    }

    #[test]
    fn quiet_hours_hold_at_a_half_hour_offset() {
        let kolkata = TimeZone::get("Asia/Kolkata").unwrap();
        // 16:00 UTC is 21:30 in Kolkata (UTC+5:30): quiet until 09:00 IST = 03:30 UTC.
        assert_eq!(quiet().next_allowed(at("2026-11-22T16:00:00Z"), &kolkata), Some(at("2026-11-23T03:30:00Z")));
        // 15:29 UTC is 20:59 in Kolkata: still allowed.
        assert_eq!(quiet().next_allowed(at("2026-11-22T15:29:00Z"), &kolkata), None);
    }

    #[test]
    fn reasons_read_as_the_ledger_has_always_recorded_them() {
        assert_eq!(BlockReason::ConsentNotConfirmed.to_string(), "consent_not_confirmed");
        assert_eq!(BlockReason::FrequencyCap(CapPeriod::Week).to_string(), "frequency_cap_week");
        let rejected = BlockReason::RejectedBySes(Redacted::new("Address blacklisted: anna@example.com"));
        assert_eq!(rejected.to_string(), "rejected_by_ses: Address blacklisted: [address]");
        let template = BlockReason::TemplateError(Redacted::new("there is no template `x`"));
        assert_eq!(template.to_string(), "template_error: there is no template `x`");
        assert_eq!(DeferReason::QuietHours.to_string(), "quiet_hours");
        assert_eq!(DeferReason::FrequencyCap(CapPeriod::Day).to_string(), "frequency_cap_day");
        assert_eq!(DeferReason::NotDueYet.to_string(), "not due yet");
    }

    #[test]
    fn cap_windows_follow_the_local_calendar() {
        let kolkata = TimeZone::get("Asia/Kolkata").unwrap();
        // Sunday 2026-11-22 20:00 UTC is Monday 01:30 in Kolkata: a new day and a new ISO week.
        let windows = cap_windows(at("2026-11-22T20:00:00Z"), &kolkata);
        assert_eq!(windows.day, "2026-11-23");
        assert_eq!(windows.week, "2026-W48");
        assert_eq!(windows.next_day, at("2026-11-23T18:30:00Z"));
        assert_eq!(windows.next_week, at("2026-11-29T18:30:00Z"));
    }
}
