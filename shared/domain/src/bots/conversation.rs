//! One conversation with a bot script: the state a session keeps between requests, and the pure
//! step from one answer to the next message. No storage and no HTTP: the qualify-bot function
//! loads a `BotSession`, calls `answer`, stores the session and maps `AnswerError` to a status.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::script::{BotScript, Choice, InputType, Node, Outcome, next_node};
use crate::campaigns::form::{normalise_url, parse_number, range_message};
use crate::model::{EmailAddress, PhoneNumber};

/// Answers one session takes, re-asks included: a visitor (or a script) looping for ever stops
/// here, and the session item stays small.
pub const MAX_ANSWERS: u32 = 200;
/// The transcript keeps the latest lines; earlier ones are counted in `transcript_dropped`.
pub const MAX_TRANSCRIPT_LINES: usize = 100;
/// A transcript line is cut here (on a character boundary), so a long answer cannot fill the item.
pub const MAX_LINE_BYTES: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Bot,
    Visitor,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptLine {
    pub speaker: Speaker,
    pub text: String,
}

/// An accepted answer: as stored (a URL normalised, a phone in E.164, a choice's value) and the
/// form field it fills, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub node: String,
    pub field: Option<String>,
    pub value: String,
}

/// What one seq did, enough to answer a repeat of it the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub seq: u32,
    /// A digest of the value sent, so a repeat with another value is told apart from a retry.
    pub value_digest: String,
    pub accepted: bool,
    /// The node shown after this answer: the same question on a re-ask, the next one, or the end.
    pub node: String,
}

/// The state of one conversation between requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BotSession {
    pub script_id: String,
    pub locale: String,
    /// The question waiting for an answer, or the end node once finished.
    pub node: String,
    /// The last seq answered (0: none yet).
    pub seq: u32,
    pub score: i64,
    /// One per node answered (the latest answer when a loop asks again).
    pub answers: Vec<Answer>,
    pub transcript: Vec<TranscriptLine>,
    #[serde(default)]
    pub transcript_dropped: u32,
    pub steps: Vec<StepRecord>,
    pub outcome: Option<Outcome>,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// A question as the widget shows it, in the session's locale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub node: String,
    pub text: String,
    pub input: InputMessage,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputMessage {
    #[serde(rename = "type")]
    pub kind: InputType,
    pub max_length: usize,
    pub choices: Vec<ChoiceMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChoiceMessage {
    pub value: String,
    pub label: String,
}

/// The end of the conversation as the visitor sees it (never the tag or reason).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosingMessage {
    pub kind: String,
    pub text: String,
}

/// Why an answer was not taken: always about `value`, with the node's re-ask text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueProblem {
    pub field: String,
    pub message: String,
}

/// The response to one answer, in the shape the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerResult {
    pub seq: u32,
    pub accepted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ValueProblem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ClosingMessage>,
    /// A repeat of a seq already answered: the session did not change, nothing is to be done.
    #[serde(skip)]
    pub repeated: bool,
}

/// An answer that is not part of the conversation; the session is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("`seq` must be 1 or more")]
    InvalidSeq,
    #[error("answer {expected} comes next, not {got}")]
    OutOfOrder { expected: u32, got: u32 },
    #[error("answer {seq} was already given with another value")]
    AlreadyAnswered { seq: u32 },
    #[error("the conversation has ended")]
    Finished,
    /// Too long or of the wrong JSON type: the client's mistake, not the visitor's.
    #[error("`value` {message}")]
    InvalidValue { message: String },
    #[error("the conversation has taken {MAX_ANSWERS} answers, the most one session takes")]
    TooManyAnswers,
    /// The session's node is no longer in the script (a deployment changed it mid-conversation).
    #[error("the script no longer has the node `{node}`; start a new conversation")]
    ScriptChanged { node: String },
}

impl AnswerError {
    /// The request field the error is about, for the shared error shape.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            AnswerError::InvalidSeq | AnswerError::OutOfOrder { .. } | AnswerError::AlreadyAnswered { .. } => {
                Some("seq")
            }
            AnswerError::InvalidValue { .. } => Some("value"),
            _ => None,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AnswerError::InvalidSeq => "invalid_seq",
            AnswerError::OutOfOrder { .. } => "out_of_order",
            AnswerError::AlreadyAnswered { .. } => "already_answered",
            AnswerError::Finished => "session_finished",
            AnswerError::InvalidValue { .. } => "invalid_value",
            AnswerError::TooManyAnswers => "too_many_answers",
            AnswerError::ScriptChanged { .. } => "script_changed",
        }
    }
}

