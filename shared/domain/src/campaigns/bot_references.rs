//! What a bot script needs from the other campaign files: its form, the form fields its answers
//! fill (an answer the bot accepts must pass the form's own validation when the contact is
//! captured), and the journeys its nurture ends enrol.

use std::collections::BTreeMap;

use super::form::{FieldType, FormDefinition, parse_checkbox};
use crate::bots::script::{BotScript, InputType, Node, Outcome, line_of_node_key};
use crate::file_errors::{CampaignError, line_of_key};
use crate::journeys::Journey;

/// Checks the references and gives each answer the form field's length and range where the
/// script sets none.
pub(super) fn check(
    file: &str,
    text: &str,
    script: &mut BotScript,
    forms: &BTreeMap<String, FormDefinition>,
    journeys: &BTreeMap<String, Journey>,
) -> Result<(), Vec<CampaignError>> {
    let mut errors = Vec::new();
    let mut error = |field: String, line: Option<usize>, message: String| {
        errors.push(CampaignError { file: file.into(), line, field, message })
    };
    let form = match &script.form {
        Some(id) => match forms.get(id) {
            Some(form) => Some(form),
            None => {
                error("form".into(), line_of_key(text, "form"), format!("`{id}` is not a form in forms/"));
                None
            }
        },
        None => None,
    };
    for node in &mut script.nodes {
        let path = format!("nodes.{}", node.id);
        if let Some(Outcome::Nurture { journey }) = &node.outcome
            && !journeys.contains_key(journey)
        {
            error(
                format!("{path}.outcome.journey"),
                line_of_node_key(text, &node.id, "outcome"),
                format!("`{journey}` is not a journey in journeys/"),
            );
        }
        let Some(field) = node.field.clone() else { continue };
        let line = line_of_node_key(text, &node.id, "field");
        let Some(form) = form else {
            if script.form.is_none() {
                error(format!("{path}.field"), line, "fills a form field, but the script names no `form`".into());
            }
            continue;
        };
        if let Some(problem) = fit_field(node, &field, form) {
            error(format!("{path}.field"), line, problem);
        }
    }
    if let Some(form) = form {
        let filled: Vec<&str> = script.nodes.iter().filter_map(|n| n.field.as_deref()).collect();
        let required = form
            .fields
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name.as_str())
            .chain(form.consent.iter().filter(|c| c.required).map(|c| c.field.as_str()));
        for name in required {
            if !filled.contains(&name) {
                error(
                    "form".into(),
                    line_of_key(text, "form"),
                    format!(
                        "the form `{}` requires `{name}`, which no node asks for, so no contact could be captured",
                        form.id
                    ),
                );
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// Whether answers to `node` pass the form's rules for `field`; fills the node's length and range
/// from the field where unset.
fn fit_field(node: &mut Node, field: &str, form: &FormDefinition) -> Option<String> {
    let input = node.input.as_mut()?;
    let checkbox_choices =
        |node_choices: &[crate::bots::script::Choice]| node_choices.iter().all(|c| parse_checkbox(&c.value).is_some());
    if form.consent.as_ref().is_some_and(|c| c.field == field) {
        return (input.kind != InputType::Choice || !checkbox_choices(&node.choices)).then(|| {
            "is the form's consent: ask it as a choice whose values are yes / no (or true / false)".to_string()
        });
    }
    let Some(definition) = form.fields.iter().find(|f| f.name == field) else {
        return Some(format!("`{field}` is not a field of the form `{}`", form.id));
    };
    let fits = match (definition.field_type, input.kind) {
        (FieldType::Email, InputType::Email)
        | (FieldType::Phone, InputType::Phone)
        | (FieldType::Url, InputType::Url)
        | (FieldType::Number, InputType::Number)
        | (FieldType::Text | FieldType::Textarea, InputType::Text | InputType::Choice) => true,
        (FieldType::Select, InputType::Choice) => node.choices.iter().all(|c| definition.options.contains(&c.value)),
        (FieldType::Checkbox, InputType::Choice) => checkbox_choices(&node.choices),
        _ => false,
    };
    if !fits {
        let wanted = match definition.field_type {
            FieldType::Select => {
                format!("a choice whose values are options of the field ({})", definition.options.join(", "))
            }
            FieldType::Checkbox => "a choice whose values are yes / no".into(),
            FieldType::Text | FieldType::Textarea => "a text or a choice".into(),
            other => format!("an input of type {}", format!("{other:?}").to_lowercase()),
        };
        let kind = format!("{:?}", definition.field_type).to_lowercase();
        return Some(format!("the form field `{field}` is a {kind} field; ask it with {wanted}"));
    }
    match input.max_length {
        Some(max) if max > definition.max_length => {
            return Some(format!(
                "`input.max_length` {max} is more than the form field's {}; the form would refuse such answers",
                definition.max_length
            ));
        }
        Some(_) => {}
        None => input.max_length = Some(definition.max_length.min(crate::bots::script::MAX_TEXT_CHARS)),
    }
    if input.kind == InputType::Number {
        input.min = input.min.or(definition.min);
        input.max = input.max.or(definition.max);
    }
    None
}
