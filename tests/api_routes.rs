//! The HTTP API that exists on AWS is the one the routers serve: every route of
//! `lead_capture::routes()`, `qualify_bot::routes()` and `kpi_rollup::routes()` is an `HttpApi`
//! event of its own function in `infra/template.yaml`, and the template routes nothing a router does not serve. A route
//! added to a router and forgotten in the template (as the unsubscribe route once was) fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

type Routes = BTreeSet<(String, String)>;
/// Routes named by the function that serves them: (function, method, path).
type FunctionRoutes = BTreeSet<(String, String, String)>;

fn template_text() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.trim().strip_prefix(key)?.strip_prefix(':')?;
    Some(rest.trim().trim_matches('"').trim_matches('\''))
}

/// One `HttpApi` event: its resource, method, path and authoriser (`Auth: Authorizer:`), if any.
struct HttpApiEvent {
    resource: String,
    method: String,
    path: String,
    authorizer: Option<String>,
}

/// The `HttpApi` events of every resource, read line by line: the template's CloudFormation tags
/// (`!Ref`, `!GetAtt`, `!If`) are no YAML a plain parser accepts, and only the event blocks matter
/// here. Each `Type: HttpApi` starts an event whose `Method`, `Path` and `Authorizer` follow at a
/// deeper or equal indent, before the block ends.
fn http_api_event_blocks(template: &str) -> Vec<HttpApiEvent> {
    let lines: Vec<&str> = template.lines().collect();
    let mut events = Vec::new();
    let mut resource = String::new();
    let mut in_resources = false;
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if indent(line) == 0 {
            in_resources = line.trim() == "Resources:";
            continue;
        }
        if in_resources && indent(line) == 2 && line.trim().ends_with(':') {
            resource = line.trim().trim_end_matches(':').to_string();
            continue;
        }
        if value_of(line, "Type") != Some("HttpApi") {
            continue;
        }
        // The event's name is the line above `Type`, one level out; its block ends where the
        // indent drops back to that level.
        let event_indent = indent(line).saturating_sub(2);
        let (mut method, mut path, mut authorizer) = (None, None, None);
        for next in lines[i + 1..].iter().filter(|l| !l.trim().is_empty()) {
            if indent(next) <= event_indent {
                break;
            }
            method = method.or(value_of(next, "Method").map(str::to_ascii_uppercase));
            path = path.or(value_of(next, "Path").map(str::to_string));
            authorizer = authorizer.or(value_of(next, "Authorizer").map(str::to_string));
        }
        let (Some(method), Some(path)) = (method, path) else {
            panic!("template line {}: an HttpApi event of {resource} without Method and Path", i + 1);
        };
        events.push(HttpApiEvent { resource: resource.clone(), method, path, authorizer });
    }
    events
}

/// The `HttpApi` events of every resource, as (method, path).
fn http_api_events(template: &str) -> BTreeMap<String, Routes> {
    let mut events: BTreeMap<String, Routes> = BTreeMap::new();
    for event in http_api_event_blocks(template) {
        events.entry(event.resource).or_default().insert((event.method, event.path));
    }
    events
}

/// Each HTTP function of the template, with the routes its router serves.
fn served_by_function() -> BTreeMap<&'static str, Routes> {
    BTreeMap::from([
        ("LeadCaptureFunction", lead_capture::route_table().into_iter().collect()),
        ("QualifyBotFunction", qualify_bot::route_table().into_iter().collect()),
        ("KpiApiFunction", kpi_rollup::route_table().into_iter().collect()),
    ])
}

/// Routes a router serves that the template does not route to its function, and the other way
/// round, each as (function, method, path).
fn differences(template: &str) -> (FunctionRoutes, FunctionRoutes) {
    let events = http_api_events(template);
    let served = served_by_function();
    let others: Vec<_> = events.keys().filter(|name| !served.contains_key(name.as_str())).collect();
    assert!(
        others.is_empty(),
        "a function with HttpApi events ({others:?}) whose router is not compared here: add its route list"
    );
    let (mut missing, mut extra) = (FunctionRoutes::new(), FunctionRoutes::new());
    for (function, served) in served {
        assert!(!served.is_empty(), "{function}'s router serves routes");
        let routed = events.get(function).cloned().unwrap_or_default();
        let tagged = |(method, path): &(String, String)| (function.to_string(), method.clone(), path.clone());
        missing.extend(served.difference(&routed).map(tagged));
        extra.extend(routed.difference(&served).map(tagged));
    }
    (missing, extra)
}

#[test]
fn every_route_the_router_serves_is_routed_by_the_template_and_nothing_else() {
    let (missing, extra) = differences(&template_text());
    assert!(
        missing.is_empty(),
        "served by a router but not routed to its function by infra/template.yaml: {missing:?}"
    );
    assert!(extra.is_empty(), "routed by infra/template.yaml but not served by that function's router: {extra:?}");
}

