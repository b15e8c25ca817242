//! Every sample payload in `events/` goes through the Lambda entry point (`lead_capture::lambda`)
//! exactly as API Gateway would deliver it, and answers the status `expectations.json` lists.
//! A sample without an expectation, or an expectation without a sample, fails the test.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use support::inprocess::TestStack;

fn samples_dir(function: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events").join(function)
}

#[tokio::test]
async fn every_lead_capture_sample_answers_its_expected_status() {
    let dir = samples_dir("lead-capture");
    let expectations: BTreeMap<String, u16> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expectations.json")).unwrap()).unwrap();
    let mut samples: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json") && name != "expectations.json")
        .collect();
    samples.sort();
    assert_eq!(samples, expectations.keys().cloned().collect::<Vec<_>>(), "every sample has one expectation");

    let t = TestStack::new();
    let router = lead_capture::router(t.stack.state.clone());
    for name in samples {
        let text = std::fs::read_to_string(dir.join(&name)).unwrap();
        let request =
            lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{name} is not an API Gateway event: {e}"));
        let source_ip = lead_capture::lambda::client_ip(&request);
        assert!(source_ip.is_some(), "{name}: the client address comes from the request context");
        let response = lead_capture::lambda::handle(router.clone(), request).await.unwrap();
        assert_eq!(response.status().as_u16(), expectations[&name], "{name}: {:?}", response.body());
    }
}
