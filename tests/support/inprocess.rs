//! The suite in this process on embedded in-memory storage with a simulated clock, and a way to
//! send it HTTP requests through the same router `voronka serve` and Lambda use.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode, header};
use jiff::{SignedDuration, Timestamp};
use lead_capture::ClientIp;
use serde_json::Value;
use tower::ServiceExt;
use voronka_domain::model::{Event, SendRequest};
use voronka_domain::ports::{Queue, QueueName, SeededIds, SimulatedClock};
use voronka_local::stack::{Stack, StackOptions};

pub struct TestStack {
    pub stack: Stack,
    pub clock: Arc<SimulatedClock>,
    pub app: Router,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The names of the fields a JSON error names.
    pub fn error_fields(&self) -> Vec<String> {
        self.json()["error"]["fields"]
            .as_array()
            .map(|fields| fields.iter().map(|f| f["field"].as_str().unwrap_or_default().to_string()).collect())
            .unwrap_or_default()
    }

    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_string()
    }
}

impl TestStack {
    pub fn new() -> TestStack {
        let clock = Arc::new(SimulatedClock::starting_at(Timestamp::from_second(1_800_000_000).unwrap()));
        let stack = Stack::open(StackOptions {
            data_dir: None,
            metering: None,
            campaigns_dir: None,
            public_base_url: Some("https://api.voronka.test".into()),
            clock: clock.clone(),
            ids: Arc::new(SeededIds::new(7)),
            faults: None,
        })
        .expect("the stack opens");
        let app = voronka_local::serve::app(stack.state.clone(), stack.outbox.dir().to_path_buf());
        TestStack { stack, clock, app }
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.advance(SignedDuration::from_secs(seconds));
    }

    /// The `x-voronka-signature` a shop back end sends with `body` now (`t=...,kid=...,v1=...`).
    pub fn shop_signature(&self, body: &[u8]) -> String {
        let now = voronka_domain::ports::Clock::now(self.clock.as_ref());
        voronka_domain::signing::sign_events_body(&self.stack.state.secrets.events_keys, now, body)
    }

    /// The functions restarted with `secrets`, as a deployment after a key rotation: same store,
    /// queues, clock and outbox.
    pub fn restart_with_secrets(&mut self, secrets: voronka_domain::signing::Secrets) {
        let secrets = Arc::new(secrets);
        self.stack.state.shared.secrets = secrets.clone();
        self.stack.sender.shared.secrets = secrets.clone();
        self.stack.evaluator.shared.secrets = secrets;
        self.app = voronka_local::serve::app(self.stack.state.clone(), self.stack.outbox.dir().to_path_buf());
    }

    /// Conversions credited on `date`, summed per attribution model (`first_touch`, ...).
    pub async fn attributed_conversions(&self, date: jiff::civil::Date) -> std::collections::BTreeMap<String, f64> {
        use voronka_domain::journeys::attribution::Model;
        let mut credit = std::collections::BTreeMap::new();
        for model in Model::ALL {
            let store = self.stack.state.store.as_ref();
            for row in voronka_domain::repo::aggregates::attribution_credit(store, date, model).await.unwrap() {
                *credit.entry(model.as_str().to_string()).or_default() += row.conversions;
            }
        }
        credit
    }

    /// Moves the clock `minutes` on in steps, with the scheduler and the consumers running after
    /// each step of `step_minutes`, as they would on a live installation.
    pub async fn run_for(&self, minutes: i64, step_minutes: i64) {
        let mut left = minutes;
        while left > 0 {
            let step = step_minutes.min(left);
            self.advance(step * 60);
            voronka_local::workers::tick(&self.stack).await.unwrap();
            left -= step;
        }
    }

    pub async fn send(&self, request: Request<Body>) -> Answer {
        self.send_from(request, "192.0.2.10").await
    }

