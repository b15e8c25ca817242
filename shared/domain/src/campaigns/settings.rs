//! Installation-wide settings: defaults, limits, anti-spam.

use serde::Deserialize;
use toml::Spanned;

use crate::file_errors::{CampaignError, line_at, toml_error};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    default_time_zone: Spanned<String>,
    default_locale: Spanned<String>,
    supported_locales: Spanned<Vec<String>>,
    currency: Spanned<String>,
    /// Where links in email point: the public URL of the HTTP API. Deployments override it.
    public_base_url: Spanned<String>,
    limits: Limits,
    anti_spam: AntiSpam,
    #[serde(default)]
    double_opt_in: DoubleOptInSettings,
    sending: RawSending,
    #[serde(default)]
    segments: crate::journeys::Segments,
    #[serde(default)]
    attribution: AttributionSettings,
    carts: CartSettings,
    #[serde(default)]
    bots: Option<Spanned<BotSettings>>,
    #[serde(default)]
    kpi: Option<Spanned<KpiSettings>>,
    #[serde(default)]
    security: Option<Spanned<SecuritySettings>>,
}

/// How signed requests are judged.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    /// A shop's event signature is refused when its time `t` is further than this from now.
    pub signature_tolerance_seconds: u32,
    /// Whether event batches signed in the legacy `sha256=` format (no timestamp) are accepted.
    pub accept_legacy_signatures: bool,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        SecuritySettings { signature_tolerance_seconds: 300, accept_legacy_signatures: true }
    }
}

impl SecuritySettings {
    pub fn signature_policy(&self) -> crate::signing::SignaturePolicy {
        crate::signing::SignaturePolicy {
            tolerance: jiff::SignedDuration::from_secs(i64::from(self.signature_tolerance_seconds)),
            accept_legacy: self.accept_legacy_signatures,
        }
    }
}

/// The KPI rollup: the gross margin ROMI counts, how far back late events restate final
/// snapshots, the smallest holdout/treatment group an uplift is concluded from, and how long the
/// raw event log is kept.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KpiSettings {
    /// Share of revenue that is gross margin, 0..=1.
    pub margin: f64,
    /// The nightly rollup recomputes this many days before yesterday as well.
    pub restate_days: u32,
    /// Fewer contacts than this in either group: the uplift is flagged too small to conclude.
    pub min_group_size: u64,
    /// Days the raw event log is kept (its items' time to live).
    pub event_log_days: u32,
}

impl Default for KpiSettings {
    fn default() -> Self {
        KpiSettings { margin: 0.3, restate_days: 7, min_group_size: 100, event_log_days: 400 }
    }
}

/// The qualification bot's conversations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotSettings {
    /// How long a conversation can be answered after it started.
    pub session_ttl_hours: u32,
}

impl Default for BotSettings {
    fn default() -> Self {
        BotSettings { session_ttl_hours: 24 }
    }
}

/// Abandoned carts: when a cart counts as abandoned, and the reminder sequence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartSettings {
    /// A cart with items and no purchase for this long is abandoned.
    pub idle_minutes: i64,
    pub steps: Vec<CartStep>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartStep {
    /// Hours after the cart's last activity.
    pub after_hours: i64,
    pub template: String,
    /// A personal discount code of this many percent ...
    #[serde(default)]
    pub discount_percent: u32,
    /// ... except for contacts in this segment (the sources' rule: not for frequent buyers).
    pub no_discount_for_segment: Option<String>,
    #[serde(default = "default_code_days")]
    pub code_valid_days: i64,
    /// Not sent at all if the scheduler gets to it later than this after its time (an outage).
    pub stale_after_hours: Option<i64>,
}

fn default_code_days() -> i64 {
    7
}

/// Multi-touch attribution: the lookback window and the time-decay half-life.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributionSettings {
    pub lookback_days: i64,
    pub half_life_days: i64,
}

