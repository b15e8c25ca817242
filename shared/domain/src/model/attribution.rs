//! Marketing touches: where a person came from, for first/last-touch and multi-touch attribution.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Click identifiers ad platforms append to landing URLs.
pub const CLICK_ID_FIELDS: [&str; 5] = ["gclid", "fbclid", "yclid", "msclkid", "ttclid"];
pub const UTM_FIELDS: [&str; 5] = ["utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touch {
    pub at: Timestamp,
    pub source: Option<String>,
    pub medium: Option<String>,
    pub campaign: Option<String>,
    pub content: Option<String>,
    pub term: Option<String>,
    pub referrer: Option<String>,
    pub landing_page: Option<String>,
    #[serde(default)]
    pub click_ids: BTreeMap<String, String>,
    /// Derived once, so KPIs group by one stable name.
    pub channel: String,
}

impl Touch {
    /// Builds a touch from raw fields (`utm_*`, `referrer`, `landing_page`, click ids) and derives its channel.
    pub fn from_fields(at: Timestamp, get: impl Fn(&str) -> Option<String>) -> Touch {
        let clean = |name: &str| get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let click_ids = CLICK_ID_FIELDS
            .iter()
            .filter_map(|name| clean(name).map(|value| (name.to_string(), value)))
            .collect::<BTreeMap<_, _>>();
        let mut touch = Touch {
            at,
            source: clean("utm_source").map(|s| s.to_lowercase()),
            medium: clean("utm_medium").map(|s| s.to_lowercase()),
            campaign: clean("utm_campaign"),
            content: clean("utm_content"),
            term: clean("utm_term"),
            referrer: clean("referrer"),
            landing_page: clean("landing_page"),
            click_ids,
            channel: String::new(),
        };
        touch.channel = touch.derive_channel();
        touch
    }

    /// `utm_source` when given; else the ad platform behind a click id; else organic search,
    /// referral or direct, judged from the referrer.
    fn derive_channel(&self) -> String {
        if let Some(source) = &self.source {
            return source.clone();
        }
        if let Some(platform) = self.click_ids.keys().next() {
            return match platform.as_str() {
                "gclid" => "google",
                "fbclid" => "facebook",
                "yclid" => "yandex",
                "msclkid" => "bing",
                "ttclid" => "tiktok",
                _ => "paid",
            }
            .to_string();
        }
        let Some(host) = self
            .referrer
            .as_deref()
            .and_then(|r| url::Url::parse(r).ok())
            .and_then(|u| u.host_str().map(str::to_lowercase))
        else {
            return "direct".to_string();
        };
        const SEARCH_ENGINES: [&str; 5] = ["google.", "yandex.", "bing.", "duckduckgo.", "search.yahoo."];
        if SEARCH_ENGINES.iter().any(|engine| host.contains(engine)) {
            "organic".to_string()
        } else {
            "referral".to_string()
        }
    }

    /// Whether anything marks this as a marketing touch rather than a plain visit.
    pub fn is_informative(&self) -> bool {
        self.source.is_some() || !self.click_ids.is_empty() || self.referrer.is_some() || self.landing_page.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(fields: &[(&str, &str)]) -> Touch {
        Touch::from_fields(Timestamp::UNIX_EPOCH, |name| {
            fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn derives_the_channel() {
        assert_eq!(touch(&[("utm_source", "VK"), ("utm_medium", "cpc")]).channel, "vk");
        assert_eq!(touch(&[("yclid", "123")]).channel, "yandex");
        assert_eq!(touch(&[("referrer", "https://www.google.com/search?q=x")]).channel, "organic");
        assert_eq!(touch(&[("referrer", "https://blog.example.org/post")]).channel, "referral");
        assert_eq!(touch(&[]).channel, "direct");
    }
}
