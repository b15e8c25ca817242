//! The contact page a marketer opens from any list: who the person is, what they agreed to and
//! when, where they came from, what happened to them (events, emails, journeys, orders, carts)
//! on one timeline, newest first. Reads only this contact's items, each bounded.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;

use jiff::Timestamp;
use voronka_domain::html::escape;
use voronka_domain::model::{Cart, CartStatus, ConsentReceipt, Contact, Event, Touch};
use voronka_domain::repo::journey_state::{JourneyState, RunStatus};
use voronka_domain::repo::{
    ContactRepository, anonymous_subject, carts, consent_receipts::ConsentReceipts, event_log, journey_state,
};
use voronka_domain::scoring::ledger::ScoreBreakdown;

use super::charts::money;
use super::{LinkMode, page};
use crate::outbox::OutboxEntry;
use lead_capture::AppState;

/// Most timeline entries shown; older ones are left off (the page says so).
pub const MAX_TIMELINE: usize = 200;
/// Most consent receipts shown, newest first.
pub const MAX_RECEIPTS: usize = 100;
/// Most carts read for one person (their listing holds at most 100).
pub const MAX_CARTS: usize = 100;

/// Everything the page shows about one contact.
#[derive(Debug, Clone)]
pub struct ContactView {
    pub contact: Contact,
    pub receipts: Vec<ConsentReceipt>,
    pub journeys: Vec<JourneyState>,
    pub carts: Vec<Cart>,
    /// Mail sent to the contact's address, from the local outbox.
    pub emails: Vec<OutboxEntry>,
    /// The contact's processed events (and those of its anonymous ids), newest first, from the
    /// event log.
    pub events: Vec<Event>,
    /// The lead score entry by entry, as worth now (`None` without `scoring.toml`).
    pub score: Option<ScoreBreakdown>,
}

/// Reads one contact's page; `None` for an unknown id. `emails` are the outbox entries to the
/// contact's address (see `emails_by_address`).
pub async fn load(
    state: &AppState,
    id: &str,
    emails: &HashMap<String, Vec<OutboxEntry>>,
) -> anyhow::Result<Option<ContactView>> {
    let store = state.store.as_ref();
    let Some(contact) = ContactRepository::new(store).get(id).await? else { return Ok(None) };
    let receipts = ConsentReceipts::new(store).newest(&contact.id, MAX_RECEIPTS).await?;
    let journeys = journey_state::load_all(store, &contact.id).await?.into_values().collect();
    let mut cart_list = carts::listed(store, &contact.id).await?;
    cart_list.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    let mut loaded = Vec::new();
    for listed in cart_list.iter().take(MAX_CARTS) {
        if let Some(cart) = carts::load(store, &listed.cart_id).await? {
            loaded.push(cart);
        }
    }
    let emails = contact
        .email
        .as_ref()
        .and_then(|email| emails.get(&email.as_typed().to_lowercase()))
        .cloned()
        .unwrap_or_default();
    // Events logged under the person's anonymous ids happened before they identified: the same
    // person's history.
    let mut events = event_log::timeline(store, &contact.id, MAX_TIMELINE).await?;
    for anonymous_id in &contact.anonymous_ids {
        events.extend(event_log::timeline(store, &anonymous_subject(anonymous_id), MAX_TIMELINE).await?);
    }
    events.sort_by_key(|event| std::cmp::Reverse(event.occurred_at));
    events.truncate(MAX_TIMELINE);
    let score =
        state.campaigns.scoring.as_ref().map(|rules| contact.score.breakdown(state.clock.now(), rules.half_life_days));
    Ok(Some(ContactView { contact, receipts, journeys, carts: loaded, emails, events, score }))
}

/// Messages of the outbox read for contact pages: the newest this many, so a page stays quick
/// however long the local stack has been sending.
pub const MAX_OUTBOX_READ: usize = 5000;

/// The outbox's newest messages by lower-cased recipient address, read once for many pages.
pub fn emails_by_address(outbox_dir: &Path) -> HashMap<String, Vec<OutboxEntry>> {
    let mut by_address: HashMap<String, Vec<OutboxEntry>> = HashMap::new();
    for entry in crate::outbox::newest_entries(outbox_dir, MAX_OUTBOX_READ) {
        by_address.entry(entry.to.to_lowercase()).or_default().push(entry);
    }
    by_address
}