impl Default for AttributionSettings {
    fn default() -> Self {
        AttributionSettings { lookback_days: 30, half_life_days: 7 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSending {
    from_name: String,
    from_address: Spanned<String>,
    reply_to: Option<Spanned<String>>,
    /// Where notifications about leads go (a qualified bot conversation); none: nothing is sent.
    #[serde(default)]
    sales_address: Option<Spanned<String>>,
    shop_name: String,
    shop_url: Spanned<String>,
    marketing_per_day: u32,
    marketing_per_week: u32,
    quiet_hours_start: Spanned<String>,
    quiet_hours_end: Spanned<String>,
    /// Per priority (`promo`, `journey`, `cart`): `defer` to the next free slot, or `drop`.
    cap_overflow: Spanned<std::collections::BTreeMap<String, String>>,
    unsubscribe_link_days: u32,
    max_send_rate_per_second: f64,
    /// Hosts whose links and images may appear in email when they come from events (cart items);
    /// subdomains included. Default: the host of `shop_url`.
    #[serde(default)]
    link_hosts: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    reputation: Option<Spanned<ReputationSettings>>,
}

/// The reputation guard (`sending::reputation`): marketing pauses when the rolling hard-bounce or
/// complaint rate reaches `pause_*`, and resumes once both are below `resume_*`. SES reviews an
/// account at 5% bounces / 0.1% complaints and may pause it at 10% / 0.5%, which would stop
/// transactional mail too; the defaults pause at half of SES's review level.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReputationSettings {
    /// Hours of feedback the rates are computed over (hourly buckets), 1..=168.
    pub window_hours: u32,
    /// Fewer sends than this in the window: the rates do not count yet (too few to say anything).
    /// A paused guard judges against at least this many sends, so a window that merely emptied
    /// does not resume it.
    pub min_sends: u64,
    /// Fewer hard bounces (complaints) than this in the window never pause, whatever the rate:
    /// one unlucky complaint does not stop a small shop's marketing.
    pub min_bounces: u64,
    pub min_complaints: u64,
    /// Shares of sends, e.g. 0.025 for 2.5%.
    pub pause_bounce_rate: f64,
    pub resume_bounce_rate: f64,
    pub pause_complaint_rate: f64,
    pub resume_complaint_rate: f64,
    /// How long a sender container trusts the guard's state it read (seconds): the staleness bound.
    pub recheck_seconds: u32,
    /// How long a held marketing message waits before it is looked at again (seconds, 60..=3600;
    /// past SQS's 15-minute delay it takes several hops, each checked against the ledger).
    pub hold_seconds: u32,
}

impl Default for ReputationSettings {
    fn default() -> Self {
        ReputationSettings {
            window_hours: 24,
            min_sends: 500,
            min_bounces: 10,
            min_complaints: 3,
            pause_bounce_rate: 0.025,
            resume_bounce_rate: 0.0125,
            pause_complaint_rate: 0.0005,
            resume_complaint_rate: 0.00025,
            recheck_seconds: 60,
            hold_seconds: 900,
        }
    }
}

impl ReputationSettings {
    /// What is wrong with these values, by field: rates are shares in 0..1, each resume level
    /// below its pause level (else the guard would flap), the window at most a week.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !(1..=168).contains(&self.window_hours) {
            problems.push(("window_hours", "must be between 1 and 168 hours".to_string()));
        }
        if self.min_sends == 0 {
            problems.push(("min_sends", "must be at least 1".to_string()));
        }
        for (field, rate) in [
            ("pause_bounce_rate", self.pause_bounce_rate),
            ("resume_bounce_rate", self.resume_bounce_rate),
            ("pause_complaint_rate", self.pause_complaint_rate),
            ("resume_complaint_rate", self.resume_complaint_rate),
        ] {
            if !(rate > 0.0 && rate < 1.0) {
                problems.push((field, "must be a share between 0 and 1, such as 0.025 for 2.5%".to_string()));
            }
        }
        if self.resume_bounce_rate >= self.pause_bounce_rate {
            problems.push(("resume_bounce_rate", "must be below pause_bounce_rate".to_string()));
        }
        if self.resume_complaint_rate >= self.pause_complaint_rate {
            problems.push(("resume_complaint_rate", "must be below pause_complaint_rate".to_string()));
        }
        if !(1..=3600).contains(&self.recheck_seconds) {
            problems.push(("recheck_seconds", "must be between 1 and 3600 seconds".to_string()));
        }
        if !(60..=3600).contains(&self.hold_seconds) {
            problems.push(("hold_seconds", "must be between 60 and 3600 seconds".to_string()));
        }
        problems
    }
}

/// How mail goes out: sender identity, frequency caps, quiet hours, rate.
#[derive(Debug, Clone)]
pub struct SendingSettings {
    pub from_name: String,
    pub from_address: String,
    pub reply_to: Option<String>,
    /// The sales inbox: notifications about leads, never marketing.
    pub sales_address: Option<String>,
    pub shop_name: String,
    pub shop_url: String,
    pub marketing_per_day: u32,
    pub marketing_per_week: u32,
    pub quiet_hours_start: jiff::civil::Time,
    pub quiet_hours_end: jiff::civil::Time,
    /// Priorities whose capped messages wait for the next free slot; the others are dropped.
    pub defer_when_capped: Vec<crate::model::Priority>,
    pub unsubscribe_link_days: u32,
    pub max_send_rate_per_second: f64,
    /// Hosts (lower case) whose links and images may reach email from event data.
    pub link_hosts: Vec<String>,
    pub reputation: ReputationSettings,
}

