//! Form definitions (`forms/<id>.toml`) and the validation of a submission against one.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use crate::errors::FieldError;
use crate::file_errors::{CampaignError, line_at, toml_error};
use crate::model::attribution::{CLICK_ID_FIELDS, UTM_FIELDS};
use crate::model::{EmailAddress, LifecycleStage, PhoneNumber};

/// Hidden fields every form accepts besides its own: tracking, identity and anti-spam.
pub const TRACKING_FIELDS: [&str; 5] = ["referrer", "landing_page", "anonymous_id", "time_zone", "locale"];
/// A client-chosen id that makes a retried submission count once.
pub const SUBMISSION_ID_FIELD: &str = "submission_id";
/// The signed render timestamp a page adds when it renders the form.
pub const RENDER_TOKEN_FIELD: &str = "_rt";
/// The thank-you page lead-capture serves for each form (a route of the API, so it exists
/// wherever the form is deployed).
pub const THANK_YOU_PATH: &str = "/v1/forms/{form_id}/thanks";

/// The thank-you page of one form, as a path on the API's host.
pub fn thank_you_path(form_id: &str) -> String {
    THANK_YOU_PATH.replace("{form_id}", form_id)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Textarea,
    Email,
    Phone,
    Url,
    Number,
    Select,
    Checkbox,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: Spanned<String>,
    label: String,
    #[serde(rename = "type")]
    field_type: FieldType,
    #[serde(default)]
    required: bool,
    max_length: Option<usize>,
    min: Option<f64>,
    max: Option<f64>,
    options: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsent {
    field: Spanned<String>,
    required: bool,
    text_version: String,
    text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForm {
    id: String,
    title: String,
    thank_you_url: Option<Spanned<String>>,
    allowed_origins: Option<Spanned<Vec<String>>>,
    target_stage: Spanned<String>,
    #[serde(default)]
    tags: Vec<String>,
    journey: Option<String>,
    double_opt_in: bool,
    honeypot_field: Spanned<String>,
    min_fill_seconds: Option<u32>,
    #[serde(default)]
    require_render_timestamp: bool,
    consent: Option<RawConsent>,
    fields: Vec<RawField>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldDefinition {
    pub name: String,
    pub label: String,
    pub field_type: FieldType,
    pub required: bool,
    pub max_length: usize,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsentDefinition {
    pub field: String,
    pub required: bool,
    pub text_version: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FormDefinition {
    pub id: String,
    pub title: String,
    pub thank_you_url: Option<String>,
    /// Origins (scheme://host[:port]) whose pages may post this form from a browser.
    pub allowed_origins: Vec<String>,
    pub target_stage: LifecycleStage,
    pub tags: Vec<String>,
    pub journey: Option<String>,
    pub double_opt_in: bool,
    /// A field hidden from people; anything typed into it marks a bot.
    pub honeypot_field: String,
    pub min_fill_seconds: Option<u32>,
    pub require_render_timestamp: bool,
    pub consent: Option<ConsentDefinition>,
    pub fields: Vec<FieldDefinition>,
}

const DEFAULT_MAX_LENGTH: usize = 500;
/// Fields of one form: a form is filled in by a person, and every submission is checked against
/// each field.
pub const MAX_FIELDS: usize = 100;

impl FormDefinition {
    pub fn parse(file: &str, text: &str) -> Result<FormDefinition, Vec<CampaignError>> {
        let raw: RawForm = toml::from_str(text).map_err(|e| vec![toml_error(file, text, &e)])?;
        let mut errors = Vec::new();
        let mut error = |field: String, span: std::ops::Range<usize>, message: &str| {
            errors.push(CampaignError {
                file: file.into(),
                line: Some(line_at(text, span.start)),
                field,
                message: message.into(),
            })
        };

        let target_stage = LifecycleStage::parse(raw.target_stage.get_ref());
        if target_stage.is_none() {
            let names: Vec<_> = LifecycleStage::ALL.iter().map(|s| s.as_str()).collect();
            error("target_stage".into(), raw.target_stage.span(), &format!("must be one of {}", names.join(", ")));
        }
        // A path is on the API's host, where only the routes of lead-capture exist (on AWS, the
        // API Gateway routes): of those, only the form's own thank-you page is a page to land on.
        if let Some(url) = &raw.thank_you_url {
            let served = thank_you_path(&raw.id);
            let path = url.get_ref().split(['?', '#']).next().unwrap_or_default();
            if url.get_ref().starts_with('/') && path != served {
                error(
                    "thank_you_url".into(),
                    url.span(),
                    &format!(
                        "a path must be the thank-you page Voronka serves for this form, `{served}`; \
                         for a page of the shop's own site use its absolute https URL"
                    ),
                );
            } else if !url.get_ref().starts_with('/') && !is_http_url(url.get_ref()) {
                error(
                    "thank_you_url".into(),
                    url.span(),
                    &format!("must be an absolute http(s) URL, or the path `{served}` of Voronka's thank-you page"),
                );
            }
        }
        for (origin, span) in raw.allowed_origins.iter().flat_map(|o| o.get_ref().iter().map(|v| (v, o.span()))) {
            if !is_origin(origin) {
                error(
                    "allowed_origins".into(),
                    span,
                    &format!(
                        "`{origin}` is not an origin such as https://shop.example (scheme, host, optional port, no path)"
                    ),
                );
            }
        }

        let reserved: BTreeSet<&str> = UTM_FIELDS
            .iter()
            .chain(CLICK_ID_FIELDS.iter())
            .chain(TRACKING_FIELDS.iter())
            .copied()
            .chain([SUBMISSION_ID_FIELD, RENDER_TOKEN_FIELD])
            .collect();
        if let Some(first_extra) = raw.fields.get(MAX_FIELDS) {
            let message = format!("a form has at most {MAX_FIELDS} fields (this one has {})", raw.fields.len());
            error("fields".into(), first_extra.name.span(), &message);
        }
        let mut seen = BTreeSet::new();
        for field in raw.fields.iter().take(MAX_FIELDS) {
            let name = field.name.get_ref();
            let path = format!("fields.{name}");
            if !is_field_name(name) {
                error(
                    path.clone(),
                    field.name.span(),
                    "field names are lower-case letters, digits and _, starting with a letter",
                );
            }
            if !seen.insert(name.clone()) {
                error(path.clone(), field.name.span(), "appears twice");
            }
            if reserved.contains(name.as_str()) {
                error(path.clone(), field.name.span(), "is a reserved tracking field; choose another name");
            }
            if name == raw.honeypot_field.get_ref() {
                error(path.clone(), field.name.span(), "is also the honeypot field");
            }
            let options_given = field.options.as_ref().is_some_and(|o| !o.get_ref().is_empty());
            if field.field_type == FieldType::Select && !options_given {
                error(format!("{path}.options"), field.name.span(), "a select field needs options");
            }
            if let Some(options) =
                field.options.as_ref().filter(|_| field.field_type != FieldType::Select && options_given)
            {
                error(format!("{path}.options"), options.span(), "only select fields have options");
            }
            if let (Some(min), Some(max)) = (field.min, field.max)
                && min > max
            {
                error(format!("{path}.min"), field.name.span(), "is greater than max");
            }
            let expected_type = match name.as_str() {
                "email" => Some(FieldType::Email),
                "phone" => Some(FieldType::Phone),
                _ => None,
            };
            if name == "email" && !field.required {
                error(
                    format!("{path}.required"),
                    field.name.span(),
                    "the email field must be required: it is how Voronka recognises a person again",
                );
            }
            if let Some(expected) = expected_type
                && field.field_type != expected
            {
                error(
                    format!("{path}.type"),
                    field.name.span(),
                    &format!("must be {expected:?} for this field").to_lowercase(),
                );
            }
        }
        if !raw.fields.iter().any(|f| f.name.get_ref() == "email") {
            errors.push(CampaignError {
                file: file.into(),
                line: None,
                field: "fields".into(),
                message: "every form needs an `email` field: it is how Voronka recognises a person again".into(),
            });
        }
        if let Some(consent) = &raw.consent {
            if seen.contains(consent.field.get_ref()) {
                errors.push(CampaignError {
                    file: file.into(),
                    line: Some(line_at(text, consent.field.span().start)),
                    field: "consent.field".into(),
                    message: "is already a regular field; the consent checkbox is declared only here".into(),
                });
            }
        } else if raw.double_opt_in {
            errors.push(CampaignError {
                file: file.into(),
                line: None,
                field: "consent".into(),
                message: "double_opt_in needs a [consent] section".into(),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        Ok(FormDefinition {
            id: raw.id,
            title: raw.title,
            thank_you_url: raw.thank_you_url.map(Spanned::into_inner),
            allowed_origins: raw.allowed_origins.map(Spanned::into_inner).unwrap_or_default(),
            target_stage: target_stage.expect("checked above"),
            tags: raw.tags,
            journey: raw.journey,
            double_opt_in: raw.double_opt_in,
            honeypot_field: raw.honeypot_field.into_inner(),
            min_fill_seconds: raw.min_fill_seconds,
            require_render_timestamp: raw.require_render_timestamp,
            consent: raw.consent.map(|c| ConsentDefinition {
                field: c.field.into_inner(),
                required: c.required,
                text_version: c.text_version,
                text: c.text,
            }),
            fields: raw
                .fields
                .into_iter()
                .map(|f| FieldDefinition {
                    name: f.name.into_inner(),
                    label: f.label,
                    field_type: f.field_type,
                    required: f.required,
                    max_length: f.max_length.unwrap_or(DEFAULT_MAX_LENGTH),
                    min: f.min,
                    max: f.max,
                    options: f.options.map(Spanned::into_inner).unwrap_or_default(),
                })
                .collect(),
        })
    }

    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin.trim_end_matches('/')))
    }

    /// Checks a submission's values, naming every failing field at once.
    pub fn validate(&self, values: &Map<String, Value>) -> Result<ValidSubmission, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut valid = ValidSubmission::default();
        for field in &self.fields {
            let text = match single_text(values.get(&field.name)) {
                Ok(text) => text,
                Err(NotSingleValue) => {
                    errors.push(FieldError::new(&field.name, "invalid_type", "must be a single value"));
                    continue;
                }
            };
            let Some(text) = text else {
                if field.required && field.field_type != FieldType::Checkbox {
                    errors.push(FieldError::new(&field.name, "required", "is required"));
                } else if field.required {
                    errors.push(FieldError::new(&field.name, "required", "must be checked"));
                }
                continue;
            };
            if text.chars().count() > field.max_length {
                errors.push(FieldError::new(
                    &field.name,
                    "too_long",
                    &format!("must be at most {} characters", field.max_length),
                ));
                continue;
            }
            if text.chars().any(|c| {
                c.is_control() && !(field.field_type == FieldType::Textarea && matches!(c, '\n' | '\r' | '\t'))
            }) {
                errors.push(FieldError::new(&field.name, "invalid_characters", "must not contain control characters"));
                continue;
            }
            match field.field_type {
                FieldType::Email => match EmailAddress::parse(&text) {
                    Ok(email) => valid.email = Some(email),
                    Err(e) => errors.push(FieldError::new(&field.name, "invalid_email", &e.to_string())),
                },
                FieldType::Phone => match PhoneNumber::parse(&text) {
                    Ok(phone) => valid.phone = Some(phone),
                    Err(e) => errors.push(FieldError::new(&field.name, "invalid_phone", &e.to_string())),
                },
                FieldType::Url => match normalise_url(&text) {
                    Some(url) => {
                        valid.attributes.insert(field.name.clone(), Value::String(url));
                    }
                    None => errors.push(FieldError::new(
                        &field.name,
                        "invalid_url",
                        "must be a web address such as https://shop.example",
                    )),
                },
                FieldType::Number => match parse_number(&text) {
                    Some(n) => {
                        if field.min.is_some_and(|min| n < min) || field.max.is_some_and(|max| n > max) {
                            errors.push(FieldError::new(
                                &field.name,
                                "out_of_range",
                                &range_message(field.min, field.max),
                            ));
                        } else {
                            valid.attributes.insert(field.name.clone(), serde_json::json!(n));
                        }
                    }
                    None => errors.push(FieldError::new(&field.name, "invalid_number", "must be a number")),
                },
                FieldType::Select => {
                    if field.options.iter().any(|option| option == text.trim()) {
                        valid.attributes.insert(field.name.clone(), Value::String(text.trim().to_string()));
                    } else {
                        errors.push(FieldError::new(
                            &field.name,
                            "invalid_option",
                            &format!("must be one of: {}", field.options.join(", ")),
                        ));
                    }
                }
                FieldType::Checkbox => match parse_checkbox(&text) {
                    Some(checked) => {
                        if field.required && !checked {
                            errors.push(FieldError::new(&field.name, "required", "must be checked"));
                        } else {
                            valid.attributes.insert(field.name.clone(), Value::Bool(checked));
                        }
                    }
                    None => errors.push(FieldError::new(&field.name, "invalid_checkbox", "must be checked or not")),
                },
                FieldType::Text | FieldType::Textarea => {
                    let text = text.trim().to_string();
                    match field.name.as_str() {
                        "first_name" => valid.first_name = Some(text),
                        "last_name" => valid.last_name = Some(text),
                        "name" => {
                            let mut parts = text.splitn(2, char::is_whitespace);
                            valid.first_name = parts.next().map(str::to_string).filter(|s| !s.is_empty());
                            valid.last_name = parts.next().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
                        }
                        _ => {
                            valid.attributes.insert(field.name.clone(), Value::String(text));
                        }
                    }
                }
            }
        }
        if let Some(consent) = &self.consent {
            match single_text(values.get(&consent.field)) {
                Ok(Some(text)) => match parse_checkbox(&text) {
                    Some(checked) => valid.consent_granted = checked,
                    None => errors.push(FieldError::new(&consent.field, "invalid_checkbox", "must be checked or not")),
                },
                Ok(None) => {}
                Err(NotSingleValue) => {
                    errors.push(FieldError::new(&consent.field, "invalid_type", "must be a single value"))
                }
            }
            if consent.required && !valid.consent_granted && !errors.iter().any(|e| e.field == consent.field) {
                errors.push(FieldError::new(
                    &consent.field,
                    "consent_required",
                    "consent must be given to submit this form",
                ));
            }
        }
        let known: BTreeSet<&str> = self.fields.iter().map(|f| f.name.as_str()).collect();
        for name in values.keys() {
            if name.is_empty() {
                // Found by the form fuzzers: `{"": 1}` (or `=1` in a form body) was refused as an
                // unknown field with an empty name, which tells the sender nothing.
                errors.push(FieldError::new(name, "empty_field_name", "a field has an empty name"));
            } else if name.len() > 64 {
                errors.push(FieldError::new(
                    &name.chars().take(64).collect::<String>(),
                    "unknown_field",
                    "field name too long",
                ));
            } else if !known.contains(name.as_str())
                && self.consent.as_ref().is_none_or(|c| &c.field != name)
                && !is_accepted_hidden_field(name)
                && name != &self.honeypot_field
            {
                errors.push(FieldError::new(name, "unknown_field", "is not a field of this form"));
            }
        }
        if errors.is_empty() { Ok(valid) } else { Err(errors) }
    }
}

/// A submission's values after validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValidSubmission {
    pub email: Option<EmailAddress>,
    pub phone: Option<PhoneNumber>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub attributes: BTreeMap<String, Value>,
    pub consent_granted: bool,
}

/// Hidden fields accepted on every form: tracking, identity, idempotency, render timestamp.
pub fn is_accepted_hidden_field(name: &str) -> bool {
    UTM_FIELDS.contains(&name)
        || CLICK_ID_FIELDS.contains(&name)
        || TRACKING_FIELDS.contains(&name)
        || name == SUBMISSION_ID_FIELD
        || name == RENDER_TOKEN_FIELD
}

/// A list or an object where one value was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotSingleValue;

/// A value as text: missing, null and blank are `None`; lists and objects are an error.
pub fn single_text(value: Option<&Value>) -> Result<Option<String>, NotSingleValue> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(Value::Array(_) | Value::Object(_)) => Err(NotSingleValue),
    }
}

/// A number as people type it (a decimal comma too); never infinite or NaN.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    text.trim().replace(',', ".").parse::<f64>().ok().filter(|n| n.is_finite())
}

