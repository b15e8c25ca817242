//! Marketing touches: where a person came from, for first/last-touch and multi-touch attribution.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::contact::{bound_option, bound_text};

/// Click identifiers ad platforms append to landing URLs.
pub const CLICK_ID_FIELDS: [&str; 5] = ["gclid", "fbclid", "yclid", "msclkid", "ttclid"];
pub const UTM_FIELDS: [&str; 5] = ["utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term"];

/// Longest referrer or landing page kept on a touch, in bytes of UTF-8.
pub const MAX_TOUCH_URL_BYTES: usize = 512;
/// Longest `utm_*` value (and so channel) kept on a touch, in bytes of UTF-8.
pub const MAX_UTM_BYTES: usize = 200;
/// Longest click id kept on a touch, in bytes (real ones are under 150).
pub const MAX_CLICK_ID_BYTES: usize = 200;

/// Where one visit came from. Every field has a length limit (`MAX_*_BYTES`), applied where a
/// touch is built and again where a contact records it, so no path stores a longer one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touch {
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_page: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
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
        touch.bound_fields();
        touch.channel = touch.derive_channel();
        touch
    }

    /// Cuts every field to its length limit; touches built by hand or stored before the limits
    /// existed get them too.
    pub fn bound_fields(&mut self) {
        for value in [&mut self.source, &mut self.medium, &mut self.campaign, &mut self.content, &mut self.term] {
            bound_option(value, MAX_UTM_BYTES);
        }
        bound_option(&mut self.referrer, MAX_TOUCH_URL_BYTES);
        bound_option(&mut self.landing_page, MAX_TOUCH_URL_BYTES);
        self.click_ids.retain(|name, _| CLICK_ID_FIELDS.contains(&name.as_str()));
        for value in self.click_ids.values_mut() {
            bound_text(value, MAX_CLICK_ID_BYTES);
        }
        bound_text(&mut self.channel, MAX_UTM_BYTES);
        // `#` separates a channel from its campaign in the aggregates' keys.
        if self.channel.contains('#') {
            self.channel = self.channel.replace('#', "_");
        }
    }

    /// What multi-touch attribution reads (time, channel, campaign): the form a touch takes in
    /// the contact's ring of recent touches, where the full detail of every visit would not fit.
    pub fn for_attribution(&self) -> Touch {
        Touch { at: self.at, campaign: self.campaign.clone(), channel: self.channel.clone(), ..Touch::default() }
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

    #[test]
    fn every_field_is_cut_to_its_limit_on_a_character_boundary() {
        let long = "ж".repeat(2000);
        let url = format!("https://ref.example/x{long}");
        let fields: Vec<(&str, &str)> = UTM_FIELDS
            .iter()
            .chain(CLICK_ID_FIELDS.iter())
            .map(|name| (*name, long.as_str()))
            .chain([("referrer", url.as_str()), ("landing_page", url.as_str())])
            .collect();
        let built = touch(&fields);
        for value in [&built.source, &built.medium, &built.campaign, &built.content, &built.term] {
            assert_eq!(value.as_ref().unwrap().len(), MAX_UTM_BYTES);
        }
        // 19 ASCII bytes, then two-byte letters: the cut falls before a letter it would split.
        assert_eq!(built.referrer.as_ref().unwrap().len(), MAX_TOUCH_URL_BYTES - 1);
        assert_eq!(built.landing_page.as_ref().unwrap().len(), MAX_TOUCH_URL_BYTES - 1);
        assert!(built.click_ids.values().all(|id| id.len() == MAX_CLICK_ID_BYTES));
        assert_eq!(built.channel.len(), MAX_UTM_BYTES);
    }
}