/// A new conversation and its first question.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    pub session: BotSession,
    pub message: Message,
}

/// Starts a conversation in `locale` (its language part, `ru-RU` -> `ru`) when the script speaks
/// it, else in the script's default locale.
pub fn start(script: &BotScript, locale: Option<&str>, now: Timestamp) -> Started {
    let wanted = locale.and_then(|l| l.split(['-', '_']).next()).map(|l| l.trim().to_ascii_lowercase());
    let locale = wanted.filter(|l| script.speaks(l)).unwrap_or_else(|| script.default_locale.clone());
    let first = script.node(&script.start).expect("a valid script's start node exists");
    let mut session = BotSession {
        script_id: script.id.clone(),
        locale,
        node: first.id.clone(),
        seq: 0,
        score: 0,
        answers: Vec::new(),
        transcript: Vec::new(),
        transcript_dropped: 0,
        steps: Vec::new(),
        outcome: None,
        started_at: now,
        updated_at: now,
        finished_at: None,
    };
    session.say(Speaker::Bot, first.text.get(&session.locale, &script.default_locale));
    let message = render_question(script, &session.locale, first);
    Started { session, message }
}

/// Takes answer `seq` (1-based, one more than the last) with `value`. A value that does not fit
/// the question is re-asked (the seq is used, the node stays); a repeat of an answered seq with
/// the same value returns what it returned then.
pub fn answer(
    script: &BotScript,
    session: &mut BotSession,
    seq: u32,
    value: &Value,
    now: Timestamp,
) -> Result<AnswerResult, AnswerError> {
    if seq == 0 {
        return Err(AnswerError::InvalidSeq);
    }
    let digest = value_digest(value);
    if seq <= session.seq {
        let step = session.steps.iter().find(|s| s.seq == seq).ok_or(AnswerError::AlreadyAnswered { seq })?;
        if step.value_digest != digest {
            return Err(AnswerError::AlreadyAnswered { seq });
        }
        let mut result = render_step(script, &session.locale, step)?;
        result.repeated = true;
        return Ok(result);
    }
    if session.outcome.is_some() {
        return Err(AnswerError::Finished);
    }
    if seq != session.seq + 1 {
        return Err(AnswerError::OutOfOrder { expected: session.seq + 1, got: seq });
    }
    if seq > MAX_ANSWERS {
        return Err(AnswerError::TooManyAnswers);
    }
    let current = session.node.clone();
    let changed = || AnswerError::ScriptChanged { node: current.clone() };
    let node = script.node(&session.node).ok_or_else(changed)?;
    let input = node.input.as_ref().ok_or_else(changed)?;
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) if input.kind == InputType::Number => number.to_string(),
        _ if input.kind == InputType::Number => {
            return Err(AnswerError::InvalidValue { message: "must be a string or a number".into() });
        }
        _ => return Err(AnswerError::InvalidValue { message: "must be a string".into() }),
    };
    if text.chars().count() > input.max_length() {
        return Err(AnswerError::InvalidValue {
            message: format!("must be at most {} characters", input.max_length()),
        });
    }

    let locale = session.locale.clone();
    let shown = match accept(node, &text) {
        Some(accepted) => {
            let said = match accepted.choice {
                Some(choice) => choice.label.get(&locale, &script.default_locale).to_string(),
                None => text.trim().to_string(),
            };
            session.say(Speaker::Visitor, &said);
            session.score += node.points + accepted.choice.map_or(0, |c| c.points);
            session.record_answer(node, accepted.value);
            let next_id = next_node(node, accepted.choice, session.score).ok_or_else(changed)?;
            let next = script.node(next_id).ok_or_else(|| AnswerError::ScriptChanged { node: next_id.into() })?;
            session.say(Speaker::Bot, next.text.get(&locale, &script.default_locale));
            session.node = next.id.clone();
            if let Some(outcome) = &next.outcome {
                session.outcome = Some(outcome.clone());
                session.finished_at = Some(now);
            }
            StepRecord { seq, value_digest: digest, accepted: true, node: next.id.clone() }
        }
        None => {
            session.say(Speaker::Visitor, text.trim());
            session.say(Speaker::Bot, &reask_text(script, &locale, node));
            StepRecord { seq, value_digest: digest, accepted: false, node: node.id.clone() }
        }
    };
    let result = render_step(script, &locale, &shown)?;
    session.steps.push(shown);
    session.seq = seq;
    session.updated_at = now;
    Ok(result)
}

