//! Key performance indicators computed from the daily aggregates and ad spend, never from raw
//! events.
//!
//! `day_inputs` reads what one day's KPIs need (three partitions); `rollup` keeps those inputs as
//! snapshots; `load` gathers a range from final snapshots and, for today and days not rolled up,
//! the live aggregates; `compute` turns them into a `KpiReport` without touching storage, so the
//! same numbers come out of `GET /v1/kpi`, the CLI, the dashboard and the tests. KPI.md says every
//! formula in words.

pub mod rollup;
pub mod spend_input;
pub mod uplift;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::campaigns::Settings;
use crate::errors::FieldError;
use crate::journeys::attribution::Model;
use crate::model::LifecycleStage;
use crate::ports::{Store, StoreError};
use crate::repo::aggregates::{self, COHORT_MONTHS_FOLLOWED, CohortMonth, Dimensions, JourneyDay, Metric, month_name};
use crate::repo::kpi_snapshots;
pub use crate::repo::kpi_snapshots::DayInputs;
use crate::repo::spend;
use uplift::JourneyUplift;

/// Longest range one report covers, in days (both ends included).
pub const MAX_RANGE_DAYS: i32 = 366;
/// The range a query without `from` covers, ending at `to`.
pub const DEFAULT_RANGE_DAYS: i32 = 30;

/// How report rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Day,
    /// ISO week, `2026-W09`.
    Week,
    /// Calendar month, `2026-03`.
    Month,
    Channel,
    Campaign,
}

impl GroupBy {
    pub const ALL: [GroupBy; 5] = [GroupBy::Day, GroupBy::Week, GroupBy::Month, GroupBy::Channel, GroupBy::Campaign];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Day => "day",
            GroupBy::Week => "week",
            GroupBy::Month => "month",
            GroupBy::Channel => "channel",
            GroupBy::Campaign => "campaign",
        }
    }

    pub fn parse(text: &str) -> Option<GroupBy> {
        GroupBy::ALL.into_iter().find(|group| group.as_str() == text)
    }

    fn is_time(self) -> bool {
        matches!(self, GroupBy::Day | GroupBy::Week | GroupBy::Month)
    }

    /// The row a day's numbers fall in, for the time groupings.
    fn period(self, date: Date) -> String {
        match self {
            GroupBy::Week => {
                let week = date.iso_week_date();
                format!("{:04}-W{:02}", week.year(), week.week())
            }
            GroupBy::Month => month_name(date),
            _ => date.to_string(),
        }
    }
}

/// Reads a model's name as `Model::as_str` writes it.
/// A model by its name (`position_based`), also as marketers and other tools write it:
/// dashes or no separators, `first`/`last`, `position`/`u_shaped`, `decay`.
pub fn parse_model(text: &str) -> Option<Model> {
    let name = text.trim().to_ascii_lowercase().replace(['-', ' '], "_");
    Model::ALL.into_iter().find(|model| model.as_str() == name).or(match name.as_str() {
        "first" | "firsttouch" => Some(Model::FirstTouch),
        "last" | "lasttouch" => Some(Model::LastTouch),
        "position" | "positionbased" | "u_shaped" | "ushaped" => Some(Model::PositionBased),
        "decay" | "timedecay" => Some(Model::TimeDecay),
        _ => None,
    })
}

/// What a report covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KpiQuery {
    pub from: Date,
    /// Included.
    pub to: Date,
    pub group_by: GroupBy,
    pub attribution: Model,
}

