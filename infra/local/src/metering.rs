//! The local stack's side of the cost model: which Lambda function each piece of local work stands
//! for (an HTTP route, a queue consumer's batch, a scheduled run), and the demo's cost section
//! from the meter's counts and `infra/pricing.toml`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use voronka_domain::cost::{Bill, PriceTable, Workload, monthly_bill};
use voronka_domain::kpi::rollup::RollupKind;
use voronka_domain::ports::{Driver, Function, Meter, Usage, UsageRow};

use crate::stack::Stack;

/// The price table the demo's bill uses.
pub const PRICES: &str = include_str!("../../pricing.toml");

/// Runs `work` as one invocation of `function` when the stack is metered.
pub async fn invoke<F: Future>(stack: &Stack, function: Function, driver: Driver, work: F) -> F::Output {
    match &stack.meter {
        Some(meter) => meter.invoke(function, driver, work).await,
        None => work.await,
    }
}

/// A queue consumer's poll: an invocation only when it received something, as Lambda's event
/// source invokes only with messages.
pub async fn invoke_consumer<E>(
    stack: &Stack,
    function: Function,
    driver: Driver,
    work: impl Future<Output = Result<usize, E>>,
) -> Result<usize, E> {
    match &stack.meter {
        Some(meter) => meter.invoke_if(function, driver, work, |received| matches!(received, Ok(n) if *n > 0)).await,
        None => work.await,
    }
}

/// The Lambda function (and what its work grows with) that serves a path on AWS; None for the
/// local pages, which have no Lambda counterpart.
pub fn function_of_path(path: &str) -> Option<(Function, Driver)> {
    if path.starts_with("/v1/bot/") {
        Some((Function::QualifyBot, Driver::Lead))
    } else if path == "/v1/spend" || path.starts_with("/v1/spend/") || path.starts_with("/v1/kpi") {
        Some((Function::KpiApi, Driver::Day))
    } else if path == "/v1/events" {
        Some((Function::LeadCapture, Driver::Event))
    } else if path.starts_with("/v1/") {
        Some((Function::LeadCapture, Driver::Lead))
    } else {
        None
    }
}

/// Middleware: each API request is one invocation of the function that serves its route.
pub async fn invoke_route(State(meter): State<Arc<Meter>>, request: Request, next: Next) -> Response {
    match function_of_path(request.uri().path()) {
        Some((function, driver)) => meter.invoke(function, driver, next.run(request)).await,
        None => next.run(request).await,
    }
}

/// The router with each API request metered as an invocation, when the stack is metered.
pub fn metered_app(stack: &Stack, app: axum::Router) -> axum::Router {
    match &stack.meter {
        Some(meter) => app.layer(axum::middleware::from_fn_with_state(meter.clone(), invoke_route)),
        None => app,
    }
}

/// What the demo prints about cost.
#[derive(Debug, Default, Serialize)]
pub struct CostReport {
    /// What the run did: contacts stored, events accepted, emails SES took, days rolled up.
    pub done: Option<Workload>,
    /// AWS requests per unit of what the work grows with, by operation.
    pub calls_per_lead: BTreeMap<String, f64>,
    pub calls_per_event: BTreeMap<String, f64>,
    pub calls_per_email: BTreeMap<String, f64>,
    /// DynamoDB units and SQS requests per unit.
    pub units_per_lead: UnitsPer,
    pub units_per_event: UnitsPer,
    pub units_per_email: UnitsPer,
    /// Table bytes per contact (items with their index entries and DynamoDB's per-item overhead).
    pub stored_bytes_per_lead: f64,
    /// The run's write units by kind of item (partition key prefix), every function together.
    pub write_units_by_item: BTreeMap<String, f64>,
    /// The meter's raw counts.
    pub usage: Vec<UsageRow>,
    /// The reference workload's month at the price table's prices.
    pub bill: Bill,
}

#[derive(Debug, Default, Serialize)]
pub struct UnitsPer {
    pub read_units: f64,
    pub write_units: f64,
    pub sqs_requests: f64,
    pub lambda_invocations: f64,
}