impl BotSession {
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// The question waiting for an answer (for a visitor who comes back), or `None` once finished.
    pub fn current_message(&self, script: &BotScript) -> Option<Message> {
        let node = script.node(&self.node)?;
        node.input.as_ref()?;
        Some(render_question(script, &self.locale, node))
    }

    /// The answers that fill form fields, by field (the latest one per field).
    pub fn answers_by_field(&self) -> BTreeMap<String, String> {
        self.answers.iter().filter_map(|a| Some((a.field.clone()?, a.value.clone()))).collect()
    }

    /// The answers as a form submission's values, for the form's validation and capture path.
    pub fn form_values(&self) -> serde_json::Map<String, Value> {
        self.answers_by_field().into_iter().map(|(field, value)| (field, Value::String(value))).collect()
    }

    fn record_answer(&mut self, node: &Node, value: String) {
        let answer = Answer { node: node.id.clone(), field: node.field.clone(), value };
        match self.answers.iter_mut().find(|a| a.node == node.id) {
            Some(earlier) => *earlier = answer,
            None => self.answers.push(answer),
        }
    }

    fn say(&mut self, speaker: Speaker, text: &str) {
        // A line reaches the sales email's plain text: no newline or bidi control may fake a line
        // there ("Score: 100").
        let one_line: String =
            text.chars()
                .map(|c| {
                    if c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') {
                        ' '
                    } else {
                        c
                    }
                })
                .collect();
        self.transcript.push(TranscriptLine { speaker, text: cut(&one_line, MAX_LINE_BYTES) });
        if self.transcript.len() > MAX_TRANSCRIPT_LINES {
            let excess = self.transcript.len() - MAX_TRANSCRIPT_LINES;
            self.transcript.drain(..excess);
            self.transcript_dropped += excess as u32;
        }
    }
}

struct Accepted<'a> {
    value: String,
    choice: Option<&'a Choice>,
}

/// The answer as stored, if it fits the question; the rules are the forms' own.
fn accept<'a>(node: &'a Node, text: &str) -> Option<Accepted<'a>> {
    let input = node.input.as_ref()?;
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.chars().any(char::is_control) {
        return None;
    }
    let plain = |value: String| Some(Accepted { value, choice: None });
    match input.kind {
        InputType::Choice => {
            let choice = node.choices.iter().find(|c| c.value == trimmed)?;
            Some(Accepted { value: choice.value.clone(), choice: Some(choice) })
        }
        InputType::Text => plain(trimmed.to_string()),
        InputType::Email => plain(EmailAddress::parse(trimmed).ok()?.as_typed().to_string()),
        InputType::Phone => plain(PhoneNumber::parse(trimmed).ok()?.as_str().to_string()),
        InputType::Url => plain(normalise_url(trimmed)?),
        InputType::Number => {
            let number = parse_number(trimmed)?;
            if input.min.is_some_and(|min| number < min) || input.max.is_some_and(|max| number > max) {
                return None;
            }
            plain(number.to_string())
        }
    }
}

fn reask_text(script: &BotScript, locale: &str, node: &Node) -> String {
    match &node.reask {
        Some(reask) => reask.get(locale, &script.default_locale).to_string(),
        None => {
            let question = node.text.get(locale, &script.default_locale).to_string();
            match node.input.as_ref() {
                Some(input) if input.min.is_some() || input.max.is_some() => {
                    format!("{question} ({})", range_message(input.min, input.max))
                }
                _ => question,
            }
        }
    }
}

