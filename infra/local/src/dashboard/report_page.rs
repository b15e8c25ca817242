//! The KPI dashboard from one `KpiReport` (grouped by channel): summary tiles, the funnel, CAC
//! and ROAS by channel, revenue by attribution model, the cohort retention heat map, LTV by
//! cohort, journey uplift with its interval, email metrics, the per-channel table and the newest
//! contacts. Every figure a chart draws is also in its `data-value` and as text; `data-kpi`
//! names where a tile's number sits in `GET /v1/kpi`'s JSON (`totals.cac`), so a test can
//! compare the two.

use std::collections::BTreeMap;
use std::fmt::Write;

use voronka_domain::html::escape;
use voronka_domain::journeys::attribution::Model;
use voronka_domain::kpi::KpiReport;
use voronka_domain::sending::reputation::Status;

use super::charts::{
    Bar, HeatRow, Whisker, bar_chart, data_value, grouped_bar_chart, heat_map, money, percent, points, ratio,
    whisker_chart,
};
use super::{LinkMode, Links, contacts_table, page};

/// The reputation guard: a warning while marketing is paused, else one line of the window's rates.
fn reputation_card(status: &Status) -> String {
    let rates = format!(
        "hard bounces {:.3}% and complaints {:.3}% of {} sends since {}",
        status.bounce_rate * 100.0,
        status.complaint_rate * 100.0,
        status.counts.sends,
        status.window_from
    );
    match (&status.state.paused, &status.state.trip) {
        (true, Some(trip)) => format!(
            "<section class=\"card error\" id=\"reputation\" data-paused=\"true\"><h2>Marketing paused</h2>\
             <p>Since {since}: {trip}. Marketing is held and re-queued, transactional mail goes on; \
             it resumes once the rates fall, or with <code>voronka sending resume</code>. Now: {rates}.</p></section>",
            since = status.state.paused_at.map(|t| t.to_string()).unwrap_or_default(),
            trip = escape(&trip.to_string()),
        ),
        _ => format!("<p class=\"note\" id=\"reputation\" data-paused=\"false\">Sending reputation: {rates}.</p>"),
    }
}

/// Campaign rows listed under the attribution chart, by revenue.
const MAX_CAMPAIGNS: usize = 20;

fn count(value: u64) -> String {
    value.to_string()
}

fn tile(kpi: &str, label: &str, value: Option<f64>, text: &str) -> String {
    format!(
        "<div class=\"tile\" data-kpi=\"{kpi}\" data-value=\"{value}\"><b>{text}</b><span>{label}</span></div>",
        kpi = escape(kpi),
        value = data_value(value),
        text = escape(text),
        label = escape(label),
    )
}

fn range_form(report: &KpiReport) -> String {
    let mut options = String::new();
    for model in Model::ALL {
        let _ = write!(
            options,
            "<option value=\"{m}\"{selected}>{m}</option>",
            m = model.as_str(),
            selected = if model == report.attribution { " selected" } else { "" }
        );
    }
    format!(
        "<form class=\"range card\" method=\"get\" action=\"/admin/dashboard\">\
         <label>From <input type=\"date\" name=\"from\" value=\"{from}\"></label>\
         <label>To <input type=\"date\" name=\"to\" value=\"{to}\"></label>\
         <label>Attribution <select name=\"attribution\">{options}</select></label>\
         <button type=\"submit\">Show</button></form>",
        from = report.from,
        to = report.to,
    )
}

fn section(id: &str, title: &str, note: &str, content: &str) -> String {
    let note = if note.is_empty() { String::new() } else { format!("<p class=\"note\">{}</p>", escape(note)) };
    format!("<section class=\"card\" id=\"{id}\"><h2>{}</h2>{note}{content}</section>", escape(title))
}

