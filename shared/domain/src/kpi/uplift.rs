//! Control-group uplift of a journey: did the people who got its emails convert more, and spend
//! more, than the holdout who were left alone?
//!
//! The difference of two conversion rates gets a 95% interval by Newcombe's hybrid score method
//! (method 10 of Newcombe, "Interval estimation for the difference between independent
//! proportions", Statistics in Medicine 17, 1998): each rate gets its Wilson score interval and
//! the two are combined. Unlike the textbook Wald interval it stays inside [-1, 1], behaves with
//! zero conversions and with small groups, which is where a 5% holdout of a small shop lives.
//! Groups smaller than the configured minimum are still computed and shown, with `too_small`
//! set, because hiding them would hide that the test is under-powered.

use serde::Serialize;

use crate::repo::aggregates::JourneyDay;
use crate::repo::journey_state::Group;

/// The normal quantile of a two-sided 95% interval.
pub const Z_95: f64 = 1.959_963_984_540_054;

pub const METHOD: &str = "Newcombe hybrid score interval (Wilson score per group), 95%";

/// The Wilson score interval of `successes` out of `trials`; `None` for no trials.
pub fn wilson_interval(successes: u64, trials: u64, z: f64) -> Option<(f64, f64)> {
    if trials == 0 {
        return None;
    }
    let n = trials as f64;
    let p = successes.min(trials) as f64 / n;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half_width = z / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((centre - half_width).max(0.0), (centre + half_width).min(1.0)))
}

/// The interval of `x1/n1 − x2/n2` by Newcombe's hybrid score method; `None` when a group is
/// empty.
pub fn newcombe_interval(x1: u64, n1: u64, x2: u64, n2: u64, z: f64) -> Option<(f64, f64)> {
    let (l1, u1) = wilson_interval(x1, n1, z)?;
    let (l2, u2) = wilson_interval(x2, n2, z)?;
    let p1 = x1.min(n1) as f64 / n1 as f64;
    let p2 = x2.min(n2) as f64 / n2 as f64;
    let difference = p1 - p2;
    let low = difference - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let high = difference + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    Some((low, high))
}

/// One group of a journey over the reported days.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupStats {
    /// Entries into the journey (a contact who re-enters counts once per run).
    pub contacts: u64,
    /// Runs that converted within the journey's window.
    pub conversions: u64,
    pub conversion_rate: Option<f64>,
    pub revenue: f64,
    pub revenue_per_contact: Option<f64>,
}

impl GroupStats {
    fn of(days: &[JourneyDay], group: Group) -> GroupStats {
        let mut stats = GroupStats::default();
        for day in days.iter().filter(|day| day.group == group) {
            stats.contacts += day.entries;
            stats.conversions += day.conversions;
            stats.revenue += day.revenue;
        }
        stats.conversion_rate = ratio(stats.conversions as f64, stats.contacts as f64);
        stats.revenue_per_contact = ratio(stats.revenue, stats.contacts as f64);
        stats
    }
}

/// What a journey's holdout says about its effect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JourneyUplift {
    pub journey: String,
    pub treatment: GroupStats,
    pub holdout: GroupStats,
    /// Treatment's conversion rate minus the holdout's, in rate points (0.02 = two points).
    pub absolute_uplift: Option<f64>,
    /// The 95% interval of `absolute_uplift`.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// `absolute_uplift` as a share of the holdout's rate; `None` when the holdout converted nobody.
    pub relative_uplift: Option<f64>,
    pub revenue_per_contact_uplift: Option<f64>,
    /// What the treatment group bought beyond what it would have at the holdout's rate.
    pub incremental_revenue: Option<f64>,
    /// What the journey's discount codes gave away.
    pub discount_cost: f64,
    /// (incremental revenue × margin − discount cost) / discount cost; `None` without a cost.
    pub romi: Option<f64>,
    pub method: &'static str,
    /// A group is smaller than the configured minimum: the numbers are shown, not concluded on.
    pub too_small: bool,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A group is below the minimum size (or empty).
    TooSmall,
    /// The whole interval lies above zero.
    Lifts,
    /// The whole interval lies below zero: the journey costs conversions.
    Hurts,
    /// The interval contains zero.
    NoClearDifference,
}