pub(crate) fn parse_checkbox(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "checked" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

pub(crate) fn range_message(min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(min), Some(max)) => format!("must be between {min} and {max}"),
        (Some(min), None) => format!("must be at least {min}"),
        (None, Some(max)) => format!("must be at most {max}"),
        (None, None) => "is out of range".into(),
    }
}

/// People type `shop.example`; Voronka stores `https://shop.example/`.
pub(crate) fn normalise_url(text: &str) -> Option<String> {
    let text = text.trim();
    let candidate = if text.contains("://") { text.to_string() } else { format!("https://{text}") };
    let url = url::Url::parse(&candidate).ok()?;
    let host = url.host_str()?;
    if !matches!(url.scheme(), "http" | "https") || !host.contains('.') {
        return None;
    }
    Some(url.to_string())
}

fn is_http_url(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

fn is_origin(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
            && u.path() == "/"
            && !text.trim_end_matches('/').ends_with("/")
            && u.query().is_none()
            && u.origin().ascii_serialization() == text.trim_end_matches('/')
    })
}

fn is_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FORM: &str = r#"
id = "consultation"
title = "Consultation"
thank_you_url = "https://shop.example/thanks"
allowed_origins = ["https://shop.example"]
target_stage = "lead"
double_opt_in = false
honeypot_field = "fax"

