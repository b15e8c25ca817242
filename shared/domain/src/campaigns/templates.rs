//! Email templates (`templates/<id>.toml`): subject, text and HTML parts per locale, rendered with
//! minijinja. HTML parts are auto-escaped; subjects never carry a line break into a header.

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value as JinjaValue};
use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use crate::file_errors::{CampaignError, line_at, toml_error};
use crate::model::SendClass;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocale {
    subject: Spanned<String>,
    text: Spanned<String>,
    html: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    id: String,
    description: String,
    class: SendClass,
    locales: BTreeMap<String, RawLocale>,
}

/// One locale's parts, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalizedTemplate {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateDefinition {
    pub id: String,
    pub description: String,
    pub class: SendClass,
    pub locales: BTreeMap<String, LocalizedTemplate>,
}

/// A rendered message, ready to be put into MIME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub locale: String,
    /// One line: any CR or LF a value brought in is folded into a space.
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("there is no template `{0}`")]
    UnknownTemplate(String),
    #[error("template `{template}` ({part}) failed to render: {message}")]
    Failed { template: String, part: String, message: String },
}

fn part_name(id: &str, locale: &str, part: &str) -> String {
    let extension = if part == "html" { "html" } else { "txt" };
    format!("{id}.{locale}.{part}.{extension}")
}

/// Instructions one render of one part may run. A full cart (`MAX_CART_ITEMS` lines) takes a few
/// thousand; the limit stops a template that loops without end (`range` in `range`) with an error
/// instead of holding the sender until its timeout.
pub const TEMPLATE_FUEL: u64 = 1_000_000;

/// Builds the minijinja environment every template is rendered in.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|name| if name.ends_with(".html") { AutoEscape::Html } else { AutoEscape::None });
    env.add_filter("money", money_filter);
    env
}

/// `{{ price | money }}` formats with the message's currency and locale; `{{ price | money('USD') }}`
/// names another currency.
fn money_filter(state: &minijinja::State, amount: JinjaValue, currency: Option<String>) -> String {
    let amount = f64::try_from(amount).unwrap_or(0.0);
    let currency = currency
        .or_else(|| state.lookup("currency").and_then(|v| v.as_str().map(str::to_string)))
        .unwrap_or_else(|| "RUB".into());
    let locale = state.lookup("locale").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| "en".into());
    crate::money::format_money(amount, &currency, &locale)
}

/// Every template, compiled once.
pub struct TemplateSet {
    env: Environment<'static>,
    templates: BTreeMap<String, TemplateDefinition>,
    default_locale: String,
}

impl std::fmt::Debug for TemplateSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateSet").field("templates", &self.templates.keys().collect::<Vec<_>>()).finish()
    }
}