impl KpiQuery {
    /// Reads `from`, `to` (YYYY-MM-DD), `group_by` and `attribution`; other parameters are left to
    /// the caller (`format`). Defaults: the 30 days up to today, per day, last touch.
    pub fn parse(params: &BTreeMap<String, String>, today: Date) -> Result<KpiQuery, FieldError> {
        let invalid = |field: &str, message: String| FieldError::new(field, "invalid", &message);
        let value = |name: &str| params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let date = |name: &str| -> Result<Option<Date>, FieldError> {
            match value(name) {
                None => Ok(None),
                Some(text) if text.len() == 10 => {
                    text.parse().map(Some).map_err(|_| invalid(name, "must be a date YYYY-MM-DD".into()))
                }
                Some(_) => Err(invalid(name, "must be a date YYYY-MM-DD".into())),
            }
        };
        // Nothing has happened after today: a later `to` would only read empty days.
        let to = date("to")?.map_or(today, |to| to.min(today));
        let from = match date("from")? {
            Some(from) => from,
            None => to.saturating_sub(jiff::Span::new().days(DEFAULT_RANGE_DAYS - 1)),
        };
        if from > to {
            return Err(invalid("from", format!("must not be after to ({to})")));
        }
        if days_between(from, to) > MAX_RANGE_DAYS {
            return Err(invalid("to", format!("the range may cover at most {MAX_RANGE_DAYS} days")));
        }
        let group_by = match value("group_by") {
            None => GroupBy::Day,
            Some(text) => GroupBy::parse(text)
                .ok_or_else(|| invalid("group_by", "must be one of day, week, month, channel, campaign".into()))?,
        };
        let attribution = match value("attribution") {
            None => Model::LastTouch,
            Some(text) => parse_model(text).ok_or_else(|| {
                invalid(
                    "attribution",
                    "must be one of first_touch, last_touch, linear, position_based, time_decay".into(),
                )
            })?,
        };
        Ok(KpiQuery { from, to, group_by, attribution })
    }

    /// Every day of the range, oldest first.
    pub fn days(&self) -> Vec<Date> {
        days_from_to(self.from, self.to)
    }
}

/// Days in `from..=to`.
fn days_between(from: Date, to: Date) -> i32 {
    (to - from).get_days() + 1
}

fn days_from_to(from: Date, to: Date) -> Vec<Date> {
    let mut days = Vec::new();
    let mut day = from;
    while day <= to {
        days.push(day);
        match day.tomorrow() {
            Ok(next) => day = next,
            Err(_) => break,
        }
    }
    days
}

/// Reads one day's inputs from the live aggregates: three partitions, whatever the traffic.
pub async fn day_inputs(store: &dyn Store, date: Date) -> Result<DayInputs, StoreError> {
    Ok(DayInputs {
        date,
        totals: aggregates::daily_totals(store, date).await?,
        credits: aggregates::all_attribution_credit(store, date).await?,
        spend: spend::spend_on(store, date).await?,
    })
}

/// What a report over a range is computed from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KpiInputs {
    /// One per day of the range, oldest first.
    pub days: Vec<DayInputs>,
    /// Cohorts that started in the range's months, followed up to its last month.
    pub cohorts: Vec<CohortMonth>,
    /// Per journey, its counts on the range's days.
    pub journeys: BTreeMap<String, Vec<JourneyDay>>,
}

/// Gathers a range's inputs: for each day its final snapshot when the rollup made one, else the
/// live aggregates (so today and days not rolled up yet are always current); the cohorts that
/// started in the range's months; and the days of each of `journeys` in the range.
pub async fn load(
    store: &dyn Store,
    settings: &Settings,
    query: &KpiQuery,
    today: Date,
    journeys: &[String],
) -> Result<KpiInputs, StoreError> {
    // The settings are part of the contract so a later cut-off (lookback, time zone) needs no new
    // signature; nothing in them changes what is read today.
    let _ = settings;
    // `KpiQuery::parse` refuses longer ranges; a query built by hand must not read without bound.
    if query.from > query.to || days_between(query.from, query.to) > MAX_RANGE_DAYS {
        return Err(StoreError::Invalid(format!("a KPI range must run forwards over at most {MAX_RANGE_DAYS} days")));
    }
    let mut inputs = KpiInputs::default();
    for date in query.days() {
        let snapshot = if date < today { kpi_snapshots::get(store, date).await? } else { None };
        let day = match snapshot {
            // Spend is read live: an upload (or two racing) then needs no rollup to show.
            Some(snapshot) if snapshot.is_final => {
                DayInputs { spend: spend::spend_on(store, date).await?, ..snapshot.inputs }
            }
            _ => day_inputs(store, date).await?,
        };
        inputs.days.push(day);
    }
    inputs.cohorts = aggregates::cohorts(store, query.from, query.to).await?;
    for journey in journeys {
        let days = aggregates::journey_aggregates_between(store, journey, query.from, query.to).await?;
        inputs.journeys.insert(journey.clone(), days);
    }
    Ok(inputs)
}

