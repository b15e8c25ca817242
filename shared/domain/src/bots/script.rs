//! Bot scripts (`bots/<id>.toml`): questions with typed inputs, points, branches and end nodes
//! with an outcome. The format is documented in `shared/campaigns/bots/README.md`.
//!
//! `BotScript::parse` checks what one file can tell: the graph (targets exist, every node is
//! reachable and can reach an end), texts in the default locale, sizes. What needs other files
//! (the form and its fields, the nurture journey) is checked by `Campaigns::load`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::file_errors::{CampaignError, line_at, toml_error};

/// More nodes than this is not a conversation anyone finishes.
pub const MAX_NODES: usize = 100;
/// The longest text in any locale, and the longest answer a node may allow.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Buttons beyond this do not fit a chat.
pub const MAX_CHOICES: usize = 20;
/// A choice value is a short code sent back by the widget.
pub const MAX_CHOICE_VALUE_CHARS: usize = 100;
/// What all the answers of one conversation may hold, so a session fits one stored item.
pub const MAX_ANSWER_CHARS: usize = 20_000;

/// A text in several locales: locale -> text. The script's `default_locale` is always present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LocalText(pub BTreeMap<String, String>);

impl LocalText {
    /// The text in `locale`, else in `default_locale` (present in every text of a valid script).
    pub fn get<'a>(&'a self, locale: &str, default_locale: &str) -> &'a str {
        self.0.get(locale).or_else(|| self.0.get(default_locale)).map(String::as_str).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    Choice,
    Text,
    Email,
    Phone,
    Url,
    Number,
}

impl InputType {
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::Choice => "choice",
            InputType::Text => "text",
            InputType::Email => "email",
            InputType::Phone => "phone",
            InputType::Url => "url",
            InputType::Number => "number",
        }
    }
}

/// What a question accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(rename = "type")]
    pub kind: InputType,
    /// In characters; unset means the form field's limit when the node fills one, else 2000.
    pub max_length: Option<usize>,
    /// Bounds of a number answer.
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Input {
    /// The longest answer accepted, in characters.
    pub fn max_length(&self) -> usize {
        self.max_length.unwrap_or(MAX_TEXT_CHARS)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub value: String,
    pub label: LocalText,
    pub points: i64,
    /// Where this answer leads; unset: the node's branches, then its `next`.
    pub next: Option<String>,
}

/// Go to `next` when the score so far is at least `min_score` (the highest one reached wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branch {
    pub min_score: i64,
    pub next: String,
}

/// How a conversation ends, and what Voronka does about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    /// Stage SQL, and a transactional email to sales with the transcript and score.
    Qualified,
    /// Enrol this journey (through the `bot_completed` event it triggers on).
    Nurture { journey: String },
    /// Tag the contact and record why.
    Disqualified { tag: String, reason: String },
}

impl Outcome {
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Qualified => "qualified",
            Outcome::Nurture { .. } => "nurture",
            Outcome::Disqualified { .. } => "disqualified",
        }
    }
}

/// A question (with `input`) or an end (with `outcome`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub text: LocalText,
    pub input: Option<Input>,
    /// Said instead of `text` after an answer that does not fit; unset: the question again.
    pub reask: Option<LocalText>,
    /// The form field this answer fills.
    pub field: Option<String>,
    /// Points for any valid answer (a choice node gives them per choice instead).
    pub points: i64,
    pub choices: Vec<Choice>,
    pub branches: Vec<Branch>,
    pub next: Option<String>,
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BotScript {
    pub id: String,
    pub description: String,
    /// The form whose fields, consent and dedupe the conversation's contact goes through.
    pub form: Option<String>,
    pub start: String,
    pub default_locale: String,
    pub nodes: Vec<Node>,
}

impl BotScript {
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Whether the script speaks `locale`: its first question has a text in it.
    pub fn speaks(&self, locale: &str) -> bool {
        self.node(&self.start).is_some_and(|n| n.text.0.contains_key(locale))
    }

