//! Server-rendered SVG charts: no script and no network, so the same markup works in `voronka
//! serve` and in the demo's files opened from disk. Every drawn value is also text: the shape's
//! `data-value` (the exact number, for tests and copy-paste), its `<title>` (a tooltip) and a
//! label beside it, so nothing is readable only as a length or a colour. Labels are escaped here.

use std::fmt::Write;

use voronka_domain::html::escape;

/// Colours of the series, in order (distinguishable in grey scale too, from dark to light).
pub const SERIES_COLOURS: [&str; 5] = ["#1f4e79", "#2e86c1", "#48a999", "#e0a030", "#c0504d"];

const LABEL_WIDTH: f64 = 170.0;
const VALUE_WIDTH: f64 = 110.0;
const PLOT_WIDTH: f64 = 420.0;
const ROW_HEIGHT: f64 = 26.0;

/// One bar: what it is, its value (`None` = not defined, drawn as an empty row saying so) and
/// how the value reads.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: Option<f64>,
    pub text: String,
}

impl Bar {
    pub fn new(label: impl Into<String>, value: Option<f64>, text: impl Into<String>) -> Bar {
        Bar { label: label.into(), value, text: text.into() }
    }
}

/// A number as an attribute value: the exact figure, or empty for "not defined".
pub fn data_value(value: Option<f64>) -> String {
    value.filter(|v| v.is_finite()).map(|v| v.to_string()).unwrap_or_default()
}

fn open_svg(chart: &str, title: &str, width: f64, height: f64) -> String {
    format!(
        "<svg class=\"chart\" data-chart=\"{chart}\" role=\"img\" aria-label=\"{title}\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\"><title>{title}</title>",
        chart = escape(chart),
        title = escape(title),
    )
}