/// Measures one idle run of each schedule (the scheduler with nothing due, an hourly rollup), then
/// prices the month of the reference workload from everything the meter counted.
pub async fn cost_report(stack: &Stack, contacts: usize, events: usize, days: usize) -> anyhow::Result<CostReport> {
    let Some(meter) = &stack.meter else { return Ok(CostReport::default()) };
    invoke(stack, Function::CartScheduler, Driver::IdleRun, async {
        cart_scheduler::run(&stack.scheduler).await?;
        cart_scheduler::finish_erasures(&stack.scheduler, stack.outbox.as_ref()).await;
        anyhow::Ok(())
    })
    .await?;
    invoke(stack, Function::KpiRollup, Driver::IdleRun, crate::kpi_cli::run_rollup(stack, RollupKind::Hourly)).await?;

    let usage = meter.snapshot();
    let by_driver = |driver: Driver| {
        let mut sum = Usage::default();
        usage.iter().filter(|row| row.driver == driver).for_each(|row| sum.add(&row.usage));
        sum
    };
    let (leads, events_, emails) = (by_driver(Driver::Lead), by_driver(Driver::Event), by_driver(Driver::Email));
    let done = Workload {
        leads: contacts as f64,
        events: events as f64,
        emails: usage.iter().map(|row| row.usage.emails).sum::<u64>() as f64,
        days: days as f64,
    };
    let (stored_bytes, _) = meter.stored_bytes();
    let stored_bytes_per_lead = if contacts > 0 { stored_bytes as f64 / contacts as f64 } else { 0.0 };
    let prices = PriceTable::from_toml(PRICES).map_err(anyhow::Error::msg)?;
    let bill = monthly_bill(&prices, &usage, &done, &Workload::REFERENCE, stored_bytes_per_lead);
    Ok(CostReport {
        done: Some(done),
        calls_per_lead: per_unit(&leads, done.leads),
        calls_per_event: per_unit(&events_, done.events),
        calls_per_email: per_unit(&emails, done.emails),
        units_per_lead: units_per(&leads, done.leads),
        units_per_event: units_per(&events_, done.events),
        units_per_email: units_per(&emails, done.emails),
        stored_bytes_per_lead,
        write_units_by_item: {
            let mut all = Usage::default();
            usage.iter().filter(|row| row.function != Function::Unattributed).for_each(|row| all.add(&row.usage));
            all.write_units_by_item
        },
        usage,
        bill,
    })
}

fn per_unit(usage: &Usage, units: f64) -> BTreeMap<String, f64> {
    if units <= 0.0 {
        return BTreeMap::new();
    }
    usage.calls.iter().map(|(operation, n)| (operation.to_string(), *n as f64 / units)).collect()
}

fn units_per(usage: &Usage, units: f64) -> UnitsPer {
    if units <= 0.0 {
        return UnitsPer::default();
    }
    UnitsPer {
        read_units: usage.read_units / units,
        write_units: usage.write_units / units,
        sqs_requests: usage.sqs_requests.saturating_sub(usage.empty_receives) as f64 / units,
        lambda_invocations: usage.invocations as f64 / units,
    }
}