#[test]
fn the_parity_check_notices_a_route_removed_from_the_template() {
    let template = template_text();
    let lines: Vec<&str> = template.lines().collect();
    let path_line = lines
        .iter()
        .enumerate()
        .position(|(i, l)| l.trim() == "Path: /v1/unsubscribe" && lines[i - 1].trim() == "Method: POST")
        .expect("the template routes the one-click unsubscribe POST");
    // Back to the event's name, then forward to the next event: that block is the route.
    let start = (0..path_line).rev().find(|&i| indent(lines[i]) == 8).unwrap();
    let end = (start + 1..lines.len()).find(|&i| indent(lines[i]) <= 8).unwrap();
    let without = [&lines[..start], &lines[end..]].concat().join("\n");
    assert_ne!(without, template);
    let (missing, extra) = differences(&without);
    let removed = ("LeadCaptureFunction".to_string(), "POST".to_string(), "/v1/unsubscribe".to_string());
    assert_eq!(missing, BTreeSet::from([removed]));
    assert!(extra.is_empty());
}

#[test]
fn the_parity_check_notices_a_bot_route_removed_from_the_template() {
    let template = template_text();
    let lines: Vec<&str> = template.lines().collect();
    let path_line = lines
        .iter()
        .position(|l| l.trim() == "Path: /v1/bot/sessions/{session_id}/answers")
        .expect("the template routes the bot's answers");
    let start = (0..path_line).rev().find(|&i| indent(lines[i]) == 8).unwrap();
    let end = (start + 1..lines.len()).find(|&i| indent(lines[i]) <= 8).unwrap();
    let without = [&lines[..start], &lines[end..]].concat().join("\n");
    let (missing, extra) = differences(&without);
    let method = lines[start + 1..end].iter().find_map(|l| value_of(l, "Method")).unwrap().to_string();
    let removed = ("QualifyBotFunction".to_string(), method, "/v1/bot/sessions/{session_id}/answers".to_string());
    assert_eq!(missing, BTreeSet::from([removed]));
    assert!(extra.is_empty());
}

/// Removes the `HttpApi` event routing `path` (the first with `method`, if given) from the template.
fn without_route(template: &str, method: Option<&str>, path: &str) -> String {
    let lines: Vec<&str> = template.lines().collect();
    let path_line = lines
        .iter()
        .enumerate()
        .position(|(i, l)| {
            l.trim() == format!("Path: {path}") && method.is_none_or(|m| lines[i - 1].trim() == format!("Method: {m}"))
        })
        .unwrap_or_else(|| panic!("the template routes {path}"));
    let start = (0..path_line).rev().find(|&i| indent(lines[i]) == 8).unwrap();
    let end = (start + 1..lines.len()).find(|&i| indent(lines[i]) <= 8).unwrap();
    [&lines[..start], &lines[end..]].concat().join("\n")
}

#[test]
fn the_parity_check_notices_a_kpi_or_contact_admin_route_removed_from_the_template() {
    let template = template_text();
    for (function, method, path) in [
        ("KpiApiFunction", "POST", "/v1/spend"),
        ("KpiApiFunction", "GET", "/v1/kpi"),
        ("LeadCaptureFunction", "GET", "/v1/contacts"),
    ] {
        let without = without_route(&template, Some(method), path);
        let (missing, extra) = differences(&without);
        let removed = (function.to_string(), method.to_string(), path.to_string());
        assert_eq!(missing, BTreeSet::from([removed]), "{method} {path}");
        assert!(extra.is_empty());
    }
}

#[test]
fn the_template_reader_finds_every_http_api_event() {
    let events = http_api_events(&template_text());
    let routed = &events["LeadCaptureFunction"];
    assert!(routed.contains(&("OPTIONS".to_string(), "/v1/events".to_string())));
    assert!(routed.contains(&("GET".to_string(), "/v1/forms/{form_id}".to_string())));
    let bot = &events["QualifyBotFunction"];
    assert!(bot.contains(&("OPTIONS".to_string(), "/v1/bot/{script_id}/sessions".to_string())));
    let kpi = &events["KpiApiFunction"];
    assert!(kpi.contains(&("POST".to_string(), "/v1/spend".to_string())));
    assert_eq!(
        events.values().map(BTreeSet::len).sum::<usize>(),
        template_text().lines().filter(|l| l.trim() == "Type: HttpApi").count(),
        "one route per HttpApi event"
    );
}

/// Admin routes are guarded twice on AWS: API Gateway's IAM authoriser, then the function's guard,
/// which refuses a request without the IAM identity the authoriser leaves. Every admin route must
/// carry `Authorizer: AWS_IAM`, and no public route may (a form post cannot sign with SigV4).
#[test]
fn every_admin_route_and_only_admin_routes_take_iam_authorisation_in_the_template() {
    let admin: Routes = lead_capture::admin_route_table().into_iter().chain(kpi_rollup::admin_route_table()).collect();
    for route in [("GET", "/v1/contacts/{id}"), ("GET", "/v1/contacts"), ("POST", "/v1/spend"), ("GET", "/v1/kpi")] {
        assert!(admin.contains(&(route.0.to_string(), route.1.to_string())), "{route:?} is an admin route");
    }
    assert_eq!(
        kpi_rollup::admin_route_table(),
        kpi_rollup::route_table(),
        "kpi-api serves admin routes only: its function has no public route"
    );
    for event in http_api_event_blocks(&template_text()) {
        let route = (event.method.clone(), event.path.clone());
        if admin.contains(&route) {
            assert_eq!(event.authorizer.as_deref(), Some("AWS_IAM"), "admin route {route:?} without IAM auth");
        } else {
            assert_eq!(event.authorizer, None, "public route {route:?} with an authoriser");
        }
    }
    assert!(
        template_text().contains("EnableIamAuthorizer: true"),
        "SAM takes AWS_IAM on an event only with EnableIamAuthorizer on the API"
    );
}