/// Horizontal bars scaled to the largest value (negative values are drawn as zero length but
/// keep their text). An empty list draws a line saying there is no data.
pub fn bar_chart(chart: &str, title: &str, bars: &[Bar]) -> String {
    if bars.is_empty() {
        return empty_chart(chart, title);
    }
    let max = bars.iter().filter_map(|b| b.value).filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    let height = ROW_HEIGHT * bars.len() as f64 + 8.0;
    let mut svg = open_svg(chart, title, LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH, height);
    for (i, bar) in bars.iter().enumerate() {
        let y = 4.0 + ROW_HEIGHT * i as f64;
        let length = match bar.value {
            Some(v) if v.is_finite() && v > 0.0 && max > 0.0 => (v / max * PLOT_WIDTH).max(1.0),
            _ => 0.0,
        };
        let label = escape(&bar.label);
        let text = escape(&bar.text);
        let _ = write!(
            svg,
            "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\" class=\"label\">{label}</text>\
             <rect class=\"bar\" x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{length:.1}\" height=\"{h}\" fill=\"{fill}\" \
             data-label=\"{label}\" data-value=\"{value}\"><title>{label}: {text}</title></rect>\
             <text x=\"{vx:.1}\" y=\"{ty}\" class=\"value\">{text}</text>",
            lx = LABEL_WIDTH - 6.0,
            ty = y + ROW_HEIGHT * 0.62,
            h = ROW_HEIGHT - 6.0,
            fill = SERIES_COLOURS[0],
            value = data_value(bar.value),
            vx = LABEL_WIDTH + length + 6.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Bars in groups: for each category one bar per series, all on one scale, with a legend.
/// `values[category][series]`.
pub fn grouped_bar_chart(
    chart: &str,
    title: &str,
    series: &[String],
    categories: &[String],
    values: &[Vec<f64>],
    format: impl Fn(f64) -> String,
) -> String {
    if categories.is_empty() || series.is_empty() {
        return empty_chart(chart, title);
    }
    let bar_height = 12.0;
    let group_height = bar_height * series.len() as f64 + 10.0;
    let legend_height = 22.0;
    let height = legend_height + group_height * categories.len() as f64 + 4.0;
    let max = values.iter().flatten().copied().filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    let mut svg = open_svg(chart, title, LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH, height);
    for (s, name) in series.iter().enumerate() {
        let x = LABEL_WIDTH + 110.0 * s as f64;
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"4\" width=\"10\" height=\"10\" fill=\"{fill}\"/><text x=\"{tx}\" y=\"13\" class=\"legend\">{name}</text>",
            fill = SERIES_COLOURS[s % SERIES_COLOURS.len()],
            tx = x + 14.0,
            name = escape(name),
        );
    }
    for (c, category) in categories.iter().enumerate() {
        let top = legend_height + group_height * c as f64;
        let label = escape(category);
        let _ = write!(
            svg,
            "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\" class=\"label\">{label}</text>",
            lx = LABEL_WIDTH - 6.0,
            ty = top + group_height / 2.0,
        );
        for (s, name) in series.iter().enumerate() {
            let value = values.get(c).and_then(|row| row.get(s)).copied().unwrap_or(0.0);
            let y = top + bar_height * s as f64;
            let length =
                if value.is_finite() && value > 0.0 && max > 0.0 { (value / max * PLOT_WIDTH).max(1.0) } else { 0.0 };
            let text = escape(&format(value));
            let _ = write!(
                svg,
                "<rect class=\"bar\" x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{length:.1}\" height=\"{h}\" fill=\"{fill}\" \
                 data-label=\"{label}\" data-series=\"{series}\" data-value=\"{value}\"><title>{label}, {series}: {text}</title></rect>\
                 <text x=\"{vx:.1}\" y=\"{ty}\" class=\"value small\">{text}</text>",
                h = bar_height - 2.0,
                fill = SERIES_COLOURS[s % SERIES_COLOURS.len()],
                series = escape(name),
                value = data_value(Some(value)),
                vx = LABEL_WIDTH + length + 4.0,
                ty = y + bar_height - 3.0,
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A heat map row: its label and one cell per column (`None` = no data yet, left blank).
#[derive(Debug, Clone)]
pub struct HeatRow {
    pub label: String,
    pub cells: Vec<Option<f64>>,
}

/// Cells shaded by their share (0..=1, clamped), each with its percentage written inside.
pub fn heat_map(chart: &str, title: &str, columns: &[String], rows: &[HeatRow]) -> String {
    if rows.is_empty() || columns.is_empty() {
        return empty_chart(chart, title);
    }
    let cell_width = 52.0;
    let cell_height = 24.0;
    let label_width = 90.0;
    let header = 22.0;
    let width = label_width + cell_width * columns.len() as f64 + 4.0;
    let height = header + cell_height * rows.len() as f64 + 4.0;
    let mut svg = open_svg(chart, title, width, height);
    for (i, column) in columns.iter().enumerate() {
        let _ = write!(
            svg,
            "<text x=\"{x}\" y=\"15\" text-anchor=\"middle\" class=\"legend\">{name}</text>",
            x = label_width + cell_width * (i as f64 + 0.5),
            name = escape(column),
        );
    }
    for (r, row) in rows.iter().enumerate() {
        let y = header + cell_height * r as f64;
        let label = escape(&row.label);
        let _ = write!(
            svg,
            "<text x=\"{x}\" y=\"{ty}\" text-anchor=\"end\" class=\"label\">{label}</text>",
            x = label_width - 6.0,
            ty = y + cell_height * 0.65,
        );
        for (c, cell) in row.cells.iter().enumerate().take(columns.len()) {
            let Some(share) = cell.filter(|v| v.is_finite()) else { continue };
            let shade = share.clamp(0.0, 1.0);
            let x = label_width + cell_width * c as f64;
            let text = percent(Some(share));
            let ink = if shade > 0.5 { "#fff" } else { "#111" };
            let column = escape(&columns[c]);
            let _ = write!(
                svg,
                "<rect class=\"cell\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"rgb(31,78,121)\" fill-opacity=\"{opacity:.3}\" \
                 stroke=\"#ccc\" data-row=\"{label}\" data-column=\"{column}\" data-value=\"{value}\"><title>{label}, {column}: {text}</title></rect>\
                 <text x=\"{tx}\" y=\"{ty}\" text-anchor=\"middle\" class=\"small\" fill=\"{ink}\">{text}</text>",
                w = cell_width - 2.0,
                h = cell_height - 2.0,
                opacity = 0.08 + 0.92 * shade,
                value = data_value(Some(share)),
                tx = x + cell_width / 2.0,
                ty = y + cell_height * 0.65,
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// One interval: a point estimate with its low and high ends; `flag` marks a result too weak for
/// a conclusion (drawn dashed and grey, with the reason beside it, never left out).
#[derive(Debug, Clone)]
pub struct Whisker {
    pub label: String,
    pub point: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub flag: Option<String>,
}

/// Points with whiskers on one horizontal scale that always includes zero (drawn as a line), so
/// an interval crossing zero shows at a glance. Values are shares, written as percentage points.
pub fn whisker_chart(chart: &str, title: &str, items: &[Whisker]) -> String {
    if items.is_empty() {
        return empty_chart(chart, title);
    }
    let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
    let mut min = 0.0_f64;
    let mut max = 0.0_f64;
    for item in items {
        for v in [item.point, item.low, item.high].into_iter().filter_map(finite) {
            min = min.min(v);
            max = max.max(v);
        }
    }
    if max - min < 1e-9 {
        max = min + 0.01;
    }
    let pad = (max - min) * 0.05;
    let (min, max) = (min - pad, max + pad);
    let scale = |v: f64| LABEL_WIDTH + (v - min) / (max - min) * PLOT_WIDTH;
    let row = 30.0;
    let height = row * items.len() as f64 + 26.0;
    // Room for "+12.3 pp [+0.6 pp … +24.0 pp] — too small to conclude" beside the plot.
    let mut svg = open_svg(chart, title, LABEL_WIDTH + PLOT_WIDTH + 330.0, height);
    let zero = scale(0.0);
    let _ = write!(
        svg,
        "<line class=\"zero\" x1=\"{zero:.1}\" x2=\"{zero:.1}\" y1=\"2\" y2=\"{bottom}\" stroke=\"#888\" stroke-dasharray=\"3 3\"/>\
         <text x=\"{zero:.1}\" y=\"{label_y}\" text-anchor=\"middle\" class=\"small\">0 pp</text>",
        bottom = height - 18.0,
        label_y = height - 6.0,
    );
    for (i, item) in items.iter().enumerate() {
        let y = 6.0 + row * i as f64 + row / 2.0;
        let label = escape(&item.label);
        let colour = if item.flag.is_some() { "#999" } else { SERIES_COLOURS[0] };
        let dash = if item.flag.is_some() { " stroke-dasharray=\"4 3\"" } else { "" };
        let _ = write!(
            svg,
            "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\" class=\"label\">{label}</text>",
            lx = LABEL_WIDTH - 6.0,
            ty = y + 4.0,
        );
        let text = format!("{} [{} … {}]", points(item.point), points(item.low), points(item.high));
        if let (Some(low), Some(high)) = (finite(item.low), finite(item.high)) {
            let _ = write!(
                svg,
                "<line class=\"whisker\" x1=\"{x1:.1}\" x2=\"{x2:.1}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{colour}\" stroke-width=\"2\"{dash} \
                 data-low=\"{low}\" data-high=\"{high}\"><title>{label}: 95% interval {text}</title></line>\
                 <line x1=\"{x1:.1}\" x2=\"{x1:.1}\" y1=\"{a}\" y2=\"{b}\" stroke=\"{colour}\"/>\
                 <line x1=\"{x2:.1}\" x2=\"{x2:.1}\" y1=\"{a}\" y2=\"{b}\" stroke=\"{colour}\"/>",
                x1 = scale(low),
                x2 = scale(high),
                a = y - 6.0,
                b = y + 6.0,
            );
        }
        if let Some(point) = finite(item.point) {
            let _ = write!(
                svg,
                "<circle class=\"point\" cx=\"{cx:.1}\" cy=\"{y}\" r=\"5\" fill=\"{colour}\" data-value=\"{point}\"><title>{label}: {text}</title></circle>",
                cx = scale(point),
            );
        }
        let note = match (&item.flag, finite(item.point)) {
            (Some(flag), Some(_)) => format!("{text} — {flag}"),
            (Some(flag), None) => format!("no data — {flag}"),
            (None, _) => text.clone(),
        };
        let _ = write!(
            svg,
            "<text x=\"{vx}\" y=\"{ty}\" class=\"value small{flagged}\">{note}</text>",
            vx = LABEL_WIDTH + PLOT_WIDTH + 8.0,
            ty = y + 4.0,
            flagged = if item.flag.is_some() { " flagged" } else { "" },
            note = escape(&note),
        );
    }
    svg.push_str("</svg>");
    svg
}

fn empty_chart(chart: &str, title: &str) -> String {
    let mut svg = open_svg(chart, title, 400.0, 30.0);
    svg.push_str("<text x=\"4\" y=\"20\" class=\"empty\">No data in this range.</text></svg>");
    svg
}

/// A share as a percentage with one decimal; "—" when not defined.
pub fn percent(value: Option<f64>) -> String {
    match value.filter(|v| v.is_finite()) {
        Some(v) => format!("{:.1}%", v * 100.0),
        None => "—".to_string(),
    }
}

/// A difference of shares in percentage points, signed.
pub fn points(value: Option<f64>) -> String {
    match value.filter(|v| v.is_finite()) {
        Some(v) => format!("{:+.1} pp", v * 100.0),
        None => "—".to_string(),
    }
}

/// Money with two decimals and thin-space thousands; "—" when not defined.
pub fn money(value: Option<f64>) -> String {
    let Some(v) = value.filter(|v| v.is_finite()) else { return "—".to_string() };
    let text = format!("{:.2}", v.abs());
    let (whole, cents) = text.split_once('.').unwrap_or((&text, "00"));
    let mut grouped = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push('\u{202f}');
        }
        grouped.push(digit);
    }
    format!("{}{grouped}.{cents}", if v < 0.0 { "−" } else { "" })
}

/// A ratio such as ROAS or LTV/CAC: two decimals and a times sign; "—" when not defined.
pub fn ratio(value: Option<f64>) -> String {
    match value.filter(|v| v.is_finite()) {
        Some(v) => format!("{v:.2}×"),
        None => "—".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_keep_their_numbers_as_text() {
        let svg = bar_chart(
            "t",
            "T",
            &[Bar::new("a <b>", Some(10.0), "10"), Bar::new("c", Some(5.0), "5"), Bar::new("d", None, "—")],
        );
        assert!(svg.contains("width=\"420.0\""), "{svg}");
        assert!(svg.contains("width=\"210.0\""), "{svg}");
        assert!(svg.contains("a &lt;b&gt;") && !svg.contains("a <b>"));
        assert!(svg.contains("data-value=\"10\"") && svg.contains("data-value=\"\""));
    }

    #[test]
    fn a_flagged_interval_is_drawn_and_says_why() {
        let svg = whisker_chart(
            "u",
            "U",
            &[Whisker {
                label: "j".into(),
                point: Some(0.02),
                low: Some(-0.01),
                high: Some(0.05),
                flag: Some("too small".into()),
            }],
        );
        assert!(svg.contains("class=\"point\"") && svg.contains("class=\"whisker\""));
        assert!(svg.contains("too small") && svg.contains("+2.0 pp [-1.0 pp … +5.0 pp]"));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(money(Some(1234567.891)), "1\u{202f}234\u{202f}567.89");
        assert_eq!(money(Some(-5.0)), "−5.00");
        assert_eq!(money(None), "—");
        assert_eq!(percent(Some(0.1234)), "12.3%");
        assert_eq!(ratio(Some(f64::NAN)), "—");
    }
}
