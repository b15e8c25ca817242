//! `scoring.toml`: how many points which attributes (fit) and which events (engagement) are worth,
//! how fast engagement fades, and the thresholds that move a contact's stage.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::file_errors::{CampaignError, line_of_key, toml_error};

/// The most rules of each kind: every fit rule can sit on the contact at once, so their number
/// bounds the ledger's fit entries.
pub const MAX_RULES: usize = 20;
/// A reason is shown to people reading the breakdown, and stored on every entry.
pub const MAX_REASON_CHARS: usize = 80;
/// Points one rule may give or take.
pub const MAX_RULE_POINTS: i64 = 1000;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringRules {
    /// Engagement points lose half their weight every this many days.
    pub half_life_days: f64,
    pub thresholds: Thresholds,
    #[serde(default)]
    pub fit: Vec<FitRule>,
    #[serde(default)]
    pub engagement: Vec<EngagementRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub mql: i64,
    pub sql: i64,
}

/// Points for a contact attribute: one of some values (`equals`), or any value (`present`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitRule {
    pub attribute: String,
    #[serde(default)]
    pub equals: Vec<String>,
    pub present: Option<bool>,
    pub points: i64,
    pub reason: String,
}

/// Points for each event of a type whose properties equal every `where` value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngagementRule {
    pub event: String,
    #[serde(default, rename = "where")]
    pub filters: BTreeMap<String, Value>,
    pub points: i64,
    pub reason: String,
}

impl FitRule {
    /// Whether the attributes earn this rule's points. A number or a boolean compares by its text,
    /// as a form stores what the person typed.
    pub fn matches(&self, attributes: &BTreeMap<String, Value>) -> bool {
        let Some(value) = attributes.get(&self.attribute).filter(|v| !is_blank(v)) else {
            return self.present == Some(false);
        };
        if self.present.is_some() {
            return self.present == Some(true);
        }
        let text = match value {
            Value::String(text) => text.trim().to_string(),
            other => other.to_string(),
        };
        self.equals.iter().any(|wanted| wanted.eq_ignore_ascii_case(&text))
    }
}

fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.trim().is_empty(),
        _ => false,
    }
}

impl EngagementRule {
    /// Whether an event of this type with these properties earns the rule's points: every filter
    /// equals the property, or a list holds it, as in journeys' `where`
    /// (`journeys::definition::filters_match`, which sits above this module).
    pub fn matches(&self, event_type: &str, properties: &Map<String, Value>) -> bool {
        self.event == event_type
            && self.filters.iter().all(|(key, wanted)| match (wanted, properties.get(key)) {
                (Value::Array(options), Some(actual)) => options.contains(actual),
                (wanted, Some(actual)) => wanted == actual,
                (_, None) => false,
            })
    }
}

impl ScoringRules {
    /// Parses and checks `scoring.toml`; every problem names the file, line and field.
    pub fn parse(file: &str, text: &str) -> Result<ScoringRules, Vec<CampaignError>> {
        let rules: ScoringRules = toml::from_str(text).map_err(|e| vec![toml_error(file, text, &e)])?;
        let mut errors = Vec::new();
        let mut problem = |key: &str, field: String, message: String| {
            errors.push(CampaignError { file: file.into(), line: line_of_key(text, key), field, message });
        };
        if !(rules.half_life_days.is_finite() && rules.half_life_days > 0.0 && rules.half_life_days <= 3650.0) {
            problem("half_life_days", "half_life_days".into(), "must be more than 0 and at most 3650 days".into());
        }
        let Thresholds { mql, sql } = rules.thresholds;
        if mql <= 0 {
            problem("mql", "thresholds.mql".into(), "must be more than 0".into());
        }
        if sql <= mql {
            problem("sql", "thresholds.sql".into(), format!("must be more than mql ({mql})"));
        }
        for (kind, count) in [("fit", rules.fit.len()), ("engagement", rules.engagement.len())] {
            if count > MAX_RULES {
                problem(kind, kind.into(), format!("{count} rules; at most {MAX_RULES}"));
            }
        }
        let mut reasons = std::collections::BTreeSet::new();
        for (i, rule) in rules.fit.iter().enumerate() {
            let at = |field: &str| format!("fit[{i}].{field}");
            let mut problem = |key: &str, field: String, message: String| {
                errors.push(CampaignError {
                    file: file.into(),
                    line: line_in_table(text, "fit", i, key),
                    field,
                    message,
                });
            };
            if rule.attribute.trim().is_empty() {
                problem("attribute", at("attribute"), "must name a contact attribute".into());
            }
            match (rule.equals.is_empty(), rule.present) {
                (true, None) => problem("attribute", at("equals"), "give `equals = [...]` or `present = true`".into()),
                (false, Some(_)) => problem("present", at("present"), "give `equals` or `present`, not both".into()),
                _ => {}
            }
            check_points_and_reason(rule.points, &rule.reason, &mut reasons, &at, &mut problem);
        }
        for (i, rule) in rules.engagement.iter().enumerate() {
            let at = |field: &str| format!("engagement[{i}].{field}");
            let mut problem = |key: &str, field: String, message: String| {
                errors.push(CampaignError {
                    file: file.into(),
                    line: line_in_table(text, "engagement", i, key),
                    field,
                    message,
                });
            };
            if !is_event_name(&rule.event) {
                problem("event", at("event"), format!("`{}` is not an event type name", rule.event));
            }
            check_points_and_reason(rule.points, &rule.reason, &mut reasons, &at, &mut problem);
        }
        if errors.is_empty() { Ok(rules) } else { Err(errors) }
    }

