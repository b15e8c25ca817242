//! Ad spend as the marketer reports it: `SPEND#<date>` / `<channel>#<campaign or ->`, attributes
//! `amount` (major units, two decimals), `currency`, `updated_at`. One item per day, channel and
//! campaign, so uploading the same row again overwrites it (an upsert, never a sum).

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ports::store::MAX_BATCH_PUT;
use crate::ports::{Index, Item, Key, Query, Store, StoreError, query_all};

const PREFIX: &str = "SPEND#";
const NO_CAMPAIGN: &str = "-";

/// What was spent on one channel (and campaign) on one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendRow {
    pub date: Date,
    pub channel: String,
    pub campaign: Option<String>,
    pub amount: f64,
    pub currency: String,
}

fn key(row: &SpendRow) -> Key {
    Key::new(
        format!("{PREFIX}{}", row.date),
        format!("{}#{}", row.channel, row.campaign.as_deref().unwrap_or(NO_CAMPAIGN)),
    )
}

/// Money in major units, to the cent: what is stored and summed.
pub fn round_cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

/// Writes every row over what was stored under its day, channel and campaign. Rows are expected
/// valid (`kpi::spend_input`); a key given twice keeps the last row.
pub async fn upsert(store: &dyn Store, rows: &[SpendRow], now: Timestamp) -> Result<(), StoreError> {
    let mut by_key = std::collections::BTreeMap::new();
    for row in rows {
        by_key.insert(key(row), row);
    }
    let items: Vec<Item> = by_key
        .into_iter()
        .map(|(key, row)| {
            Item::new(
                &key,
                json!({"amount": round_cents(row.amount), "currency": row.currency, "updated_at": now.to_string()}),
            )
        })
        .collect();
    for chunk in items.chunks(MAX_BATCH_PUT) {
        store.batch_put(chunk.to_vec()).await?;
    }
    Ok(())
}

fn from_item(date: Date, item: &Item) -> Option<SpendRow> {
    let (channel, campaign) = item.get_str("sk")?.split_once('#')?;
    Some(SpendRow {
        date,
        channel: channel.to_string(),
        campaign: (campaign != NO_CAMPAIGN).then(|| campaign.to_string()),
        amount: item.get("amount").and_then(Value::as_f64)?,
        currency: item.get_str("currency").unwrap_or_default().to_string(),
    })
}

/// Every spend row of `date`, by channel and campaign.
pub async fn spend_on(store: &dyn Store, date: Date) -> Result<Vec<SpendRow>, StoreError> {
    let query = Query::partition(Index::Table, format!("{PREFIX}{date}"));
    Ok(query_all(store, query).await?.iter().filter_map(|item| from_item(date, item)).collect())
}
