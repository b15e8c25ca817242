//! `openapi.yaml` documents the API the routers serve: every (method, path) of
//! `lead_capture::routes()`, `qualify_bot::routes()` and `kpi_rollup::routes()` is an operation of
//! the document, the document has no operation a router does not serve, and exactly the admin
//! routes require the `adminKey` scheme. A route added to a router and forgotten in the document
//! fails here; schemathesis (in tests/run.sh) then holds the documented answers to the running
//! `voronka serve`. Also what schemathesis and probing it found: refusals that bypassed the JSON
//! error shape (over HTTP on the local stack).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use axum::body::Body;
use http::{Request, StatusCode, header};
use support::inprocess::{Answer, TestStack};

type Routes = BTreeSet<(String, String)>;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn document_text() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_content(line: &str) -> bool {
    !line.trim().is_empty() && !line.trim_start().starts_with('#')
}

/// A mapping key on its own line (`key:` with nothing after it), unquoted.
fn block_key(line: &str) -> Option<&str> {
    let key = line.trim().strip_suffix(':')?;
    Some(key.trim_matches('"').trim_matches('\''))
}

/// One operation of the document: its method, path and whether it requires `adminKey`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Operation {
    method: String,
    path: String,
    admin: bool,
}

/// The operations under `paths:`, read line by line: the document is kept in block style (two
/// spaces a level), a path at indent 2, its methods at indent 4, an operation's `security` at 6.
fn operations(document: &str) -> Vec<Operation> {
    let lines: Vec<&str> = document.lines().filter(|l| is_content(l)).collect();
    let start = lines.iter().position(|l| l.trim_end() == "paths:").expect("the document has paths");
    let mut operations = Vec::new();
    let mut path = None;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        match indent(line) {
            0 => break,
            2 => path = Some(block_key(line).unwrap_or_else(|| panic!("a path key, not `{line}`")).to_string()),
            4 => {
                let Some(method) = block_key(line).filter(|key| METHODS.contains(key)) else { continue };
                let path = path.clone().expect("methods sit under a path");
                let block = lines[i + 1..].iter().take_while(|l| indent(l) > 4);
                let mut security = block.skip_while(|l| !(indent(l) == 6 && l.trim() == "security:")).skip(1);
                let admin = security.next().is_some_and(|l| l.trim() == "- adminKey: []");
                operations.push(Operation { method: method.to_ascii_uppercase(), path, admin });
            }
            _ => {}
        }
    }
    operations
}

/// Each function's routes as its router serves them, with the admin ones.
fn served() -> (BTreeMap<&'static str, Routes>, Routes) {
    let functions = BTreeMap::from([
        ("lead-capture", lead_capture::route_table().into_iter().collect()),
        ("qualify-bot", qualify_bot::route_table().into_iter().collect()),
        ("kpi-api", kpi_rollup::route_table().into_iter().collect()),
    ]);
    let admin = lead_capture::admin_route_table().into_iter().chain(kpi_rollup::admin_route_table()).collect();
    (functions, admin)
}

