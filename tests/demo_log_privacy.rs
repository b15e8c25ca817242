//! The whole suite with debug logging on: `voronka demo` drives every function through its real
//! handlers (forms, the bot, events, journeys, carts, the sender, SES feedback, the rollups), and
//! not one log line may carry an email address or a phone number, of the demo's people or of
//! anyone (a pattern scan besides the list of the people the demo stored).

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;
use support::inprocess::TempFolder;

fn voronka(args: &[&str], rust_log: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_voronka")).args(args).env("RUST_LOG", rust_log).output().expect("voronka runs")
}

/// Every `local@domain.tld` in the text: a word character before the `@`, and after it a domain
/// with a dot followed by letters.
fn email_like(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    for (at, _) in text.match_indices('@') {
        let local_ok = at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || b"._%+-".contains(&bytes[at - 1]));
        let domain: String =
            text[at + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-').collect();
        let dotted = domain.split('.').count() >= 2 && domain.rsplit('.').next().is_some_and(|tld| tld.len() >= 2);
        if local_ok && dotted {
            let start =
                text[..at].rfind(|c: char| !(c.is_ascii_alphanumeric() || "._%+-".contains(c))).map_or(0, |i| i + 1);
            found.push(text[start..at + 1 + domain.len()].to_string());
        }
    }
    found
}

/// The digits of a phone number, the last ten (the national number of the demo's +7 numbers).
fn national_digits(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(10)..].to_string()
}

#[test]
fn the_demo_logs_no_email_address_or_phone_number_at_debug_level() {
    let data = TempFolder::new("demo-log-privacy");
    let data_dir = data.path().to_str().unwrap().to_string();
    let run = voronka(&["demo", "--visitors", "200", "--seed", "11", "--data-dir", &data_dir], "debug");
    let logs = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "the demo failed:\n{}", logs.lines().rev().take(40).collect::<Vec<_>>().join("\n"));

    // The logging really was on, at debug level, as JSON lines naming contacts by id.
    let lines: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("a log line is not JSON: {line}")))
        .collect();
    assert!(lines.len() > 500, "the demo logged only {} lines at debug level", lines.len());
    assert!(lines.iter().any(|l| l["level"] == "DEBUG"), "no debug line was logged");
    assert!(lines.iter().any(|l| l["fields"]["contact_id"].is_string()), "no line names a contact by id");

    // Who the demo stored: their addresses and phones must be in none of those lines.
    let export = voronka(&["export", "contacts", "--format", "jsonl", "--data-dir", &data_dir], "warn");
    assert!(export.status.success(), "export failed: {}", String::from_utf8_lossy(&export.stderr));
    let mut addresses = BTreeSet::new();
    let mut phones = BTreeSet::new();
    for line in String::from_utf8_lossy(&export.stdout).lines() {
        let contact: Value = serde_json::from_str(line).expect("an exported contact is JSON");
        if let Some(email) = contact["email"].as_str() {
            addresses.insert(email.trim().to_lowercase());
        }
        if let Some(phone) = contact["phone"].as_str() {
            phones.insert(national_digits(phone));
        }
    }
    assert!(addresses.len() > 50, "the demo stored only {} addresses", addresses.len());
    assert!(phones.len() > 5, "the demo stored only {} phones", phones.len());

    let lowered = logs.to_lowercase();
    // A phone may be written with spaces, dashes or brackets between its digits.
    let unseparated: String = logs.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')')).collect();
    let leaked_addresses: Vec<&String> = addresses.iter().filter(|a| lowered.contains(a.as_str())).collect();
    let local_parts: Vec<&str> =
        addresses.iter().filter_map(|a| a.split_once('@')).map(|(local, _)| local).filter(|l| l.len() >= 6).collect();
    let leaked_locals: Vec<&&str> = local_parts
        .iter()
        .filter(|l| lowered.contains(&format!("\"{l}")) || lowered.contains(&format!(" {l}")))
        .collect();
    let leaked_phones: Vec<&String> =
        phones.iter().filter(|p| p.len() >= 10 && unseparated.contains(p.as_str())).collect();
    let patterns = email_like(&logs);
    assert!(
        leaked_addresses.is_empty() && leaked_locals.is_empty() && leaked_phones.is_empty() && patterns.is_empty(),
        "personal data in the logs: addresses {leaked_addresses:?}, local parts {leaked_locals:?}, phones {leaked_phones:?}, \
         address-shaped text {patterns:?}"
    );
}

#[test]
fn the_scanners_find_what_they_look_for() {
    assert_eq!(email_like(r#"{"to":"Anna.Smith+x@mail.example.com"}"#), vec!["Anna.Smith+x@mail.example.com"]);
    assert!(email_like(r#"{"message":"sent @ 10:00","host":"a@b"}"#).is_empty());
    assert_eq!(national_digits("+7 916 555-44-33"), "9165554433");
}
