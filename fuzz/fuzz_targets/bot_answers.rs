//! A conversation with a shipped bot script: a started session answered with hostile values and
//! seqs (out of order, repeated, wrong types, too long), stored and read back between answers as
//! the handler does.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use voronka_domain::bots::conversation::{MAX_ANSWERS, MAX_LINE_BYTES, MAX_TRANSCRIPT_LINES};
use voronka_domain::bots::{self, BotSession};

#[derive(Debug, Arbitrary)]
struct Conversation {
    script: u8,
    locale: Option<String>,
    steps: Vec<Step>,
}

#[derive(Debug, Arbitrary)]
struct Step {
    seq: Seq,
    value: Answer,
}

#[derive(Debug, Arbitrary)]
enum Seq {
    Next,
    /// One already answered (a retry).
    Repeat(u8),
    Any(u32),
}

#[derive(Debug, Arbitrary)]
enum Answer {
    /// The n-th choice the question offers, to get deep into the script.
    Choice(u8),
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    Null,
    List(Vec<String>),
}

fuzz_target!(|conversation: Conversation| {
    let campaigns = voronka_fuzz::campaigns();
    let scripts: Vec<_> = campaigns.bots.values().collect();
    let script = scripts[usize::from(conversation.script) % scripts.len()];
    let now = voronka_fuzz::now();
    let started = bots::start(script, conversation.locale.as_deref(), now);
    let mut session = started.session;
    let mut question = Some(started.message);
    for step in conversation.steps.iter().take(usize::try_from(MAX_ANSWERS).unwrap() + 20) {
        let seq = match step.seq {
            Seq::Next => session.seq + 1,
            Seq::Repeat(n) => u32::from(n) % (session.seq + 1),
            Seq::Any(n) => n,
        };
        let value = match &step.value {
            Answer::Choice(n) => match question.as_ref().map(|q| &q.input.choices).filter(|c| !c.is_empty()) {
                Some(choices) => json!(choices[usize::from(*n) % choices.len()].value),
                None => json!(n.to_string()),
            },
            Answer::Text(text) => json!(text),
            Answer::Integer(n) => json!(n),
            Answer::Float(f) => json!(f),
            Answer::Bool(b) => json!(b),
            Answer::Null => Value::Null,
            Answer::List(items) => json!(items),
        };
        match bots::answer(script, &mut session, seq, &value, now) {
            Ok(result) => assert_eq!(result.seq, seq),
            Err(error) => assert!(!error.code().is_empty()),
        }
        // The handler stores the session as JSON between requests.
        let stored = serde_json::to_string(&session).expect("sessions serialise");
        let read: BotSession = serde_json::from_str(&stored).expect("a stored session reads back");
        assert_eq!(read, session, "the session changes in the store");
        assert!(session.seq <= MAX_ANSWERS && session.steps.len() <= MAX_ANSWERS as usize);
        assert!(session.transcript.len() <= MAX_TRANSCRIPT_LINES);
        for line in &session.transcript {
            assert!(line.text.len() <= MAX_LINE_BYTES, "a transcript line is unbounded");
            assert!(!line.text.chars().any(char::is_control), "a transcript line carries a control character");
        }
        question = session.current_message(script);
    }
    if session.is_finished() {
        // What the capture path does with a finished conversation: the form's own checks.
        if let Some(form) = script.form.as_ref().and_then(|form| campaigns.forms.get(form)) {
            let _ = lead_capture::submissions::check_fields(form, &session.form_values());
        }
    }
});