/// A display name: the person's name, else their address, else the id.
pub fn display_name(contact: &Contact) -> String {
    let name = [contact.first_name.as_deref(), contact.last_name.as_deref()]
        .into_iter()
        .flatten()
        .filter(|part| !part.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if !name.is_empty() {
        return name;
    }
    contact.email.as_ref().map(|e| e.as_typed().to_string()).unwrap_or_else(|| contact.id.clone())
}

struct TimelineEntry {
    at: Timestamp,
    kind: &'static str,
    text: String,
    link: Option<String>,
}

fn touch_text(touch: &Touch) -> String {
    let parts: Vec<String> = [
        Some(touch.channel.clone()).filter(|c| !c.is_empty()).map(|c| format!("channel {c}")),
        touch.source.as_deref().map(|s| format!("source {s}")),
        touch.medium.as_deref().map(|s| format!("medium {s}")),
        touch.campaign.as_deref().map(|s| format!("campaign {s}")),
        touch.referrer.as_deref().map(|s| format!("referrer {s}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() { "direct".to_string() } else { parts.join(", ") }
}

fn name_of<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn timeline(view: &ContactView, mode: LinkMode) -> Vec<TimelineEntry> {
    let contact = &view.contact;
    let mut entries = vec![TimelineEntry {
        at: contact.created_at,
        kind: "contact",
        text: "became a contact".to_string(),
        link: None,
    }];
    for event in &view.events {
        let mut text = name_of(&event.event_type);
        let details: Vec<String> = event
            .properties
            .iter()
            .take(4)
            .map(|(k, v)| {
                let value = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                format!("{k}={}", value.chars().take(60).collect::<String>())
            })
            .collect();
        if !details.is_empty() {
            let _ = write!(text, " ({})", details.join(", "));
        }
        entries.push(TimelineEntry { at: event.occurred_at, kind: "event", text, link: None });
    }
    for email in &view.emails {
        if let Ok(at) = email.date.parse::<Timestamp>() {
            entries.push(TimelineEntry {
                at,
                kind: "email",
                text: format!("email sent: {}", email.subject),
                link: mode.outbox_href(&email.file),
            });
        }
    }
    for receipt in &view.receipts {
        entries.push(TimelineEntry {
            at: receipt.at,
            kind: "consent",
            text: format!(
                "{} consent {}{}",
                name_of(&receipt.channel),
                if receipt.granted { "granted" } else { "withdrawn" },
                receipt.form_id.as_deref().map(|f| format!(" on form {f}")).unwrap_or_default()
            ),
            link: None,
        });
    }
    for touch in &contact.touches {
        entries.push(TimelineEntry {
            at: touch.at,
            kind: "touch",
            text: format!("visit: {}", touch_text(touch)),
            link: None,
        });
    }
    for order in &contact.orders.recent_orders {
        entries.push(TimelineEntry { at: *order, kind: "order", text: "order placed".to_string(), link: None });
    }
    for cart in &view.carts {
        entries.push(TimelineEntry {
            at: cart.created_at,
            kind: "cart",
            text: format!("cart {} started", cart.cart_id),
            link: None,
        });
        if let Some(at) = cart.abandoned_at {
            entries.push(TimelineEntry {
                at,
                kind: "cart",
                text: format!("cart {} abandoned", cart.cart_id),
                link: None,
            });
        }
        if let Some(at) = cart.purchased_at {
            let recovered = cart.recovered_by_step.map(|s| format!(" (recovered by reminder {s})")).unwrap_or_default();
            entries.push(TimelineEntry {
                at,
                kind: "cart",
                text: format!("cart {} bought{recovered}", cart.cart_id),
                link: None,
            });
        }
    }
    for journey in &view.journeys {
        entries.push(TimelineEntry {
            at: journey.entered_at,
            kind: "journey",
            text: format!(
                "entered journey {} (run {}, {} group)",
                journey.journey_id,
                journey.run,
                journey.group.as_str()
            ),
            link: None,
        });
        if let Some(at) = journey.finished_at {
            let why =
                journey.exit_reason.as_deref().unwrap_or(if journey.converted { "converted" } else { "finished" });
            entries.push(TimelineEntry {
                at,
                kind: "journey",
                text: format!("left journey {}: {why}", journey.journey_id),
                link: None,
            });
        }
    }
    for code in &contact.discount_codes {
        if let Some(at) = code.redeemed_at {
            entries.push(TimelineEntry {
                at,
                kind: "code",
                text: format!("redeemed {}% code {}", code.percent, code.code),
                link: None,
            });
        }
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.at));
    entries
}

fn time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

fn cell(text: &str) -> String {
    format!("<td>{}</td>", escape(text))
}

/// The whole page.
pub fn render_contact(view: &ContactView, mode: LinkMode) -> String {
    let contact = &view.contact;
    let mut body = String::new();
    let name = display_name(contact);
    let _ = write!(
        body,
        "<h1 data-contact-id=\"{id}\">{name}</h1><section class=\"card\"><h2>Profile</h2><table class=\"kv\">",
        id = escape(&contact.id),
        name = escape(&name)
    );
    let erase_link = match mode {
        LinkMode::Server => format!(
            "<p><a id=\"erase-contact\" href=\"/admin/contacts/{}/erase\">Erase this person…</a></p>",
            escape(&super::url_component(&contact.id))
        ),
        LinkMode::Static => String::new(),
    };
    let tags = contact.tags.iter().cloned().collect::<Vec<_>>().join(", ");
    let suppressions =
        contact.suppressions.iter().map(|(r, at)| format!("{} since {}", name_of(r), time(*at))).collect::<Vec<_>>();
    let revenue = contact.orders.revenue_minor as f64 / 100.0;
    let rows: Vec<(&str, String)> = vec![
        ("id", contact.id.clone()),
        ("email", contact.email.as_ref().map(|e| e.as_typed().to_string()).unwrap_or_default()),
        ("phone", contact.phone.as_ref().map(|p| p.as_str().to_string()).unwrap_or_default()),
        ("stage", contact.stage.as_str().to_string()),
        ("score", format!("fit {}, engagement {}", contact.fit_score, contact.engagement_score)),
        ("tags", tags),
        ("locale / time zone", format!("{} / {}", contact.locale, contact.time_zone)),
        ("orders", contact.orders.orders.to_string()),
        ("revenue", format!("{} {}", money(Some(revenue)), contact.orders.currency.as_deref().unwrap_or_default())),
        ("suppressions", if suppressions.is_empty() { "none".to_string() } else { suppressions.join("; ") }),
        ("first touch", contact.first_touch.as_ref().map(touch_text).unwrap_or_default()),
        ("last touch", contact.last_touch.as_ref().map(touch_text).unwrap_or_default()),
        ("created", time(contact.created_at)),
        ("last activity", time(contact.last_activity_at)),
    ];
    for (label, value) in rows {
        let _ = write!(
            body,
            "<tr><th>{}</th><td data-field=\"{}\">{}</td></tr>",
            escape(label),
            escape(label),
            escape(&value)
        );
    }
    body.push_str("</table>");
    if !contact.attributes.is_empty() {
        body.push_str("<h3>Attributes</h3><table class=\"kv\">");
        for (name, value) in &contact.attributes {
            let value = value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
            let _ = write!(body, "<tr><th>{}</th><td>{}</td></tr>", escape(name), escape(&value));
        }
        body.push_str("</table>");
    }
    body.push_str(&erase_link);
    body.push_str("</section>");

    if let Some(score) = &view.score {
        let _ = write!(
            body,
            "<section class=\"card\"><h2>Score</h2><p data-score=\"{total}\">{total:.1} now: fit {fit:.1}, engagement {engagement:.1} \
             (engagement halves every {half_life} days).</p><table class=\"score\"><tr><th>When</th><th>Kind</th><th>Reason</th>\
             <th class=\"num\">Points</th><th class=\"num\">Worth now</th></tr>",
            total = score.total,
            fit = score.fit,
            engagement = score.engagement,
            half_life = score.half_life_days,
        );
        for entry in &score.contributions {
            let _ = write!(
                body,
                "<tr>{}{}{}<td class=\"num\">{:.1}</td><td class=\"num\">{:.1}</td></tr>",
                cell(&time(entry.at)),
                cell(&name_of(&entry.kind)),
                cell(&entry.reason),
                entry.points,
                entry.current_points
            );
        }
        body.push_str("</table></section>");
    }

    body.push_str("<section class=\"card\"><h2>Consent</h2><table><tr><th>Channel</th><th>Status</th><th>Double opt-in</th><th>Updated</th></tr>");
    for (channel, consent) in &contact.consents {
        let _ = write!(
            body,
            "<tr>{}{}{}{}</tr>",
            cell(&name_of(channel)),
            cell(&name_of(&consent.status)),
            cell(&name_of(&consent.double_opt_in)),
            cell(&time(consent.updated_at))
        );
    }
    body.push_str("</table><h3>Consent receipts</h3><table class=\"receipts\"><tr><th>When</th><th>Channel</th><th>Decision</th><th>Form</th><th>Text version</th><th>Double opt-in</th><th>IP</th><th>Receipt</th></tr>");
    for receipt in &view.receipts {
        let _ = write!(
            body,
            "<tr>{}{}{}{}{}{}{}{}</tr>",
            cell(&time(receipt.at)),
            cell(&name_of(&receipt.channel)),
            cell(if receipt.granted { "granted" } else { "withdrawn" }),
            cell(receipt.form_id.as_deref().unwrap_or("")),
            cell(&receipt.text_version),
            cell(if receipt.double_opt_in { "yes" } else { "no" }),
            cell(receipt.ip.as_deref().unwrap_or("")),
            cell(&receipt.id)
        );
    }
    body.push_str("</table></section>");

    body.push_str("<section class=\"card\"><h2>Touches</h2><table><tr><th>When</th><th>Channel</th><th>Source</th><th>Medium</th><th>Campaign</th><th>Referrer</th></tr>");
    for touch in contact.touches.iter().rev() {
        let _ = write!(
            body,
            "<tr>{}{}{}{}{}{}</tr>",
            cell(&time(touch.at)),
            cell(&touch.channel),
            cell(touch.source.as_deref().unwrap_or("")),
            cell(touch.medium.as_deref().unwrap_or("")),
            cell(touch.campaign.as_deref().unwrap_or("")),
            cell(touch.referrer.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</table></section>");

    body.push_str("<section class=\"card\"><h2>Journeys</h2><table class=\"journeys\"><tr><th>Journey</th><th>Group</th><th>Run</th><th>Status</th><th>Entered</th><th>Finished</th><th>Converted</th><th>Waiting at</th></tr>");
    for journey in &view.journeys {
        let status = match journey.status {
            RunStatus::Active => "active",
            RunStatus::Completed => "completed",
            RunStatus::Exited => "exited",
        };
        let _ = write!(
            body,
            "<tr data-journey=\"{j}\" data-group=\"{g}\">{}<td class=\"group-{g}\">{g}</td>{}{}{}{}{}{}</tr>",
            cell(&journey.journey_id),
            cell(&journey.run.to_string()),
            cell(status),
            cell(&time(journey.entered_at)),
            cell(&journey.finished_at.map(time).unwrap_or_default()),
            cell(if journey.converted { "yes" } else { "no" }),
            cell(journey.current_step.as_deref().unwrap_or("")),
            j = escape(&journey.journey_id),
            g = journey.group.as_str(),
        );
    }
    body.push_str("</table></section>");

    let _ = write!(
        body,
        "<section class=\"card\"><h2>Orders</h2><p>{} orders, {} {} in total; first {}, last {}.</p><ul>",
        contact.orders.orders,
        escape(&money(Some(revenue))),
        escape(contact.orders.currency.as_deref().unwrap_or_default()),
        contact.orders.first_order_at.map(time).unwrap_or_else(|| "—".into()),
        contact.orders.last_order_at.map(time).unwrap_or_else(|| "—".into()),
    );
    for at in contact.orders.recent_orders.iter().rev() {
        let _ = write!(body, "<li>{}</li>", time(*at));
    }
    body.push_str("</ul></section>");

    body.push_str("<section class=\"card\"><h2>Carts</h2><table class=\"carts\"><tr><th>Cart</th><th>Status</th><th>Items</th><th>Value</th><th>Started</th><th>Reminders sent</th><th>Codes</th><th>Recovered by</th></tr>");
    for cart in &view.carts {
        let status = match cart.status {
            CartStatus::Open => "open",
            CartStatus::Abandoned => "abandoned",
            CartStatus::Purchased => "purchased",
            CartStatus::Emptied => "emptied",
        };
        let items = cart.items.values().map(|i| format!("{} × {}", i.quantity, i.name)).collect::<Vec<_>>().join(", ");
        let value: f64 = cart.items.values().map(|i| i.price * i.quantity).sum();
        let reminders = cart.reminders_sent.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        let codes = cart.codes.values().cloned().collect::<Vec<_>>().join(", ");
        let _ = write!(
            body,
            "<tr>{}{}{}{}{}{}{}{}</tr>",
            cell(&cart.cart_id),
            cell(status),
            cell(&items),
            cell(&format!("{} {}", money(Some(value)), cart.currency.as_deref().unwrap_or_default())),
            cell(&time(cart.created_at)),
            cell(&reminders),
            cell(&codes),
            cell(&cart.recovered_by_step.map(|s| format!("reminder {s}")).unwrap_or_default())
        );
    }
    body.push_str("</table></section>");

    let entries = timeline(view, mode);
    let _ = write!(
        body,
        "<section class=\"card\"><h2>Timeline</h2><p class=\"note\">Events, emails, consents, visits, orders, carts and journeys, newest first{}.</p><ol class=\"timeline\">",
        if entries.len() > MAX_TIMELINE {
            format!(" (the latest {MAX_TIMELINE} of {})", entries.len())
        } else {
            String::new()
        }
    );
    for entry in entries.iter().take(MAX_TIMELINE) {
        let text = match &entry.link {
            Some(href) => format!("<a href=\"{}\">{}</a>", escape(href), escape(&entry.text)),
            None => escape(&entry.text),
        };
        let _ = write!(
            body,
            "<li class=\"t-{kind}\"><time>{at}</time> <span class=\"kind\">{kind}</span> {text}</li>",
            kind = entry.kind,
            at = time(entry.at),
        );
    }
    body.push_str("</ol></section>");
    page(&format!("{name} — contact"), &body, mode)
}
