//! Lead scoring over HTTP on the local stack, read back through the admin route: every admin
//! route refuses a caller without the key; the breakdown explains each contribution and decays as
//! the simulated clock moves; crossing the MQL threshold moves the stage and raises `became_mql`,
//! which a journey triggers on.

mod support;

use axum::body::Body;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use support::inprocess::{Answer, TestStack};
use voronka_domain::model::{EventType, LifecycleStage};
use voronka_domain::repo::ContactRepository;

const DAY: i64 = 24 * 60 * 60;

async fn get_contact(t: &TestStack, id: &str, key: Option<&str>) -> Answer {
    let mut request = Request::get(format!("/v1/contacts/{id}"));
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    t.send(request.body(Body::empty()).unwrap()).await
}

/// A lead from the consultation form: company of 201+ (20) and a website (10) are fit, the
/// consultation itself engagement (10): 40 points, below the MQL threshold of 50.
async fn lead(t: &TestStack, email: &str) -> String {
    t.consented_contact(email, json!({"company_size": "201+", "website": "https://acme.example"})).await
}

fn contribution<'a>(breakdown: &'a Value, reason: &str) -> &'a Value {
    let contributions = breakdown["contributions"].as_array().expect("contributions");
    contributions.iter().find(|c| c["reason"] == reason).unwrap_or_else(|| panic!("no `{reason}` in {breakdown}"))
}

async fn view_pricing(t: &TestStack, contact_id: &str, n: u32) {
    let event = json!({"event_id": format!("{contact_id}:pricing:{n}"), "type": "page_view",
        "contact_id": contact_id, "properties": {"page_type": "pricing"}});
    t.post_events(vec![event], true).await;
}

