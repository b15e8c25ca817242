//! The qualification bot: scripts from `bots/*.toml` (`script`) and one conversation's pure
//! steps (`conversation`). `script` sits beside the journey definitions (it uses only `model` and
//! `file_errors`, and `campaigns` loads it); `conversation` uses the forms' answer rules from
//! `campaigns`.

pub mod conversation;
pub mod script;

pub use conversation::{
    Answer, AnswerError, AnswerResult, BotSession, ChoiceMessage, ClosingMessage, InputMessage, Message, Speaker,
    Started, StepRecord, TranscriptLine, ValueProblem, answer, start,
};
pub use script::{BotScript, Branch, Choice, Input, InputType, LocalText, Node, Outcome};