fn render_question(script: &BotScript, locale: &str, node: &Node) -> Message {
    let input = node.input.as_ref().expect("a question has an input");
    Message {
        node: node.id.clone(),
        text: node.text.get(locale, &script.default_locale).to_string(),
        input: InputMessage {
            kind: input.kind,
            max_length: input.max_length(),
            choices: node
                .choices
                .iter()
                .map(|c| ChoiceMessage {
                    value: c.value.clone(),
                    label: c.label.get(locale, &script.default_locale).to_string(),
                })
                .collect(),
        },
    }
}

/// The response of one step, from the script: the same step always renders the same bytes.
fn render_step(script: &BotScript, locale: &str, step: &StepRecord) -> Result<AnswerResult, AnswerError> {
    let node = script.node(&step.node).ok_or_else(|| AnswerError::ScriptChanged { node: step.node.clone() })?;
    let mut result = AnswerResult {
        seq: step.seq,
        accepted: step.accepted,
        error: None,
        message: None,
        outcome: None,
        repeated: false,
    };
    match &node.outcome {
        Some(outcome) => {
            result.outcome = Some(ClosingMessage {
                kind: outcome.kind().into(),
                text: node.text.get(locale, &script.default_locale).to_string(),
            })
        }
        None if node.input.is_some() => {
            if !step.accepted {
                result.error = Some(ValueProblem { field: "value".into(), message: reask_text(script, locale, node) });
            }
            result.message = Some(render_question(script, locale, node));
        }
        None => return Err(AnswerError::ScriptChanged { node: node.id.clone() }),
    }
    Ok(result)
}

fn value_digest(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    hex::encode(&digest[..8])
}

