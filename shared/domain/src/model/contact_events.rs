//! How an event changes the person it is about: activity, orders and stage, email engagement,
//! suppressions. The trigger-evaluator applies it inside the event's one transaction.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::consent::{Channel, ConsentReceipt};
use super::contact::{Contact, IssuedCode, LifecycleStage, MAX_RECENT_ORDERS, SuppressionReason};
use super::event::{Event, EventType};
use crate::scoring::ScoringRules;

/// A threshold of `scoring.toml` the score reached, moving the stage forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreMilestone {
    /// `became_mql` or `became_sql`.
    pub event_type: EventType,
    pub stage: LifecycleStage,
    pub threshold: i64,
    /// The score when it was reached, rounded to hundredths.
    pub score_hundredths: i64,
}

/// Email interactions counted on `engagement_score`, a plain counter kept as it was: exports and
/// stored contacts carry it, and the lead score (`score`, with decay and reasons) takes opens and
/// clicks from `scoring.toml` instead, where a marketer can weigh them.
const OPEN_POINTS: i64 = 1;
const CLICK_POINTS: i64 = 3;

impl Contact {
    /// Applies what `event` says about this person. `reporting_zone` decides which calendar day
    /// the activity falls on (active days are counted in it).
    pub fn apply_event(&mut self, event: &Event, reporting_zone: &TimeZone) {
        let at = event.occurred_at;
        if event.event_type.is_activity() {
            if at > self.last_activity_at {
                self.last_activity_at = at;
            }
            let day = at.to_zoned(reporting_zone.clone()).date().to_string();
            if self.last_active_day.as_deref() != Some(day.as_str()) {
                self.active_days += 1;
                self.last_active_day = Some(day);
            }
        }
        if let Some(anonymous_id) = &event.contact.anonymous_id {
            self.add_anonymous_id(anonymous_id);
        }
        if let Some(purchase) = event.purchase() {
            let orders = &mut self.orders;
            orders.orders += 1;
            orders.revenue_minor += (purchase.revenue_or_zero() * 100.0).round() as i64;
            if let Some(currency) = purchase.currency {
                orders.currency = Some(currency);
            }
            if orders.first_order_at.is_none_or(|first| at < first) {
                orders.first_order_at = Some(at);
            }
            if orders.last_order_at.is_none_or(|last| at > last) {
                orders.last_order_at = Some(at);
            }
            orders.recent_orders.push(at);
            orders.recent_orders.sort();
            if orders.recent_orders.len() > MAX_RECENT_ORDERS {
                orders.recent_orders.remove(0);
            }
            let target = if orders.orders > 1 { LifecycleStage::RepeatCustomer } else { LifecycleStage::Customer };
            self.stage = self.stage.advanced_to(target);
            return;
        }
        match event.event_type {
            EventType::EmailOpened => self.engagement_score += OPEN_POINTS,
            EventType::EmailClicked => self.engagement_score += CLICK_POINTS,
            EventType::EmailBounced if event.is_permanent_bounce() => {
                self.suppressions.entry(SuppressionReason::HardBounce).or_insert(at);
            }
            EventType::EmailComplained => {
                if let std::collections::btree_map::Entry::Vacant(e) =
                    self.suppressions.entry(SuppressionReason::Complaint)
                {
                    e.insert(at);
                    self.record_consent(ConsentReceipt {
                        id: format!("complaint_{}", event.event_id),
                        channel: Channel::Email,
                        granted: false,
                        at,
                        form_id: None,
                        ip: None,
                        user_agent: None,
                        text_version: "spam-complaint".into(),
                        double_opt_in: false,
                        submission_id: None,
                    });
                }
            }
            _ => {}
        }
    }

