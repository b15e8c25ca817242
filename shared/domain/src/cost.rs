//! The monthly AWS bill of a workload, from a run's metered counts (`ports::metered`) and a price
//! table (`infra/pricing.toml`).
//!
//! Each count scales with what its work grows with: lead work by leads, event work by events,
//! sends by emails, daily work by days; a schedule's idle run by how often the template runs it.
//! Lambda duration is modelled, not measured on AWS: the handler's own in-process time (the run's
//! time less the time spent inside the adapters), plus an assumed latency per AWS request the
//! function makes itself, plus a fixed overhead per invocation, at the function's memory size.
//! The event sources' SQS receives and deletes are not the function's time (Lambda's poller makes
//! them); an idle event source's long polling is a line of its own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ports::metered::{Driver, Function, Usage, UsageRow};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    pub region: String,
    pub currency: String,
    /// When the prices were read off the pages named in each `source`.
    pub as_of: String,
    pub lambda: LambdaPrices,
    pub sqs: SqsPrices,
    pub dynamodb: DynamoPrices,
    pub ses: SesPrices,
    pub api_gateway: ApiGatewayPrices,
    pub assumptions: Assumptions,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaPrices {
    pub per_million_requests: f64,
    pub per_gb_second_x86_64: f64,
    pub per_gb_second_arm64: f64,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SqsPrices {
    /// Standard queues; each 64 KB chunk of a payload is a request.
    pub per_million_requests: f64,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DynamoPrices {
    /// On-demand, Standard table class.
    pub per_million_write_units: f64,
    pub per_million_read_units: f64,
    pub per_gb_month_storage: f64,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SesPrices {
    pub per_thousand_emails: f64,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiGatewayPrices {
    pub per_million_http_requests: f64,
    pub source: String,
}

/// What the bill assumes besides prices.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Assumptions {
    /// `x86_64` (the template's default) or `arm64`.
    pub architecture: String,
    pub default_memory_mb: u32,
    /// Per function name, where the template sets another size.
    #[serde(default)]
    pub memory_mb: BTreeMap<String, u32>,
    /// Round-trip time of one request, per AWS operation as the meter names it.
    pub latency_ms: BTreeMap<String, f64>,
    /// Runtime and SDK work per invocation besides the handler (deserialising the event, the
    /// response), plus half a millisecond of the 1 ms rounding.
    pub invocation_overhead_ms: f64,
    /// Pollers Lambda's SQS event source keeps per queue, each long-polling for 20 s.
    pub event_source_pollers_per_queue: u32,
    pub queues_with_event_sources: u32,
    /// Runs per month of each scheduled function (the template's schedules).
    pub scheduled_runs_per_month: BTreeMap<String, f64>,
}

impl PriceTable {
    pub fn from_toml(text: &str) -> Result<PriceTable, String> {
        let table: PriceTable = toml::from_str(text).map_err(|e| format!("the price table is invalid: {e}"))?;
        if !matches!(table.assumptions.architecture.as_str(), "x86_64" | "arm64") {
            return Err("the price table is invalid: assumptions.architecture must be x86_64 or arm64".into());
        }
        Ok(table)
    }

    fn per_gb_second(&self) -> f64 {
        if self.assumptions.architecture == "arm64" {
            self.lambda.per_gb_second_arm64
        } else {
            self.lambda.per_gb_second_x86_64
        }
    }

    fn memory_gb(&self, function: Function) -> f64 {
        let mb =
            self.assumptions.memory_mb.get(function.as_str()).copied().unwrap_or(self.assumptions.default_memory_mb);
        f64::from(mb) / 1024.0
    }
}

/// How much work: a month of the reference workload, or what a run did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    pub leads: f64,
    pub events: f64,
    pub emails: f64,
    pub days: f64,
}

impl Workload {
    /// The issue's reference month: 100 000 contacts (each captured as a lead), 1 000 000 events,
    /// 400 000 emails.
    pub const REFERENCE: Workload = Workload { leads: 100_000.0, events: 1_000_000.0, emails: 400_000.0, days: 30.0 };

    fn of(&self, driver: Driver) -> f64 {
        match driver {
            Driver::Lead => self.leads,
            Driver::Event => self.events,
            Driver::Email => self.emails,
            Driver::Day => self.days,
            Driver::IdleRun | Driver::Unattributed => 0.0,
        }
    }
}

/// One function's share of the month.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FunctionBill {
    pub invocations: f64,
    pub billed_seconds: f64,
    pub gb_seconds: f64,
    /// Modelled billed milliseconds per invocation.
    pub mean_billed_ms: f64,
    pub read_units: f64,
    pub write_units: f64,
    pub sqs_requests: f64,
    pub emails: f64,
    /// Its Lambda, SQS and DynamoDB cost.
    pub overhead: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Bill {
    pub region: String,
    pub currency: String,
    pub prices_as_of: String,
    pub workload: Option<Workload>,
    pub lambda_requests: f64,
    pub lambda_duration: f64,
    pub lambda: f64,
    pub sqs: f64,
    /// The part of `sqs` that is the event sources' idle polling.
    pub sqs_event_source_polling: f64,
    pub dynamodb_reads: f64,
    pub dynamodb_writes: f64,
    pub dynamodb_storage: f64,
    pub dynamodb: f64,
    pub ses: f64,
    /// Not in the issue's overhead definition; listed so the total is whole.
    pub api_gateway: f64,
    pub total: f64,
    /// Lambda + SQS + DynamoDB as a percentage of SES.
    pub overhead_percent_of_ses: f64,
    /// The same with API Gateway added.
    pub overhead_with_api_gateway_percent_of_ses: f64,
    pub by_function: BTreeMap<String, FunctionBill>,
}

/// The monthly bill of `reference`, scaling the counts of a run that did `done`; `stored_bytes`
/// per lead gives the table's storage.
pub fn monthly_bill(
    prices: &PriceTable,
    rows: &[UsageRow],
    done: &Workload,
    reference: &Workload,
    stored_bytes_per_lead: f64,
) -> Bill {
    let assumptions = &prices.assumptions;
    // A schedule's idle run, per run: what every one of its runs costs before any work.
    let idle: BTreeMap<Function, Counts> = rows
        .iter()
        .filter(|row| row.driver == Driver::IdleRun && row.usage.invocations > 0)
        .map(|row| (row.function, Counts::of(&row.usage).times(1.0 / row.usage.invocations as f64)))
        .collect();
    let mut by_function: BTreeMap<String, FunctionBill> = BTreeMap::new();
    let mut api_requests = 0.0;
    for row in rows {
        let usage = &row.usage;
        let factor = match row.driver {
            Driver::IdleRun => {
                let runs = assumptions.scheduled_runs_per_month.get(row.function.as_str()).copied().unwrap_or(0.0);
                if usage.invocations == 0 { 0.0 } else { runs / usage.invocations as f64 }
            }
            driver => {
                let done = done.of(driver);
                if done > 0.0 { reference.of(driver) / done } else { 0.0 }
            }
        };
        if factor == 0.0 {
            continue;
        }
        let mut counts = Counts::of(usage);
        // The scheduler's dispatches for events happen inside its every-minute runs: those runs
        // and their idle baseline are the idle line already; only the work beyond it scales.
        if row.driver == Driver::Event
            && let Some(baseline) = idle.get(&row.function)
        {
            counts = counts.less(&baseline.times(counts.invocations));
            counts.invocations = 0.0;
        }
        let own_requests_ms: f64 = counts
            .calls
            .iter()
            .filter(|(operation, _)| !is_event_source_call(row.function, operation))
            .map(|(operation, n)| n * assumptions.latency_ms.get(*operation).copied().unwrap_or(0.0))
            .sum();
        let billed_ms = counts.handler_ms + own_requests_ms + counts.invocations * assumptions.invocation_overhead_ms;
        let line = by_function.entry(row.function.as_str().to_string()).or_default();
        line.invocations += counts.invocations * factor;
        line.billed_seconds += billed_ms / 1000.0 * factor;
        line.gb_seconds += billed_ms / 1000.0 * prices.memory_gb(row.function) * factor;
        line.read_units += counts.read_units * factor;
        line.write_units += counts.write_units * factor;
        line.sqs_requests += counts.sqs_requests * factor;
        line.emails += counts.emails * factor;
        if matches!(row.function, Function::LeadCapture | Function::QualifyBot | Function::KpiApi) {
            api_requests += counts.invocations * factor;
        }
    }
    let per_million = |n: f64, price: f64| n / 1e6 * price;
    let mut bill = Bill {
        region: prices.region.clone(),
        currency: prices.currency.clone(),
        prices_as_of: prices.as_of.clone(),
        workload: Some(*reference),
        ..Bill::default()
    };
    for line in by_function.values_mut() {
        line.mean_billed_ms =
            if line.invocations > 0.0 { line.billed_seconds * 1000.0 / line.invocations } else { 0.0 };
        line.overhead = per_million(line.invocations, prices.lambda.per_million_requests)
            + line.gb_seconds * prices.per_gb_second()
            + per_million(line.sqs_requests, prices.sqs.per_million_requests)
            + per_million(line.read_units, prices.dynamodb.per_million_read_units)
            + per_million(line.write_units, prices.dynamodb.per_million_write_units);
        bill.lambda_requests += per_million(line.invocations, prices.lambda.per_million_requests);
        bill.lambda_duration += line.gb_seconds * prices.per_gb_second();
        bill.sqs += per_million(line.sqs_requests, prices.sqs.per_million_requests);
        bill.dynamodb_reads += per_million(line.read_units, prices.dynamodb.per_million_read_units);
        bill.dynamodb_writes += per_million(line.write_units, prices.dynamodb.per_million_write_units);
        bill.ses += line.emails / 1000.0 * prices.ses.per_thousand_emails;
    }
    // Each poller's 20-second long poll: three requests a minute, all month.
    let polls = f64::from(assumptions.event_source_pollers_per_queue)
        * f64::from(assumptions.queues_with_event_sources)
        * 3.0
        * 60.0
        * 24.0
        * reference.days;
    bill.sqs_event_source_polling = per_million(polls, prices.sqs.per_million_requests);
    bill.sqs += bill.sqs_event_source_polling;
    let stored_gb = stored_bytes_per_lead * reference.leads / 1e9;
    bill.dynamodb_storage = stored_gb * prices.dynamodb.per_gb_month_storage;
    bill.dynamodb = bill.dynamodb_reads + bill.dynamodb_writes + bill.dynamodb_storage;
    bill.lambda = bill.lambda_requests + bill.lambda_duration;
    bill.api_gateway = per_million(api_requests, prices.api_gateway.per_million_http_requests);
    bill.total = bill.lambda + bill.sqs + bill.dynamodb + bill.ses + bill.api_gateway;
    let own = bill.lambda + bill.sqs + bill.dynamodb;
    if bill.ses > 0.0 {
        bill.overhead_percent_of_ses = own / bill.ses * 100.0;
        bill.overhead_with_api_gateway_percent_of_ses = (own + bill.api_gateway) / bill.ses * 100.0;
    }
    bill.by_function = by_function;
    bill
}

/// A usage's billable counts as fractions, so baselines can be taken off and counts scaled.
#[derive(Debug, Clone, Default)]
struct Counts {
    calls: BTreeMap<&'static str, f64>,
    read_units: f64,
    write_units: f64,
    /// Billed SQS requests, empty receives left out (the event-source polling line has them).
    sqs_requests: f64,
    emails: f64,
    invocations: f64,
    handler_ms: f64,
}

impl Counts {
    fn of(usage: &Usage) -> Counts {
        Counts {
            calls: usage.calls.iter().map(|(operation, n)| (*operation, *n as f64)).collect(),
            read_units: usage.read_units,
            write_units: usage.write_units,
            sqs_requests: usage.sqs_requests.saturating_sub(usage.empty_receives) as f64,
            emails: usage.emails as f64,
            invocations: usage.invocations as f64,
            handler_ms: usage.handler_micros as f64 / 1000.0,
        }
    }

    fn times(&self, factor: f64) -> Counts {
        Counts {
            calls: self.calls.iter().map(|(operation, n)| (*operation, n * factor)).collect(),
            read_units: self.read_units * factor,
            write_units: self.write_units * factor,
            sqs_requests: self.sqs_requests * factor,
            emails: self.emails * factor,
            invocations: self.invocations * factor,
            handler_ms: self.handler_ms * factor,
        }
    }

    /// These counts less `other`'s, never below zero.
    fn less(&self, other: &Counts) -> Counts {
        let minus = |a: f64, b: f64| (a - b).max(0.0);
        Counts {
            calls: self
                .calls
                .iter()
                .map(|(operation, n)| (*operation, minus(*n, other.calls.get(operation).copied().unwrap_or(0.0))))
                .collect(),
            read_units: minus(self.read_units, other.read_units),
            write_units: minus(self.write_units, other.write_units),
            sqs_requests: minus(self.sqs_requests, other.sqs_requests),
            emails: minus(self.emails, other.emails),
            invocations: minus(self.invocations, other.invocations),
            handler_ms: minus(self.handler_ms, other.handler_ms),
        }
    }
}

/// The SQS requests Lambda's event source makes for a consumer, outside its handler's time.
fn is_event_source_call(function: Function, operation: &str) -> bool {
    matches!(function, Function::Sender | Function::TriggerEvaluator)
        && matches!(operation, "sqs.ReceiveMessage" | "sqs.DeleteMessage" | "sqs.DeleteMessageBatch")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices() -> PriceTable {
        PriceTable::from_toml(
            r#"
region = "test-1"
currency = "USD"
as_of = "2026-11-27"
[lambda]
per_million_requests = 0.20
per_gb_second_x86_64 = 0.00001
per_gb_second_arm64 = 0.000008
source = "x"
[sqs]
per_million_requests = 0.40
source = "x"
[dynamodb]
per_million_write_units = 1.0
per_million_read_units = 0.25
per_gb_month_storage = 0.25
source = "x"
[ses]
per_thousand_emails = 0.10
source = "x"
[api_gateway]
per_million_http_requests = 1.0
source = "x"
[assumptions]
architecture = "x86_64"
default_memory_mb = 512
memory_mb = { "sender" = 1024 }
latency_ms = { "sesv2.SendEmail" = 30.0, "dynamodb.GetItem" = 5.0, "sqs.ReceiveMessage" = 100.0 }
invocation_overhead_ms = 1.0
event_source_pollers_per_queue = 5
queues_with_event_sources = 2
scheduled_runs_per_month = { "cart-scheduler" = 43200.0 }
"#,
        )
        .unwrap()
    }

    fn row(function: Function, driver: Driver, usage: Usage) -> UsageRow {
        UsageRow { function, driver, usage }
    }

    #[test]
    fn the_bill_adds_up_as_computed_by_hand() {
        // A run that sent 10 emails in 2 sender invocations: each invocation received once, got
        // two items and sent five messages; 100 ms of handler time in all.
        let mut sender = Usage::default();
        sender.calls.insert("sqs.ReceiveMessage", 2);
        sender.calls.insert("dynamodb.GetItem", 4);
        sender.calls.insert("sesv2.SendEmail", 10);
        sender.invocations = 2;
        sender.handler_micros = 100_000;
        sender.read_units = 4.0;
        sender.write_units = 20.0;
        sender.sqs_requests = 3;
        sender.empty_receives = 1;
        sender.emails = 10;
        // One idle scheduler run: one query.
        let mut idle = Usage::default();
        idle.calls.insert("dynamodb.Query", 1);
        idle.invocations = 1;
        idle.read_units = 1.0;
        // Two scheduler runs for events: each its idle query, and one dispatch (a Query and a
        // 2-unit write) beyond it: only the dispatch scales by events, the runs are the idle line's.
        let mut dispatching = Usage::default();
        dispatching.calls.insert("dynamodb.Query", 3);
        dispatching.invocations = 2;
        dispatching.read_units = 3.0;
        dispatching.write_units = 2.0;
        let rows = vec![
            row(Function::Sender, Driver::Email, sender),
            row(Function::CartScheduler, Driver::IdleRun, idle),
            row(Function::CartScheduler, Driver::Event, dispatching),
            row(Function::Unattributed, Driver::Unattributed, Usage { read_units: 1e9, ..Usage::default() }),
        ];
        let done = Workload { leads: 0.0, events: 1.0, emails: 10.0, days: 1.0 };
        let reference = Workload { leads: 1000.0, events: 1000.0, emails: 1_000_000.0, days: 30.0 };
        let bill = monthly_bill(&prices(), &rows, &done, &reference, 2000.0);

        // Emails scale by 100 000: 1 000 000 emails at $0.10 per thousand.
        assert!((bill.ses - 100.0).abs() < 1e-9, "{}", bill.ses);
        // Lambda requests: 200 000 sender + 43 200 scheduler invocations.
        assert!((bill.lambda_requests - 243_200.0 / 1e6 * 0.20).abs() < 1e-9);
        // Sender duration per run: 100 ms handler + 4×5 ms gets + 10×30 ms sends + 2×1 ms overhead
        // (receives are the event source's) = 422 ms, at 1 GB; scheduler: 1 ms at 0.5 GB per run.
        // The dispatch beyond the idle runs adds no time here: this table has no Query latency.
        let gb_seconds = 0.422 * 1.0 * 100_000.0 + 0.001 * 0.5 * 43_200.0;
        assert!((bill.lambda_duration - gb_seconds * 0.00001).abs() < 1e-9, "{}", bill.lambda_duration);
        // SQS: (3 − 1 empty) × 100 000 requests, plus 2 queues × 5 pollers × 3 a minute for 30 days.
        let polling = 2.0 * 5.0 * 3.0 * 60.0 * 24.0 * 30.0;
        assert!((bill.sqs - (200_000.0 + polling) / 1e6 * 0.40).abs() < 1e-9, "{}", bill.sqs);
        // DynamoDB: reads 400 000 + 43 200 + 1 000 dispatch reads, writes 2 000 000 + 2 000;
        // storage 2 KB × 1 000 leads.
        assert!((bill.dynamodb_reads - 444_200.0 / 1e6 * 0.25).abs() < 1e-9, "{}", bill.dynamodb_reads);
        assert!((bill.dynamodb_writes - 2_002_000.0 / 1e6).abs() < 1e-9, "{}", bill.dynamodb_writes);
        assert_eq!(bill.by_function["cart-scheduler"].invocations, 43_200.0, "the schedule's runs, not the demo's");
        assert!((bill.dynamodb_storage - 0.002 * 0.25).abs() < 1e-12);
        assert_eq!(bill.api_gateway, 0.0, "no HTTP function ran");
        let own = bill.lambda + bill.sqs + bill.dynamodb;
        assert!((bill.overhead_percent_of_ses - own).abs() < 1e-9, "SES is exactly $100 here");
        assert!((bill.total - (own + 100.0)).abs() < 1e-9);
        assert_eq!(bill.by_function["sender"].invocations, 200_000.0);
        assert!((bill.by_function["sender"].mean_billed_ms - 211.0).abs() < 1e-6);
    }

    #[test]
    fn the_shipped_price_table_reads() {
        let table = PriceTable::from_toml(include_str!("../../../infra/pricing.toml")).unwrap();
        assert_eq!(table.currency, "USD");
        assert!(table.ses.per_thousand_emails > 0.0 && table.assumptions.latency_ms.contains_key("sesv2.SendEmail"));
        let wrong =
            include_str!("../../../infra/pricing.toml").replace("architecture = \"x86_64\"", "architecture = \"z80\"");
        assert!(PriceTable::from_toml(&wrong).unwrap_err().contains("assumptions.architecture"));
    }
}