    pub fn parse(file: &str, text: &str) -> Result<BotScript, Vec<CampaignError>> {
        let raw: RawScript = toml::from_str(text).map_err(|e| vec![toml_error(file, text, &e)])?;
        let mut errors = Vec::new();
        check(file, text, &raw, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(raw.into_script())
    }
}

/// Where the conversation goes after an accepted answer: the choice's own `next`, else the branch
/// with the highest `min_score` the score has reached, else the node's `next`.
pub fn next_node<'a>(node: &'a Node, choice: Option<&'a Choice>, score: i64) -> Option<&'a str> {
    if let Some(next) = choice.and_then(|c| c.next.as_deref()) {
        return Some(next);
    }
    node.branches
        .iter()
        .filter(|b| score >= b.min_score)
        .max_by_key(|b| b.min_score)
        .map(|b| b.next.as_str())
        .or(node.next.as_deref())
}

/// The line of `key` inside the node `node_id` of a script's text, for problems found after
/// parsing (by `Campaigns::load`); falls back to the node's `id` line.
pub fn line_of_node_key(text: &str, node_id: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let id_line = lines.iter().position(|line| {
        let line = line.trim_start();
        line.strip_prefix("id").is_some_and(|rest| {
            rest.trim_start().strip_prefix('=').is_some_and(|value| value.trim().trim_matches(['"', '\'']) == node_id)
        })
    })?;
    let start = lines[..id_line].iter().rposition(|l| l.trim_start().starts_with("[[nodes]]")).unwrap_or(id_line);
    let end = lines
        .iter()
        .skip(id_line + 1)
        .position(|l| l.trim_start().starts_with("[["))
        .map_or(lines.len(), |i| i + id_line + 1);
    let found = (start..end).find(|&i| {
        let line = lines[i].trim_start();
        let assigns = |rest: &str| rest.trim_start().starts_with('=');
        line.strip_prefix(key).is_some_and(assigns)
            || [format!("{{ {key}"), format!(", {key}"), format!("{{{key}")]
                .iter()
                .any(|p| line.match_indices(p.as_str()).any(|(at, _)| assigns(&line[at + p.len()..])))
    });
    Some(found.unwrap_or(id_line) + 1)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChoice {
    value: Spanned<String>,
    label: Spanned<BTreeMap<String, String>>,
    #[serde(default)]
    points: i64,
    next: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBranch {
    min_score: i64,
    next: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: Spanned<String>,
    text: Spanned<BTreeMap<String, String>>,
    input: Option<Spanned<Input>>,
    reask: Option<Spanned<BTreeMap<String, String>>>,
    field: Option<Spanned<String>>,
    points: Option<Spanned<i64>>,
    choices: Option<Spanned<Vec<RawChoice>>>,
    #[serde(default)]
    branches: Vec<RawBranch>,
    next: Option<Spanned<String>>,
    outcome: Option<Spanned<Outcome>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    id: String,
    description: String,
    form: Option<String>,
    start: Spanned<String>,
    default_locale: Spanned<String>,
    nodes: Spanned<Vec<RawNode>>,
}

impl RawScript {
    fn into_script(self) -> BotScript {
        let text = |t: Spanned<BTreeMap<String, String>>| LocalText(t.into_inner());
        BotScript {
            id: self.id,
            description: self.description,
            form: self.form,
            start: self.start.into_inner(),
            default_locale: self.default_locale.into_inner(),
            nodes: self
                .nodes
                .into_inner()
                .into_iter()
                .map(|n| Node {
                    id: n.id.into_inner(),
                    text: text(n.text),
                    input: n.input.map(Spanned::into_inner),
                    reask: n.reask.map(text),
                    field: n.field.map(Spanned::into_inner),
                    points: n.points.map_or(0, Spanned::into_inner),
                    choices: n
                        .choices
                        .map(Spanned::into_inner)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|c| Choice {
                            value: c.value.into_inner(),
                            label: text(c.label),
                            points: c.points,
                            next: c.next.map(Spanned::into_inner),
                        })
                        .collect(),
                    branches: n
                        .branches
                        .into_iter()
                        .map(|b| Branch { min_score: b.min_score, next: b.next.into_inner() })
                        .collect(),
                    next: n.next.map(Spanned::into_inner),
                    outcome: n.outcome.map(Spanned::into_inner),
                })
                .collect(),
        }
    }
}

fn check(file: &str, text: &str, raw: &RawScript, errors: &mut Vec<CampaignError>) {
    let mut error = |field: String, at: usize, message: String| {
        errors.push(CampaignError { file: file.into(), line: Some(line_at(text, at)), field, message })
    };
    let nodes = raw.nodes.get_ref();
    let default_locale = raw.default_locale.get_ref();
    if nodes.is_empty() {
        error("nodes".into(), raw.nodes.span().start, "a script needs at least one node".into());
        return;
    }
    if nodes.len() > MAX_NODES {
        error("nodes".into(), raw.nodes.span().start, format!("has {} nodes; at most {MAX_NODES}", nodes.len()));
        return;
    }
    let mut ids = BTreeSet::new();
    for node in nodes {
        let id = node.id.get_ref();
        if !is_name(id) {
            error(
                format!("nodes.{id}"),
                node.id.span().start,
                "node ids are lower-case letters, digits and _, starting with a letter".into(),
            );
        }
        if !ids.insert(id.as_str()) {
            error(format!("nodes.{id}"), node.id.span().start, "appears twice".into());
        }
    }
    if !ids.contains(raw.start.get_ref().as_str()) {
        error(
            "start".into(),
            raw.start.span().start,
            format!("`{}` is not a node of this script", raw.start.get_ref()),
        );
    }

    for node in nodes {
        let path = format!("nodes.{}", node.id.get_ref());
        let mut local_text = |name: &str, text: &Spanned<BTreeMap<String, String>>| {
            let at = text.span().start;
            if !text.get_ref().contains_key(default_locale) {
                error(format!("{path}.{name}"), at, format!("has no text in the default locale `{default_locale}`"));
            }
            for (locale, value) in text.get_ref() {
                if value.trim().is_empty() {
                    error(format!("{path}.{name}.{locale}"), at, "is empty".into());
                } else if value.chars().count() > MAX_TEXT_CHARS {
                    error(format!("{path}.{name}.{locale}"), at, format!("is longer than {MAX_TEXT_CHARS} characters"));
                }
            }
        };
        local_text("text", &node.text);
        if let Some(reask) = &node.reask {
            local_text("reask", reask);
        }
        let choices = node.choices.as_ref().map(|c| c.get_ref().as_slice()).unwrap_or_default();
        for choice in choices {
            local_text(&format!("choices.{}.label", choice.value.get_ref()), &choice.label);
        }

        let at = node.id.span().start;
        match (&node.input, &node.outcome) {
            (Some(_), Some(outcome)) => {
                error(format!("{path}.outcome"), outcome.span().start, "an end node has no input; remove one".into())
            }
            (None, None) => error(
                path.clone(),
                at,
                "a node needs an `input` (a question) or an `outcome` (an end of the conversation)".into(),
            ),
            (None, Some(outcome)) => {
                let extra = [
                    ("next", node.next.as_ref().map(|n| n.span().start)),
                    ("choices", node.choices.as_ref().map(|c| c.span().start)),
                    ("reask", node.reask.as_ref().map(|r| r.span().start)),
                    ("field", node.field.as_ref().map(|f| f.span().start)),
                    ("points", node.points.as_ref().map(|p| p.span().start)),
                    ("branches", (!node.branches.is_empty()).then(|| node.branches[0].next.span().start)),
                ];
                for (name, span) in extra {
                    if let Some(span) = span {
                        error(
                            format!("{path}.{name}"),
                            span,
                            "an end node asks nothing more; it has only text and outcome".into(),
                        );
                    }
                }
                match outcome.get_ref() {
                    Outcome::Nurture { journey } if !is_name(journey) => {
                        error(format!("{path}.outcome.journey"), outcome.span().start, "is not a journey id".into())
                    }
                    Outcome::Disqualified { tag, reason } => {
                        if tag.trim().is_empty() || tag.len() > 64 {
                            error(
                                format!("{path}.outcome.tag"),
                                outcome.span().start,
                                "needs a tag of 1 to 64 bytes".into(),
                            );
                        }
                        if reason.trim().is_empty() || reason.chars().count() > MAX_TEXT_CHARS {
                            error(
                                format!("{path}.outcome.reason"),
                                outcome.span().start,
                                format!("needs a reason of 1 to {MAX_TEXT_CHARS} characters"),
                            );
                        }
                    }
                    _ => {}
                }
            }
            (Some(input), None) => {
                let input_at = input.span().start;
                let input = input.get_ref();
                if input.max_length.is_some_and(|m| m == 0 || m > MAX_TEXT_CHARS) {
                    error(
                        format!("{path}.input.max_length"),
                        input_at,
                        format!("must be between 1 and {MAX_TEXT_CHARS}"),
                    );
                }
                if input.kind != InputType::Number && (input.min.is_some() || input.max.is_some()) {
                    error(format!("{path}.input"), input_at, "only a number input has min and max".into());
                }
                if let (Some(min), Some(max)) = (input.min, input.max)
                    && min > max
                {
                    error(format!("{path}.input.min"), input_at, "is greater than max".into());
                }
                if let Some(field) = &node.field
                    && !is_name(field.get_ref())
                {
                    error(format!("{path}.field"), field.span().start, "is not a form field name".into());
                }
                if input.kind == InputType::Choice {
                    if choices.is_empty() {
                        error(format!("{path}.choices"), input_at, "a choice input needs choices".into());
                    }
                    if choices.len() > MAX_CHOICES {
                        error(
                            format!("{path}.choices"),
                            node.choices.as_ref().map_or(input_at, |c| c.span().start),
                            format!("has {} choices; at most {MAX_CHOICES}", choices.len()),
                        );
                    }
                    if let Some(points) = &node.points {
                        error(
                            format!("{path}.points"),
                            points.span().start,
                            "a choice node gives points per choice (`points` in each choice)".into(),
                        );
                    }
                    let mut values = BTreeSet::new();
                    for choice in choices {
                        let value = choice.value.get_ref();
                        let choice_path = format!("{path}.choices.{value}");
                        if value.trim().is_empty()
                            || value.trim() != value
                            || value.chars().count() > MAX_CHOICE_VALUE_CHARS
                        {
                            error(
                                format!("{choice_path}.value"),
                                choice.value.span().start,
                                format!("must be 1 to {MAX_CHOICE_VALUE_CHARS} characters without surrounding spaces"),
                            );
                        }
                        if !values.insert(value) {
                            error(format!("{choice_path}.value"), choice.value.span().start, "appears twice".into());
                        }
                    }
                } else if let Some(given) = &node.choices {
                    error(format!("{path}.choices"), given.span().start, "only a choice input has choices".into());
                }
                let every_choice_leads_on =
                    input.kind == InputType::Choice && !choices.is_empty() && choices.iter().all(|c| c.next.is_some());
                if node.next.is_none() && !every_choice_leads_on {
                    error(
                        format!("{path}.next"),
                        at,
                        "a question needs a `next` (or, for a choice, a `next` in every choice)".into(),
                    );
                }
                if every_choice_leads_on && node.next.is_none() && !node.branches.is_empty() {
                    error(
                        format!("{path}.branches"),
                        node.branches[0].next.span().start,
                        "are never used: every choice has its own next".into(),
                    );
                }
            }
        }

        let mut targets: Vec<(String, &Spanned<String>)> = Vec::new();
        if let Some(next) = &node.next {
            targets.push((format!("{path}.next"), next));
        }
        for choice in choices {
            if let Some(next) = &choice.next {
                targets.push((format!("{path}.choices.{}.next", choice.value.get_ref()), next));
            }
        }
        for branch in &node.branches {
            targets.push((format!("{path}.branches.next"), &branch.next));
        }
        for (field, target) in targets {
            if !ids.contains(target.get_ref().as_str()) {
                error(field, target.span().start, format!("`{}` is not a node of this script", target.get_ref()));
            }
        }
    }
    let answer_chars: usize = nodes
        .iter()
        .filter_map(|node| {
            let input = node.input.as_ref()?.get_ref();
            let choices = node.choices.as_ref().map(|c| c.get_ref().as_slice()).unwrap_or_default();
            Some(match input.kind {
                InputType::Choice => choices.iter().map(|c| c.value.get_ref().chars().count()).max().unwrap_or(0),
                _ => input.max_length(),
            })
        })
        .sum();
    if answer_chars > MAX_ANSWER_CHARS {
        errors.push(CampaignError {
            file: file.into(),
            line: Some(line_at(text, raw.nodes.span().start)),
            field: "nodes".into(),
            message: format!(
                "the answers could hold {answer_chars} characters (the questions' max_length, 2000 where unset); \
                 at most {MAX_ANSWER_CHARS}: set a smaller max_length on text questions"
            ),
        });
    }
    // A broken target or a node with no way on would be reported again as unreachable or looping;
    // the graph is checked once those are fixed.
    if errors.is_empty() {
        check_graph(raw, &mut |field, at, message| {
            errors.push(CampaignError { file: file.into(), line: Some(line_at(text, at)), field, message })
        });
    }
}

/// Every node is reachable from the start, and from every node an end can be reached (a loop is
/// fine as long as some answer leads out of it).
fn check_graph(raw: &RawScript, error: &mut impl FnMut(String, usize, String)) {
    let nodes = raw.nodes.get_ref();
    let edges: BTreeMap<&str, Vec<&str>> = nodes
        .iter()
        .map(|node| {
            let choices = node.choices.as_ref().map(|c| c.get_ref().as_slice()).unwrap_or_default();
            let targets = node
                .next
                .iter()
                .chain(choices.iter().filter_map(|c| c.next.as_ref()))
                .chain(node.branches.iter().map(|b| &b.next))
                .map(|t| t.get_ref().as_str())
                .collect();
            (node.id.get_ref().as_str(), targets)
        })
        .collect();
    let reachable = walk([raw.start.get_ref().as_str()], |id| edges.get(id).cloned().unwrap_or_default());
    let ends: Vec<&str> = nodes.iter().filter(|n| n.outcome.is_some()).map(|n| n.id.get_ref().as_str()).collect();
    let leads_to_end =
        walk(ends, |id| edges.iter().filter(|(_, to)| to.contains(&id)).map(|(from, _)| *from).collect());
    for node in nodes {
        let id = node.id.get_ref().as_str();
        let at = node.id.span().start;
        if !reachable.contains(id) {
            error(
                format!("nodes.{id}"),
                at,
                format!("cannot be reached from the start node `{}`", raw.start.get_ref()),
            );
        } else if !leads_to_end.contains(id) {
            error(
                format!("nodes.{id}"),
                at,
                "every path from here loops without reaching an end node (one with an outcome)".into(),
            );
        }
    }
}

fn walk<'a>(
    from: impl IntoIterator<Item = &'a str>,
    neighbours: impl Fn(&'a str) -> Vec<&'a str>,
) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    let mut pending: Vec<&str> = from.into_iter().collect();
    while let Some(id) = pending.pop() {
        if seen.insert(id) {
            pending.extend(neighbours(id));
        }
    }
    seen
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "bots/quiz.toml";
    const SCRIPT: &str = r#"id = "quiz"
description = "A small quiz"
start = "size"
default_locale = "en"

[[nodes]]
id = "size"
text = { en = "How big?", ru = "Какого размера?" }
input = { type = "choice" }
choices = [
  { value = "small", label = { en = "Small", ru = "Маленький" }, points = 1 },
  { value = "big", label = { en = "Big", ru = "Большой" }, points = 10, next = "done" },
]
next = "site"

[[nodes]]
id = "site"
text = { en = "Your website?" }
input = { type = "url", max_length = 200 }
reask = { en = "Not a web address" }
points = 5
branches = [{ min_score = 5, next = "done" }]
next = "done"

[[nodes]]
id = "done"
text = { en = "Thanks!" }
outcome = { kind = "qualified" }
"#;

    fn errors_of(text: &str) -> Vec<CampaignError> {
        BotScript::parse(FILE, text).expect_err("the script must be refused")
    }

    /// The one error of a broken script, checked for its field and line.
    fn only_error(text: &str, field: &str, line: usize) -> CampaignError {
        let errors = errors_of(text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].field, field, "{}", errors[0]);
        assert_eq!(errors[0].line, Some(line), "{}", errors[0]);
        assert!(errors[0].to_string().starts_with(&format!("{FILE}:{line}: `{field}`")), "{}", errors[0]);
        errors[0].clone()
    }