#[tokio::test]
async fn every_admin_route_refuses_a_caller_without_the_key_or_with_a_wrong_one() {
    let t = TestStack::new();
    let admin_routes = lead_capture::admin_route_table();
    assert!(!admin_routes.is_empty());
    for (method, path) in admin_routes {
        let path = path.replace("{id}", "c_nobody");
        assert!(!path.contains('{'), "fill every parameter of {path}");
        let request = |key: Option<&str>| {
            let mut request = Request::builder().method(method.as_str()).uri(&path);
            if let Some(key) = key {
                request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
            }
            request.body(Body::empty()).unwrap()
        };
        let without = t.send(request(None)).await;
        assert_eq!(without.status, StatusCode::UNAUTHORIZED, "{method} {path}: {}", without.text);
        assert_eq!(without.error_code(), "unauthorized");
        assert_eq!(without.headers[header::WWW_AUTHENTICATE], "Bearer");
        let wrong_key = format!("{}0", &t.stack.admin_key[..t.stack.admin_key.len() - 1]);
        for wrong in [wrong_key.as_str(), "", "Bearer"] {
            assert_eq!(t.send(request(Some(wrong))).await.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        }
        let basic = Request::builder()
            .method(method.as_str())
            .uri(&path)
            .header(header::AUTHORIZATION, format!("Basic {}", t.stack.admin_key))
            .body(Body::empty())
            .unwrap();
        assert_eq!(t.send(basic).await.status, StatusCode::UNAUTHORIZED, "only a bearer key counts");
        let with_key = t.send(request(Some(&t.stack.admin_key))).await;
        assert_ne!(with_key.status, StatusCode::UNAUTHORIZED, "{method} {path} with the key");
    }
    let unknown = get_contact(&t, "c_nobody", Some(&t.stack.admin_key)).await;
    assert_eq!((unknown.status, unknown.error_code().as_str()), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn the_breakdown_lists_each_contribution_with_its_reason_and_decays_with_the_clock() {
    let t = TestStack::new();
    let id = lead(&t, "decay@example.com").await;
    let answer = get_contact(&t, &id, Some(&t.stack.admin_key)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let body = answer.json();
    assert_eq!(body["id"], id);
    assert_eq!(body["email"], "decay@example.com");
    assert_eq!(body["stage"], "lead");
    assert_eq!(body["consents"]["email"]["status"], "granted", "{}", body["consents"]);
    assert!(body["tags"].as_array().unwrap().contains(&json!("consultation")));
    assert!(body["orders"].is_object() && body["journeys"].is_array());
    let score = &body["score"];
    assert_eq!(score["total"], 40.0, "{score}");
    assert_eq!((score["fit"].clone(), score["engagement"].clone()), (json!(30.0), json!(10.0)));
    assert_eq!(score["thresholds"], json!({"mql": 50, "sql": 80}));
    for (reason, kind, points) in [
        ("company of 51 or more", "fit", 20.0),
        ("gave a company website", "fit", 10.0),
        ("asked for a consultation", "engagement", 10.0),
    ] {
        let line = contribution(score, reason);
        assert_eq!((line["kind"].as_str(), line["points"].as_f64()), (Some(kind), Some(points)), "{line}");
        assert_eq!(line["current_points"].as_f64(), Some(points));
    }
    assert_eq!(score["contributions"].as_array().unwrap().len(), 3, "each rule once: {score}");

    // One half-life (14 days) later the consultation counts half; fit does not fade.
    t.advance(14 * DAY);
    let score = get_contact(&t, &id, Some(&t.stack.admin_key)).await.json()["score"].clone();
    assert_eq!(score["total"], 35.0, "{score}");
    let consultation = contribution(&score, "asked for a consultation");
    assert_eq!((consultation["points"].as_f64(), consultation["current_points"].as_f64()), (Some(10.0), Some(5.0)));
    assert_eq!(contribution(&score, "company of 51 or more")["current_points"], 20.0);
    t.advance(14 * DAY);
    assert_eq!(get_contact(&t, &id, Some(&t.stack.admin_key)).await.json()["score"]["total"], 32.5);

    // The same form again: fit is replaced, not added twice; the new consultation counts fresh.
    lead(&t, "decay@example.com").await;
    let score = get_contact(&t, &id, Some(&t.stack.admin_key)).await.json()["score"].clone();
    assert_eq!(score["fit"], 30.0, "{score}");
    assert_eq!(score["total"], 42.5, "{score}");
}

const MQL_JOURNEY: &str = r#"
id = "mql_handoff"
description = "Tags a marketing-qualified lead for sales"
holdout_percent = 0
exit_on = ["unsubscribed"]

[trigger]
type = "event"
event = "became_mql"

[entry]
re_entry = "once"

[[steps]]
id = "tag"
type = "update"
add_tags = ["sales_ready"]
"#;

#[tokio::test]
async fn crossing_the_threshold_makes_an_mql_once_and_a_journey_triggers_on_became_mql() {
    let (t, _campaigns) = TestStack::with_extra_campaign_files(&[("journeys/mql_handoff.toml", MQL_JOURNEY)]);
    let id = lead(&t, "crossing@example.com").await;
    let repo = ContactRepository::new(t.stack.state.store.as_ref());
    assert_eq!(repo.get(&id).await.unwrap().unwrap().stage, LifecycleStage::Lead);

    view_pricing(&t, &id, 1).await; // 40 + 10 = 50: the MQL threshold
    let contact = repo.get(&id).await.unwrap().unwrap();
    assert_eq!(contact.stage, LifecycleStage::Mql);
    assert!(contact.tags.contains("sales_ready"), "the journey on became_mql ran: {:?}", contact.tags);
    let journeys = voronka_domain::repo::journey_state::load_all(t.stack.state.store.as_ref(), &id).await.unwrap();
    assert!(journeys.contains_key("mql_handoff"));
    let due = voronka_domain::repo::due::items_for(t.stack.state.store.as_ref(), &id).await.unwrap();
    let milestones: Vec<_> = due.iter().filter(|d| d.id.starts_with(&format!("score:{id}:became_mql:"))).collect();
    assert_eq!(milestones.len(), 1, "{due:?}");
    assert!(matches!(&milestones[0].work,
        voronka_domain::repo::due::DueWork::Evaluate { event_type: EventType::BecameMql, properties }
            if properties["score"] == 50.0 && properties["stage"] == "mql"));

    // A second view the same day counts nothing (a browser may post a hundred at once); the
    // next day it counts again.
    view_pricing(&t, &id, 2).await;
    t.advance(DAY);
    view_pricing(&t, &id, 3).await;
    let due = voronka_domain::repo::due::items_for(t.stack.state.store.as_ref(), &id).await.unwrap();
    assert_eq!(due.iter().filter(|d| d.id.contains(":became_mql:")).count(), 1, "already an MQL: once");
    let body = get_contact(&t, &id, Some(&t.stack.admin_key)).await.json();
    assert_eq!(body["stage"], "mql");
    assert_eq!(body["journeys"][0]["journey_id"], "mql_handoff", "{}", body["journeys"]);
    let pricing = body["score"]["contributions"].as_array().unwrap().iter().filter(|c| c["reason"] == "viewed pricing");
    assert_eq!(pricing.count(), 2);
}

#[tokio::test]
async fn became_mql_from_outside_is_refused_even_signed() {
    let t = TestStack::new();
    let id = lead(&t, "forged@example.com").await;
    let forged = json!({"event_id": "forged-1", "type": "became_mql", "contact_id": id, "properties": {}});
    let answer = t.post_events_answer(vec![forged], true).await;
    assert_eq!(answer.json()["results"][0]["code"], "reserved_type", "{}", answer.text);
}

/// An API Gateway (HTTP API, v2) request for the admin route, as API Gateway delivers it; with
/// `iam`, the identity its IAM authoriser verified.
fn api_gateway_request(contact_id: &str, iam: bool) -> lambda_http::Request {
    let mut context = json!({
        "accountId": "123456789012", "apiId": "a1b2c3d4e5",
        "domainName": "a1b2c3d4e5.execute-api.eu-central-1.amazonaws.com", "domainPrefix": "a1b2c3d4e5",
        "http": {"method": "GET", "path": format!("/v1/contacts/{contact_id}"), "protocol": "HTTP/1.1",
                 "sourceIp": "198.51.100.23", "userAgent": "aws-cli"},
        "requestId": "JKJaXmPLvHcESHA=", "routeKey": "GET /v1/contacts/{id}", "stage": "$default",
        "time": "22/Nov/2026:10:00:00 +0000", "timeEpoch": 1795341600000u64,
    });
    if iam {
        context["authorizer"] = json!({"iam": {"accessKey": "ASIAEXAMPLE", "accountId": "123456789012",
            "callerId": "AROAEXAMPLE:ops", "principalOrgId": null,
            "userArn": "arn:aws:sts::123456789012:assumed-role/voronka-ops/ops", "userId": "AROAEXAMPLE:ops"}});
    }
    let event = json!({
        "version": "2.0", "routeKey": "GET /v1/contacts/{id}", "rawPath": format!("/v1/contacts/{contact_id}"),
        "rawQueryString": "", "headers": {"host": "a1b2c3d4e5.execute-api.eu-central-1.amazonaws.com"},
        "pathParameters": {"id": contact_id}, "requestContext": context, "isBase64Encoded": false,
    });
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event")
}

/// On Lambda the guard is the same code with the IAM strategy: a request carrying the identity
/// API Gateway's authoriser verified passes; one without (a route the template forgot to protect)
/// is refused, and a bearer header counts for nothing there.
#[tokio::test]
async fn on_lambda_the_guard_takes_the_iam_identity_from_the_request_context_and_nothing_else() {
    let t = TestStack::new();
    let id = lead(&t, "iam@example.com").await;
    let mut state = t.stack.state.clone();
    state.admin_access = lead_capture::admin::AdminAccess::IamAuthorizer;
    let router = lead_capture::router(state);

    let signed = api_gateway_request(&id, true);
    assert!(lead_capture::lambda::iam_caller(&signed).is_some());
    let answer = lead_capture::lambda::handle(router.clone(), signed).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "{:?}", answer.body());

    let unsigned = api_gateway_request(&id, false);
    let answer = lead_capture::lambda::handle(router.clone(), unsigned).await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);

    let mut with_key = api_gateway_request(&id, false);
    let bearer = format!("Bearer {}", t.stack.admin_key);
    with_key.headers_mut().insert(header::AUTHORIZATION, bearer.parse().unwrap());
    let answer = lead_capture::lambda::handle(router, with_key).await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "the local key means nothing behind IAM");
}

/// `voronka serve` creates the admin key on first start, readable by its owner only, and reads the
/// same key on every later start; a key file too short to be a secret stops start-up.
#[test]
fn the_local_admin_key_is_created_once_and_kept_private() {
    use voronka_local::stack::{ADMIN_KEY_FILE, load_or_create_admin_key};
    let dir = support::inprocess::TempFolder::new("admin-key");
    let key = load_or_create_admin_key(dir.path()).unwrap();
    assert_eq!(key.len(), 64, "256 random bits in hex");
    assert_eq!(load_or_create_admin_key(dir.path()).unwrap(), key, "the same key after a restart");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(ADMIN_KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join(ADMIN_KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = load_or_create_admin_key(dir.path()).unwrap_err().to_string();
        assert!(refused.contains("readable by others"), "{refused}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::write(dir.path().join(ADMIN_KEY_FILE), "short\n").unwrap();
    let refused = load_or_create_admin_key(dir.path()).unwrap_err().to_string();
    assert!(refused.contains("at least 32"), "{refused}");
}