/// What the document and the routers disagree on: routes served but not documented, operations
/// documented but not served, and routes whose admin marking differs (each as (method, path)).
fn differences(document: &str) -> (Routes, Routes, Routes) {
    let documented = operations(document);
    let (functions, admin) = served();
    let served: Routes = functions.values().flatten().cloned().collect();
    let ops: Routes = documented.iter().map(|op| (op.method.clone(), op.path.clone())).collect();
    assert_eq!(ops.len(), documented.len(), "an operation is documented twice");
    let missing = served.difference(&ops).cloned().collect();
    let extra = ops.difference(&served).cloned().collect();
    let wrong_security = documented
        .iter()
        .filter(|op| served.contains(&(op.method.clone(), op.path.clone())))
        .filter(|op| op.admin != admin.contains(&(op.method.clone(), op.path.clone())))
        .map(|op| (op.method.clone(), op.path.clone()))
        .collect();
    (missing, extra, wrong_security)
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_a_route() {
    let (missing, extra, wrong_security) = differences(&document_text());
    assert!(missing.is_empty(), "served by a router but not documented in openapi.yaml: {missing:?}");
    assert!(extra.is_empty(), "documented in openapi.yaml but served by no router: {extra:?}");
    assert!(
        wrong_security.is_empty(),
        "admin routes must require `adminKey` (and only they): these differ: {wrong_security:?}"
    );
}

#[test]
fn the_document_is_openapi_3_1_with_the_admin_scheme_and_the_shared_error() {
    let document = document_text();
    assert!(document.lines().any(|l| l == "openapi: 3.1.0"), "OpenAPI 3.1");
    for needed in ["  securitySchemes:", "    adminKey:", "      scheme: bearer", "    Error:", "    FieldError:"] {
        assert!(document.lines().any(|l| l == needed), "the document has `{}`", needed.trim());
    }
    // No global `security:`: public routes take none, and each admin operation names its own.
    assert!(!document.lines().any(|l| l == "security:"));
}

/// Every `$ref` names a component the document defines, so a renamed schema cannot leave a
/// dangling reference that only a full OpenAPI validator would notice.
#[test]
fn every_reference_resolves_to_a_component() {
    let document = document_text();
    let lines: Vec<&str> = document.lines().filter(|l| is_content(l)).collect();
    let start = lines.iter().position(|l| *l == "components:").expect("the document has components");
    let mut defined = BTreeSet::new();
    let mut kind = String::new();
    for line in lines[start + 1..].iter().take_while(|l| indent(l) > 0) {
        match (indent(line), block_key(line)) {
            (2, Some(key)) => kind = key.to_string(),
            (4, Some(name)) => {
                defined.insert(format!("#/components/{kind}/{name}"));
            }
            _ => {}
        }
    }
    let references: BTreeSet<String> = lines
        .iter()
        .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix("$ref:"))
        .map(|r| r.trim().trim_matches('"').to_string())
        .collect();
    assert!(references.len() > 10, "the reader finds the references: {references:?}");
    let dangling: Vec<_> = references.difference(&defined).collect();
    assert!(dangling.is_empty(), "references to components the document does not define: {dangling:?}");
}

/// Removes the operation `method` of `path` (its lines) from the document.
fn without_operation(document: &str, method: &str, path: &str) -> String {
    let lines: Vec<&str> = document.lines().collect();
    let path_line = lines.iter().position(|l| *l == format!("  {path}:")).unwrap_or_else(|| panic!("{path}"));
    let start = (path_line + 1..lines.len())
        .find(|&i| lines[i] == format!("    {method}:"))
        .unwrap_or_else(|| panic!("{method} {path}"));
    let end = (start + 1..lines.len()).find(|&i| is_content(lines[i]) && indent(lines[i]) <= 4).unwrap();
    [&lines[..start], &lines[end..]].concat().join("\n")
}

#[test]
fn the_check_notices_a_route_missing_from_the_document() {
    let document = document_text();
    for (method, path) in [
        ("post", "/v1/unsubscribe"),
        ("options", "/v1/bot/sessions/{session_id}/answers"),
        ("get", "/v1/kpi"),
        ("get", "/v1/contacts/{id}"),
    ] {
        let without = without_operation(&document, method, path);
        let (missing, extra, wrong_security) = differences(&without);
        assert_eq!(missing, Routes::from([(method.to_ascii_uppercase(), path.to_string())]), "{method} {path}");
        assert!(extra.is_empty() && wrong_security.is_empty());
    }
}

#[test]
fn the_check_notices_an_operation_no_router_serves() {
    let document = document_text();
    let with_extra = document.replacen(
        "  /v1/bot/widget.css:\n",
        "  /v1/bot/widget.map:\n    get:\n      responses:\n        \"200\":\n          description: x\n  /v1/bot/widget.css:\n",
        1,
    );
    assert_ne!(with_extra, document);
    let (missing, extra, _) = differences(&with_extra);
    assert!(missing.is_empty());
    assert_eq!(extra, Routes::from([("GET".to_string(), "/v1/bot/widget.map".to_string())]));
}