impl Verdict {
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::TooSmall => "groups too small to conclude",
            Verdict::Lifts => "lifts conversion (95% interval above zero)",
            Verdict::Hurts => "lowers conversion (95% interval below zero)",
            Verdict::NoClearDifference => "no clear difference (95% interval contains zero)",
        }
    }
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0).then(|| numerator / denominator)
}

/// The uplift of `journey` over `days` (both groups' rows), with `discount_cost` the value its
/// codes gave away and `margin` the share of revenue that is profit.
pub fn journey_uplift(
    journey: &str,
    days: &[JourneyDay],
    discount_cost: f64,
    margin: f64,
    min_group_size: u64,
) -> JourneyUplift {
    let treatment = GroupStats::of(days, Group::Treatment);
    let holdout = GroupStats::of(days, Group::Holdout);
    let interval =
        newcombe_interval(treatment.conversions, treatment.contacts, holdout.conversions, holdout.contacts, Z_95);
    let absolute_uplift = treatment.conversion_rate.zip(holdout.conversion_rate).map(|(t, h)| t - h);
    let relative_uplift = absolute_uplift.zip(holdout.conversion_rate).and_then(|(uplift, h)| ratio(uplift, h));
    let revenue_per_contact_uplift = treatment.revenue_per_contact.zip(holdout.revenue_per_contact).map(|(t, h)| t - h);
    let incremental_revenue = revenue_per_contact_uplift.map(|uplift| uplift * treatment.contacts as f64);
    let romi = incremental_revenue.and_then(|revenue| ratio(revenue * margin - discount_cost, discount_cost));
    let too_small = treatment.contacts < min_group_size.max(1) || holdout.contacts < min_group_size.max(1);
    let verdict = match interval {
        _ if too_small => Verdict::TooSmall,
        None => Verdict::TooSmall,
        Some((low, _)) if low > 0.0 => Verdict::Lifts,
        Some((_, high)) if high < 0.0 => Verdict::Hurts,
        Some(_) => Verdict::NoClearDifference,
    };
    JourneyUplift {
        journey: journey.to_string(),
        treatment,
        holdout,
        absolute_uplift,
        ci_low: interval.map(|(low, _)| low),
        ci_high: interval.map(|(_, high)| high),
        relative_uplift,
        revenue_per_contact_uplift,
        incremental_revenue,
        discount_cost,
        romi,
        method: METHOD,
        too_small,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, tolerance: f64) {
        assert!((actual - expected).abs() <= tolerance, "{actual} is not {expected} ± {tolerance}");
    }

    #[test]
    fn wilson_interval_matches_the_published_values() {
        // Newcombe 1998, table I: 81/263 → 0.2553 to 0.3662; 0/10 → 0 to 0.2775.
        let (low, high) = wilson_interval(81, 263, Z_95).unwrap();
        close(low, 0.2553, 5e-5);
        close(high, 0.3662, 5e-5);
        let (low, high) = wilson_interval(0, 10, Z_95).unwrap();
        close(low, 0.0, 1e-12);
        close(high, 0.2775, 5e-5);
        assert_eq!(wilson_interval(0, 0, Z_95), None);
    }

    #[test]
    fn newcombe_interval_matches_the_published_examples() {
        // Newcombe 1998, table II, method 10.
        let cases = [
            ((56, 70, 48, 80), (0.0524, 0.3339)),
            ((9, 10, 3, 10), (0.1705, 0.8090)),
            ((6, 7, 2, 7), (0.0582, 0.8062)),
            ((5, 56, 0, 29), (-0.0381, 0.1926)),
            ((0, 10, 0, 20), (-0.1611, 0.2775)),
            ((10, 10, 0, 20), (0.6791, 1.0)),
        ];
        for ((x1, n1, x2, n2), (low, high)) in cases {
            let (l, h) = newcombe_interval(x1, n1, x2, n2, Z_95).unwrap();
            close(l, low, 5e-5);
            close(h, high, 5e-5);
        }
        assert_eq!(newcombe_interval(1, 10, 0, 0, Z_95), None);
    }

    fn day(group: Group, entries: u64, conversions: u64, revenue: f64) -> JourneyDay {
        JourneyDay { date: jiff::civil::date(2026, 3, 1), group, entries, exits: 0, conversions, revenue }
    }

    #[test]
    fn a_journey_that_lifts_conversion_is_told_so_with_its_money() {
        // Treatment 1000 entries over two days, 100 conversions, 8 000 revenue; holdout 500
        // entries, 30 conversions, 2 100 revenue. Rates 0.10 and 0.06: uplift 0.04, relative
        // 0.04 / 0.06 = 0.6667. Revenue per contact 8.0 and 4.2: +3.8, × 1000 = 3 800
        // incremental. ROMI with margin 0.5 and 500 of discounts: (1 900 − 500) / 500 = 2.8.
        let days = [
            day(Group::Treatment, 600, 60, 5000.0),
            day(Group::Treatment, 400, 40, 3000.0),
            day(Group::Holdout, 500, 30, 2100.0),
        ];
        let uplift = journey_uplift("welcome", &days, 500.0, 0.5, 100);
        assert_eq!(uplift.treatment.contacts, 1000);
        assert_eq!(uplift.holdout.conversions, 30);
        close(uplift.absolute_uplift.unwrap(), 0.04, 1e-12);
        close(uplift.relative_uplift.unwrap(), 0.04 / 0.06, 1e-12);
        close(uplift.revenue_per_contact_uplift.unwrap(), 3.8, 1e-9);
        close(uplift.incremental_revenue.unwrap(), 3800.0, 1e-6);
        close(uplift.romi.unwrap(), 2.8, 1e-9);
        let (low, high) = (uplift.ci_low.unwrap(), uplift.ci_high.unwrap());
        assert!(low > 0.0 && low < 0.04 && high > 0.04, "{low}..{high}");
        assert_eq!(uplift.verdict, Verdict::Lifts);
        assert!(!uplift.too_small);
    }

    #[test]
    fn small_groups_are_computed_and_flagged() {
        let days = [day(Group::Treatment, 40, 8, 800.0), day(Group::Holdout, 3, 0, 0.0)];
        let uplift = journey_uplift("winback", &days, 0.0, 0.3, 100);
        assert!(uplift.too_small);
        assert_eq!(uplift.verdict, Verdict::TooSmall);
        close(uplift.absolute_uplift.unwrap(), 0.2, 1e-12);
        assert!(uplift.ci_low.is_some() && uplift.ci_high.is_some());
        assert_eq!(uplift.relative_uplift, None, "the holdout converted nobody");
        assert_eq!(uplift.romi, None, "no discount cost, no ROMI");
    }

    #[test]
    fn a_journey_without_a_holdout_has_no_interval() {
        let uplift = journey_uplift("receipt", &[day(Group::Treatment, 500, 50, 0.0)], 0.0, 0.3, 100);
        assert_eq!(uplift.holdout, GroupStats::default());
        assert_eq!((uplift.absolute_uplift, uplift.ci_low, uplift.ci_high), (None, None, None));
        assert_eq!(uplift.verdict, Verdict::TooSmall);
    }

    #[test]
    fn a_journey_that_hurts_is_told_so() {
        let days = [day(Group::Treatment, 2000, 100, 0.0), day(Group::Holdout, 1000, 100, 0.0)];
        let uplift = journey_uplift("noisy", &days, 0.0, 0.3, 100);
        assert_eq!(uplift.verdict, Verdict::Hurts);
        assert!(uplift.ci_high.unwrap() < 0.0);
    }
}
