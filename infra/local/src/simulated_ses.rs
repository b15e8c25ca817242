//! The demo's mail service and the people who receive its mail. `SimulatedSes` stands where SES
//! stands: it hands each message to the outbox (which writes the `.eml`) and remembers what was
//! accepted, so `Recipients` can react as people and mail servers do (follow a confirmation link,
//! open, click, bounce, complain) and SES's configuration set can publish that feedback, through
//! SNS, onto the events queue the trigger evaluator reads on AWS.
//!
//! Reactions are drawn from a hash of the seed and the message, never from a shared random
//! sequence, so the same seed gives the same reactions whatever order messages are sent in.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use voronka_domain::ports::{Clock, MailError, Mailer, OutgoingEmail, OutgoingMessage};

/// A message SES accepted, as the simulation needs it.
#[derive(Debug, Clone)]
pub struct DeliveredMail {
    /// The id the mail service answered with (SES's `MessageId`).
    pub message_id: String,
    pub to: String,
    pub tags: Vec<(String, String)>,
    pub sent_at: Timestamp,
    /// The path of the opt-in confirmation link, when the message carries one.
    pub confirm_path: Option<String>,
}

impl DeliveredMail {
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

pub struct SimulatedSes {
    inner: Arc<dyn Mailer>,
    clock: Arc<dyn Clock>,
    delivered: Mutex<Vec<DeliveredMail>>,
}

impl SimulatedSes {
    pub fn new(inner: Arc<dyn Mailer>, clock: Arc<dyn Clock>) -> Self {
        SimulatedSes { inner, clock, delivered: Mutex::new(Vec::new()) }
    }

    /// What was delivered since the last call.
    pub fn take_delivered(&self) -> Vec<DeliveredMail> {
        std::mem::take(&mut *self.delivered.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

/// The confirmation link of an opt-in message: the template puts it in the text part, which is
/// quoted-printable and may be folded.
fn confirmation_path(raw: &[u8]) -> Option<String> {
    let message = mail_parser::MessageParser::default().parse(raw)?;
    let text = message.body_text(0)?;
    let link = text.split_whitespace().find(|word| word.contains("/v1/confirm?token="))?;
    Some(link[link.find("/v1/confirm")?..].to_string())
}

#[async_trait]
impl Mailer for SimulatedSes {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        let message_id = self.inner.send(email).await?;
        let is_opt_in = email.tags.iter().any(|(key, value)| key == "template" && value.contains("confirm"));
        let mail = DeliveredMail {
            message_id: message_id.clone(),
            to: email.to.clone(),
            tags: email.tags.clone(),
            sent_at: self.clock.now(),
            confirm_path: if is_opt_in { confirmation_path(&email.raw) } else { None },
        };
        self.delivered.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(mail);
        Ok(message_id)
    }
}

/// How likely each reaction is. The defaults are those of a healthy list: about 1.5% of
/// addresses no longer exist, complaints 0.02% of messages.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Share of addresses that bounce for good (hashed per address: the same address always).
    pub invalid_addresses: f64,
    pub soft_bounce: f64,
    pub complaint: f64,
    pub open: f64,
    /// Of the opened messages.
    pub click: f64,
    /// Of the opt-in messages delivered.
    pub confirm: f64,
    /// A bad list imported: between the two times, this share of messages bounces for good.
    pub bounce_storm: Option<(Timestamp, Timestamp, f64)>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            invalid_addresses: 0.015,
            soft_bounce: 0.01,
            // A healthy list's complaints: well under the reputation guard's 0.05% (SES reviews
            // an account at 0.1%). At 0.05% itself the guard trips on chance alone at this volume.
            complaint: 0.0002,
            open: 0.35,
            click: 0.25,
            confirm: 0.7,
            bounce_storm: None,
        }
    }
}

/// What one message led to.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reactions {
    pub confirm: bool,
    /// SES feedback bodies for the events queue (SNS notifications).
    pub feedback: Vec<String>,
}