    /// Scores what `event` says under `rules`: fit recomputed from the attributes as they are now
    /// (each rule once, replaced when it changes), the event's engagement once per event id, then
    /// the thresholds at the event's time. Reaching one moves the stage forward only (never back,
    /// never over a customer or a lost contact) and returns the milestone the evaluator raises as
    /// `became_mql` / `became_sql`; both when one event passes both thresholds.
    pub fn score_event(&mut self, event: &Event, rules: &ScoringRules) -> Vec<ScoreMilestone> {
        let at = event.occurred_at;
        self.score.set_fit(&rules.fit_for(&self.attributes), at);
        // Voronka's own timers and milestones are not something the person did.
        if !event.event_type.is_due_work() {
            let earned = rules.engagement_for(event.event_type.as_str(), &event.properties);
            if !earned.is_empty() {
                self.score.add_engagement(&event.dedupe_key(), at, &earned, rules.half_life_days);
            }
        }
        let score = self.score.score_at(at, rules.half_life_days);
        let mut milestones = Vec::new();
        let steps = [
            (LifecycleStage::Mql, rules.thresholds.mql, EventType::BecameMql),
            (LifecycleStage::Sql, rules.thresholds.sql, EventType::BecameSql),
        ];
        for (stage, threshold, event_type) in steps {
            if self.stage < stage && score >= threshold as f64 {
                self.stage = self.stage.advanced_to(stage);
                let score_hundredths = (score * 100.0).round() as i64;
                milestones.push(ScoreMilestone { event_type, stage, threshold, score_hundredths });
            }
        }
        milestones
    }