    /// The fit rules the attributes earn, as (reason, points): each rule once.
    pub fn fit_for(&self, attributes: &BTreeMap<String, Value>) -> Vec<(String, i64)> {
        self.fit.iter().filter(|rule| rule.matches(attributes)).map(|rule| (rule.reason.clone(), rule.points)).collect()
    }

    /// The engagement rules an event earns, as (reason, points).
    pub fn engagement_for(&self, event_type: &str, properties: &Map<String, Value>) -> Vec<(String, i64)> {
        self.engagement
            .iter()
            .filter(|rule| rule.matches(event_type, properties))
            .map(|rule| (rule.reason.clone(), rule.points))
            .collect()
    }
}

/// Reasons are unique across the file: a fit entry is replaced by its reason, and a person reading
/// a breakdown must be able to tell two rules apart.
fn check_points_and_reason(
    points: i64,
    reason: &str,
    reasons: &mut std::collections::BTreeSet<String>,
    at: &dyn Fn(&str) -> String,
    problem: &mut impl FnMut(&str, String, String),
) {
    if points == 0 || points.abs() > MAX_RULE_POINTS {
        problem("points", at("points"), format!("must be between -{MAX_RULE_POINTS} and {MAX_RULE_POINTS}, not 0"));
    }
    let length = reason.trim().chars().count();
    if length == 0 || length > MAX_REASON_CHARS {
        problem("reason", at("reason"), format!("must be 1 to {MAX_REASON_CHARS} characters"));
    } else if !reasons.insert(reason.trim().to_string()) {
        problem("reason", at("reason"), format!("`{reason}` is the reason of another rule; reasons must differ"));
    }
}

/// 1-based line of `key` in the `index`th `[[table]]` (or of the table's header without the key).
fn line_in_table(text: &str, table: &str, index: usize, key: &str) -> Option<usize> {
    let header = format!("[[{table}]]");
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().enumerate().filter(|(_, line)| line.trim() == header).nth(index)?.0;
    let within = lines[start + 1..].iter().take_while(|line| !line.trim_start().starts_with('['));
    let found = within
        .enumerate()
        .find(|(_, line)| line.trim_start().strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')));
    Some(found.map_or(start, |(offset, _)| start + 1 + offset) + 1)
}

/// A `snake_case` name of at most 64 characters, as every event type is (`model::is_valid_event_type`;
/// repeated here because the rules sit below the model).
fn is_event_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const RULES: &str = r#"
half_life_days = 14
[thresholds]
mql = 50
sql = 80
[[fit]]
attribute = "company_size"
equals = ["51-200", "201+"]
points = 20
reason = "company of 51 or more"
[[fit]]
attribute = "website"
present = true
points = 10
reason = "gave a website"
[[engagement]]
event = "page_view"
where = { page_type = "pricing" }
points = 5
reason = "viewed pricing"
"#;

    #[test]
    fn parses_and_matches_fit_and_engagement() {
        let rules = ScoringRules::parse("scoring.toml", RULES).unwrap();
        let attributes: BTreeMap<String, Value> =
            [("company_size".to_string(), json!("201+")), ("website".to_string(), json!(" "))].into();
        assert_eq!(rules.fit_for(&attributes), vec![("company of 51 or more".to_string(), 20)]);
        let pricing = json!({"page_type": "pricing"});
        assert_eq!(rules.engagement_for("page_view", pricing.as_object().unwrap()).len(), 1);
        assert!(rules.engagement_for("page_view", json!({"page_type": "blog"}).as_object().unwrap()).is_empty());
        assert!(rules.engagement_for("page_view", json!({}).as_object().unwrap()).is_empty());
        let listed =
            ScoringRules::parse("scoring.toml", &RULES.replace("\"pricing\" }", "[\"pricing\", \"plans\"] }")).unwrap();
        assert_eq!(listed.engagement_for("page_view", json!({"page_type": "plans"}).as_object().unwrap()).len(), 1);
    }

    #[test]
    fn problems_name_file_line_and_field() {
        let broken =
            RULES.replace("sql = 80", "sql = 40").replace("reason = \"gave a website\"", "reason = \"viewed pricing\"");
        let errors = ScoringRules::parse("scoring.toml", &broken).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            shown.contains(&"scoring.toml:5: `thresholds.sql`: must be more than mql (50)".to_string()),
            "{shown:?}"
        );
        assert!(shown.iter().any(|e| e.contains("`engagement[0].reason`")), "{shown:?}");
        let typo = ScoringRules::parse("scoring.toml", &RULES.replace("points = 5", "pionts = 5")).unwrap_err();
        assert_eq!(typo[0].field, "pionts");
        assert!(typo[0].line.is_some());
        let both = RULES.replace("present = true", "present = true\nequals = [\"x\"]");
        assert_eq!(ScoringRules::parse("scoring.toml", &both).unwrap_err()[0].field, "fit[1].present");
    }
}
