//! Time zones as the files and contacts name them.

use jiff::tz::TimeZone;

/// The zone an IANA name denotes; UTC when the name is unknown (files are validated, contacts
/// may carry whatever a form sent).
pub fn time_zone_or_utc(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap_or(TimeZone::UTC)
}