#[test]
fn the_check_notices_an_admin_route_documented_without_the_admin_key() {
    let document = document_text();
    let spend = document.find("  /v1/spend:\n").expect("the document has /v1/spend");
    let (before, after) = document.split_at(spend);
    let unguarded = format!("{before}{}", after.replacen("      security:\n        - adminKey: []\n", "", 1));
    let (missing, extra, wrong_security) = differences(&unguarded);
    assert!(missing.is_empty() && extra.is_empty());
    assert_eq!(wrong_security, Routes::from([("POST".to_string(), "/v1/spend".to_string())]));
}

/// Every route of the three HTTP functions, as (method, path), admin ones with the admin key.
fn all_routes() -> Vec<(String, String)> {
    let (functions, _) = served();
    functions.into_values().flatten().collect()
}

fn is_json_error(answer: &Answer, status: StatusCode) -> bool {
    let json = answer.headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes() == b"application/json");
    json && answer.status == status
        && serde_json::from_str::<serde_json::Value>(&answer.text).is_ok_and(|body| {
            body["error"]["code"].is_string()
                && body["error"]["message"].is_string()
                && body["error"]["fields"].is_array()
        })
}

/// A path parameter that is not UTF-8 once percent-decoded (`%FF`) was refused by axum's `Path`
/// extractor in plain text ("Invalid URL: Invalid UTF-8 in `form_id`"), outside the documented
/// error shape, on every route with a parameter; now it is the JSON error.
#[tokio::test]
async fn a_path_parameter_that_is_not_utf8_is_a_json_error_on_every_route() {
    let t = TestStack::new();
    let mut checked = 0;
    for (method, path) in all_routes().into_iter().filter(|(_, path)| path.contains('{')) {
        let uri = path.split('/').map(|s| if s.starts_with('{') { "%FF" } else { s }).collect::<Vec<_>>().join("/");
        let request = Request::builder()
            .method(method.as_str())
            .uri(&uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", t.stack.admin_key))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let answer = t.send(request).await;
        assert!(
            is_json_error(&answer, StatusCode::BAD_REQUEST),
            "{method} {uri}: {} {:?} {}",
            answer.status,
            answer.headers,
            answer.text
        );
        assert!(
            answer.error_code() == "invalid_request" && answer.text.contains("UTF-8"),
            "{method} {uri}: {}",
            answer.text
        );
        checked += 1;
    }
    assert!(checked >= 8, "the routes with parameters were checked: {checked}");
}

/// A method a route does not take was an empty 405 on the bot's and kpi-api's routes as
/// `voronka serve` merges them (lead-capture's own answered JSON); every route now answers JSON.
#[tokio::test]
async fn a_method_no_route_takes_is_a_json_405_on_every_route() {
    let t = TestStack::new();
    let routes = all_routes();
    for (_, path) in &routes {
        let unused = ["PUT", "PATCH", "DELETE", "GET", "POST"]
            .into_iter()
            .find(|m| !routes.contains(&(m.to_string(), path.clone())))
            .expect("some method is not served");
        let uri = path
            .replace("{form_id}", "newsletter")
            .replace("{script_id}", "b2b_demo")
            .replace('{', "x")
            .replace('}', "");
        let request = Request::builder()
            .method(unused)
            .uri(&uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", t.stack.admin_key))
            .body(Body::empty())
            .unwrap();
        let answer = t.send(request).await;
        assert!(
            is_json_error(&answer, StatusCode::METHOD_NOT_ALLOWED),
            "{unused} {uri}: {} {}",
            answer.status,
            answer.text
        );
        assert!(answer.headers.contains_key(header::ALLOW), "{unused} {uri} names the methods it takes");
    }
}

/// `POST /v1/confirm` takes its body (the button's `pressed` field) through axum's `Bytes`, whose
/// default limit refused an oversized body in plain text; it is the JSON 413 now.
#[tokio::test]
async fn a_confirm_body_over_the_limit_is_a_json_413() {
    let t = TestStack::new();
    let request = Request::builder()
        .method("POST")
        .uri("/v1/confirm?token=x")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(vec![b'a'; 3 * 1024 * 1024]))
        .unwrap();
    let answer = t.send(request).await;
    assert!(is_json_error(&answer, StatusCode::PAYLOAD_TOO_LARGE), "{} {}", answer.status, answer.text);
    assert_eq!(answer.error_code(), "payload_too_large");
}
