//! The chat widget in a real browser: headless Chromium (Debian's, installed by the test
//! command) opens the demo page of `voronka serve`, talks to the B2B bot through the widget with
//! the keyboard and the choice buttons, and the test checks what Voronka did: the contact's stage
//! and the sales email with the conversation in the outbox.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;

use support::serve::{BINARY, Server, data_dir};
use support::webdriver::Browser;

/// Enter, as WebDriver types it.
const ENTER: &str = "\u{E007}";

/// The answers of a sales-ready visitor, by the bot's node (`b2b_demo.toml`).
fn answer_for(node: &str) -> Option<&'static str> {
    Some(match node {
        "website" => "https://acme-tools.example",
        "size" => "201+",
        "role" => "founder",
        "timeline" => "this_month",
        "email" => "lena.widget@example.com",
        "consent" => "yes",
        _ => return None,
    })
}

#[tokio::test]
async fn a_visitor_qualifies_through_the_widget_and_sales_get_the_conversation() {
    let dir = data_dir("widget");
    let server = Server::start(&dir);
    let browser = Browser::start().await;
    browser.visit(&format!("{}/", server.base)).await;

    let launcher = browser.wait_for(".voronka-bot__launcher").await;
    browser.click(&launcher).await;
    browser.wait_for(".voronka-bot__controls[data-node='website'] .voronka-bot__input").await;
    let focused = browser.active_element().await.expect("something has the focus");
    assert_eq!(
        browser.attribute(&focused, "class").await.as_deref(),
        Some("voronka-bot__input"),
        "opening the chat puts the keyboard in its answer field"
    );

    // A bad address is caught before it is sent, and the same question stays.
    let mut answered_bad_email = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the conversation did not end within 60 s");
        if !browser.find_all(".voronka-bot[data-outcome]").await.is_empty() {
            break;
        }
        let Some(controls) = browser.find_all(".voronka-bot__controls[data-node]").await.into_iter().next() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let node = browser.attribute(&controls, "data-node").await.unwrap_or_default();
        let Some(answer) = answer_for(&node) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let choice = browser.find_all(&format!(".voronka-bot__choice[data-value='{answer}']")).await;
        if let Some(button) = choice.first() {
            browser.click(button).await;
        } else {
            let Some(input) = browser.find_all(".voronka-bot__input").await.into_iter().next() else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if node == "email" && !answered_bad_email {
                answered_bad_email = true;
                browser.type_text(&input, &format!("not-an-address{ENTER}")).await;
                let problem = browser.wait_for(".voronka-bot__problem").await;
                assert!(!browser.text(&problem).await.is_empty(), "a bad address is pointed out");
                let input = browser.wait_for(".voronka-bot__controls[data-node='email'] .voronka-bot__input").await;
                browser.type_text(&input, &"\u{E003}".repeat(20)).await;
                browser.type_text(&input, &format!("{answer}{ENTER}")).await;
            } else {
                browser.type_text(&input, &format!("{answer}{ENTER}")).await;
            }
        }
        // Wait for the next question (or the end) before answering again.
        let moved = Instant::now() + Duration::from_secs(15);
        loop {
            let now = browser.find_all(".voronka-bot__controls[data-node]").await;
            let current = match now.first() {
                Some(c) => browser.attribute(c, "data-node").await.unwrap_or_default(),
                None => String::new(),
            };
            if current != node || !browser.find_all(".voronka-bot[data-outcome]").await.is_empty() {
                break;
            }
            assert!(Instant::now() < moved, "the bot did not move on from `{node}`");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let root = browser.wait_for(".voronka-bot[data-outcome]").await;
    assert_eq!(browser.attribute(&root, "data-outcome").await.as_deref(), Some("qualified"));
    assert!(answered_bad_email, "the conversation asked for an email");
    browser.quit().await;

    // The sales inbox gets the conversation (the sender runs inside `voronka serve`).
    let outbox = dir.join("outbox");
    let deadline = Instant::now() + Duration::from_secs(30);
    let sales = loop {
        let found = std::fs::read_dir(&outbox).ok().and_then(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .map(|p| std::fs::read_to_string(p).unwrap_or_default())
                .find(|eml| eml.contains("acme-tools.example"))
        });
        if let Some(eml) = found {
            break eml;
        }
        assert!(Instant::now() < deadline, "no sales email with the conversation within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(sales.contains("lena.widget@example.com"), "the sales email names the lead");

    server.kill();
    let export = Command::new(BINARY).args(["export", "contacts", "--data-dir"]).arg(&dir).output().unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let contacts: Vec<Value> =
        String::from_utf8(export.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let lena = contacts.iter().find(|c| c["email"] == "lena.widget@example.com").expect("the lead is a contact");
    assert_eq!(lena["stage"], "sql", "a qualified conversation makes the lead sales-qualified");
    std::fs::remove_dir_all(&dir).ok();
}