/// One row of a report: a period, channel or campaign (or `total`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KpiRow {
    pub key: String,
    pub leads: u64,
    pub mql: u64,
    pub sql: u64,
    /// New customers (first orders).
    pub customers: u64,
    pub orders: u64,
    pub revenue: f64,
    /// Average order value: revenue ÷ orders.
    pub aov: Option<f64>,
    pub lead_to_customer: Option<f64>,
    pub spend: f64,
    /// Conversions and revenue the chosen attribution model credits.
    pub attributed_conversions: f64,
    pub attributed_revenue: f64,
    /// Spend ÷ new customers.
    pub cac: Option<f64>,
    /// Attributed revenue ÷ spend.
    pub roas: Option<f64>,
    /// (Attributed revenue × margin − spend) ÷ spend.
    pub romi: Option<f64>,
}

impl KpiRow {
    fn new(key: &str) -> KpiRow {
        KpiRow { key: key.to_string(), ..KpiRow::default() }
    }

    /// The ratios, from the counts.
    fn finish(&mut self, margin: f64) {
        // Sums of amounts in cents drift in binary (0.1 + 0.2); money is shown to the cent.
        self.spend = crate::repo::spend::round_cents(self.spend);
        self.revenue = crate::repo::spend::round_cents(self.revenue);
        self.aov = ratio(self.revenue, self.orders as f64);
        self.lead_to_customer = ratio(self.customers as f64, self.leads as f64);
        self.cac = ratio(self.spend, self.customers as f64);
        self.roas = ratio(self.attributed_revenue, self.spend);
        self.romi = ratio(self.attributed_revenue * margin - self.spend, self.spend);
    }
}

/// A counter's stored value as a count (counters only add whole ones).
fn count(value: f64) -> u64 {
    value.round().max(0.0) as u64
}

/// `numerator ÷ denominator`, `None` for a zero denominator (never NaN or infinity).
pub fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    let value = numerator / denominator;
    (denominator != 0.0 && value.is_finite()).then_some(value)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Funnel {
    pub leads: u64,
    pub mql: u64,
    pub sql: u64,
    pub customers: u64,
    pub lead_to_mql: Option<f64>,
    pub mql_to_sql: Option<f64>,
    pub sql_to_customer: Option<f64>,
    pub lead_to_customer: Option<f64>,
}

/// The range's credit one model gives a channel and campaign.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelCredit {
    pub model: Model,
    pub channel: String,
    pub campaign: Option<String>,
    pub conversions: f64,
    pub revenue: f64,
}

/// A cohort (the month of its customers' first order) month by month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortRow {
    /// `2026-03`.
    pub cohort: String,
    /// Customers whose first order was in the cohort's month.
    pub customers: u64,
    /// Month 0.. (month 0 is the first): the share of the cohort's customers who ordered that month.
    pub retention: Vec<Option<f64>>,
    /// Month 0..: revenue of the cohort up to and including that month ÷ its customers.
    pub ltv: Vec<f64>,
}

/// Email counts of one template within one journey (`-`: sent outside journeys).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EmailRow {
    pub template: String,
    pub journey: Option<String>,
    pub sent: u64,
    pub delivered: u64,
    pub bounced: u64,
    pub complained: u64,
    pub opened: u64,
    pub clicked: u64,
    pub unsubscribed: u64,
}

/// A report over a range: what `GET /v1/kpi` answers (field names are the API).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiReport {
    pub from: Date,
    pub to: Date,
    pub group_by: GroupBy,
    pub attribution: Model,
    pub currency: String,
    pub margin: f64,
    pub rows: Vec<KpiRow>,
    pub totals: KpiRow,
    pub funnel: Funnel,
    /// Every model's credit over the range, per channel and campaign.
    pub attribution_by_model: Vec<ModelCredit>,
    pub cohorts: Vec<CohortRow>,
    /// Average LTV to date of the range's cohorts ÷ CAC over the range.
    pub ltv_cac: Option<f64>,
    pub email: Vec<EmailRow>,
    pub uplift: Vec<JourneyUplift>,
    pub recovered_cart_revenue: f64,
    pub carts_abandoned: u64,
    pub carts_recovered: u64,
}

/// The columns of `rows_csv`, in order.
pub const CSV_HEADER: [&str; 16] = [
    "key",
    "leads",
    "mql",
    "sql",
    "customers",
    "orders",
    "revenue",
    "aov",
    "lead_to_customer",
    "spend",
    "attributed_conversions",
    "attributed_revenue",
    "cac",
    "roas",
    "romi",
    "currency",
];