fn cut(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::bots::shipped_files;
    use crate::campaigns::Campaigns;

    fn script(id: &str) -> BotScript {
        let campaigns = Campaigns::load(&shipped_files()).unwrap_or_else(|e| panic!("{e}"));
        campaigns.bots[id].clone()
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_790_000_000 + second).unwrap()
    }

    /// Answers `values` in order from seq 1, every one accepted.
    fn converse(script: &BotScript, locale: &str, values: &[&str]) -> (BotSession, Vec<AnswerResult>) {
        let mut session = start(script, Some(locale), at(0)).session;
        let results = values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let seq = i as u32 + 1;
                let result = answer(script, &mut session, seq, &json!(value), at(seq.into())).unwrap();
                assert!(result.accepted, "answer {seq} {value:?}: {result:?}");
                result
            })
            .collect();
        (session, results)
    }

    #[test]
    fn starting_shows_the_first_question_in_the_visitors_locale_or_the_default() {
        let b2b = script("b2b_demo");
        let started = start(&b2b, Some("ru-RU"), at(0));
        assert_eq!(started.session.locale, "ru");
        assert_eq!(started.message.node, "website");
        assert!(started.message.text.contains("Какой у компании сайт"), "{}", started.message.text);
        assert_eq!(
            serde_json::to_value(&started.message).unwrap(),
            json!({"node": "website", "text": started.message.text, "input": {"type": "url", "max_length": 300, "choices": []}})
        );
        assert_eq!(start(&b2b, Some("de"), at(0)).session.locale, "en");
        assert_eq!(start(&b2b, None, at(0)).session.locale, "en");
        assert_eq!(start(&script("course_picker"), None, at(0)).session.locale, "ru");
        assert_eq!(
            started.session.transcript,
            vec![TranscriptLine { speaker: Speaker::Bot, text: started.message.text }]
        );
    }

    #[test]
    fn a_rejected_answer_cannot_fake_lines_in_the_transcript() {
        let b2b = script("b2b_demo");
        let mut session = start(&b2b, Some("en"), at(0)).session;
        let forged = json!("no site\nScore: 100\u{202E}");
        let result = answer(&b2b, &mut session, 1, &forged, at(1)).unwrap();
        assert!(!result.accepted);
        assert!(
            session.transcript.iter().all(|line| !line.text.chars().any(|c| c.is_control() || c == '\u{202E}')),
            "{:?}",
            session.transcript
        );
    }

    #[test]
    fn a_fitting_b2b_lead_is_qualified_with_its_answers_transcript_and_score() {
        let b2b = script("b2b_demo");
        let (session, results) =
            converse(&b2b, "en", &["acme.example", "51-200", "founder", "this_month", " Anna@Acme.example ", "yes"]);
        let size = results[0].message.as_ref().unwrap();
        assert_eq!(size.node, "size");
        assert_eq!(size.input.kind, InputType::Choice);
        assert_eq!(size.input.choices[3], ChoiceMessage { value: "201+".into(), label: "More than 200".into() });
        let last = results.last().unwrap();
        assert_eq!(
            serde_json::to_value(last).unwrap(),
            json!({"seq": 6, "accepted": true, "outcome": {"kind": "qualified", "text": b2b.node("qualified").unwrap().text.get("en", "en")}})
        );
        assert_eq!(session.outcome, Some(Outcome::Qualified));
        assert_eq!(session.score, 10 + 20 + 20 + 20);
        assert_eq!(session.finished_at, Some(at(6)));
        assert!(session.is_finished());
        assert_eq!(session.current_message(&b2b), None);
        assert_eq!(
            session.answers_by_field(),
            BTreeMap::from(
                [
                    ("website", "https://acme.example/"),
                    ("company_size", "51-200"),
                    ("role", "founder"),
                    ("timeline", "this_month"),
                    ("email", "Anna@Acme.example"),
                    ("consent", "yes"),
                ]
                .map(|(k, v)| (k.to_string(), v.to_string()))
            )
        );
        let campaigns = Campaigns::load(&shipped_files()).unwrap();
        let valid = campaigns.forms["bot"].validate(&session.form_values()).expect("the form takes what the bot took");
        assert!(valid.consent_granted);
        assert_eq!(valid.email.unwrap().identity(), "anna@acme.example");
        // Question, answer, question, ... and the closing line; choices as their labels.
        assert_eq!(session.transcript.len(), 1 + 6 * 2);
        assert_eq!(
            session.transcript[5],
            TranscriptLine { speaker: Speaker::Visitor, text: "Founder or executive".into() }
        );
        assert_eq!(session.transcript[12].speaker, Speaker::Bot);
    }

    #[test]
    fn a_student_is_disqualified_and_a_middling_lead_is_nurtured() {
        let b2b = script("b2b_demo");
        let (session, results) =
            converse(&b2b, "ru", &["https://uni.example", "201+", "student", "this_month", "ivan@uni.example", "no"]);
        assert_eq!(
            session.outcome,
            Some(Outcome::Disqualified {
                tag: "not_a_fit".into(),
                reason: "score below 20 after the demo request questions".into()
            })
        );
        let closing = results.last().unwrap().outcome.as_ref().unwrap();
        assert_eq!(closing.kind, "disqualified");
        assert!(closing.text.starts_with("Спасибо за ответы"), "{}", closing.text);
        assert!(
            !serde_json::to_string(&results.last().unwrap()).unwrap().contains("not_a_fit"),
            "the tag stays inside"
        );

        let (session, _) =
            converse(&b2b, "en", &["shop.example", "1-10", "marketing", "later", "o@shop.example", "yes"]);
        assert_eq!(session.score, 25);
        assert_eq!(session.outcome, Some(Outcome::Nurture { journey: "b2b_nurture".into() }));
    }

    #[test]
    fn the_course_picker_sends_a_beginner_to_the_beginners_journey_only() {
        let picker = script("course_picker");
        for consent in ["yes", "no"] {
            let (session, _) = converse(&picker, "ru", &["beginner", "pupil@example.com", consent]);
            assert_eq!(session.outcome, Some(Outcome::Nurture { journey: "course_beginner".into() }));
        }
        let (session, _) = converse(&picker, "en", &["advanced", "coder@example.com", "yes"]);
        assert_eq!(session.outcome, Some(Outcome::Nurture { journey: "course_advanced".into() }));
        // Every way a beginner can go: no end but the beginners' one is reachable after `beginner`.
        let level = picker.node("level").unwrap();
        let beginner = level.choices.iter().find(|c| c.value == "beginner").unwrap();
        let consent = picker.node("consent").unwrap();
        assert_eq!(next_node(consent, None, beginner.points), Some("beginner"));
    }

    #[test]
    fn a_bad_email_is_reasked_and_the_question_stays() {
        let b2b = script("b2b_demo");
        let (mut session, _) = converse(&b2b, "en", &["acme.example", "11-50", "sales", "this_quarter"]);
        let score = session.score;
        let result = answer(&b2b, &mut session, 5, &json!("anna@"), at(5)).unwrap();
        let reask = b2b.node("email").unwrap().reask.as_ref().unwrap().get("en", "en").to_string();
        assert_eq!(
            serde_json::to_value(&result).unwrap(),
            json!({"seq": 5, "accepted": false, "error": {"field": "value", "message": reask},
                   "message": {"node": "email", "text": "Thanks! Which email should we write to?",
                               "input": {"type": "email", "max_length": 254, "choices": []}}})
        );
        assert_eq!((session.node.as_str(), session.seq, session.score), ("email", 5, score));
        assert_eq!(session.answers_by_field().get("email"), None);
        let lines = &session.transcript[session.transcript.len() - 2..];
        assert_eq!(lines[0], TranscriptLine { speaker: Speaker::Visitor, text: "anna@".into() });
        assert_eq!(lines[1], TranscriptLine { speaker: Speaker::Bot, text: reask });

        let next = answer(&b2b, &mut session, 6, &json!("anna@acme.example"), at(6)).unwrap();
        assert!(next.accepted);
        assert_eq!(next.message.unwrap().node, "consent");
    }

    #[test]
    fn other_bad_values_are_reasked_by_the_forms_rules() {
        let b2b = script("b2b_demo");
        let mut session = start(&b2b, Some("en"), at(0)).session;
        for (seq, bad) in ["not a site", "   ", "ftp://acme.example"].iter().enumerate() {
            let result = answer(&b2b, &mut session, seq as u32 + 1, &json!(bad), at(1)).unwrap();
            assert!(!result.accepted, "{bad:?}");
        }
        answer(&b2b, &mut session, 4, &json!("acme.example"), at(2)).unwrap();
        let wrong_choice = answer(&b2b, &mut session, 5, &json!("12"), at(3)).unwrap();
        assert_eq!(wrong_choice.error.unwrap().message, "Please pick one of the options.");
        assert_eq!(session.node, "size");
    }

    #[test]
    fn a_repeated_seq_returns_the_same_result_and_changes_nothing() {
        let b2b = script("b2b_demo");
        let mut session = start(&b2b, Some("en"), at(0)).session;
        let first = answer(&b2b, &mut session, 1, &json!("acme.example"), at(1)).unwrap();
        let reasked = answer(&b2b, &mut session, 2, &json!("lots"), at(2)).unwrap();
        let before = session.clone();
        let again = answer(&b2b, &mut session, 1, &json!("acme.example"), at(9)).unwrap();
        assert!(again.repeated && !first.repeated);
        assert_eq!(serde_json::to_string(&again).unwrap(), serde_json::to_string(&first).unwrap());
        let again = answer(&b2b, &mut session, 2, &json!("lots"), at(9)).unwrap();
        assert_eq!(serde_json::to_string(&again).unwrap(), serde_json::to_string(&reasked).unwrap());
        assert_eq!(session, before);

        assert_eq!(
            answer(&b2b, &mut session, 1, &json!("other.example"), at(9)),
            Err(AnswerError::AlreadyAnswered { seq: 1 })
        );
        assert_eq!(AnswerError::AlreadyAnswered { seq: 1 }.field(), Some("seq"));

        // Through storage too: the session is what the repository keeps.
        let mut stored: BotSession = serde_json::from_str(&serde_json::to_string(&session).unwrap()).unwrap();
        assert_eq!(stored, session);
        let again = answer(&b2b, &mut stored, 1, &json!("acme.example"), at(9)).unwrap();
        assert_eq!(serde_json::to_string(&again).unwrap(), serde_json::to_string(&first).unwrap());
    }

    #[test]
    fn an_answer_ahead_of_its_turn_is_out_of_order() {
        let b2b = script("b2b_demo");
        let mut session = start(&b2b, Some("en"), at(0)).session;
        let before = session.clone();
        let error = answer(&b2b, &mut session, 2, &json!("acme.example"), at(1)).unwrap_err();
        assert_eq!(error, AnswerError::OutOfOrder { expected: 1, got: 2 });
        assert_eq!((error.code(), error.field()), ("out_of_order", Some("seq")));
        assert_eq!(answer(&b2b, &mut session, 0, &json!("x"), at(1)), Err(AnswerError::InvalidSeq));
        assert_eq!(session, before);
    }

    #[test]
    fn a_finished_session_takes_no_more_answers_but_repeats_its_last() {
        let picker = script("course_picker");
        let (mut session, results) = converse(&picker, "en", &["advanced", "coder@example.com", "yes"]);
        let error = answer(&picker, &mut session, 4, &json!("yes"), at(9)).unwrap_err();
        assert_eq!((error.code(), error.field()), ("session_finished", None));
        assert_eq!(answer(&picker, &mut session, 9, &json!("yes"), at(9)), Err(AnswerError::Finished));
        let again = answer(&picker, &mut session, 3, &json!("yes"), at(9)).unwrap();
        assert_eq!(again.outcome, results[2].outcome);
    }

    #[test]
    fn too_long_or_wrongly_typed_values_are_errors_naming_value() {
        let b2b = script("b2b_demo");
        let mut session = start(&b2b, Some("en"), at(0)).session;
        let before = session.clone();
        let long = format!("{}.example", "a".repeat(300));
        for value in [json!(long), json!(42), json!(["acme.example"]), json!({"url": "x"}), json!(null), json!(true)] {
            let error = answer(&b2b, &mut session, 1, &value, at(1)).unwrap_err();
            assert!(matches!(error, AnswerError::InvalidValue { .. }), "{value}: {error:?}");
            assert_eq!((error.field(), error.code()), (Some("value"), "invalid_value"));
        }
        assert!(
            answer(&b2b, &mut session, 1, &json!(long), at(1)).unwrap_err().to_string().contains("at most 300"),
            "the limit is the node's"
        );
        assert_eq!(session, before, "an error does not use the seq");
        assert!(answer(&b2b, &mut session, 1, &json!("acme.example"), at(1)).unwrap().accepted);
    }

    #[test]
    fn a_number_takes_a_json_number_and_its_range() {
        let text = r#"id = "n"
description = "d"
start = "hours"
default_locale = "en"
[[nodes]]
id = "hours"
text = { en = "Hours a week?" }
input = { type = "number", min = 1, max = 80 }
points = 3
next = "end"
[[nodes]]
id = "end"
text = { en = "Bye" }
outcome = { kind = "qualified" }
"#;
        let script = BotScript::parse("bots/n.toml", text).unwrap();
        let mut session = start(&script, None, at(0)).session;
        let too_many = answer(&script, &mut session, 1, &json!(100), at(1)).unwrap();
        assert_eq!(too_many.error.unwrap().message, "Hours a week? (must be between 1 and 80)");
        assert!(answer(&script, &mut session, 2, &json!("7,5"), at(2)).unwrap().accepted);
        assert_eq!(session.answers[0].value, "7.5");
        assert_eq!(session.score, 3);
    }

    #[test]
    fn the_transcript_and_the_answers_stay_bounded() {
        let text = r#"id = "loop"
description = "d"
start = "ask"
default_locale = "en"
[[nodes]]
id = "ask"
text = { en = "Again?" }
input = { type = "choice" }
choices = [{ value = "again", label = { en = "Again" }, next = "ask" }, { value = "stop", label = { en = "Stop" }, next = "end" }]
[[nodes]]
id = "end"
text = { en = "Bye" }
outcome = { kind = "qualified" }
"#;
        let script = BotScript::parse("bots/loop.toml", text).unwrap();
        let mut session = start(&script, None, at(0)).session;
        for seq in 1..=MAX_ANSWERS {
            answer(&script, &mut session, seq, &json!("again"), at(1)).unwrap();
        }
        assert_eq!(
            answer(&script, &mut session, MAX_ANSWERS + 1, &json!("stop"), at(1)),
            Err(AnswerError::TooManyAnswers)
        );
        assert_eq!(session.transcript.len(), MAX_TRANSCRIPT_LINES);
        assert_eq!(session.transcript_dropped as usize, 1 + 2 * MAX_ANSWERS as usize - MAX_TRANSCRIPT_LINES);
        assert_eq!(session.answers.len(), 1);
        assert!(serde_json::to_string(&session).unwrap().len() < 32_000);
        assert_eq!(cut("ёжик", 3), "ё");
    }
}
