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
        self.transcript.push(TranscriptLine { speaker, text: cut(text, MAX_LINE_BYTES) });
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