    /// Records the discount codes an event gave this person and the ones their purchase used.
    pub fn hold_discount_codes(&mut self, issued: Vec<IssuedCode>, redeemed: &[String], at: Timestamp) {
        for code in issued {
            if !self.discount_codes.iter().any(|held| held.code == code.code) {
                self.discount_codes.push(code);
            }
        }
        for code in redeemed {
            if let Some(held) = self.discount_codes.iter_mut().find(|held| &held.code == code) {
                held.redeemed_at = Some(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn event(event_type: &str, when: &str, properties: Value) -> Event {
        let when = at(when);
        Event::internal(
            format!("e-{event_type}-{when}"),
            EventType::from(event_type),
            "c1",
            when,
            when,
            properties.as_object().unwrap().clone(),
        )
    }

    fn contact() -> Contact {
        Contact::new("c1".into(), at("2026-11-01T00:00:00Z"), "ru".into(), "Europe/Moscow".into())
    }

    #[test]
    fn purchases_count_orders_and_revenue_and_make_a_repeat_customer() {
        let mut person = contact();
        let zone = TimeZone::UTC;
        person.apply_event(
            &event("purchase", "2026-11-02T10:00:00Z", json!({"revenue": 10.5, "currency": "RUB"})),
            &zone,
        );
        assert_eq!(person.stage, LifecycleStage::Customer);
        person.apply_event(&event("purchase", "2026-11-01T10:00:00Z", json!({"revenue": 2})), &zone);
        assert_eq!(person.orders.orders, 2);
        assert_eq!(person.orders.revenue_minor, 1250);
        assert_eq!(person.orders.currency.as_deref(), Some("RUB"));
        assert_eq!(person.orders.first_order_at, Some(at("2026-11-01T10:00:00Z")));
        assert_eq!(person.orders.last_order_at, Some(at("2026-11-02T10:00:00Z")));
        assert_eq!(person.stage, LifecycleStage::RepeatCustomer);
    }

    #[test]
    fn active_days_count_calendar_days_of_the_reporting_zone_and_mail_is_not_activity() {
        let mut person = contact();
        let moscow = TimeZone::get("Europe/Moscow").unwrap();
        // 22:00 and 23:30 UTC are two different days in Moscow (01:00 and 02:30 the next day is
        // one day; 20:00 UTC is the day before).
        person.apply_event(&event("page_view", "2026-11-03T20:00:00Z", json!({})), &moscow);
        person.apply_event(&event("page_view", "2026-11-03T22:00:00Z", json!({})), &moscow);
        person.apply_event(&event("page_view", "2026-11-03T23:30:00Z", json!({})), &moscow);
        assert_eq!(person.active_days, 2);
        let before = person.last_activity_at;
        person.apply_event(&event("email_opened", "2026-11-05T10:00:00Z", json!({})), &moscow);
        assert_eq!(person.last_activity_at, before, "an open is not the person's activity on the site");
        assert_eq!(person.engagement_score, 1);
    }

    #[test]
    fn a_permanent_bounce_and_a_complaint_suppress_once() {
        let mut person = contact();
        let zone = TimeZone::UTC;
        person.apply_event(&event("email_bounced", "2026-11-02T10:00:00Z", json!({"permanent": false})), &zone);
        assert!(person.suppressions.is_empty(), "a soft bounce suppresses nothing");
        person.apply_event(&event("email_bounced", "2026-11-02T11:00:00Z", json!({"permanent": true})), &zone);
        assert!(person.suppressions.contains_key(&SuppressionReason::HardBounce));
        person.apply_event(&event("email_complained", "2026-11-02T12:00:00Z", json!({})), &zone);
        person.apply_event(&event("email_complained", "2026-11-02T13:00:00Z", json!({})), &zone);
        assert_eq!(person.suppressions[&SuppressionReason::Complaint], at("2026-11-02T12:00:00Z"));
        assert_eq!(person.consent_receipts.iter().filter(|r| r.text_version == "spam-complaint").count(), 1);
    }

    const RULES: &str = r#"
half_life_days = 14
[thresholds]
mql = 50
sql = 80
[[fit]]
attribute = "company_size"
equals = ["51-200", "201+"]
points = 30
reason = "company of 51 or more"
[[engagement]]
event = "page_view"
where = { page_type = "pricing" }
points = 10
reason = "viewed pricing"
"#;

    #[test]
    fn crossing_the_mql_threshold_moves_the_stage_once() {
        let rules = ScoringRules::parse("scoring.toml", &RULES.replace("points = 30", "points = 40")).unwrap();
        let mut person = contact();
        person.stage = LifecycleStage::Lead;
        person.attributes.insert("company_size".into(), json!("201+"));
        let pricing = json!({"page_type": "pricing"});
        assert!(person.score_event(&event("form_submitted", "2026-11-02T10:00:00Z", json!({})), &rules).is_empty());
        assert_eq!(person.stage, LifecycleStage::Lead, "40 is below 50");
        let view = event("page_view", "2026-11-02T11:00:00Z", pricing.clone());
        let crossed = person.score_event(&view, &rules);
        assert_eq!(crossed.len(), 1);
        assert_eq!((crossed[0].event_type.clone(), crossed[0].stage), (EventType::BecameMql, LifecycleStage::Mql));
        assert_eq!(crossed[0].score_hundredths, 5000);
        assert_eq!(person.stage, LifecycleStage::Mql);
        assert!(person.score_event(&view, &rules).is_empty(), "the same event again: counted once, no second crossing");
        assert_eq!(person.score.score_at(view.occurred_at, 14.0), 50.0);
        let later = event("page_view", "2026-11-02T12:00:00Z", pricing);
        assert!(person.score_event(&later, &rules).is_empty(), "already an MQL: no second became_mql");
        assert_eq!(person.score.entries.iter().filter(|e| e.kind == crate::scoring::ScoreKind::Fit).count(), 1);
    }

    #[test]
    fn a_customer_is_not_moved_back_and_a_jump_passes_both_thresholds() {
        let rules = ScoringRules::parse("scoring.toml", &RULES.replace("points = 30", "points = 90")).unwrap();
        let mut customer = contact();
        customer.stage = LifecycleStage::Customer;
        customer.attributes.insert("company_size".into(), json!("51-200"));
        assert!(customer.score_event(&event("page_view", "2026-11-02T10:00:00Z", json!({})), &rules).is_empty());
        assert_eq!(customer.stage, LifecycleStage::Customer);
        let mut lead = contact();
        lead.attributes.insert("company_size".into(), json!("51-200"));
        let crossed = lead.score_event(&event("form_submitted", "2026-11-02T10:00:00Z", json!({})), &rules);
        let types: Vec<EventType> = crossed.iter().map(|m| m.event_type.clone()).collect();
        assert_eq!(types, vec![EventType::BecameMql, EventType::BecameSql]);
        assert_eq!(lead.stage, LifecycleStage::Sql);
    }
}
