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

#[cfg(test)]
/// The shipped bot scripts with what they refer to, loaded as `voronka validate` loads them.
pub(crate) fn shipped_files() -> Vec<crate::campaigns::SourceFile> {
    macro_rules! file {
        ($path:literal) => {
            crate::campaigns::SourceFile {
                path: $path.into(),
                text: include_str!(concat!("../../../campaigns/", $path)).into(),
            }
        };
    }
    vec![
        file!("settings.toml"),
        file!("forms/bot.toml"),
        file!("templates/b2b_nurture.toml"),
        file!("templates/course_beginner.toml"),
        file!("templates/course_advanced.toml"),
        file!("journeys/b2b_nurture.toml"),
        file!("journeys/course_beginner.toml"),
        file!("journeys/course_advanced.toml"),
        file!("bots/b2b_demo.toml"),
        file!("bots/course_picker.toml"),
    ]
}