impl TemplateDefinition {
    pub fn parse(file: &str, text: &str, default_locale: &str) -> Result<TemplateDefinition, Vec<CampaignError>> {
        let raw: RawTemplate = toml::from_str(text).map_err(|e| vec![toml_error(file, text, &e)])?;
        let mut errors = Vec::new();
        if !raw.locales.contains_key(default_locale) {
            errors.push(CampaignError {
                file: file.into(),
                line: None,
                field: "locales".into(),
                message: format!("every template needs the default locale `{default_locale}`"),
            });
        }
        let env = environment();
        for (locale, parts) in &raw.locales {
            for (part, source) in [("subject", &parts.subject), ("text", &parts.text), ("html", &parts.html)] {
                let line_of =
                    |e: &minijinja::Error| line_at(text, source.span().start) + e.line().unwrap_or(1).saturating_sub(1);
                let problem = match env.template_from_named_str(&part_name(&raw.id, locale, part), source.get_ref()) {
                    Err(e) => Some((line_of(&e), e.detail().unwrap_or("the template does not parse").to_string())),
                    // A part that runs out of fuel with no values at all would fail every send:
                    // refuse it now, where the marketer sees file and line. Other render errors
                    // depend on the values a send brings.
                    Ok(template) => match template.render(minijinja::context! {}) {
                        Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => Some((
                            line_of(&e),
                            format!("runs more than {TEMPLATE_FUEL} instructions with no values (a loop without end?)"),
                        )),
                        _ => None,
                    },
                };
                if let Some((line, message)) = problem {
                    errors.push(CampaignError {
                        file: file.into(),
                        line: Some(line),
                        field: format!("locales.{locale}.{part}"),
                        message,
                    });
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(TemplateDefinition {
            id: raw.id,
            description: raw.description,
            class: raw.class,
            locales: raw
                .locales
                .into_iter()
                .map(|(locale, p)| {
                    let parts = LocalizedTemplate {
                        subject: p.subject.into_inner(),
                        text: p.text.into_inner(),
                        html: p.html.into_inner(),
                    };
                    (locale, parts)
                })
                .collect(),
        })
    }
}

impl TemplateSet {
    pub fn new(templates: BTreeMap<String, TemplateDefinition>, default_locale: &str) -> TemplateSet {
        let mut env = environment();
        for template in templates.values() {
            for (locale, parts) in &template.locales {
                for (part, source) in [("subject", &parts.subject), ("text", &parts.text), ("html", &parts.html)] {
                    env.add_template_owned(part_name(&template.id, locale, part), source.clone())
                        .expect("templates were checked when loaded");
                }
            }
        }
        TemplateSet { env, templates, default_locale: default_locale.to_string() }
    }

    pub fn get(&self, id: &str) -> Option<&TemplateDefinition> {
        self.templates.get(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.templates.keys()
    }

    /// The locale a template is rendered in: the contact's, else its language, else the default.
    pub fn pick_locale(&self, template: &TemplateDefinition, wanted: &str) -> String {
        let language = wanted.split(['-', '_']).next().unwrap_or(wanted);
        [wanted, language, self.default_locale.as_str()]
            .into_iter()
            .find(|l| template.locales.contains_key(*l))
            .or_else(|| template.locales.keys().next().map(String::as_str))
            .unwrap_or(&self.default_locale)
            .to_string()
    }

    /// Renders every part of `id` for `locale` with `context` (a JSON object).
    pub fn render(&self, id: &str, locale: &str, context: &Value) -> Result<RenderedEmail, RenderError> {
        let template = self.templates.get(id).ok_or_else(|| RenderError::UnknownTemplate(id.to_string()))?;
        let locale = self.pick_locale(template, locale);
        let mut context = context.clone();
        if let Some(map) = context.as_object_mut() {
            map.insert("locale".into(), Value::String(locale.clone()));
        }
        let ctx = JinjaValue::from_serialize(&context);
        let render = |part: &str| -> Result<String, RenderError> {
            let name = part_name(id, &locale, part);
            self.env.get_template(&name).and_then(|t| t.render(&ctx)).map_err(|e| RenderError::Failed {
                template: id.to_string(),
                part: part.to_string(),
                message: e.to_string(),
            })
        };
        Ok(RenderedEmail {
            subject: one_line(&render("subject")?),
            text: render("text")?,
            html: render("html")?,
            locale,
        })
    }
}

/// Folds CR, LF and other control characters into single spaces.
pub fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_control())
        .filter(|part| !part.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEMPLATE: &str = r#"
id = "welcome"
description = "Welcome"
class = "marketing"

[locales.en]
subject = "Hello, {{ first_name | default('friend') }}!"
text = "Hello, {{ first_name | default('friend') }}. Your discount is {{ discount_percent }}%."
html = "<p>Hello, {{ first_name | default('friend') }}! Total: {{ total | money }}</p>"

[locales.ru]
subject = "Здравствуйте, {{ first_name | default('друг') }}!"
text = "Здравствуйте!"
html = "<p>Итого: {{ total | money }}</p>"
"#;

    fn set() -> TemplateSet {
        let template = TemplateDefinition::parse("templates/welcome.toml", TEMPLATE, "ru").unwrap();
        TemplateSet::new(BTreeMap::from([("welcome".to_string(), template)]), "ru")
    }

    #[test]
    fn renders_with_defaults_locale_fallback_and_money() {
        let set = set();
        let email =
            set.render("welcome", "en-GB", &json!({"total": 1990, "currency": "RUB", "discount_percent": 10})).unwrap();
        assert_eq!(email.locale, "en");
        assert_eq!(email.subject, "Hello, friend!");
        assert_eq!(email.text, "Hello, friend. Your discount is 10%.");
        assert_eq!(email.html, "<p>Hello, friend! Total: ₽1,990</p>");
        let russian =
            set.render("welcome", "de", &json!({"total": 1990, "currency": "RUB", "first_name": "Анна"})).unwrap();
        assert_eq!(russian.locale, "ru", "an unknown locale falls back to the default");
        assert_eq!(russian.subject, "Здравствуйте, Анна!");
        assert_eq!(russian.html, "<p>Итого: 1\u{a0}990\u{a0}₽</p>");
    }

    #[test]
    fn html_is_escaped_and_subjects_stay_on_one_line() {
        let set = set();
        let email = set
            .render(
                "welcome",
                "en",
                &json!({"first_name": "<script>alert(1)</script>\r\nBcc: victim@example.com", "total": 1}),
            )
            .unwrap();
        assert!(email.html.contains("&lt;script&gt;"), "{}", email.html);
        assert!(!email.html.contains("<script>"));
        assert!(!email.subject.contains('\n') && !email.subject.contains('\r'), "{:?}", email.subject);
        assert_eq!(email.subject, "Hello, <script>alert(1)</script> Bcc: victim@example.com!");
    }

    #[test]
    fn a_template_that_loops_without_end_is_refused_and_a_full_cart_renders() {
        let endless = TEMPLATE.replace(
            "Здравствуйте!",
            "{% for a in range(100000) %}{% for b in range(100000) %}{{ b }}{% endfor %}{% endfor %}",
        );
        let errors = TemplateDefinition::parse("templates/welcome.toml", &endless, "ru").unwrap_err();
        assert_eq!((errors[0].field.as_str(), errors[0].line), ("locales.ru.text", Some(13)));
        assert!(errors[0].message.contains("a loop without end"), "{}", errors[0].message);

        let shipped = include_str!("../../../campaigns/templates/abandoned_cart_3.toml");
        let template = TemplateDefinition::parse("templates/abandoned_cart_3.toml", shipped, "ru").unwrap();
        let set = TemplateSet::new(BTreeMap::from([("abandoned_cart_3".to_string(), template)]), "ru");
        let item = json!({"name": "Item", "price": 1990, "quantity": 2, "url": "https://shop.example/p", "image": "https://shop.example/i.png"});
        let items = vec![item; crate::model::cart::MAX_CART_ITEMS];
        let context = json!({"items": items, "first_name": "Anna", "cart_total": 199000, "discount_code": "X"});
        let email = set.render("abandoned_cart_3", "ru", &context).expect("a full cart renders within the fuel");
        assert_eq!(email.html.matches("Item").count(), crate::model::cart::MAX_CART_ITEMS);
    }

    #[test]
    fn syntax_errors_name_file_line_and_part() {
        let broken =
            TEMPLATE.replace("Your discount is {{ discount_percent }}%", "Your discount is {{ discount_percent %}");
        let errors = TemplateDefinition::parse("templates/welcome.toml", &broken, "ru").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "locales.en.text");
        assert_eq!(errors[0].line, Some(8));
        let missing_default = TEMPLATE.replace("[locales.ru]", "[locales.kk]");
        let errors = TemplateDefinition::parse("templates/welcome.toml", &missing_default, "ru").unwrap_err();
        assert_eq!(errors[0].field, "locales");
    }
}
