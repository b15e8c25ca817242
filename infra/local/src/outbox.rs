//! The outbox pages of `voronka serve`: every `.eml` the embedded mailer wrote, listed and shown.

use std::path::{Path, PathBuf};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use mail_parser::MessageParser;
use voronka_domain::html::escape;

/// A sent message as the outbox lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutboxEntry {
    pub file: String,
    pub to: String,
    pub subject: String,
    pub date: String,
    pub list_unsubscribe: Option<String>,
}

pub fn entries(dir: &Path) -> Vec<OutboxEntry> {
    newest_entries(dir, usize::MAX)
}

/// The newest `limit` messages (file names start with the time they were written), newest first.
pub fn newest_entries(dir: &Path, limit: usize) -> Vec<OutboxEntry> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "eml")).collect()
        })
        .unwrap_or_default();
    files.sort();
    files.reverse();
    files.truncate(limit);
    files
        .iter()
        .filter_map(|path| {
            let raw = std::fs::read(path).ok()?;
            let message = MessageParser::default().parse(&raw)?;
            Some(OutboxEntry {
                file: path.file_name()?.to_string_lossy().into_owned(),
                to: message.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default().to_string(),
                subject: message.subject().unwrap_or_default().to_string(),
                date: message.date().map(|d| d.to_rfc3339()).unwrap_or_default(),
                list_unsubscribe: message.header_raw("List-Unsubscribe").map(|v| v.trim().to_string()),
            })
        })
        .collect()
}

/// Most messages the outbox page lists: each is read and parsed per request.
pub const LISTED_MESSAGES: usize = 1000;

pub async fn list(State(dir): State<PathBuf>) -> Html<String> {
    let rows: String = newest_entries(&dir, LISTED_MESSAGES)
        .iter()
        .map(|e| {
            format!(
                "<tr><td>{}</td><td><a class=\"contact-link\" href=\"/admin/contacts?email={}\">{}</a></td>\
                 <td><a href=\"/outbox/{}\">{}</a></td><td>{}</td></tr>",
                escape(&e.date),
                escape(&crate::dashboard::url_component(&e.to)),
                escape(&e.to),
                escape(&crate::dashboard::url_component(&e.file)),
                escape(&e.subject),
                if e.list_unsubscribe.is_some() { "one-click" } else { "—" }
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Outbox — Voronka</title>\
         <style>body{{font-family:system-ui;margin:2rem}}td,th{{padding:.3rem .6rem;text-align:left;border-bottom:1px solid #ddd}}</style></head>\
         <body><p><a href=\"/admin/dashboard\">KPI dashboard</a> · <a href=\"/\">Demo shop</a></p>\
         <h1>Outbox</h1><p>The newest {LISTED_MESSAGES} emails the local stack sent, newest first (all are files in {}); a recipient opens their contact page.</p>\
         <table><tr><th>Date</th><th>To</th><th>Subject</th><th>Unsubscribe</th></tr>{rows}</table></body></html>",
        escape(&dir.display().to_string())
    ))
}

pub async fn show(State(dir): State<PathBuf>, UrlPath(file): UrlPath<String>) -> Response {
    if !file.ends_with(".eml") || file.contains('/') || file.contains("..") {
        return (StatusCode::NOT_FOUND, "no such message").into_response();
    }
    let Ok(raw) = std::fs::read(dir.join(&file)) else {
        return (StatusCode::NOT_FOUND, "no such message").into_response();
    };
    let Some(message) = MessageParser::default().parse(&raw) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, "the message cannot be parsed").into_response();
    };
    let headers: String = message
        .headers_raw()
        .map(|(name, value)| format!("<tr><th>{}</th><td>{}</td></tr>", escape(name), escape(value.trim())))
        .collect();
    // The HTML part is shown in a sandboxed frame: no scripts, links open normally.
    let html = message.body_html(0).map(|h| h.into_owned()).unwrap_or_default();
    let text = message.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{subject}</title>\
         <style>body{{font-family:system-ui;margin:2rem}}th{{text-align:left;padding-right:1rem;vertical-align:top}}\
         iframe{{width:100%;height:30rem;border:1px solid #ccc}}pre{{white-space:pre-wrap;background:#f6f6f6;padding:1rem}}</style></head>\
         <body><p><a href=\"/outbox\">← Outbox</a>{contact}</p><h1>{subject}</h1><table>{headers}</table>\
         <h2>HTML</h2><iframe sandbox=\"allow-popups allow-top-navigation-by-user-activation allow-forms\" srcdoc=\"{html}\"></iframe>\
         <h2>Text</h2><pre>{text}</pre></body></html>",
        subject = escape(message.subject().unwrap_or_default()),
        contact = message
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(|to| format!(
                " · <a class=\"contact-link\" href=\"/admin/contacts?email={}\">{}'s contact page</a>",
                escape(&crate::dashboard::url_component(to)),
                escape(to)
            ))
            .unwrap_or_default(),
        html = escape(&html),
        text = escape(&text),
    ))
    .into_response()
}