impl CostReport {
    pub fn print(&self) {
        let Some(done) = &self.done else { return };
        let bill = &self.bill;
        println!();
        println!(
            "AWS requests the same work makes on AWS (counted at the ports): {:.0} contacts, {:.0} events, {:.0} emails, {:.0} days",
            done.leads, done.events, done.emails, done.days
        );
        for (unit, calls, units) in [
            ("lead", &self.calls_per_lead, &self.units_per_lead),
            ("event", &self.calls_per_event, &self.units_per_event),
            ("email", &self.calls_per_email, &self.units_per_email),
        ] {
            let list: Vec<String> = calls.iter().map(|(operation, n)| format!("{operation} {n:.2}")).collect();
            println!("  per {unit:<6} {}", list.join(", "));
            println!(
                "             = {:.2} read units, {:.2} write units, {:.2} SQS requests, {:.2} Lambda invocations",
                units.read_units, units.write_units, units.sqs_requests, units.lambda_invocations
            );
        }
        println!("  stored per contact           {:>7.0} bytes", self.stored_bytes_per_lead);
        let reference = bill.workload.unwrap_or(Workload::REFERENCE);
        println!();
        println!(
            "Monthly AWS bill for {:.0} contacts, {:.0} events, {:.0} emails ({}, on-demand list prices as of {})",
            reference.leads, reference.events, reference.emails, bill.region, bill.prices_as_of
        );
        let usd = |v: f64| format!("{v:>10.2} {}", bill.currency);
        println!(
            "  Lambda                       {}  (requests {:.2}, duration {:.2})",
            usd(bill.lambda),
            bill.lambda_requests,
            bill.lambda_duration
        );
        println!(
            "  SQS                          {}  (of which idle event-source polling {:.2})",
            usd(bill.sqs),
            bill.sqs_event_source_polling
        );
        println!(
            "  DynamoDB                     {}  (reads {:.2}, writes {:.2}, storage {:.2})",
            usd(bill.dynamodb),
            bill.dynamodb_reads,
            bill.dynamodb_writes,
            bill.dynamodb_storage
        );
        println!("  SES                          {}", usd(bill.ses));
        println!("  API Gateway (HTTP API)       {}", usd(bill.api_gateway));
        println!("  total                        {}", usd(bill.total));
        println!(
            "  Voronka's own (Lambda + SQS + DynamoDB): {:.1}% of the SES bill (target ≤ 10%); {:.1}% with API Gateway",
            bill.overhead_percent_of_ses, bill.overhead_with_api_gateway_percent_of_ses
        );
        let mut by_item: Vec<(&String, &f64)> = self.write_units_by_item.iter().collect();
        by_item.sort_by(|a, b| b.1.total_cmp(a.1));
        let top: Vec<String> = by_item.iter().take(8).map(|(kind, units)| format!("{kind} {units:.0}")).collect();
        println!("  write units of the run by kind of item: {}", top.join(", "));
        println!(
            "  by function                  invocations   ms each   read units   write units   SQS requests   cost"
        );
        for (function, line) in &bill.by_function {
            println!(
                "    {function:<26} {:>11.0} {:>9.1} {:>12.0} {:>13.0} {:>14.0} {}",
                line.invocations,
                line.mean_billed_ms,
                line.read_units,
                line.write_units,
                line.sqs_requests,
                usd(line.overhead)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_api_route_stands_for_its_lambda_function() {
        assert_eq!(function_of_path("/v1/bot/b2b_demo/sessions"), Some((Function::QualifyBot, Driver::Lead)));
        assert_eq!(function_of_path("/v1/spend"), Some((Function::KpiApi, Driver::Day)));
        assert_eq!(function_of_path("/v1/kpi"), Some((Function::KpiApi, Driver::Day)));
        assert_eq!(function_of_path("/v1/events"), Some((Function::LeadCapture, Driver::Event)));
        assert_eq!(function_of_path("/v1/forms/newsletter/submissions"), Some((Function::LeadCapture, Driver::Lead)));
        assert_eq!(function_of_path("/outbox"), None, "a local page has no Lambda counterpart");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_demo_prices_its_work() {
        let options = crate::demo::DemoOptions {
            seed: 3,
            visitors: 120,
            days: 2,
            data_dir: None,
            dashboard_dir: None,
            show_progress: false,
            faults: None,
        };
        let report = crate::demo::run(options).await.unwrap();
        let cost = &report.cost;
        let done = cost.done.expect("the demo is metered");
        assert!(done.leads > 0.0 && done.events > 0.0 && done.emails > 0.0, "{done:?}");
        let bill = &cost.bill;
        // Sends scale to the reference's 400 000 emails at $0.10 a thousand.
        assert!((bill.ses - 40.0).abs() < 1e-6, "{}", bill.ses);
        assert!(bill.dynamodb_writes > 0.0 && bill.lambda > 0.0 && bill.sqs > bill.sqs_event_source_polling);
        let own = bill.lambda + bill.sqs + bill.dynamodb;
        assert!((bill.overhead_percent_of_ses - own / bill.ses * 100.0).abs() < 1e-9);
        for function in ["lead-capture", "trigger-evaluator", "sender", "cart-scheduler", "kpi-rollup"] {
            assert!(bill.by_function.get(function).is_some_and(|f| f.invocations > 0.0), "{function} ran");
        }
        assert!(!bill.by_function.contains_key("unattributed"), "the demo's own checks are not billed");
        assert!(cost.calls_per_email.contains_key("sesv2.SendEmail"));
        assert!(!cost.calls_per_event.contains_key("sqs.DeleteMessage"), "consumers delete in batches");
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["cost"]["bill"]["total"].as_f64().is_some_and(|t| t > 40.0), "--json carries the bill");
    }
}