    #[test]
    fn a_script_parses_into_nodes_choices_branches_and_outcomes() {
        let script = BotScript::parse(FILE, SCRIPT).unwrap();
        assert_eq!(script.start, "size");
        assert_eq!(script.nodes.len(), 3);
        let size = script.node("size").unwrap();
        assert_eq!(size.input.as_ref().unwrap().kind, InputType::Choice);
        assert_eq!(size.choices[1].next.as_deref(), Some("done"));
        assert_eq!(size.choices[0].label.get("ru", "en"), "Маленький");
        let site = script.node("site").unwrap();
        assert_eq!(site.text.get("ru", "en"), "Your website?", "falls back to the default locale");
        assert_eq!(site.input.as_ref().unwrap().max_length(), 200);
        assert_eq!(site.branches, vec![Branch { min_score: 5, next: "done".into() }]);
        assert_eq!(script.node("done").unwrap().outcome, Some(Outcome::Qualified));
        assert!(script.speaks("ru"));
        assert!(!script.speaks("de"));
    }

    #[test]
    fn next_goes_by_choice_then_highest_branch_reached_then_next() {
        let mut node = BotScript::parse(FILE, SCRIPT).unwrap().node("site").unwrap().clone();
        node.branches =
            vec![Branch { min_score: 10, next: "ten".into() }, Branch { min_score: 30, next: "thirty".into() }];
        assert_eq!(next_node(&node, None, 9), Some("done"));
        assert_eq!(next_node(&node, None, 10), Some("ten"));
        assert_eq!(next_node(&node, None, 99), Some("thirty"));
        let choice = Choice { value: "x".into(), label: LocalText::default(), points: 0, next: Some("own".into()) };
        assert_eq!(next_node(&node, Some(&choice), 99), Some("own"));
    }

