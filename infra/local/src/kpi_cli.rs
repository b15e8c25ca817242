//! The KPI side of the command line: `voronka spend import`, `voronka kpi` and `voronka rollup`,
//! over the same domain functions `GET /v1/kpi` and the rollup function use, and the readable
//! tables the CLI and the demo print.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use jiff::civil::Date;
use voronka_domain::kpi::rollup::{self, RollupKind, RollupOutcome};
use voronka_domain::kpi::spend_input::{self, RowError};
use voronka_domain::kpi::{self, GroupBy, KpiQuery, KpiReport, KpiRow};
use voronka_domain::repo::aggregates;
use voronka_domain::repo::spend::{self, SpendRow};

use crate::stack::Stack;

/// Today in the installation's zone, by the stack's clock.
pub fn today(stack: &Stack) -> Date {
    aggregates::date(stack.state.clock.now(), &stack.state.campaigns.settings)
}

/// What `spend import` did.
#[derive(Debug, serde::Serialize)]
pub struct SpendImport {
    pub upserted: usize,
    pub dates: Vec<Date>,
}

/// Every problem of a spend file, each with its line.
#[derive(Debug)]
pub struct SpendFileErrors {
    pub file: String,
    pub errors: Vec<RowError>,
}

impl std::fmt::Display for SpendFileErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}: {} problem(s), nothing imported", self.file, self.errors.len())?;
        for error in &self.errors {
            let place = if error.line == 0 { "file".to_string() } else { format!("line {}", error.line) };
            writeln!(f, "  {}:{place}: {}: {}", self.file, error.field, error.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for SpendFileErrors {}

/// Reads spend rows from a `.csv` or `.json` file, every problem listed with its line.
pub fn read_spend_file(stack: &Stack, path: &Path) -> Result<Vec<SpendRow>> {
    let settings = &stack.state.campaigns.settings;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let parsed = match extension.as_deref() {
        Some("csv") => {
            let text = String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))?;
            spend_input::parse_csv(&text, settings, today(stack))
        }
        Some("json") => spend_input::parse_json(&bytes, settings, today(stack)),
        _ => bail!("{}: the file name must end in .csv or .json", path.display()),
    };
    parsed.map_err(|errors| SpendFileErrors { file: path.display().to_string(), errors }.into())
}

/// Imports a spend file, all rows or none. Reports read spend live, so no rollup is needed for
/// it to count (as after `POST /v1/spend`).
pub async fn import_spend(stack: &Stack, path: &Path) -> Result<SpendImport> {
    let rows = read_spend_file(stack, path)?;
    spend::upsert(stack.state.store.as_ref(), &rows, stack.state.clock.now()).await?;
    let mut dates: Vec<Date> = rows.iter().map(|row| row.date).collect();
    dates.sort();
    dates.dedup();
    Ok(SpendImport { upserted: rows.len(), dates })
}

/// Runs one rollup now.
pub async fn run_rollup(stack: &Stack, kind: RollupKind) -> Result<RollupOutcome> {
    let settings = &stack.state.campaigns.settings;
    Ok(rollup::roll_up(stack.state.store.as_ref(), settings, kind, stack.state.clock.now()).await?)
}

/// Reads `--from`, `--to`, `--group-by` and `--attribution` as `GET /v1/kpi` reads its
/// parameters, so both refuse the same input with the same field named.
pub fn query(
    stack: &Stack,
    from: Option<&str>,
    to: Option<&str>,
    group_by: Option<&str>,
    attribution: Option<&str>,
) -> Result<KpiQuery> {
    let mut params = BTreeMap::new();
    for (name, value) in [("from", from), ("to", to), ("group_by", group_by), ("attribution", attribution)] {
        if let Some(value) = value {
            params.insert(name.to_string(), value.to_string());
        }
    }
    KpiQuery::parse(&params, today(stack)).map_err(|e| {
        let option = e.field.replace('_', "-");
        anyhow::anyhow!("--{option}: {}", e.message)
    })
}

/// The report of `query`, after rolling up its days (final before today), so it reads
/// snapshots as a scheduled installation would.
pub async fn report(stack: &Stack, query: &KpiQuery) -> Result<KpiReport> {
    run_rollup(stack, RollupKind::Days(query.days())).await?;
    report_without_rollup(stack, query).await
}

