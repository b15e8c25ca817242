//! The few HTML pages lead-capture answers with: confirmation results and plain-form replies.
//! Every dynamic value is escaped.

use axum::response::Html;
use voronka_domain::campaigns::FormDefinition;
use voronka_domain::errors::FieldError;
use voronka_domain::html::escape;

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         h1{{font-size:1.5rem}}li{{margin:.25rem 0}}</style></head><body>{body}</body></html>",
        escape(title)
    ))
}

pub fn confirmed() -> Html<String> {
    page(
        "Subscription confirmed",
        "<h1>Subscription confirmed</h1><p>Thank you! You will now receive our emails. You can unsubscribe at any time with the link at the bottom of every email.</p>",
    )
}

/// What a confirmation link opens: a button that confirms by POST, so mail-security scanners
/// that fetch links confirm nobody. The script presses it for people whose browser runs it;
/// scanners that fetch without running scripts stop here.
/// The field only a pressed button sends (a script's `form.submit()` does not): what a person's
/// own click looks like, required before a confirmation lifts their earlier unsubscribe.
pub const PRESSED_FIELD: &str = "pressed";

/// The confirmation page: a button that posts the token, pressed for people by a small script
/// (`with_script`), or left for the person to press.
pub fn confirm_prompt(token: &str, with_script: bool) -> Html<String> {
    let script = if with_script { "<script>document.getElementById(\"confirm\").submit();</script>" } else { "" };
    page(
        "Confirm your subscription",
        &format!(
            "<h1>Confirm your subscription</h1><p>Press the button to start receiving our emails.</p>\
             <form method=\"post\" action=\"/v1/confirm?token={}\" id=\"confirm\">\
             <button type=\"submit\" name=\"{PRESSED_FIELD}\" value=\"1\">Confirm my subscription</button></form>{script}",
            escape(token)
        ),
    )
}

pub fn not_found() -> Html<String> {
    page("Not found", "<h1>Page not found</h1><p>There is no such page.</p>")
}

pub fn confirmation_invalid(reason: &str) -> Html<String> {
    page("Confirmation link", &format!("<h1>We could not confirm this subscription</h1><p>{}</p>", escape(reason)))
}

pub fn unsubscribe_confirm(token: &str) -> Html<String> {
    page(
        "Unsubscribe",
        &format!(
            "<h1>Unsubscribe from our emails?</h1><p>You will no longer receive marketing emails from us.</p>\
             <form method=\"post\" action=\"/v1/unsubscribe?token={}\"><button type=\"submit\">Unsubscribe</button></form>",
            escape(token)
        ),
    )
}

pub fn unsubscribed() -> Html<String> {
    page(
        "Unsubscribed",
        "<h1>You are unsubscribed</h1><p>You will no longer receive marketing emails from us. Messages you ask for, such as order confirmations, still reach you.</p>",
    )
}

pub fn unsubscribe_invalid(reason: &str) -> Html<String> {
    page("Unsubscribe", &format!("<h1>We could not read this unsubscribe link</h1><p>{}</p>", escape(reason)))
}

pub fn thank_you(form: &FormDefinition) -> Html<String> {
    page(&form.title, &format!("<h1>Thank you!</h1><p>We have received your request: {}.</p>", escape(&form.title)))
}

pub fn invalid_submission(form: &FormDefinition, fields: &[FieldError]) -> Html<String> {
    let items: String = fields
        .iter()
        .map(|f| {
            let label = form.fields.iter().find(|d| d.name == f.field).map_or(f.field.as_str(), |d| d.label.as_str());
            format!("<li><strong>{}</strong>: {}</li>", escape(label), escape(&f.message))
        })
        .collect();
    page(
        &form.title,
        &format!(
            "<h1>Please check the form</h1><ul>{items}</ul><p><a href=\"javascript:history.back()\">Back to the form</a></p>"
        ),
    )
}