    #[test]
    fn a_target_that_is_not_a_node_is_named_with_its_line() {
        only_error(&SCRIPT.replace("next = \"site\"", "next = \"sight\""), "nodes.size.next", 14);
        only_error(&SCRIPT.replace("next = \"done\" },", "next = \"gone\" },"), "nodes.size.choices.big.next", 12);
        let error = only_error(
            &SCRIPT.replace("[{ min_score = 5, next = \"done\" }]", "[{ min_score = 5, next = \"nope\" }]"),
            "nodes.site.branches.next",
            22,
        );
        assert!(error.message.contains("`nope`"), "{error}");
        only_error(&SCRIPT.replace("start = \"size\"", "start = \"sise\""), "start", 3);
    }

    #[test]
    fn an_unreachable_node_is_refused() {
        let orphan = format!(
            "{SCRIPT}\n[[nodes]]\nid = \"orphan\"\ntext = {{ en = \"Hm\" }}\noutcome = {{ kind = \"qualified\" }}\n"
        );
        let error = only_error(&orphan, "nodes.orphan", 31);
        assert!(error.message.contains("cannot be reached"), "{error}");
    }

    #[test]
    fn a_loop_with_no_way_out_is_refused_and_one_with_a_way_out_is_fine() {
        let trap = SCRIPT
            .replace("branches = [{ min_score = 5, next = \"done\" }]\nnext = \"done\"", "next = \"size\"")
            .replace("next = \"done\" },", "},");
        let errors = errors_of(&trap);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["nodes.size", "nodes.site", "nodes.done"], "{errors:#?}");
        assert!(errors[0].message.contains("loops without reaching an end"), "{}", errors[0]);
        assert_eq!(errors[0].line, Some(7));