/// Counts of the feedback published, by SES event type.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FeedbackReport {
    pub delivered: u64,
    pub hard_bounces: u64,
    pub soft_bounces: u64,
    pub complaints: u64,
    pub opens: u64,
    pub clicks: u64,
    /// Hard bounces caused by the simulated bounce storm.
    pub storm_bounces: u64,
}

pub struct Recipients {
    seed: u64,
    pub behaviour: Behaviour,
}

/// A uniform number in [0, 1) from the seed and some text: splitmix64 over FNV-1a.
fn chance(seed: u64, parts: &[&str]) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for part in parts {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    let mut z = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl Recipients {
    pub fn new(seed: u64, behaviour: Behaviour) -> Self {
        Recipients { seed, behaviour }
    }

    /// How the recipient and their mail server treat one message, and the feedback SES publishes.
    pub fn react(&self, mail: &DeliveredMail, report: &mut FeedbackReport) -> Reactions {
        let draw = |what: &str| chance(self.seed, &[what, &mail.message_id]);
        let b = &self.behaviour;
        let in_storm = b.bounce_storm.is_some_and(|(from, to, rate)| {
            (from..to).contains(&mail.sent_at) && chance(self.seed, &["storm", &mail.to]) < rate
        });
        let hard_bounce = in_storm || chance(self.seed, &["invalid", &mail.to]) < b.invalid_addresses;
        let at = |minutes: i64| mail.sent_at + SignedDuration::from_mins(minutes);
        let mut reactions = Reactions::default();
        if hard_bounce {
            report.hard_bounces += 1;
            report.storm_bounces += u64::from(in_storm);
            reactions.feedback.push(self.notification(mail, "Bounce", at(0), bounce(mail, "Permanent", at(0))));
            return reactions;
        }
        if draw("soft") < b.soft_bounce {
            report.soft_bounces += 1;
            reactions.feedback.push(self.notification(mail, "Bounce", at(0), bounce(mail, "Transient", at(0))));
            return reactions;
        }
        report.delivered += 1;
        reactions.feedback.push(self.notification(
            mail,
            "Delivery",
            at(0),
            json!({"timestamp": stamp(at(0)), "recipients": [mail.to], "smtpResponse": "250 ok"}),
        ));
        if mail.confirm_path.is_some() {
            reactions.confirm = draw("confirm") < b.confirm;
        }
        if draw("open") < b.open {
            report.opens += 1;
            reactions.feedback.push(self.notification(
                mail,
                "Open",
                at(20),
                json!({"timestamp": stamp(at(20)), "userAgent": "Mozilla/5.0", "ipAddress": "192.0.2.33"}),
            ));
            if draw("click") < b.click {
                report.clicks += 1;
                reactions.feedback.push(self.notification(
                    mail,
                    "Click",
                    at(21),
                    json!({"timestamp": stamp(at(21)), "link": "https://shop.example/", "ipAddress": "192.0.2.33"}),
                ));
            }
        }
        if draw("complaint") < b.complaint {
            report.complaints += 1;
            reactions.feedback.push(self.notification(
                mail,
                "Complaint",
                at(30),
                json!({"timestamp": stamp(at(30)), "complainedRecipients": [{"emailAddress": mail.to}],
                       "complaintFeedbackType": "abuse"}),
            ));
        }
        reactions
    }

    /// An SES event as a configuration set publishes it, inside the SNS envelope it arrives in.
    fn notification(&self, mail: &DeliveredMail, event_type: &str, at: Timestamp, section: Value) -> String {
        let mut tags = serde_json::Map::new();
        for (key, value) in &mail.tags {
            tags.insert(key.clone(), json!([value]));
        }
        tags.insert("ses:configuration-set".into(), json!(["voronka"]));
        let mut event = json!({
            "eventType": event_type,
            "mail": {"timestamp": stamp(mail.sent_at), "messageId": mail.message_id, "source": "shop@shop.example",
                     "destination": [mail.to], "tags": tags},
        });
        event[event_type.to_lowercase()] = section;
        json!({
            "Type": "Notification",
            "MessageId": format!("sns-{}-{}", mail.message_id, event_type.to_lowercase()),
            "TopicArn": "arn:aws:sns:eu-central-1:123456789012:voronka-ses-feedback",
            "Message": event.to_string(),
            "Timestamp": stamp(at),
        })
        .to_string()
    }
}

fn bounce(mail: &DeliveredMail, bounce_type: &str, at: Timestamp) -> Value {
    json!({"bounceType": bounce_type, "bounceSubType": "General", "timestamp": stamp(at),
           "bouncedRecipients": [{"emailAddress": mail.to}], "feedbackId": format!("fb-{}", mail.message_id)})
}

fn stamp(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The feedback as queue messages, ids unique within any batch they are sent in.
pub fn feedback_messages(bodies: Vec<String>) -> Vec<OutgoingMessage> {
    bodies.into_iter().enumerate().map(|(n, body)| OutgoingMessage::new(format!("fb{n}"), body)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use voronka_domain::sending::feedback::{self, FeedbackKind};

    fn mail(n: usize) -> DeliveredMail {
        DeliveredMail {
            message_id: format!("m{n}"),
            to: format!("person{n}@example.com"),
            tags: vec![("contact_id".into(), format!("c{n}")), ("template".into(), "welcome".into())],
            sent_at: "2026-11-02T10:00:00Z".parse().unwrap(),
            confirm_path: None,
        }
    }

    #[test]
    fn the_feedback_is_what_the_evaluator_reads_as_ses_feedback() {
        let recipients = Recipients::new(7, Behaviour { open: 1.0, click: 1.0, ..Behaviour::default() });
        let delivered = (0..200)
            .map(mail)
            .find(|m| recipients.react(m, &mut FeedbackReport::default()).feedback.len() == 3)
            .expect("a delivered message");
        let reactions = recipients.react(&delivered, &mut FeedbackReport::default());
        let parsed: Vec<_> = reactions.feedback.iter().map(|body| feedback::parse(body).expect("parsed")).collect();
        assert_eq!(parsed[0].kind, FeedbackKind::Delivery);
        assert_eq!(parsed[1].kind, FeedbackKind::Open);
        assert!(matches!(parsed[2].kind, FeedbackKind::Click { .. }));
        let contact = delivered.tag("contact_id").map(str::to_string);
        assert!(parsed.iter().all(|p| p.contact_id == contact && p.message_id == delivered.message_id));
    }

    #[test]
    fn an_invalid_address_always_bounces_and_the_rates_follow_the_behaviour() {
        let recipients = Recipients::new(7, Behaviour::default());
        let mut report = FeedbackReport::default();
        for n in 0..20_000 {
            recipients.react(&mail(n), &mut report);
        }
        let rate = report.hard_bounces as f64 / 20_000.0;
        assert!((0.01..0.02).contains(&rate), "hard bounces {rate}");
        assert!((0.3..0.4).contains(&(report.opens as f64 / report.delivered as f64)));
        let bounced = (0..20_000).map(mail).find(|m| {
            let mut r = FeedbackReport::default();
            recipients.react(m, &mut r);
            r.hard_bounces == 1
        });
        let again = DeliveredMail { message_id: "another".into(), ..bounced.unwrap() };
        let mut r = FeedbackReport::default();
        recipients.react(&again, &mut r);
        assert_eq!(r.hard_bounces, 1, "the same address bounces every message");
    }

    #[test]
    fn a_bounce_storm_bounces_its_share_within_its_window_only() {
        let from: Timestamp = "2026-11-02T00:00:00Z".parse().unwrap();
        let storm =
            Behaviour { bounce_storm: Some((from, from + SignedDuration::from_hours(24), 0.3)), ..Default::default() };
        let recipients = Recipients::new(7, storm);
        let mut inside = FeedbackReport::default();
        for n in 0..5_000 {
            recipients.react(&mail(n), &mut inside);
        }
        assert!((0.25..0.36).contains(&(inside.storm_bounces as f64 / 5_000.0)), "{inside:?}");
        let mut outside = FeedbackReport::default();
        for n in 0..5_000 {
            let later = DeliveredMail { sent_at: from + SignedDuration::from_hours(30), ..mail(n) };
            recipients.react(&later, &mut outside);
        }
        assert_eq!(outside.storm_bounces, 0);
    }
}