/// The dashboard page. In `LinkMode::Static` the range form is left out (there is no server to
/// ask) and contact links point at the files beside it.
pub fn render_dashboard(report: &KpiReport, links: &Links) -> String {
    let mut body = String::new();
    let currency = escape(&report.currency);
    let _ = write!(
        body,
        "<h1>KPIs {from} – {to}</h1><p class=\"note\" id=\"report-range\" data-from=\"{from}\" data-to=\"{to}\" data-attribution=\"{model}\">\
         Amounts in {currency}; attributed figures by the <b>{model}</b> model; margin {margin} for ROMI; channels by first touch \
         for leads and customers, last touch for orders and revenue.</p>",
        from = report.from,
        to = report.to,
        model = report.attribution.as_str(),
        margin = percent(Some(report.margin)),
    );
    if links.mode == LinkMode::Server {
        body.push_str(&range_form(report));
    }

    if let Some(status) = &links.reputation {
        body.push_str(&reputation_card(status));
    }

    let totals = &report.totals;
    body.push_str("<div class=\"tiles card\">");
    for (kpi, label, value, text) in [
        ("totals.leads", "leads", Some(totals.leads as f64), count(totals.leads)),
        ("totals.customers", "new customers", Some(totals.customers as f64), count(totals.customers)),
        ("totals.orders", "orders", Some(totals.orders as f64), count(totals.orders)),
        ("totals.revenue", "revenue", Some(totals.revenue), money(Some(totals.revenue))),
        ("totals.aov", "average order", totals.aov, money(totals.aov)),
        ("totals.spend", "ad spend", Some(totals.spend), money(Some(totals.spend))),
        ("totals.cac", "CAC", totals.cac, money(totals.cac)),
        ("totals.roas", "ROAS", totals.roas, ratio(totals.roas)),
        ("totals.romi", "ROMI", totals.romi, percent(totals.romi)),
        ("ltv_cac", "LTV / CAC", report.ltv_cac, ratio(report.ltv_cac)),
        (
            "recovered_cart_revenue",
            "recovered cart revenue",
            Some(report.recovered_cart_revenue),
            money(Some(report.recovered_cart_revenue)),
        ),
        ("carts_abandoned", "carts abandoned", Some(report.carts_abandoned as f64), count(report.carts_abandoned)),
        ("carts_recovered", "carts recovered", Some(report.carts_recovered as f64), count(report.carts_recovered)),
    ] {
        body.push_str(&tile(kpi, label, value, &text));
    }
    body.push_str("</div>");

    // Funnel.
    let funnel = &report.funnel;
    let stages = [("Leads", funnel.leads), ("MQL", funnel.mql), ("SQL", funnel.sql), ("Customers", funnel.customers)];
    let bars: Vec<Bar> = stages.iter().map(|(label, n)| Bar::new(*label, Some(*n as f64), count(*n))).collect();
    let mut content = bar_chart("funnel", "Funnel: leads to customers", &bars);
    content.push_str("<table class=\"rates\"><tr>");
    for (kpi, label, value) in [
        ("funnel.lead_to_mql", "lead → MQL", funnel.lead_to_mql),
        ("funnel.mql_to_sql", "MQL → SQL", funnel.mql_to_sql),
        ("funnel.sql_to_customer", "SQL → customer", funnel.sql_to_customer),
        ("funnel.lead_to_customer", "lead → customer", funnel.lead_to_customer),
    ] {
        let _ = write!(
            content,
            "<td data-kpi=\"{kpi}\" data-value=\"{}\">{}: <b>{}</b></td>",
            data_value(value),
            escape(label),
            percent(value)
        );
    }
    content.push_str("</tr></table>");
    body.push_str(&section(
        "funnel",
        "Funnel",
        "Counts in the range; step rates are the next stage ÷ this one.",
        &content,
    ));

    // CAC and ROAS by channel.
    let cac: Vec<Bar> = report.rows.iter().map(|r| Bar::new(&r.key, r.cac, money(r.cac))).collect();
    let roas: Vec<Bar> = report.rows.iter().map(|r| Bar::new(&r.key, r.roas, ratio(r.roas))).collect();
    let content = format!(
        "<h3>CAC (spend ÷ new customers)</h3>{}<h3>ROAS (attributed revenue ÷ spend)</h3>{}",
        bar_chart("cac", "CAC by channel", &cac),
        bar_chart("roas", "ROAS by channel", &roas)
    );
    body.push_str(&section(
        "channels",
        "CAC and ROAS by channel",
        "A channel without new customers has no CAC, one without spend no ROAS (shown as —); a channel that costs nothing acquires at a CAC of 0.",
        &content,
    ));

    // Revenue by attribution model.
    let mut by_channel: BTreeMap<&str, [f64; 5]> = BTreeMap::new();
    let mut model_totals = [(0.0_f64, 0.0_f64); 5];
    for credit in &report.attribution_by_model {
        let Some(index) = Model::ALL.iter().position(|m| *m == credit.model) else { continue };
        by_channel.entry(credit.channel.as_str()).or_default()[index] += credit.revenue;
        model_totals[index].0 += credit.conversions;
        model_totals[index].1 += credit.revenue;
    }
    let series: Vec<String> = Model::ALL.iter().map(|m| m.as_str().to_string()).collect();
    let categories: Vec<String> = by_channel.keys().map(|c| c.to_string()).collect();
    let values: Vec<Vec<f64>> = by_channel.values().map(|v| v.to_vec()).collect();
    let mut content =
        grouped_bar_chart("attribution", "Revenue by channel under each model", &series, &categories, &values, |v| {
            money(Some(v))
        });
    content.push_str("<table class=\"models\"><tr><th>Model</th><th class=\"num\">Conversions</th><th class=\"num\">Revenue</th></tr>");
    for (model, (conversions, revenue)) in Model::ALL.iter().zip(model_totals) {
        let _ = write!(
            content,
            "<tr data-model=\"{m}\"><td>{m}</td><td class=\"num\" data-value=\"{c}\">{c:.2}</td><td class=\"num\" data-value=\"{r}\">{}</td></tr>",
            money(Some(revenue)),
            m = model.as_str(),
            c = conversions,
            r = revenue,
        );
    }
    content.push_str("</table>");
    let mut campaigns: Vec<_> =
        report.attribution_by_model.iter().filter(|credit| credit.model == report.attribution).collect();
    campaigns.sort_by(|a, b| b.revenue.total_cmp(&a.revenue));
    let _ = write!(
        content,
        "<h3>Top campaigns ({model})</h3><table class=\"campaigns\"><tr><th>Channel</th><th>Campaign</th>\
         <th class=\"num\">Conversions</th><th class=\"num\">Revenue</th></tr>",
        model = report.attribution.as_str()
    );
    for credit in campaigns.iter().take(MAX_CAMPAIGNS) {
        let _ = write!(
            content,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{:.2}</td><td class=\"num\" data-value=\"{}\">{}</td></tr>",
            escape(&credit.channel),
            escape(credit.campaign.as_deref().unwrap_or("—")),
            credit.conversions,
            data_value(Some(credit.revenue)),
            money(Some(credit.revenue))
        );
    }
    content.push_str("</table>");
    body.push_str(&section(
        "attribution",
        "Revenue by attribution model",
        "The same conversions credited five ways; each conversion's credits sum to one.",
        &content,
    ));

    // Cohorts: retention heat map and LTV.
    let months = report.cohorts.iter().map(|c| c.retention.len()).max().unwrap_or(0);
    let columns: Vec<String> = (0..months).map(|m| format!("M{m}")).collect();
    let rows: Vec<HeatRow> = report
        .cohorts
        .iter()
        .map(|c| HeatRow { label: format!("{} ({})", c.cohort, c.customers), cells: c.retention.clone() })
        .collect();
    let retention =
        heat_map("retention", "Cohort retention: share of each cohort ordering in month N", &columns, &rows);
    body.push_str(&section(
        "retention",
        "Cohort retention",
        "Rows: the month of a customer's first order (customers in brackets); columns: months since; cells: share who ordered.",
        &retention,
    ));
    let ltv_bars: Vec<Bar> = report
        .cohorts
        .iter()
        .map(|c| {
            let latest = c.ltv.last().copied();
            Bar::new(&c.cohort, latest, money(latest))
        })
        .collect();
    let mut content = bar_chart("ltv", "LTV to date by cohort", &ltv_bars);
    let _ = write!(
        content,
        "<p>LTV / CAC: <b data-kpi=\"ltv_cac\" data-value=\"{}\">{}</b></p><table class=\"ltv\"><tr><th>Cohort</th>",
        data_value(report.ltv_cac),
        ratio(report.ltv_cac)
    );
    for column in &columns {
        let _ = write!(content, "<th class=\"num\">{column}</th>");
    }
    content.push_str("</tr>");
    for cohort in &report.cohorts {
        let _ = write!(content, "<tr><td>{}</td>", escape(&cohort.cohort));
        for value in &cohort.ltv {
            let _ = write!(
                content,
                "<td class=\"num\" data-value=\"{}\">{}</td>",
                data_value(Some(*value)),
                money(Some(*value))
            );
        }
        content.push_str("</tr>");
    }
    content.push_str("</table>");
    body.push_str(&section(
        "ltv",
        "LTV by cohort",
        "Cumulative revenue per customer of the cohort; LTV / CAC uses the range's CAC.",
        &content,
    ));

    // Journey uplift.
    let whiskers: Vec<Whisker> = report
        .uplift
        .iter()
        .map(|u| Whisker {
            label: u.journey.clone(),
            point: u.absolute_uplift,
            low: u.ci_low,
            high: u.ci_high,
            flag: u.too_small.then(|| "too small to conclude".to_string()),
        })
        .collect();
    let mut content = whisker_chart("uplift", "Conversion uplift per journey with its 95% interval", &whiskers);
    content.push_str(
        "<table class=\"uplift\"><tr><th>Journey</th><th class=\"num\">Treatment</th><th class=\"num\">Holdout</th>\
         <th class=\"num\">Uplift</th><th>95% interval</th><th class=\"num\">Relative</th><th class=\"num\">Incremental revenue</th>\
         <th class=\"num\">Discount cost</th><th class=\"num\">ROMI</th><th>Verdict</th></tr>",
    );
    for u in &report.uplift {
        let group = |g: &voronka_domain::kpi::uplift::GroupStats| {
            format!("{} / {} ({})", g.conversions, g.contacts, percent(g.conversion_rate))
        };
        let _ = write!(
            content,
            "<tr data-journey=\"{j}\"{class}><td>{j}{flag}</td><td class=\"num\">{t}</td><td class=\"num\">{h}</td>\
             <td class=\"num\" data-value=\"{uv}\">{u_text}</td><td>{low} … {high}</td><td class=\"num\">{rel}</td>\
             <td class=\"num\">{inc}</td><td class=\"num\">{cost}</td><td class=\"num\">{romi}</td><td>{verdict}<br><span class=\"note\">{method}</span></td></tr>",
            j = escape(&u.journey),
            class = if u.too_small { " class=\"too-small\"" } else { "" },
            flag = if u.too_small { " <span class=\"flag\">too small</span>" } else { "" },
            t = escape(&group(&u.treatment)),
            h = escape(&group(&u.holdout)),
            uv = data_value(u.absolute_uplift),
            u_text = points(u.absolute_uplift),
            low = points(u.ci_low),
            high = points(u.ci_high),
            rel = percent(u.relative_uplift),
            inc = money(u.incremental_revenue),
            cost = money(Some(u.discount_cost)),
            romi = percent(u.romi),
            verdict = escape(u.verdict.describe()),
            method = escape(u.method),
        );
    }
    content.push_str("</table>");
    body.push_str(&section(
        "uplift",
        "Journey uplift (treatment vs holdout)",
        "Conversion rate difference in percentage points; groups below the minimum size are flagged, not hidden.",
        &content,
    ));

    // Email metrics.
    let mut content = String::from(
        "<table class=\"email\"><tr><th>Template</th><th>Journey</th><th class=\"num\">Sent</th><th class=\"num\">Delivered</th>\
         <th class=\"num\">Bounced</th><th class=\"num\">Complaints</th><th class=\"num\">Opened</th><th class=\"num\">Clicked</th>\
         <th class=\"num\">Unsubscribed</th></tr>",
    );
    for e in &report.email {
        let _ = write!(
            content,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&e.template),
            escape(e.journey.as_deref().unwrap_or("—")),
            e.sent,
            e.delivered,
            e.bounced,
            e.complained,
            e.opened,
            e.clicked,
            e.unsubscribed
        );
    }
    content.push_str("</table>");
    body.push_str(&section("email", "Email", "Per template and journey in the range.", &content));

    // The channel table.
    let mut content = String::from(
        "<table class=\"rows\"><tr><th>Channel</th><th class=\"num\">Leads</th><th class=\"num\">MQL</th><th class=\"num\">SQL</th>\
         <th class=\"num\">Customers</th><th class=\"num\">Orders</th><th class=\"num\">Revenue</th><th class=\"num\">AOV</th>\
         <th class=\"num\">Spend</th><th class=\"num\">Attributed revenue</th><th class=\"num\">CAC</th><th class=\"num\">ROAS</th><th class=\"num\">ROMI</th></tr>",
    );
    for row in report.rows.iter().chain(std::iter::once(&report.totals)) {
        let _ = write!(
            content,
            "<tr data-row=\"{key}\"><td>{key}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\" data-value=\"{rv}\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\" data-value=\"{sv}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            row.leads,
            row.mql,
            row.sql,
            row.customers,
            row.orders,
            money(Some(row.revenue)),
            money(row.aov),
            money(Some(row.spend)),
            money(Some(row.attributed_revenue)),
            money(row.cac),
            ratio(row.roas),
            percent(row.romi),
            key = escape(&row.key),
            rv = data_value(Some(row.revenue)),
            sv = data_value(Some(row.spend)),
        );
    }
    content.push_str("</table>");
    body.push_str(&section("table", "By channel", "", &content));

    body.push_str(&section(
        "contacts",
        "Newest contacts",
        "Open a contact for their consents, touches, journeys, orders, carts and timeline.",
        &contacts_table(&links.contacts, links.mode),
    ));
    let html = page("KPI dashboard", &body, links.mode);
    match links.mode {
        // The shell's link back to the dashboard is written for the contact pages one folder
        // down; the static dashboard itself sits beside it.
        LinkMode::Static => html.replacen("href=\"../index.html\"", "href=\"index.html\"", 1),
        LinkMode::Server => html,
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;
    use voronka_domain::kpi::uplift::journey_uplift;
    use voronka_domain::kpi::{CohortRow, EmailRow, Funnel, GroupBy, KpiRow, ModelCredit};
    use voronka_domain::repo::aggregates::JourneyDay;
    use voronka_domain::repo::journey_state::Group;

    use super::*;
    use crate::dashboard::ListedContact;

    const HOSTILE: &str = "<script>alert('x')</script>\"&";

    fn journey_days(treatment: (u64, u64), holdout: (u64, u64)) -> Vec<JourneyDay> {
        let day = |group, (entries, conversions)| JourneyDay {
            date: date(2026, 3, 1),
            group,
            entries,
            exits: 0,
            conversions,
            revenue: conversions as f64 * 50.0,
        };
        vec![day(Group::Treatment, treatment), day(Group::Holdout, holdout)]
    }

    fn report() -> KpiReport {
        let row = |key: &str, spend: f64, customers: u64, revenue: f64| KpiRow {
            key: key.to_string(),
            leads: 40,
            mql: 20,
            sql: 10,
            customers,
            orders: customers,
            revenue,
            spend,
            attributed_revenue: revenue,
            cac: (customers > 0 && spend > 0.0).then(|| spend / customers as f64),
            roas: (spend > 0.0).then(|| revenue / spend),
            ..KpiRow::default()
        };
        let rows = vec![row("paid_search", 300.0, 6, 900.0), row(HOSTILE, 100.0, 0, 0.0)];
        let credit = |model, channel: &str, campaign: &str, revenue| ModelCredit {
            model,
            channel: channel.to_string(),
            campaign: Some(campaign.to_string()),
            conversions: 1.0,
            revenue,
        };
        KpiReport {
            from: date(2026, 3, 1),
            to: date(2026, 3, 31),
            group_by: GroupBy::Channel,
            attribution: Model::LastTouch,
            currency: "RUB".into(),
            margin: 0.3,
            totals: row("total", 400.0, 6, 900.0),
            rows,
            funnel: Funnel {
                leads: 80,
                mql: 40,
                sql: 20,
                customers: 6,
                lead_to_mql: Some(0.5),
                mql_to_sql: Some(0.5),
                sql_to_customer: Some(0.3),
                lead_to_customer: Some(0.075),
            },
            attribution_by_model: Model::ALL
                .iter()
                .flat_map(|m| [credit(*m, "paid_search", HOSTILE, 600.0), credit(*m, "email", "spring", 300.0)])
                .collect(),
            cohorts: vec![CohortRow {
                cohort: "2026-03".into(),
                customers: 6,
                retention: vec![Some(1.0), Some(0.5)],
                ltv: vec![150.0, 200.0],
            }],
            ltv_cac: Some(3.0),
            email: vec![EmailRow { template: HOSTILE.into(), journey: None, sent: 10, ..EmailRow::default() }],
            uplift: vec![
                journey_uplift("welcome", &journey_days((5000, 500), (5000, 400)), 0.0, 0.3, 100),
                journey_uplift("tiny_journey", &journey_days((20, 3), (2, 0)), 0.0, 0.3, 100),
            ],
            recovered_cart_revenue: 120.0,
            carts_abandoned: 4,
            carts_recovered: 1,
        }
    }

    #[test]
    fn every_chart_is_drawn_with_its_numbers_as_text() {
        let links = Links { mode: LinkMode::Server, contacts: vec![], reputation: None };
        let html = render_dashboard(&report(), &links);
        for chart in ["funnel", "cac", "roas", "attribution", "retention", "ltv", "uplift"] {
            assert!(html.contains(&format!("data-chart=\"{chart}\"")), "chart {chart} is on the page");
        }
        assert!(html.contains("data-kpi=\"totals.cac\" data-value=\"66.66666666666667\""), "CAC 400/6 exactly");
        assert!(html.contains("<b>66.67</b>"), "and readable");
        assert!(html.contains("data-label=\"paid_search\" data-value=\"3\""), "ROAS of paid search");
        assert!(html.contains("data-row=\"2026-03 (6)\" data-column=\"M1\" data-value=\"0.5\""), "retention cell");
        assert!(html.contains("<form class=\"range card\""), "the range form is there on the server");
    }

    #[test]
    fn hostile_names_are_escaped_everywhere() {
        let links = Links {
            mode: LinkMode::Static,
            contacts: vec![ListedContact {
                id: "c_1".into(),
                name: HOSTILE.into(),
                stage: "customer".into(),
                orders: 1,
                revenue: 10.0,
                created_at: jiff::Timestamp::from_second(1_772_000_000).unwrap(),
            }],
            reputation: None,
        };
        let html = render_dashboard(&report(), &links);
        assert!(!html.contains("<script"), "no markup from data reaches the page");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"), "it is shown as text");
        assert!(html.contains("href=\"contacts/c_1.html\""), "static pages link to files");
        assert!(!html.contains("<form class=\"range"), "no form without a server");
    }

    #[test]
    fn a_paused_guard_is_shown_with_the_rate_that_tripped_it() {
        use voronka_domain::repo::reputation::{Counts, GuardState, RateKind, Trip};
        let trip = Trip { rate: RateKind::BounceRate, rate_ppm: 31_000, threshold_ppm: 25_000, sends: 1000 };
        let status = Status {
            state: GuardState { paused: true, trip: Some(trip), ..GuardState::default() },
            window_from: jiff::Timestamp::UNIX_EPOCH,
            counts: Counts { sends: 1000, bounces: 31, complaints: 0 },
            bounce_rate: 0.031,
            complaint_rate: 0.0,
        };
        let links = Links { mode: LinkMode::Server, contacts: vec![], reputation: Some(status.clone()) };
        let html = render_dashboard(&report(), &links);
        assert!(
            html.contains("data-paused=\"true\"") && html.contains("bounce_rate 3.100% &gt;= 2.500% over 1000 sends")
        );
        let running = Status { state: GuardState::default(), ..status };
        let links = Links { mode: LinkMode::Server, contacts: vec![], reputation: Some(running) };
        assert!(render_dashboard(&report(), &links).contains("data-paused=\"false\""));
    }

    #[test]
    fn a_too_small_journey_is_flagged_not_hidden() {
        let html = render_dashboard(&report(), &Links { mode: LinkMode::Server, contacts: vec![], reputation: None });
        let row = html.split("<tr data-journey=\"tiny_journey\"").nth(1).expect("the small journey has a row");
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(row.starts_with(" class=\"too-small\"") && row.contains("too small"), "{row}");
        assert!(html.contains("tiny_journey") && html.contains("too small to conclude"), "and a flagged whisker");
        let welcome = html.split("<tr data-journey=\"welcome\"").nth(1).unwrap();
        assert!(!welcome[..welcome.find("</tr>").unwrap()].contains("too-small"));
    }
}
