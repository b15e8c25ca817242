//! The score ledger a contact carries: every contribution with its time, kind, points and reason,
//! so any score can be explained. Fit counts fully while it holds; engagement fades by half every
//! half-life. The list is bounded: engagement entries pushed out are folded into one decayed base,
//! so the total stays right while the item stays small.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Engagement entries kept one by one; older ones are folded into `folded`. With the fit entries
/// (at most one per rule, `rules::MAX_RULES`) this keeps a full ledger to a few KB of the contact.
pub const MAX_ENGAGEMENT_ENTRIES: usize = 20;
/// How long an engagement rule waits before it counts again for the same contact.
pub const ENGAGEMENT_COOLDOWN: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);
/// The net under stored entries: a reason from the file is at most `rules::MAX_REASON_CHARS`
/// characters, an event id at most a source prefix and 128 bytes.
const MAX_STORED_REASON_BYTES: usize = 4 * super::rules::MAX_REASON_CHARS;
const MAX_STORED_EVENT_ID_BYTES: usize = 160;
const SECONDS_PER_DAY: f64 = 86_400.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreKind {
    /// Who the person is (attributes, bot answers): counts fully while it holds.
    Fit,
    /// What the person did: fades with age.
    Engagement,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreEntry {
    pub at: Timestamp,
    pub kind: ScoreKind,
    pub points: i64,
    pub reason: String,
    /// The event that earned it (engagement), so an event counts once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// Engagement pushed out of the list, summed and decayed to `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldedEngagement {
    pub at: Timestamp,
    pub points: f64,
    pub entries: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreLedger {
    #[serde(default)]
    pub entries: Vec<ScoreEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folded: Option<FoldedEngagement>,
}

/// One line of a breakdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contribution {
    pub at: Timestamp,
    pub kind: ScoreKind,
    pub reason: String,
    pub points: f64,
    pub current_points: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// A score explained at one moment: each contribution, newest first, and the total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreBreakdown {
    pub at: Timestamp,
    pub half_life_days: f64,
    pub fit: f64,
    pub engagement: f64,
    pub total: f64,
    pub contributions: Vec<Contribution>,
}

/// `points` earned at `at`, as worth at `now`: halved every half-life (never grown for an entry
/// stamped after `now`, which an event reported late can be).
pub fn decayed(points: f64, at: Timestamp, now: Timestamp, half_life_days: f64) -> f64 {
    let age_days = (now.as_second() - at.as_second()).max(0) as f64 / SECONDS_PER_DAY;
    points * 0.5_f64.powf(age_days / half_life_days)
}

/// Cuts `text` to at most `max_bytes` on a character boundary (as `model::bound_text`, which
/// sits above this module).
fn cut_to_bytes(text: &mut String, max_bytes: usize) {
    if text.len() > max_bytes {
        let mut end = max_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

impl ScoreLedger {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.folded.is_none()
    }

    /// The net `Contact::keep_within_bounds` applies to every contact written: adding folds what
    /// the bound pushes out, so this only trims a ledger stored under other limits.
    pub fn keep_within_bounds(&mut self) {
        for entry in &mut self.entries {
            cut_to_bytes(&mut entry.reason, MAX_STORED_REASON_BYTES);
            if let Some(event_id) = &mut entry.event_id {
                cut_to_bytes(event_id, MAX_STORED_EVENT_ID_BYTES);
            }
        }
        let mut fit = 0;
        let mut engagement = 0;
        // Newest kept: entries are appended in time order.
        for i in (0..self.entries.len()).rev() {
            let count = match self.entries[i].kind {
                ScoreKind::Fit => &mut fit,
                ScoreKind::Engagement => &mut engagement,
            };
            *count += 1;
            let limit = match self.entries[i].kind {
                ScoreKind::Fit => super::rules::MAX_RULES,
                ScoreKind::Engagement => MAX_ENGAGEMENT_ENTRIES,
            };
            if *count > limit {
                self.entries.remove(i);
            }
        }
    }

    /// Replaces the fit entries with what the attributes earn now (`earned`: reason, points):
    /// an entry that still holds keeps its time; a rule earns once, however often it is
    /// recomputed. Returns whether anything changed.
    pub fn set_fit(&mut self, earned: &[(String, i64)], now: Timestamp) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| {
            entry.kind != ScoreKind::Fit
                || earned.iter().any(|(reason, points)| reason == &entry.reason && *points == entry.points)
        });
        let mut changed = self.entries.len() != before;
        for (reason, points) in earned {
            let held = self.entries.iter().any(|e| e.kind == ScoreKind::Fit && &e.reason == reason);
            if !held {
                self.entries.push(ScoreEntry {
                    at: now,
                    kind: ScoreKind::Fit,
                    points: *points,
                    reason: reason.clone(),
                    event_id: None,
                });
                changed = true;
            }
        }
        changed
    }

    /// Adds an event's engagement once per event and reason, and each reason at most once per
    /// `ENGAGEMENT_COOLDOWN`: a browser may post a hundred page views in one request, and a flood
    /// must not buy a stage. Folds what the bound pushes out.
    pub fn add_engagement(&mut self, event_id: &str, at: Timestamp, earned: &[(String, i64)], half_life_days: f64) {
        for (reason, points) in earned {
            let seen = self.entries.iter().any(|e| {
                e.kind == ScoreKind::Engagement
                    && &e.reason == reason
                    && (e.event_id.as_deref() == Some(event_id) || at.duration_since(e.at).abs() < ENGAGEMENT_COOLDOWN)
            });
            if seen {
                continue;
            }
            self.entries.push(ScoreEntry {
                at,
                kind: ScoreKind::Engagement,
                points: *points,
                reason: reason.clone(),
                event_id: Some(event_id.to_string()),
            });
        }
        self.keep_within_bound(half_life_days);
    }

    /// Folds the oldest engagement entries beyond the bound into the decayed base. Decay is
    /// exponential, so carrying a sum forward in time is exact: the base is worth at any later
    /// time what its entries would have been worth one by one.
    fn keep_within_bound(&mut self, half_life_days: f64) {
        loop {
            let engagement: Vec<usize> =
                (0..self.entries.len()).filter(|&i| self.entries[i].kind == ScoreKind::Engagement).collect();
            if engagement.len() <= MAX_ENGAGEMENT_ENTRIES {
                return;
            }
            let oldest = *engagement.iter().min_by_key(|&&i| self.entries[i].at).expect("more than the bound");
            let entry = self.entries.remove(oldest);
            let folded = match self.folded.take() {
                None => FoldedEngagement { at: entry.at, points: entry.points as f64, entries: 1 },
                Some(base) => {
                    let at = base.at.max(entry.at);
                    FoldedEngagement {
                        at,
                        points: decayed(base.points, base.at, at, half_life_days)
                            + decayed(entry.points as f64, entry.at, at, half_life_days),
                        entries: base.entries + 1,
                    }
                }
            };
            self.folded = Some(folded);
        }
    }

    /// The score at `now`: fit in full, engagement decayed by age.
    pub fn score_at(&self, now: Timestamp, half_life_days: f64) -> f64 {
        self.breakdown(now, half_life_days).total
    }

    /// Each contribution with its reason, what it earned and what it is worth at `now`.
    pub fn breakdown(&self, now: Timestamp, half_life_days: f64) -> ScoreBreakdown {
        let mut contributions: Vec<Contribution> = self
            .entries
            .iter()
            .map(|entry| {
                let current = match entry.kind {
                    ScoreKind::Fit => entry.points as f64,
                    ScoreKind::Engagement => decayed(entry.points as f64, entry.at, now, half_life_days),
                };
                Contribution {
                    at: entry.at,
                    kind: entry.kind,
                    reason: entry.reason.clone(),
                    points: entry.points as f64,
                    current_points: current,
                    event_id: entry.event_id.clone(),
                }
            })
            .collect();
        if let Some(base) = &self.folded {
            contributions.push(Contribution {
                at: base.at,
                kind: ScoreKind::Engagement,
                reason: format!("{} earlier engagement entries, summed", base.entries),
                points: base.points,
                current_points: decayed(base.points, base.at, now, half_life_days),
                event_id: None,
            });
        }
        contributions.sort_by_key(|c| std::cmp::Reverse(c.at));
        let sum = |kind: ScoreKind| contributions.iter().filter(|c| c.kind == kind).map(|c| c.current_points).sum();
        let (fit, engagement): (f64, f64) = (sum(ScoreKind::Fit), sum(ScoreKind::Engagement));
        for contribution in &mut contributions {
            contribution.points = round2(contribution.points);
            contribution.current_points = round2(contribution.current_points);
        }
        ScoreBreakdown {
            at: now,
            half_life_days,
            fit: round2(fit),
            engagement: round2(engagement),
            total: round2(fit + engagement),
            contributions,
        }
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;

    fn day(n: i64) -> Timestamp {
        "2026-11-01T00:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_hours(24 * n)
    }

    #[test]
    fn engagement_halves_every_half_life_and_fit_stays() {
        let mut ledger = ScoreLedger::default();
        ledger.set_fit(&[("company of 51 or more".into(), 20)], day(0));
        ledger.add_engagement("e1", day(0), &[("viewed pricing".into(), 40)], 14.0);
        assert_eq!(ledger.score_at(day(0), 14.0), 60.0);
        assert_eq!(ledger.score_at(day(14), 14.0), 40.0);
        assert_eq!(ledger.score_at(day(28), 14.0), 30.0);
        assert!((ledger.score_at(day(7), 14.0) - (20.0 + 40.0 * 0.5_f64.sqrt())).abs() < 0.01);
        let breakdown = ledger.breakdown(day(14), 14.0);
        let pricing = breakdown.contributions.iter().find(|c| c.reason == "viewed pricing").unwrap();
        assert_eq!((pricing.points, pricing.current_points), (40.0, 20.0));
        assert_eq!((breakdown.fit, breakdown.engagement, breakdown.total), (20.0, 20.0, 40.0));
    }

    #[test]
    fn fit_is_replaced_not_added_twice() {
        let mut ledger = ScoreLedger::default();
        assert!(ledger.set_fit(&[("size".into(), 20), ("website".into(), 10)], day(0)));
        assert!(!ledger.set_fit(&[("size".into(), 20), ("website".into(), 10)], day(1)), "the same fit again");
        assert_eq!(ledger.score_at(day(1), 14.0), 30.0);
        assert!(ledger.set_fit(&[("size".into(), 25)], day(2)), "a rule that changed its points, one that lapsed");
        assert_eq!(ledger.score_at(day(90), 14.0), 25.0);
        assert_eq!(ledger.entries.len(), 1);
    }

    #[test]
    fn an_event_counts_once() {
        let mut ledger = ScoreLedger::default();
        ledger.add_engagement("e1", day(0), &[("clicked".into(), 3)], 14.0);
        ledger.add_engagement("e1", day(0), &[("clicked".into(), 3)], 14.0);
        assert_eq!(ledger.score_at(day(0), 14.0), 3.0);
    }

    #[test]
    fn a_flood_of_events_counts_once_a_day_per_rule() {
        let mut ledger = ScoreLedger::default();
        for i in 0..100 {
            ledger.add_engagement(&format!("pv{i}"), day(0), &[("viewed pricing".into(), 10)], 14.0);
        }
        assert_eq!(ledger.score_at(day(0), 14.0), 10.0, "a hundred page views in one request are one");
        ledger.add_engagement("click", day(0), &[("clicked".into(), 3)], 14.0);
        assert_eq!(ledger.score_at(day(0), 14.0), 13.0, "another rule still counts");
        ledger.add_engagement("pv-tomorrow", day(1), &[("viewed pricing".into(), 10)], 14.0);
        assert!(ledger.score_at(day(1), 14.0) > 20.0, "the next day counts again");
    }

    #[test]
    fn the_bound_folds_old_entries_and_keeps_the_total() {
        let mut bounded = ScoreLedger::default();
        let mut expected = 0.0;
        for i in 0..(MAX_ENGAGEMENT_ENTRIES as i64 + 25) {
            bounded.add_engagement(&format!("e{i}"), day(i), &[("viewed pricing".into(), 5)], 14.0);
            expected += decayed(5.0, day(i), day(100), 14.0);
        }
        assert_eq!(bounded.entries.len(), MAX_ENGAGEMENT_ENTRIES);
        assert_eq!(bounded.folded.as_ref().unwrap().entries, 25);
        assert!((bounded.breakdown(day(100), 14.0).engagement - round2(expected)).abs() < 0.011, "{expected}");
        let breakdown = bounded.breakdown(day(100), 14.0);
        assert!(breakdown.contributions.iter().any(|c| c.reason == "25 earlier engagement entries, summed"));
    }
}