impl KpiReport {
    /// The rows as CSV: a header, one line per row, then `total`. An undefined ratio is empty.
    pub fn rows_csv(&self) -> String {
        let mut out = String::new();
        out.push_str(&CSV_HEADER.join(","));
        out.push('\n');
        for row in self.rows.iter().chain(std::iter::once(&self.totals)) {
            let number = |value: f64| format_number(value);
            let whole = |value: u64| value.to_string();
            let optional = |value: Option<f64>| value.map(format_number).unwrap_or_default();
            let fields = [
                csv_field(&row.key),
                whole(row.leads),
                whole(row.mql),
                whole(row.sql),
                whole(row.customers),
                whole(row.orders),
                number(row.revenue),
                optional(row.aov),
                optional(row.lead_to_customer),
                number(row.spend),
                number(row.attributed_conversions),
                number(row.attributed_revenue),
                optional(row.cac),
                optional(row.roas),
                optional(row.romi),
                csv_field(&self.currency),
            ];
            let _ = writeln!(out, "{}", fields.join(","));
        }
        out
    }
}

/// Whole numbers without a fraction, others in the shortest form that reads back the same value
/// (as JSON writes them), so CSV and JSON agree.
fn format_number(value: f64) -> String {
    if !value.is_finite() {
        return String::new();
    }
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{}", value as i64);
    }
    value.to_string()
}

