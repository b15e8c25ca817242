//! The rollup: reads a day's aggregates and spend (never raw events) and keeps them as that day's
//! snapshot. Hourly keeps today's current; nightly makes yesterday final and restates the days
//! before it, for events that arrive late.

use jiff::Timestamp;
use jiff::civil::Date;
use serde::Serialize;

use crate::campaigns::Settings;
use crate::kpi::day_inputs;
use crate::ports::{Store, StoreError};
use crate::repo::aggregates;
use crate::repo::kpi_snapshots;

/// Which days a rollup run covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollupKind {
    /// Today so far; not final.
    Hourly,
    /// Yesterday and the `restate_days` before it; final.
    Nightly,
    /// The given days (spend uploaded for them, a CLI request); final when before today, days
    /// after today are skipped.
    Days(Vec<Date>),
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollupOutcome {
    /// The days snapshotted, oldest first.
    pub days: Vec<Date>,
    /// Aggregate and spend items read: bounded by the days and their dimensions, not by events.
    pub items_read: usize,
}

/// The days `kind` covers at `today`, oldest first, each with whether its snapshot is final.
pub fn days_of(kind: &RollupKind, settings: &Settings, today: Date) -> Vec<(Date, bool)> {
    match kind {
        RollupKind::Hourly => vec![(today, false)],
        RollupKind::Nightly => {
            let restate = i64::from(settings.kpi.restate_days);
            (0..=restate)
                .rev()
                .filter_map(|back| today.checked_sub(jiff::Span::new().days(back + 1)).ok())
                .map(|date| (date, true))
                .collect()
        }
        RollupKind::Days(days) => {
            let mut days: Vec<Date> = days.iter().copied().filter(|date| *date <= today).collect();
            days.sort();
            days.dedup();
            days.into_iter().map(|date| (date, date < today)).collect()
        }
    }
}

/// Runs one rollup at `now`.
pub async fn roll_up(
    store: &dyn Store,
    settings: &Settings,
    kind: RollupKind,
    now: Timestamp,
) -> Result<RollupOutcome, StoreError> {
    let today = aggregates::date(now, settings);
    let mut outcome = RollupOutcome { days: Vec::new(), items_read: 0 };
    for (date, is_final) in days_of(&kind, settings, today) {
        let inputs = day_inputs(store, date).await?;
        outcome.items_read += inputs.items();
        kpi_snapshots::put(store, &inputs, is_final, now).await?;
        outcome.days.push(date);
    }
    Ok(outcome)
}