/// The report of `query` from what is stored now.
pub async fn report_without_rollup(stack: &Stack, query: &KpiQuery) -> Result<KpiReport> {
    let settings = &stack.state.campaigns.settings;
    let journeys: Vec<String> = stack.state.campaigns.journeys.keys().cloned().collect();
    let inputs = kpi::load(stack.state.store.as_ref(), settings, query, today(stack), &journeys).await?;
    Ok(kpi::compute(&inputs, query, settings))
}

/// The same range per channel, for the channel table of a report grouped by time.
pub async fn channel_report(stack: &Stack, query: &KpiQuery) -> Result<KpiReport> {
    let by_channel = KpiQuery { group_by: GroupBy::Channel, ..query.clone() };
    report_without_rollup(stack, &by_channel).await
}

/// A table with a left-aligned first column and right-aligned numbers.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String], out: &mut String| {
            let mut text = String::from("  ");
            for (i, cell) in cells.iter().enumerate().take(columns) {
                let pad = widths[i].saturating_sub(cell.chars().count());
                if i == 0 {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad));
                } else {
                    text.push_str("  ");
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                }
            }
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(&self.header, out);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&rule, out);
        for row in &self.rows {
            line(row, out);
        }
    }
}

/// Money without decimals, a ratio with two, a share as a percentage; an undefined ratio is `—`.
fn money(value: f64) -> String {
    format!("{value:.0}")
}

fn optional_money(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_string(), money)
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_string(), |v| format!("{v:.2}"))
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_string(), |v| format!("{:.1}%", v * 100.0))
}

fn points(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_string(), |v| format!("{:+.1} pp", v * 100.0))
}

fn kpi_cells(row: &KpiRow) -> Vec<String> {
    vec![
        row.key.clone(),
        row.leads.to_string(),
        row.mql.to_string(),
        row.sql.to_string(),
        row.customers.to_string(),
        row.orders.to_string(),
        money(row.revenue),
        optional_money(row.aov),
        money(row.spend),
        format!("{:.2}", row.attributed_conversions),
        money(row.attributed_revenue),
        optional_money(row.cac),
        ratio(row.roas),
        percent(row.romi),
    ]
}

const KPI_COLUMNS: [&str; 14] = [
    "",
    "leads",
    "MQL",
    "SQL",
    "customers",
    "orders",
    "revenue",
    "AOV",
    "spend",
    "attr. conv.",
    "attr. revenue",
    "CAC",
    "ROAS",
    "ROMI",
];

