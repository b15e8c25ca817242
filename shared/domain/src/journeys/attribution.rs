//! Attribution models: how one conversion's credit is shared among the touches before it.
//! Credits of one conversion always sum to 1.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::model::Touch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    FirstTouch,
    LastTouch,
    Linear,
    /// 40% first, 40% last, 20% shared by those between.
    PositionBased,
    /// Halves every `half_life` before the conversion.
    TimeDecay,
}

impl Model {
    pub const ALL: [Model; 5] =
        [Model::FirstTouch, Model::LastTouch, Model::Linear, Model::PositionBased, Model::TimeDecay];

    pub fn as_str(self) -> &'static str {
        match self {
            Model::FirstTouch => "first_touch",
            Model::LastTouch => "last_touch",
            Model::Linear => "linear",
            Model::PositionBased => "position_based",
            Model::TimeDecay => "time_decay",
        }
    }
}

/// Credit per touch (same order as `touches`) for a conversion at `at`; time decay halves a
/// touch's weight every `half_life` before `at`. The caller passes the touches that count
/// (`touches_in_window`); none: all credit to `direct` (an empty vec returned).
pub fn credits(model: Model, touches: &[&Touch], at: Timestamp, half_life: SignedDuration) -> Vec<f64> {
    let n = touches.len();
    if n == 0 {
        return Vec::new();
    }
    match model {
        Model::FirstTouch => (0..n).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect(),
        Model::LastTouch => (0..n).map(|i| if i == n - 1 { 1.0 } else { 0.0 }).collect(),
        Model::Linear => vec![1.0 / n as f64; n],
        Model::PositionBased => match n {
            1 => vec![1.0],
            2 => vec![0.5, 0.5],
            _ => (0..n).map(|i| if i == 0 || i == n - 1 { 0.4 } else { 0.2 / (n - 2) as f64 }).collect(),
        },
        Model::TimeDecay => {
            let half_life = half_life.as_secs_f64().max(1.0);
            let weights: Vec<f64> = touches
                .iter()
                .map(|t| 0.5f64.powf(at.duration_since(t.at).as_secs_f64().max(0.0) / half_life))
                .collect();
            let total: f64 = weights.iter().sum();
            weights.iter().map(|w| w / total).collect()
        }
    }
}

/// The touches that count for a conversion: within `lookback` before it, oldest first.
pub fn touches_in_window(touches: &[Touch], at: Timestamp, lookback: SignedDuration) -> Vec<&Touch> {
    touches.iter().filter(|t| t.at <= at && at.duration_since(t.at) <= lookback).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(hours_before: i64, at: Timestamp) -> Touch {
        Touch {
            at: at - SignedDuration::from_hours(hours_before),
            channel: format!("c{hours_before}"),
            ..Default::default()
        }
    }

    #[test]
    fn credits_match_hand_computed_values_and_sum_to_one() {
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let touches = [touch(14 * 24, at), touch(7 * 24, at), touch(0, at)];
        let refs: Vec<&Touch> = touches.iter().collect();
        let week = SignedDuration::from_hours(24 * 7);
        assert_eq!(credits(Model::FirstTouch, &refs, at, week), [1.0, 0.0, 0.0]);
        assert_eq!(credits(Model::LastTouch, &refs, at, week), [0.0, 0.0, 1.0]);
        assert_eq!(credits(Model::PositionBased, &refs, at, week), [0.4, 0.2, 0.4]);
        // Weights 0.25, 0.5, 1 (two half-lives, one, none) over 1.75.
        let decay = credits(Model::TimeDecay, &refs, at, week);
        for (got, want) in decay.iter().zip([1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0]) {
            assert!((got - want).abs() < 1e-9, "{decay:?}");
        }
        for model in Model::ALL {
            let sum: f64 = credits(model, &refs, at, week).iter().sum();
            assert!((sum - 1.0).abs() < 1e-9, "{model:?} sums to {sum}");
        }
        let window = touches_in_window(&touches, at, SignedDuration::from_hours(24 * 10));
        assert_eq!(window.len(), 2, "the 14-day-old touch is outside a 10-day lookback");
    }
}