impl SendingSettings {
    /// A link or image address from event data as it may appear in email, or None: http(s), on
    /// one of the shop's hosts or their subdomains, no credentials. The normalised form is what is
    /// kept, so a mail client reads the host that was checked.
    pub fn safe_link(&self, address: &str) -> Option<String> {
        let url = url::Url::parse(address).ok()?;
        if !matches!(url.scheme(), "https" | "http") || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let host = url.host_str()?.to_ascii_lowercase();
        let allowed = self.link_hosts.iter().any(|allowed| host == *allowed || host.ends_with(&format!(".{allowed}")));
        allowed.then(|| url.as_str().to_string())
    }

    pub fn defers_when_capped(&self, priority: crate::model::Priority) -> bool {
        self.defer_when_capped.contains(&priority)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Form submissions and event batches per client IP per minute.
    pub per_ip_per_minute: u32,
    /// Submissions per form per minute, from all clients together.
    pub per_form_per_minute: u32,
    /// Events per `POST /v1/events` batch.
    pub max_events_per_batch: usize,
    /// Largest `properties` object of one event, in bytes of JSON.
    pub max_event_properties_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AntiSpam {
    /// Default minimum seconds between render and submit, where the page carries a render timestamp.
    pub min_fill_seconds: u32,
    /// How long a render timestamp stays valid.
    pub render_token_hours: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoubleOptInSettings {
    /// How long a confirmation link works.
    pub confirm_link_days: u32,
    /// Most confirmation emails one address gets in a day, however often it is submitted.
    #[serde(default = "default_confirmations_per_day")]
    pub max_confirmations_per_day: u32,
    /// No new confirmation email to an address within this many minutes of the last one.
    #[serde(default = "default_minutes_between_confirmations")]
    pub min_minutes_between_confirmations: u32,
}

fn default_confirmations_per_day() -> u32 {
    3
}

fn default_minutes_between_confirmations() -> u32 {
    10
}

impl Default for DoubleOptInSettings {
    fn default() -> Self {
        DoubleOptInSettings {
            confirm_link_days: 7,
            max_confirmations_per_day: default_confirmations_per_day(),
            min_minutes_between_confirmations: default_minutes_between_confirmations(),
        }
    }
}

impl DoubleOptInSettings {
    pub fn confirmation_limit(&self) -> crate::model::ConfirmationLimit {
        crate::model::ConfirmationLimit {
            per_day: self.max_confirmations_per_day.max(1),
            min_gap: jiff::SignedDuration::from_mins(i64::from(self.min_minutes_between_confirmations)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub default_time_zone: String,
    pub default_locale: String,
    pub supported_locales: Vec<String>,
    pub currency: String,
    pub public_base_url: String,
    pub limits: Limits,
    pub anti_spam: AntiSpam,
    pub double_opt_in: DoubleOptInSettings,
    pub sending: SendingSettings,
    pub segments: crate::journeys::Segments,
    pub attribution: AttributionSettings,
    pub carts: CartSettings,
    pub bots: BotSettings,
    pub kpi: KpiSettings,
    pub security: SecuritySettings,
}

impl Settings {
    pub fn parse(file: &str, text: &str) -> Result<Settings, Vec<CampaignError>> {
        let raw: RawSettings = toml::from_str(text).map_err(|e| vec![toml_error(file, text, &e)])?;
        let mut errors = Vec::new();
        let mut error = |field: &str, span: std::ops::Range<usize>, message: String| {
            errors.push(CampaignError {
                file: file.into(),
                line: Some(line_at(text, span.start)),
                field: field.into(),
                message,
            })
        };
        if jiff::tz::TimeZone::get(raw.default_time_zone.get_ref()).is_err() {
            error(
                "default_time_zone",
                raw.default_time_zone.span(),
                "is not an IANA time zone name such as Europe/Moscow".into(),
            );
        }
        if !raw.supported_locales.get_ref().contains(raw.default_locale.get_ref()) {
            error("default_locale", raw.default_locale.span(), "must be one of supported_locales".into());
        }
        if raw.supported_locales.get_ref().iter().any(|l| !is_locale_tag(l)) {
            error(
                "supported_locales",
                raw.supported_locales.span(),
                "each entry must be a language tag such as ru or en-GB".into(),
            );
        }
        let currency = raw.currency.get_ref();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
            error("currency", raw.currency.span(), "must be an ISO 4217 code such as RUB".into());
        }
        if url::Url::parse(raw.public_base_url.get_ref()).is_err() {
            error("public_base_url", raw.public_base_url.span(), "must be an absolute URL".into());
        }
        let sending = &raw.sending;
        let mut time = |field: &str, value: &Spanned<String>| match value.get_ref().parse::<jiff::civil::Time>() {
            Ok(t) => Some(t),
            Err(_) => {
                error(&format!("sending.{field}"), value.span(), "must be a local time such as 21:00".into());
                None
            }
        };
        let quiet_start = time("quiet_hours_start", &sending.quiet_hours_start);
        let quiet_end = time("quiet_hours_end", &sending.quiet_hours_end);
        for (field, address) in [
            ("from_address", Some(&sending.from_address)),
            ("reply_to", sending.reply_to.as_ref()),
            ("sales_address", sending.sales_address.as_ref()),
        ] {
            if let Some(address) = address
                && crate::model::EmailAddress::parse(address.get_ref()).is_err()
            {
                error(&format!("sending.{field}"), address.span(), "must be an email address".into());
            }
        }
        if url::Url::parse(sending.shop_url.get_ref()).is_err() {
            error("sending.shop_url", sending.shop_url.span(), "must be an absolute URL".into());
        }
        let mut defer_when_capped = Vec::new();
        for (priority, rule) in sending.cap_overflow.get_ref() {
            let parsed = match priority.as_str() {
                "promo" => Some(crate::model::Priority::Promo),
                "journey" => Some(crate::model::Priority::Journey),
                "cart" => Some(crate::model::Priority::Cart),
                _ => None,
            };
            match (parsed, rule.as_str()) {
                (Some(p), "defer") => defer_when_capped.push(p),
                (Some(_), "drop") => {}
                (None, _) => error(
                    "sending.cap_overflow",
                    sending.cap_overflow.span(),
                    format!("`{priority}` is not a priority (promo, journey, cart)"),
                ),
                (Some(_), other) => error(
                    "sending.cap_overflow",
                    sending.cap_overflow.span(),
                    format!("`{other}` must be defer or drop"),
                ),
            }
        }
        if sending.marketing_per_day == 0 || sending.marketing_per_week < sending.marketing_per_day {
            error(
                "sending.marketing_per_week",
                sending.quiet_hours_start.span(),
                "caps must be at least 1 a day and no fewer a week than a day".into(),
            );
        }
        let link_hosts: Vec<String> = match &sending.link_hosts {
            Some(hosts) => {
                let valid = |h: &String| {
                    !h.is_empty()
                        && h.len() <= 253
                        && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                };
                if hosts.get_ref().iter().any(|h| !valid(h)) {
                    error(
                        "sending.link_hosts",
                        hosts.span(),
                        "each entry must be a host name such as shop.example (no scheme, no path)".into(),
                    );
                }
                hosts.get_ref().iter().map(|h| h.to_ascii_lowercase()).collect()
            }
            None => url::Url::parse(sending.shop_url.get_ref())
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .into_iter()
                .collect(),
        };
        if sending.max_send_rate_per_second.is_nan() || sending.max_send_rate_per_second <= 0.0 {
            error("sending.max_send_rate_per_second", sending.shop_url.span(), "must be greater than 0".into());
        }
        if let Some(reputation) = &sending.reputation {
            for (field, message) in reputation.get_ref().problems() {
                error(&format!("sending.reputation.{field}"), reputation.span(), message);
            }
        }
        if let Some(bots) = &raw.bots
            && !(1..=24 * 30).contains(&bots.get_ref().session_ttl_hours)
        {
            error("bots.session_ttl_hours", bots.span(), "must be between 1 and 720 hours (30 days)".into());
        }
        if let Some(kpi) = &raw.kpi {
            let values = kpi.get_ref();
            if !(0.0..=1.0).contains(&values.margin) {
                error("kpi.margin", kpi.span(), "must be a share between 0 and 1, such as 0.3".into());
            }
            if values.restate_days > 90 {
                error("kpi.restate_days", kpi.span(), "must be at most 90 days".into());
            }
            if values.min_group_size == 0 {
                error("kpi.min_group_size", kpi.span(), "must be at least 1".into());
            }
            if !(1..=3650).contains(&values.event_log_days) {
                error("kpi.event_log_days", kpi.span(), "must be between 1 and 3650 days".into());
            }
        }
        if let Some(security) = &raw.security
            && !(1..=3600).contains(&security.get_ref().signature_tolerance_seconds)
        {
            error(
                "security.signature_tolerance_seconds",
                security.span(),
                "must be between 1 and 3600 seconds (300 is usual)".into(),
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let sending = SendingSettings {
            from_name: raw.sending.from_name.clone(),
            from_address: raw.sending.from_address.get_ref().clone(),
            reply_to: raw.sending.reply_to.as_ref().map(|r| r.get_ref().clone()),
            sales_address: raw.sending.sales_address.as_ref().map(|r| r.get_ref().clone()),
            shop_name: raw.sending.shop_name.clone(),
            shop_url: raw.sending.shop_url.get_ref().clone(),
            marketing_per_day: raw.sending.marketing_per_day,
            marketing_per_week: raw.sending.marketing_per_week,
            quiet_hours_start: quiet_start.expect("checked"),
            quiet_hours_end: quiet_end.expect("checked"),
            defer_when_capped,
            unsubscribe_link_days: raw.sending.unsubscribe_link_days,
            max_send_rate_per_second: raw.sending.max_send_rate_per_second,
            link_hosts,
            reputation: raw.sending.reputation.as_ref().map(|r| r.get_ref().clone()).unwrap_or_default(),
        };
        Ok(Settings {
            default_time_zone: raw.default_time_zone.into_inner(),
            default_locale: raw.default_locale.into_inner(),
            supported_locales: raw.supported_locales.into_inner(),
            currency: raw.currency.into_inner(),
            public_base_url: raw.public_base_url.into_inner().trim_end_matches('/').to_string(),
            limits: raw.limits,
            anti_spam: raw.anti_spam,
            double_opt_in: raw.double_opt_in,
            sending,
            segments: raw.segments,
            attribution: raw.attribution,
            carts: raw.carts,
            bots: raw.bots.map(Spanned::into_inner).unwrap_or_default(),
            kpi: raw.kpi.map(Spanned::into_inner).unwrap_or_default(),
            security: raw.security.map(Spanned::into_inner).unwrap_or_default(),
        })
    }

    /// The supported locale that best matches a browser's tag (`ru-RU` → `ru`), else the default.
    pub fn pick_locale(&self, requested: Option<&str>) -> String {
        let Some(requested) = requested.map(str::trim).filter(|r| is_locale_tag(r)) else {
            return self.default_locale.clone();
        };
        let requested = requested.to_ascii_lowercase();
        let language = requested.split(['-', '_']).next().unwrap_or("");
        self.supported_locales
            .iter()
            .find(|l| l.to_ascii_lowercase() == requested)
            .or_else(|| self.supported_locales.iter().find(|l| l.to_ascii_lowercase() == language))
            .cloned()
            .unwrap_or_else(|| self.default_locale.clone())
    }

    /// A valid IANA zone from the browser, else the default.
    pub fn pick_time_zone(&self, requested: Option<&str>) -> String {
        requested
            .map(str::trim)
            .filter(|name| !name.is_empty() && name.len() <= 64 && jiff::tz::TimeZone::get(name).is_ok())
            .map(str::to_string)
            .unwrap_or_else(|| self.default_time_zone.clone())
    }
}

fn is_locale_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 35
        && tag
            .split(['-', '_'])
            .all(|part| !part.is_empty() && part.len() <= 8 && part.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../../campaigns/settings.toml");

    #[test]
    fn the_shipped_settings_name_a_sales_inbox_and_a_bot_session_lifetime() {
        let settings = Settings::parse("settings.toml", SHIPPED).unwrap();
        assert_eq!(settings.sending.sales_address.as_deref(), Some("sales@shop.example"));
        assert_eq!(settings.bots.session_ttl_hours, 24);
    }

    #[test]
    fn a_bad_sales_address_or_session_lifetime_is_reported_with_its_line() {
        let text = SHIPPED
            .replace("sales_address = \"sales@shop.example\"", "sales_address = \"sales at shop\"")
            .replace("session_ttl_hours = 24", "session_ttl_hours = 0");
        let errors = Settings::parse("settings.toml", &text).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["sending.sales_address", "bots.session_ttl_hours"]);
        let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        assert_eq!(errors[0].line, Some(line_of("sales_address =")));
        assert!(errors[1].line.is_some_and(|line| line >= line_of("[bots]")));
    }

    #[test]
    fn the_kpi_section_is_read_checked_with_its_line_and_defaulted_when_absent() {
        let settings = Settings::parse("settings.toml", SHIPPED).unwrap();
        assert_eq!(
            settings.kpi,
            KpiSettings { margin: 0.3, restate_days: 7, min_group_size: 100, event_log_days: 400 }
        );
        let text =
            SHIPPED.replace("margin = 0.3", "margin = 1.5").replace("event_log_days = 400", "event_log_days = 0");
        let errors = Settings::parse("settings.toml", &text).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["kpi.margin", "kpi.event_log_days"]);
        let kpi_line = text.lines().position(|l| l == "[kpi]").unwrap() + 1;
        assert!(errors.iter().all(|e| e.line.is_some_and(|line| line >= kpi_line)), "{errors:?}");
        let typo = SHIPPED.replace("restate_days = 7", "restate_dayz = 7");
        let errors = Settings::parse("settings.toml", &typo).unwrap_err();
        assert_eq!(errors[0].field, "restate_dayz");
        let without = &SHIPPED[..SHIPPED.find("[kpi]").unwrap()];
        let settings = Settings::parse("settings.toml", without).unwrap();
        assert_eq!(settings.kpi, KpiSettings::default());
        let partial = format!("{without}[kpi]\nmargin = 0.5\n");
        let settings = Settings::parse("settings.toml", &partial).unwrap();
        assert_eq!((settings.kpi.margin, settings.kpi.restate_days), (0.5, 7));
    }

    #[test]
    fn the_security_section_defaults_when_absent_and_bounds_the_tolerance() {
        let settings = Settings::parse("settings.toml", SHIPPED).unwrap();
        assert_eq!(settings.security, SecuritySettings::default());
        assert_eq!(settings.security.signature_policy().tolerance, jiff::SignedDuration::from_secs(300));
        let without = &SHIPPED[..SHIPPED.find("[security]").unwrap()];
        let settings = Settings::parse("settings.toml", without).unwrap();
        assert_eq!(
            settings.security,
            SecuritySettings { signature_tolerance_seconds: 300, accept_legacy_signatures: true }
        );
        let strict = format!("{without}[security]\naccept_legacy_signatures = false\n");
        let settings = Settings::parse("settings.toml", &strict).unwrap();
        assert!(!settings.security.signature_policy().accept_legacy);
        let text = SHIPPED.replace("signature_tolerance_seconds = 300", "signature_tolerance_seconds = 0");
        let errors = Settings::parse("settings.toml", &text).unwrap_err();
        assert_eq!(errors[0].field, "security.signature_tolerance_seconds");
        assert!(errors[0].line.is_some());
    }

    #[test]
    fn the_reputation_section_defaults_when_absent_and_names_a_bad_field() {
        let settings = Settings::parse("settings.toml", SHIPPED).unwrap();
        assert_eq!(settings.sending.reputation, ReputationSettings::default());
        let start = SHIPPED.find("[sending.reputation]").unwrap();
        let end = start + SHIPPED[start..].find("hold_seconds = 900\n").unwrap() + "hold_seconds = 900\n".len();
        let without = format!("{}{}", &SHIPPED[..start], &SHIPPED[end..]);
        assert_eq!(
            Settings::parse("settings.toml", &without).unwrap().sending.reputation,
            ReputationSettings::default()
        );
        // A resume level at or above its pause level would flap.
        let text = SHIPPED.replace("resume_bounce_rate = 0.0125", "resume_bounce_rate = 0.03");
        let errors = Settings::parse("settings.toml", &text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "sending.reputation.resume_bounce_rate");
        assert!(errors[0].line.is_some());
        let text = SHIPPED.replace("pause_complaint_rate = 0.0005", "pause_complaint_rate = 5");
        let errors = Settings::parse("settings.toml", &text).unwrap_err();
        assert_eq!(errors[0].field, "sending.reputation.pause_complaint_rate");
    }

    #[test]
    fn settings_without_the_new_keys_still_load() {
        let text = SHIPPED.replace("sales_address = \"sales@shop.example\"\n", "");
        let text = &text[..text.find("[bots]").unwrap()];
        let settings = Settings::parse("settings.toml", text).unwrap();
        assert_eq!(settings.sending.sales_address, None);
        assert_eq!(settings.bots.session_ttl_hours, 24);
    }
}