/// The report as readable tables: totals, funnel, rows, channels (CAC, ROAS, ROMI), LTV/CAC,
/// retention, journey uplift with its interval, email, carts.
pub fn render_tables(report: &KpiReport, by_channel: Option<&KpiReport>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "KPIs {} to {}, by {}, attribution {}; money in {}, margin {:.0}%",
        report.from,
        report.to,
        report.group_by.as_str(),
        report.attribution.as_str(),
        report.currency,
        report.margin * 100.0
    );
    out.push('\n');

    let f = &report.funnel;
    out.push_str("Funnel\n");
    let mut funnel = Table::new(&["stage", "contacts", "conversion from the stage before"]);
    funnel.row(vec!["leads".into(), f.leads.to_string(), String::new()]);
    funnel.row(vec!["MQL".into(), f.mql.to_string(), percent(f.lead_to_mql)]);
    funnel.row(vec!["SQL".into(), f.sql.to_string(), percent(f.mql_to_sql)]);
    funnel.row(vec!["customers".into(), f.customers.to_string(), percent(f.sql_to_customer)]);
    funnel.row(vec!["lead to customer".into(), String::new(), percent(f.lead_to_customer)]);
    funnel.render(&mut out);
    out.push('\n');

    let _ = writeln!(out, "By {}", report.group_by.as_str());
    let mut rows = Table::new(&KPI_COLUMNS);
    for row in report.rows.iter().chain(std::iter::once(&report.totals)) {
        rows.row(kpi_cells(row));
    }
    rows.render(&mut out);
    out.push('\n');

    // Grouped by channel, the rows above already are the channel table.
    if let Some(channels) = by_channel.filter(|c| c.group_by == GroupBy::Channel && report.group_by != GroupBy::Channel)
    {
        let _ = writeln!(out, "Channels ({} attribution): what spend bought", channels.attribution.as_str());
        let mut table = Table::new(&["channel", "spend", "customers", "CAC", "attr. revenue", "ROAS", "ROMI"]);
        for row in &channels.rows {
            table.row(vec![
                row.key.clone(),
                money(row.spend),
                row.customers.to_string(),
                optional_money(row.cac),
                money(row.attributed_revenue),
                ratio(row.roas),
                percent(row.romi),
            ]);
        }
        table.render(&mut out);
        out.push('\n');
    }

    let _ = writeln!(out, "LTV/CAC  {}", ratio(report.ltv_cac));
    out.push('\n');

    if !report.cohorts.is_empty() {
        let months = report.cohorts.iter().map(|c| c.retention.len()).max().unwrap_or(0);
        out.push_str("Retention: share of each cohort (month of first order) buying again, month by month\n");
        let mut header = vec!["cohort".to_string(), "customers".to_string()];
        header.extend((0..months).map(|m| format!("M{m}")));
        header.push("LTV".to_string());
        let mut table = Table { header, rows: Vec::new() };
        for cohort in &report.cohorts {
            let mut cells = vec![cohort.cohort.clone(), cohort.customers.to_string()];
            cells.extend((0..months).map(|m| cohort.retention.get(m).map_or(String::new(), |r| percent(*r))));
            cells.push(cohort.ltv.last().map_or("—".to_string(), |v| money(*v)));
            table.row(cells);
        }
        table.render(&mut out);
        out.push('\n');
    }

    if !report.uplift.is_empty() {
        out.push_str("Journey uplift: treatment against the holdout group (95% interval)\n");
        let mut table = Table::new(&[
            "journey",
            "treatment",
            "conv.",
            "holdout",
            "conv.",
            "uplift",
            "95% interval",
            "incr. revenue",
            "ROMI",
            "too small",
            "verdict",
        ]);
        for u in &report.uplift {
            let interval = match (u.ci_low, u.ci_high) {
                (Some(low), Some(high)) => format!("{:+.1} to {:+.1} pp", low * 100.0, high * 100.0),
                _ => "—".to_string(),
            };
            table.row(vec![
                u.journey.clone(),
                u.treatment.contacts.to_string(),
                percent(u.treatment.conversion_rate),
                u.holdout.contacts.to_string(),
                percent(u.holdout.conversion_rate),
                points(u.absolute_uplift),
                interval,
                optional_money(u.incremental_revenue),
                percent(u.romi),
                if u.too_small { "yes".into() } else { "no".into() },
                u.verdict.describe().to_string(),
            ]);
        }
        table.render(&mut out);
        if let Some(first) = report.uplift.first() {
            let _ = writeln!(out, "  interval: {}", first.method);
        }
        out.push('\n');
    }

    if !report.email.is_empty() {
        out.push_str("Email by template and journey\n");
        let mut table = Table::new(&[
            "template",
            "journey",
            "sent",
            "delivered",
            "bounced",
            "complained",
            "opened",
            "clicked",
            "unsub.",
        ]);
        for e in &report.email {
            table.row(vec![
                e.template.clone(),
                e.journey.clone().unwrap_or_default(),
                e.sent.to_string(),
                e.delivered.to_string(),
                e.bounced.to_string(),
                e.complained.to_string(),
                e.opened.to_string(),
                e.clicked.to_string(),
                e.unsubscribed.to_string(),
            ]);
        }
        table.render(&mut out);
        out.push('\n');
    }

    let _ = writeln!(
        out,
        "Carts: {} abandoned, {} recovered, {} {} recovered revenue",
        report.carts_abandoned,
        report.carts_recovered,
        money(report.recovered_cart_revenue),
        report.currency
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_numbers_right_under_their_header() {
        let mut table = Table::new(&["channel", "spend"]);
        table.row(vec!["google".into(), "12345".into()]);
        table.row(vec!["vk".into(), "7".into()]);
        let mut out = String::new();
        table.render(&mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "  channel  spend");
        assert_eq!(lines[2], "  google   12345");
        assert_eq!(lines[3], "  vk           7");
    }

    #[test]
    fn undefined_ratios_show_as_a_dash() {
        assert_eq!(ratio(None), "—");
        assert_eq!(percent(Some(0.125)), "12.5%");
        assert_eq!(points(Some(-0.02)), "-2.0 pp");
    }
}