    pub async fn send_from(&self, mut request: Request<Body>, ip: &str) -> Answer {
        request.extensions_mut().insert(ClientIp(ip.parse::<IpAddr>().unwrap()));
        let response = self.app.clone().oneshot(request).await.expect("the router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        Answer { status, headers, text: String::from_utf8_lossy(&bytes).into_owned() }
    }

    pub async fn submit_json(&self, form: &str, body: Value) -> Answer {
        let request = Request::post(format!("/v1/forms/{form}/submissions"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    /// Posts events as the shop would (signed) or a browser (unsigned); all must be accepted.
    /// The evaluator then handles them, as its queue consumer would.
    pub async fn post_events(&self, events: Vec<Value>, signed: bool) {
        let body = serde_json::json!({ "events": events }).to_string();
        let mut request = Request::post("/v1/events").header(header::CONTENT_TYPE, "application/json");
        if signed {
            let signature = self.shop_signature(body.as_bytes());
            request = request.header(voronka_domain::signing::EVENTS_SIGNATURE_HEADER, signature);
        }
        let answer = self.send_from(request.body(Body::from(body)).unwrap(), "203.0.113.10").await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
        assert_eq!(answer.json()["rejected"], 0, "{}", answer.text);
        voronka_local::workers::drain(&self.stack).await.unwrap();
    }

    /// A contact with marketing consent (the single opt-in consultation form), with `extra` fields.
    pub async fn consented_contact(&self, email: &str, extra: Value) -> String {
        let mut fields = serde_json::json!({"name": "Test Person", "email": email, "phone": "+79990001122",
            "company_size": "1-10", "consent": true, "time_zone": "Europe/Moscow"});
        for (name, value) in extra.as_object().cloned().unwrap_or_default() {
            fields[name] = value;
        }
        let answer = self.submit_json("consultation", fields).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        voronka_local::workers::tick(&self.stack).await.unwrap();
        answer.json()["contact_id"].as_str().unwrap().to_string()
    }

    /// Everything waiting on a queue, removed from it.
    pub async fn drain(&self, queue: QueueName) -> Vec<String> {
        let mut bodies = Vec::new();
        loop {
            let batch =
                self.stack.embedded().queue.receive(queue, 10, std::time::Duration::from_secs(60)).await.unwrap();
            if batch.is_empty() {
                return bodies;
            }
            for message in batch {
                self.stack.embedded().queue.delete(queue, &message.receipt).await.unwrap();
                bodies.push(message.body);
            }
        }
    }

    pub async fn drain_events(&self) -> Vec<Event> {
        self.drain(QueueName::Events).await.iter().map(|b| serde_json::from_str(b).unwrap()).collect()
    }

    pub async fn drain_sends(&self) -> Vec<SendRequest> {
        self.drain(QueueName::Sends).await.iter().map(|b| serde_json::from_str(b).unwrap()).collect()
    }
}

impl TestStack {
    /// A stack whose campaigns are the bundled ones plus `extra` files (path, text), written to a
    /// folder that lives as long as the returned guard.
    pub fn with_extra_campaign_files(extra: &[(&str, &str)]) -> (TestStack, TempFolder) {
        let dir = TempFolder::new("campaigns");
        let files = voronka_campaigns::bundled_files();
        let extra = extra.iter().map(|(path, text)| (path.to_string(), text.to_string()));
        for (path, text) in files.into_iter().map(|f| (f.path, f.text)).chain(extra) {
            let target = dir.path().join(path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(target, text).unwrap();
        }
        let clock = Arc::new(SimulatedClock::starting_at(Timestamp::from_second(1_800_000_000).unwrap()));
        let stack = Stack::open(StackOptions {
            data_dir: None,
            metering: None,
            campaigns_dir: Some(dir.path().to_path_buf()),
            public_base_url: Some("https://api.voronka.test".into()),
            clock: clock.clone(),
            ids: Arc::new(SeededIds::new(7)),
            faults: None,
        })
        .expect("the stack opens");
        let app = voronka_local::serve::app(stack.state.clone(), stack.outbox.dir().to_path_buf());
        (TestStack { stack, clock, app }, dir)
    }

    /// Posts a batch of events and returns the answer, whatever it is (no evaluator run).
    pub async fn post_events_answer(&self, events: Vec<Value>, signed: bool) -> Answer {
        let body = serde_json::json!({ "events": events }).to_string();
        let mut request = Request::post("/v1/events").header(header::CONTENT_TYPE, "application/json");
        if signed {
            let signature = self.shop_signature(body.as_bytes());
            request = request.header(voronka_domain::signing::EVENTS_SIGNATURE_HEADER, signature);
        }
        self.send_from(request.body(Body::from(body)).unwrap(), "203.0.113.10").await
    }
}

/// A folder under the system's temporary folder, removed when dropped.
pub struct TempFolder(std::path::PathBuf);

impl TempFolder {
    pub fn new(purpose: &str) -> TempFolder {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("voronka-test-{purpose}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("a temporary folder");
        TempFolder(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