/// One CSV field, RFC 4180 quoted; a text a spreadsheet would run as a formula (`=`, `+`, `-`,
/// `@`, tab, CR first) is prefixed with `'`, except a plain number, which stays a number.
pub fn csv_field(text: &str) -> String {
    let formula_like = text.starts_with(['=', '+', '@', '\t', '\r']) || (text.starts_with('-') && text.len() > 1);
    let text = if formula_like && text.parse::<f64>().is_err() { format!("'{text}") } else { text.to_string() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

/// The KPI report of `inputs` for `query`. Pure: no storage, no clock.
pub fn compute(inputs: &KpiInputs, query: &KpiQuery, settings: &Settings) -> KpiReport {
    let margin = settings.kpi.margin;
    let days: Vec<&DayInputs> =
        inputs.days.iter().filter(|day| day.date >= query.from && day.date <= query.to).collect();
    let mut rows: BTreeMap<String, KpiRow> = BTreeMap::new();
    if query.group_by.is_time() {
        for date in query.days() {
            let key = query.group_by.period(date);
            rows.entry(key.clone()).or_insert_with(|| KpiRow::new(&key));
        }
    }
    let mut totals = KpiRow::new("total");
    for day in &days {
        let row_key = |dimensions: &Dimensions| match query.group_by {
            GroupBy::Channel => dimensions.channel.clone(),
            GroupBy::Campaign => dimensions.campaign.clone().unwrap_or_else(|| "-".into()),
            time => time.period(day.date),
        };
        let mut add = |dimensions: &Dimensions, change: &dyn Fn(&mut KpiRow)| {
            let key = row_key(dimensions);
            change(rows.entry(key.clone()).or_insert_with(|| KpiRow::new(&key)));
            change(&mut totals);
        };
        for total in &day.totals {
            let value = total.value;
            match &total.metric {
                Metric::Leads => add(&total.dimensions, &|row| row.leads += count(value)),
                Metric::StageReached(LifecycleStage::Mql) => add(&total.dimensions, &|row| row.mql += count(value)),
                Metric::StageReached(LifecycleStage::Sql) => add(&total.dimensions, &|row| row.sql += count(value)),
                Metric::NewCustomers => add(&total.dimensions, &|row| row.customers += count(value)),
                Metric::Orders => add(&total.dimensions, &|row| row.orders += count(value)),
                Metric::Revenue => add(&total.dimensions, &|row| row.revenue += value),
                _ => {}
            }
        }
        for (model, credit) in &day.credits {
            if *model == query.attribution {
                add(&credit.dimensions, &|row| {
                    row.attributed_conversions += credit.conversions;
                    row.attributed_revenue += credit.revenue;
                });
            }
        }
        for spend in &day.spend {
            let dimensions = Dimensions::new(&spend.channel, spend.campaign.as_deref());
            add(&dimensions, &|row| row.spend += spend.amount);
        }
    }
    let mut rows: Vec<KpiRow> = rows.into_values().collect();
    for row in &mut rows {
        row.finish(margin);
    }
    totals.finish(margin);

    let funnel = Funnel {
        leads: totals.leads,
        mql: totals.mql,
        sql: totals.sql,
        customers: totals.customers,
        lead_to_mql: ratio(totals.mql as f64, totals.leads as f64),
        mql_to_sql: ratio(totals.sql as f64, totals.mql as f64),
        sql_to_customer: ratio(totals.customers as f64, totals.sql as f64),
        lead_to_customer: ratio(totals.customers as f64, totals.leads as f64),
    };

    let mut by_model: BTreeMap<(Model, Dimensions), (f64, f64)> = BTreeMap::new();
    for day in &days {
        for (model, credit) in &day.credits {
            let entry = by_model.entry((*model, credit.dimensions.clone())).or_default();
            entry.0 += credit.conversions;
            entry.1 += credit.revenue;
        }
    }
    let attribution_by_model = by_model
        .into_iter()
        .map(|((model, dimensions), (conversions, revenue))| ModelCredit {
            model,
            channel: dimensions.channel,
            campaign: dimensions.campaign,
            conversions,
            revenue,
        })
        .collect();

    let cohorts = cohort_rows(&inputs.cohorts, query);
    let (cohort_customers, cohort_revenue) = cohorts.iter().fold((0.0, 0.0), |(customers, revenue), row| {
        let customers_here = row.customers as f64;
        (customers + customers_here, revenue + row.ltv.last().copied().unwrap_or(0.0) * customers_here)
    });
    let ltv_cac = ratio(cohort_revenue, cohort_customers).zip(totals.cac).and_then(|(ltv, cac)| ratio(ltv, cac));

    let sum = |wanted: &Metric| -> f64 {
        days.iter().flat_map(|day| &day.totals).filter(|t| &t.metric == wanted).map(|t| t.value).sum()
    };
    let discount_cost = |journey: &str| -> f64 {
        days.iter()
            .flat_map(|day| &day.totals)
            .filter(|t| t.metric == Metric::DiscountCost && t.dimensions.campaign.as_deref() == Some(journey))
            .map(|t| t.value)
            .sum()
    };
    let uplift = inputs
        .journeys
        .iter()
        .map(|(journey, journey_days)| {
            let in_range: Vec<JourneyDay> =
                journey_days.iter().filter(|d| d.date >= query.from && d.date <= query.to).cloned().collect();
            uplift::journey_uplift(journey, &in_range, discount_cost(journey), margin, settings.kpi.min_group_size)
        })
        .collect();

    KpiReport {
        from: query.from,
        to: query.to,
        group_by: query.group_by,
        attribution: query.attribution,
        currency: settings.currency.clone(),
        margin,
        rows,
        totals,
        funnel,
        attribution_by_model,
        cohorts,
        ltv_cac,
        email: email_rows(&days),
        uplift,
        recovered_cart_revenue: sum(&Metric::CartRecoveredRevenue),
        carts_abandoned: count(sum(&Metric::CartsAbandoned)),
        carts_recovered: count(sum(&Metric::CartRecovered)),
    }
}

/// Months from `from`'s to `to`'s (0 for the same month).
fn months_between(from: Date, to: Date) -> i32 {
    (i32::from(to.year()) - i32::from(from.year())) * 12 + i32::from(to.month()) - i32::from(from.month())
}

/// The cohorts that started in the range's months, each over its months 0..N where N reaches the
/// range's last month (at most `COHORT_MONTHS_FOLLOWED`).
fn cohort_rows(cohorts: &[CohortMonth], query: &KpiQuery) -> Vec<CohortRow> {
    let first = query.from.first_of_month();
    let last = query.to.first_of_month();
    let mut by_cohort: BTreeMap<Date, BTreeMap<i32, &CohortMonth>> = BTreeMap::new();
    for row in cohorts.iter().filter(|row| row.cohort >= first && row.cohort <= last) {
        let offset = months_between(row.cohort, row.month);
        if (0..=COHORT_MONTHS_FOLLOWED).contains(&offset) && row.month <= last {
            by_cohort.entry(row.cohort).or_default().insert(offset, row);
        }
    }
    by_cohort
        .into_iter()
        .map(|(cohort, months)| {
            let size = months.get(&0).map_or(0, |m| m.customers);
            let span = months_between(cohort, last).min(COHORT_MONTHS_FOLLOWED);
            let mut revenue = 0.0;
            let mut retention = Vec::new();
            let mut ltv = Vec::new();
            for offset in 0..=span {
                let month = months.get(&offset);
                revenue += month.map_or(0.0, |m| m.revenue);
                retention.push(ratio(month.map_or(0, |m| m.customers) as f64, size as f64));
                ltv.push(ratio(revenue, size as f64).unwrap_or(0.0));
            }
            CohortRow { cohort: month_name(cohort), customers: size, retention, ltv }
        })
        .collect()
}

/// The email kinds an `EmailRow` counts, by the metric they are stored under.
const EMAIL_KINDS: [&str; 7] = [
    "email_sent",
    "email_delivered",
    "email_bounced",
    "email_complained",
    "email_opened",
    "email_clicked",
    "unsubscribed",
];

fn email_rows(days: &[&DayInputs]) -> Vec<EmailRow> {
    let mut rows: BTreeMap<Dimensions, EmailRow> = BTreeMap::new();
    for total in days.iter().flat_map(|day| &day.totals) {
        let Metric::Email(kind) = &total.metric else { continue };
        if !EMAIL_KINDS.contains(&kind.as_str()) {
            continue;
        }
        let row = rows.entry(total.dimensions.clone()).or_insert_with(|| EmailRow {
            template: total.dimensions.channel.clone(),
            journey: total.dimensions.campaign.clone(),
            ..EmailRow::default()
        });
        let count = count(total.value);
        let field = match kind.as_str() {
            "email_sent" => &mut row.sent,
            "email_delivered" => &mut row.delivered,
            "email_bounced" => &mut row.bounced,
            "email_complained" => &mut row.complained,
            "email_opened" => &mut row.opened,
            "email_clicked" => &mut row.clicked,
            _ => &mut row.unsubscribed,
        };
        *field += count;
    }
    rows.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_read_by_their_names_and_the_usual_spellings() {
        for (text, model) in [
            ("position_based", Model::PositionBased),
            ("Position-Based", Model::PositionBased),
            ("u_shaped", Model::PositionBased),
            ("time decay", Model::TimeDecay),
            ("first", Model::FirstTouch),
            ("last_touch", Model::LastTouch),
            ("linear", Model::Linear),
        ] {
            assert_eq!(parse_model(text), Some(model), "{text}");
        }
        assert_eq!(parse_model("magic"), None);
    }

    #[test]
    fn csv_text_is_quoted_when_needed_and_never_read_as_a_formula() {
        assert_eq!(csv_field("autumn"), "autumn");
        assert_eq!(csv_field("-"), "-", "the no-campaign key stays as it is");
        assert_eq!(csv_field("spring, \"sale\""), "\"spring, \"\"sale\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+7 (999) 000"), "'+7 (999) 000");
        assert_eq!(csv_field("-12.5"), "-12.5", "a number stays a number");
        assert_eq!(csv_field("+7"), "+7");
        assert_eq!(csv_field("-1+1"), "'-1+1");
        assert_eq!(csv_field("@sum"), "'@sum");
    }

    #[test]
    fn numbers_read_the_same_in_csv_and_json_and_ratios_never_divide_by_zero() {
        assert_eq!(format_number(1500.0), "1500");
        assert_eq!(format_number(-1.0), "-1");
        assert_eq!(format_number(2.0 / 3.0), "0.6666666666666666");
        assert_eq!(format_number(0.0000001), "0.0000001");
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(0.0, 0.0), None);
        assert_eq!(ratio(0.0, 5.0), Some(0.0));
    }

    #[test]
    fn periods_are_iso_weeks_and_calendar_months() {
        let day = jiff::civil::date(2027, 1, 1);
        assert_eq!(GroupBy::Week.period(day), "2026-W53", "1 January 2027 is a Friday of 2026's last week");
        assert_eq!(GroupBy::Month.period(day), "2027-01");
        assert_eq!(GroupBy::Day.period(day), "2027-01-01");
        for group in GroupBy::ALL {
            assert_eq!(GroupBy::parse(group.as_str()), Some(group));
            assert_eq!(serde_json::to_value(group).unwrap(), group.as_str());
        }
        for model in Model::ALL {
            assert_eq!(parse_model(model.as_str()), Some(model));
        }
    }
}
