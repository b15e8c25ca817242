//! Business counters as CloudWatch Embedded Metric Format (EMF) lines: one JSON line per
//! invocation in the function's log, which CloudWatch Logs turns into metrics in the `Voronka`
//! namespace, so dashboards and alarms need no `PutMetricData` call.
//!
//! A line (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
//! `{"_aws":{"Timestamp":<ms>,"CloudWatchMetrics":[{"Namespace":"Voronka","Dimensions":[["Function"]],
//! "Metrics":[{"Name":"Sent","Unit":"Count"}]}]},"Function":"sender","Sent":3}`.
//!
//! Metric names are chosen by the code (outcomes and reasons), never taken from data, and the only
//! dimension is the function's name: no line can carry an address or an id.
//!
//! Where lines go is set once per process: the Lambda mains call `write_to_stdout` (the Lambda
//! runtime ships stdout to CloudWatch Logs); elsewhere they go nowhere, except on a thread that
//! holds a `Capture` (tests).

use std::cell::RefCell;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "Voronka";
/// The dimension every metric carries.
pub const FUNCTION_DIMENSION: &str = "Function";
/// EMF's limit of metrics per directive.
const MAX_METRICS_PER_DIRECTIVE: usize = 100;

static STDOUT: OnceLock<()> = OnceLock::new();

thread_local! {
    static CAPTURED: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Sends every metric line of this process to stdout, as the Lambda mains do.
pub fn write_to_stdout() {
    let _ = STDOUT.set(());
}

/// One invocation's counters, written as one line by `flush`.
#[derive(Debug, Clone)]
pub struct Metrics {
    function: &'static str,
    values: Vec<(String, f64)>,
}

impl Metrics {
    /// Counters of `function`; `always` are written even when zero (so an alarm sees a zero, not
    /// missing data, and a dashboard a flat line).
    pub fn new(function: &'static str, always: &[&str]) -> Metrics {
        Metrics { function, values: always.iter().map(|name| (name.to_string(), 0.0)).collect() }
    }

    /// Adds `amount` to the counter `name`.
    pub fn add(&mut self, name: &str, amount: f64) {
        match self.values.iter_mut().find(|(known, _)| known == name) {
            Some((_, value)) => *value += amount,
            None => self.values.push((name.to_string(), amount)),
        }
    }

    pub fn count(&mut self, name: &str) {
        self.add(name, 1.0);
    }

    pub fn get(&self, name: &str) -> f64 {
        self.values.iter().find(|(known, _)| known == name).map_or(0.0, |(_, value)| *value)
    }

    /// Writes the line (nothing when there are no counters).
    pub fn flush(self) {
        if self.values.is_empty() {
            return;
        }
        let values: Vec<(&str, f64)> = self.values.iter().map(|(name, value)| (name.as_str(), *value)).collect();
        emit(self.function, &values);
    }
}

/// Writes one EMF line of `function`'s counters, timestamped now.
pub fn emit(function: &str, values: &[(&str, f64)]) {
    let capturing = CAPTURED.with(|captured| captured.borrow().is_some());
    if !capturing && STDOUT.get().is_none() {
        // Nowhere to go (the local stack, the demo): not even formatted.
        return;
    }
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let line = line(function, now_ms, values);
    let captured =
        CAPTURED.with(|captured| captured.borrow_mut().as_mut().map(|lines| lines.push(line.clone())).is_some());
    if !captured && STDOUT.get().is_some() {
        println!("{line}");
    }
}

/// The EMF line itself: `_aws` metadata naming every counter, and the values as top-level keys.
pub fn line(function: &str, timestamp_ms: i64, values: &[(&str, f64)]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for (name, _) in values {
        if !names.contains(name) && *name != FUNCTION_DIMENSION && *name != "_aws" {
            names.push(name);
        }
    }
    let directives: Vec<Value> = names
        .chunks(MAX_METRICS_PER_DIRECTIVE)
        .map(|chunk| {
            json!({
                "Namespace": NAMESPACE,
                "Dimensions": [[FUNCTION_DIMENSION]],
                "Metrics": chunk.iter().map(|name| json!({"Name": name, "Unit": "Count"})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut object = Map::new();
    object.insert("_aws".into(), json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": directives}));
    object.insert(FUNCTION_DIMENSION.into(), json!(function));
    for name in names {
        let total: f64 = values.iter().filter(|(known, _)| *known == name).map(|(_, value)| value).sum();
        object.insert(name.to_string(), json!(total));
    }
    Value::Object(object).to_string()
}

/// Collects the lines emitted on this thread while it lives (a test on a current-thread runtime).
pub struct Capture {
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Starts collecting this thread's lines.
pub fn capture() -> Capture {
    CAPTURED.with(|captured| *captured.borrow_mut() = Some(Vec::new()));
    Capture { _not_send: std::marker::PhantomData }
}

impl Capture {
    /// The lines collected so far.
    pub fn lines(&self) -> Vec<String> {
        CAPTURED.with(|captured| captured.borrow().clone().unwrap_or_default())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        CAPTURED.with(|captured| *captured.borrow_mut() = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_follows_the_embedded_metric_format() {
        let text = line("sender", 1_764_000_000_000, &[("Sent", 3.0), ("Blocked.unsubscribed", 1.0), ("Sent", 1.0)]);
        let value: Value = serde_json::from_str(&text).unwrap();
        let aws = &value["_aws"];
        assert_eq!(aws["Timestamp"], json!(1_764_000_000_000i64));
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        assert_eq!(directives[0]["Namespace"], "Voronka");
        assert_eq!(directives[0]["Dimensions"], json!([["Function"]]));
        assert_eq!(
            directives[0]["Metrics"],
            json!([{"Name": "Sent", "Unit": "Count"}, {"Name": "Blocked.unsubscribed", "Unit": "Count"}])
        );
        // Every dimension and metric named in the directive is a top-level key with its value.
        assert_eq!(value["Function"], "sender");
        assert_eq!(value["Sent"], json!(4.0));
        assert_eq!(value["Blocked.unsubscribed"], json!(1.0));
        assert_eq!(value.as_object().unwrap().len(), 4, "{text}");
        assert!(!text.contains('\n'), "one line");
    }

    #[test]
    fn more_than_a_hundred_metrics_take_several_directives() {
        let names: Vec<String> = (0..150).map(|i| format!("M{i}")).collect();
        let values: Vec<(&str, f64)> = names.iter().map(|n| (n.as_str(), 1.0)).collect();
        let value: Value = serde_json::from_str(&line("f", 0, &values)).unwrap();
        let directives = value["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.iter().map(|d| d["Metrics"].as_array().unwrap().len()).collect::<Vec<_>>(), [100, 50]);
    }

    #[test]
    fn a_capture_collects_this_threads_lines_once_per_flush() {
        let capture = capture();
        let mut metrics = Metrics::new("sender", &["Sent", "Retry"]);
        metrics.count("Sent");
        metrics.count("Sent");
        assert_eq!(metrics.get("Sent"), 2.0);
        metrics.flush();
        let lines = capture.lines();
        assert_eq!(lines.len(), 1);
        let value: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!((value["Sent"].as_f64(), value["Retry"].as_f64()), (Some(2.0), Some(0.0)));
    }
}