[consent]
field = "consent"
required = true
text_version = "v1"
text = "I agree"

[[fields]]
name = "name"
label = "Name"
type = "text"
required = true

[[fields]]
name = "email"
label = "Email"
type = "email"
required = true

[[fields]]
name = "phone"
label = "Phone"
type = "phone"

[[fields]]
name = "website"
label = "Website"
type = "url"

[[fields]]
name = "company_size"
label = "Company size"
type = "select"
options = ["1-10", "11-50", "51+"]
"#;

    fn form() -> FormDefinition {
        FormDefinition::parse("forms/consultation.toml", FORM).unwrap()
    }

    fn values(v: serde_json::Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_good_submission_is_split_into_contact_fields_and_attributes() {
        let valid = form()
            .validate(&values(json!({
                "name": "Anna Petrova", "email": " Anna@Example.com ", "phone": "+7 916 123-45-67",
                "website": "anna.example", "company_size": "11-50", "consent": "on", "utm_source": "vk"
            })))
            .unwrap();
        assert_eq!(valid.first_name.as_deref(), Some("Anna"));
        assert_eq!(valid.last_name.as_deref(), Some("Petrova"));
        assert_eq!(valid.email.unwrap().identity(), "anna@example.com");
        assert_eq!(valid.phone.unwrap().as_str(), "+79161234567");
        assert_eq!(valid.attributes["website"], json!("https://anna.example/"));
        assert!(valid.consent_granted);
    }

    #[test]
    fn every_failing_field_is_named() {
        let errors = form()
            .validate(&values(json!({
                "email": "not-an-email", "phone": "12", "website": "nope", "company_size": "huge", "surprise": 1
            })))
            .unwrap_err();
        let fields: BTreeSet<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            BTreeSet::from(["name", "email", "phone", "website", "company_size", "consent", "surprise"])
        );
    }

    /// Regression from `fuzz/` (form_json, form_urlencoded): an empty field name was an "unknown
    /// field" named by nothing.
    #[test]
    fn an_empty_field_name_is_refused_as_such() {
        let errors = form().validate(&values(json!({"": "x", "name": "Anna", "email": "a@b.example"}))).unwrap_err();
        let empty = errors.iter().find(|e| e.field.is_empty()).expect("the empty name is refused");
        assert_eq!((empty.code.as_str(), empty.message.as_str()), ("empty_field_name", "a field has an empty name"));
    }

    #[test]
    fn file_errors_name_file_line_and_field() {
        let broken = FORM.replace("target_stage = \"lead\"", "target_stage = \"leed\"");
        let errors = FormDefinition::parse("forms/consultation.toml", &broken).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "target_stage");
        assert_eq!(errors[0].line, Some(6));
        assert!(errors[0].to_string().starts_with("forms/consultation.toml:6: `target_stage`"), "{}", errors[0]);

        let typo = FORM.replace("type = \"phone\"", "type = \"fone\"");
        let errors = FormDefinition::parse("forms/consultation.toml", &typo).unwrap_err();
        assert_eq!(errors[0].line, Some(31), "{}", errors[0]);
        assert_eq!(errors[0].field, "type", "{}", errors[0]);
        assert!(errors[0].message.contains("fone"), "{}", errors[0]);

        let unknown = FORM.replace("double_opt_in = false", "double_opt_in = false\ndouble_optin = true");
        let errors = FormDefinition::parse("forms/consultation.toml", &unknown).unwrap_err();
        assert_eq!(errors[0].field, "double_optin", "{}", errors[0]);
        assert_eq!(errors[0].line, Some(8), "{}", errors[0]);
    }

    #[test]
    fn a_form_whose_email_is_optional_is_rejected_at_load_time() {
        let optional = FORM.replace("type = \"email\"\nrequired = true", "type = \"email\"\nrequired = false");
        assert_ne!(optional, FORM);
        let errors = FormDefinition::parse("forms/consultation.toml", &optional).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "fields.email.required");
        assert_eq!(errors[0].line, Some(23), "{}", errors[0]);
    }

    #[test]
    fn a_relative_thank_you_url_must_be_the_thank_you_page_lead_capture_serves() {
        let local_only = FORM.replace("https://shop.example/thanks", "/thanks?form=consultation");
        let errors = FormDefinition::parse("forms/consultation.toml", &local_only).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "thank_you_url");
        assert_eq!(errors[0].line, Some(4));
        assert!(errors[0].message.contains("/v1/forms/consultation/thanks"), "{}", errors[0]);

        let served = FORM.replace("https://shop.example/thanks", "/v1/forms/consultation/thanks");
        let form = FormDefinition::parse("forms/consultation.toml", &served).unwrap();
        assert_eq!(form.thank_you_url.as_deref(), Some("/v1/forms/consultation/thanks"));
        assert_eq!(thank_you_path("consultation"), "/v1/forms/consultation/thanks");
    }

    #[test]
    fn origins_are_checked() {
        assert!(is_origin("https://shop.example"));
        assert!(is_origin("http://127.0.0.1:8080"));
        assert!(!is_origin("https://shop.example/path"));
        assert!(!is_origin("shop.example"));
        assert!(form().allows_origin("https://shop.example"));
        assert!(!form().allows_origin("https://evil.example"));
    }
}
