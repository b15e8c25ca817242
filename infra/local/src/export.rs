//! `voronka export`: data as JSON lines for people and BI tools.

use std::io::Write;

use anyhow::Result;
use serde_json::json;
use voronka_domain::model::Contact;
use voronka_domain::repo::ContactRepository;

use crate::stack::Stack;

/// Every contact as one JSON object per line, oldest first.
pub async fn contacts(stack: &Stack, out: &mut dyn Write) -> Result<usize> {
    let contacts = ContactRepository::new(stack.state.store.as_ref()).list_all().await?;
    for contact in &contacts {
        writeln!(out, "{}", serde_json::to_string(&contact_record(contact))?)?;
    }
    Ok(contacts.len())
}

/// The exported shape: the contact as stored, less internal bookkeeping.
pub fn contact_record(contact: &Contact) -> serde_json::Value {
    let mut value = serde_json::to_value(contact).expect("contacts serialise");
    if let Some(map) = value.as_object_mut() {
        map.remove("recent_submission_ids");
        map.remove("version");
        if let Some(email) = &contact.email {
            map.insert("email".into(), json!(email.as_typed()));
        }
    }
    value
}