        let way_out = SCRIPT
            .replace("next = \"done\"\n\n[[nodes]]\nid = \"done\"", "next = \"size\"\n\n[[nodes]]\nid = \"done\"");
        assert_ne!(way_out, SCRIPT);
        BotScript::parse(FILE, &way_out).expect("the big choice and the branch lead out of the loop");
    }

    #[test]
    fn a_node_needs_a_way_on_or_an_outcome() {
        let stuck = SCRIPT.replace("branches = [{ min_score = 5, next = \"done\" }]\nnext = \"done\"\n", "");
        let error = only_error(&stuck, "nodes.site.next", 17);
        assert!(error.message.contains("needs a `next`"), "{error}");

        let neither = SCRIPT.replace("outcome = { kind = \"qualified\" }\n", "");
        let error = only_error(&neither, "nodes.done", 26);
        assert!(error.message.contains("`input`") && error.message.contains("`outcome`"), "{error}");

        only_error(
            &SCRIPT
                .replace("outcome = { kind = \"qualified\" }", "outcome = { kind = \"qualified\" }\nnext = \"size\""),
            "nodes.done.next",
            29,
        );
    }

    #[test]
    fn every_text_has_the_default_locale() {
        let error = only_error(
            &SCRIPT.replace("text = { en = \"Thanks!\" }", "text = { ru = \"Спасибо!\" }"),
            "nodes.done.text",
            27,
        );
        assert!(error.message.contains("`en`"), "{error}");
        only_error(&SCRIPT.replace("label = { en = \"Big\", ", "label = { "), "nodes.size.choices.big.label", 12);
        only_error(
            &SCRIPT.replace("reask = { en = \"Not a web address\" }", "reask = { de = \"Nein\" }"),
            "nodes.site.reask",
            20,
        );
    }

    #[test]
    fn absurd_sizes_are_refused() {
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        let error = only_error(&SCRIPT.replace("Your website?", &long), "nodes.site.text.en", 18);
        assert!(error.message.contains("2000"), "{error}");
        only_error(&SCRIPT.replace("max_length = 200", "max_length = 5000"), "nodes.site.input.max_length", 19);

        let many: String =
            (0..=MAX_CHOICES).map(|i| format!("  {{ value = \"v{i}\", label = {{ en = \"V\" }} }},\n")).collect();
        let choices = SCRIPT
            .replace("  { value = \"small\", label = { en = \"Small\", ru = \"Маленький\" }, points = 1 },\n", &many);
        let error = only_error(&choices, "nodes.size.choices", 10);
        assert!(error.message.contains("at most 20"), "{error}");

        let mut nodes = String::from("id = \"big\"\ndescription = \"d\"\nstart = \"n0\"\ndefault_locale = \"en\"\n");
        for i in 0..=MAX_NODES {
            nodes.push_str(&format!(
                "[[nodes]]\nid = \"n{i}\"\ntext = {{ en = \"?\" }}\ninput = {{ type = \"text\" }}\nnext = \"n{}\"\n",
                i + 1
            ));
        }
        let errors = errors_of(&nodes);
        assert_eq!(errors[0].field, "nodes", "{errors:#?}");
        assert!(errors[0].message.contains("at most 100"), "{}", errors[0]);

        let wordy = (0..11).fold(SCRIPT.replace("next = \"site\"", "next = \"q0\""), |text, i| {
            let next = if i == 10 { "site".to_string() } else { format!("q{}", i + 1) };
            format!("{text}\n[[nodes]]\nid = \"q{i}\"\ntext = {{ en = \"?\" }}\ninput = {{ type = \"text\" }}\nnext = \"{next}\"\n")
        });
        let error = only_error(&wordy, "nodes", 6);
        assert!(error.message.contains("22205 characters"), "{error}");
        BotScript::parse(FILE, &wordy.replacen("{ type = \"text\" }", "{ type = \"text\", max_length = 1000 }", 3))
            .expect("three shorter questions bring it under the limit");
    }

    #[test]
    fn unknown_input_types_and_fields_are_named() {
        let error = only_error(&SCRIPT.replace("type = \"url\"", "type = \"date\""), "input", 19);
        assert!(error.message.contains("date"), "{error}");
        only_error(&SCRIPT.replace("points = 5\n", "points = 5\npoint = 6\n"), "point", 22);
        only_error(&SCRIPT.replace("points = 5\n", "points = 5\nchoices = []\n"), "nodes.site.choices", 22);
        only_error(
            &SCRIPT.replace("input = { type = \"choice\" }", "input = { type = \"choice\" }\npoints = 3"),
            "nodes.size.points",
            10,
        );
    }

    #[test]
    fn node_keys_are_found_inside_their_node() {
        assert_eq!(line_of_node_key(SCRIPT, "site", "max_length"), Some(19));
        assert_eq!(line_of_node_key(SCRIPT, "site", "points"), Some(21));
        assert_eq!(line_of_node_key(SCRIPT, "done", "outcome"), Some(28));
        assert_eq!(line_of_node_key(SCRIPT, "done", "field"), Some(26), "falls back to the node's id");
        assert_eq!(line_of_node_key(SCRIPT, "nobody", "field"), None);
    }
}
