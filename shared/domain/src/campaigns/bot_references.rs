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

#[cfg(test)]
mod tests {
    use crate::bots::shipped_files;
    use crate::campaigns::{CampaignError, Campaigns};

    /// Loads the shipped files with one of them edited; returns the problems.
    fn load_with(path: &str, from: &str, to: &str) -> Vec<CampaignError> {
        let mut files = shipped_files();
        let file = files.iter_mut().find(|f| f.path == path).unwrap();
        assert!(file.text.contains(from), "{from}");
        file.text = file.text.replacen(from, to, 1);
        Campaigns::load(&files).expect_err("the edit must be refused").0
    }

    fn line_of(path: &str, needle: &str) -> usize {
        let files = shipped_files();
        let text = &files.iter().find(|f| f.path == path).unwrap().text;
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    fn only(errors: Vec<CampaignError>, file: &str, field: &str, line: usize) -> CampaignError {
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let error = errors.into_iter().next().unwrap();
        assert_eq!((error.file.as_str(), error.field.as_str(), error.line), (file, field, Some(line)), "{error}");
        error
    }

    const B2B: &str = "bots/b2b_demo.toml";

    #[test]
    fn the_shipped_scripts_load_and_take_the_form_fields_limits() {
        let campaigns = Campaigns::load(&shipped_files()).unwrap_or_else(|e| panic!("{e}"));
        let b2b = &campaigns.bots["b2b_demo"];
        assert_eq!(b2b.form.as_deref(), Some("bot"));
        assert_eq!(b2b.node("website").unwrap().input.as_ref().unwrap().max_length(), 300);
        // Unset in the script: the form field's default 500.
        assert_eq!(b2b.node("size").unwrap().input.as_ref().unwrap().max_length(), 500);
    }

    #[test]
    fn a_form_that_does_not_exist_is_named() {
        let error =
            only(load_with(B2B, "form = \"bot\"", "form = \"chat\""), B2B, "form", line_of(B2B, "form = \"bot\""));
        assert!(error.message.contains("`chat`"), "{error}");
    }

    #[test]
    fn every_field_is_a_field_of_the_form_and_fits_it() {
        let line = line_of(B2B, "field = \"role\"");
        let error = only(load_with(B2B, "field = \"role\"", "field = \"job\""), B2B, "nodes.role.field", line);
        assert!(error.message.contains("`job` is not a field of the form `bot`"), "{error}");

        let error = only(
            load_with(B2B, "{ value = \"201+\"", "{ value = \"200+\""),
            B2B,
            "nodes.size.field",
            line_of(B2B, "field = \"company_size\""),
        );
        assert!(error.message.contains("options of the field"), "{error}");

        let errors = load_with(B2B, "field = \"email\"", "field = \"website\"");
        let error = &errors[0];
        assert_eq!((error.field.as_str(), error.line), ("nodes.email.field", Some(line_of(B2B, "field = \"email\""))));
        assert!(errors[1].message.contains("requires `email`"), "{errors:#?}");
        assert!(error.message.contains("url field"), "{error}");
        let errors = load_with(B2B, "field = \"consent\"", "field = \"timeline\"");
        assert_eq!(errors[0].field, "nodes.consent.field", "{errors:#?}");

        let error = only(
            load_with(
                B2B,
                "input = { type = \"url\", max_length = 300 }",
                "input = { type = \"url\", max_length = 400 }",
            ),
            B2B,
            "nodes.website.field",
            line_of(B2B, "field = \"website\""),
        );
        assert!(error.message.contains("more than the form field's 300"), "{error}");
    }

    #[test]
    fn a_required_field_no_node_asks_for_is_refused() {
        let errors = load_with(
            "forms/bot.toml",
            "type = \"url\"\nmax_length = 300",
            "type = \"url\"\nrequired = true\nmax_length = 300",
        );
        let bots: Vec<_> = errors.iter().filter(|e| e.field == "form").collect();
        assert_eq!(bots.len(), 1, "course_picker never asks for a website: {errors:#?}");
        assert_eq!(bots[0].file, "bots/course_picker.toml");
        assert!(bots[0].message.contains("requires `website`"), "{}", bots[0]);
    }

    #[test]
    fn a_nurture_journey_must_exist() {
        const PICKER: &str = "bots/course_picker.toml";
        let line = line_of(PICKER, "journey = \"course_advanced\"");
        let error = only(
            load_with(PICKER, "journey = \"course_advanced\"", "journey = \"course_expert\""),
            PICKER,
            "nodes.advanced.outcome.journey",
            line,
        );
        assert!(error.message.contains("`course_expert` is not a journey"), "{error}");
    }

    #[test]
    fn a_script_error_reaches_validate_with_file_line_and_field() {
        let line = line_of(B2B, "next = \"role\"");
        let errors = load_with(B2B, "next = \"role\"", "next = \"rol\"");
        let error = only(errors.clone(), B2B, "nodes.size.next", line);
        let shown = crate::campaigns::CampaignErrors(errors).to_string();
        assert_eq!(shown, format!("{B2B}:{line}: `nodes.size.next`: `rol` is not a node of this script"));
        assert!(error.message.contains("`rol`"));
    }
}
