//! A contact's place in each journey: `JSTATE#<contact id>` / `<journey id>`, read with one query
//! per event and written inside the event's transaction.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ports::{Index, Item, Key, Query, Store, StoreError, query_all};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Active,
    Completed,
    Exited,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    Treatment,
    Holdout,
}

impl Group {
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Treatment => "treatment",
            Group::Holdout => "holdout",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JourneyState {
    pub journey_id: String,
    pub contact_id: String,
    /// How many times the contact entered; the current run is `run`.
    pub run: u32,
    pub status: RunStatus,
    pub group: Group,
    pub entered_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub exit_reason: Option<String>,
    /// Where the run waits (the step after the current wait).
    pub current_step: Option<String>,
    #[serde(default)]
    pub variants: BTreeMap<String, String>,
    /// The `send` tag of the last email this run sent, and whether it was clicked.
    pub last_send_tag: Option<String>,
    #[serde(default)]
    pub clicked_last: bool,
    /// Counted once per run, within the journey's conversion window.
    #[serde(default)]
    pub converted: bool,
    /// Steps this run has taken: names its waits and sends, so a run that loops back to a step
    /// makes new items instead of colliding with those of its earlier pass.
    #[serde(default)]
    pub steps_taken: u32,
    /// Values of the event that started the run that its emails show (the category viewed, for
    /// a trigger grouped by category), as short plain text: the sends after a wait see them too.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub trigger_context: serde_json::Map<String, serde_json::Value>,
    /// Optimistic version of this item.
    #[serde(default)]
    pub version: u64,
}

impl JourneyState {
    /// Run `run` of a journey for a contact, active from `entered_at`, not yet stored (version 0).
    pub fn new_run(journey_id: &str, contact_id: &str, run: u32, group: Group, entered_at: Timestamp) -> JourneyState {
        JourneyState {
            journey_id: journey_id.to_string(),
            contact_id: contact_id.to_string(),
            run,
            status: RunStatus::Active,
            group,
            entered_at,
            finished_at: None,
            exit_reason: None,
            current_step: None,
            variants: BTreeMap::new(),
            last_send_tag: None,
            clicked_last: false,
            converted: false,
            steps_taken: 0,
            trigger_context: serde_json::Map::new(),
            version: 0,
        }
    }

    pub fn run_id(&self) -> String {
        format!("{}:{}:{}", self.journey_id, self.contact_id, self.run)
    }

    pub fn key(contact_id: &str, journey_id: &str) -> Key {
        Key::new(format!("JSTATE#{contact_id}"), journey_id.to_string())
    }

    pub fn to_item(&self) -> Item {
        Item::new(&Self::key(&self.contact_id, &self.journey_id), serde_json::to_value(self).expect("serialises"))
    }
}

fn from_item(item: Item) -> Result<JourneyState, serde_json::Error> {
    let mut map = item.0;
    map.remove("pk");
    map.remove("sk");
    serde_json::from_value(serde_json::Value::Object(map))
}

/// Every journey state of a contact, by journey id.
pub async fn load_all(store: &dyn Store, contact_id: &str) -> Result<BTreeMap<String, JourneyState>, StoreError> {
    let items = query_all(store, Query::partition(Index::Table, format!("JSTATE#{contact_id}"))).await?;
    Ok(items
        .into_iter()
        .filter_map(|item| from_item(item).ok())
        .map(|state| (state.journey_id.clone(), state))
        .collect())
}

/// A contact's state in one journey. A state that does not read (a newer writer's shape during a
/// deploy) is an error to retry, never taken for "no run".
pub async fn load(store: &dyn Store, contact_id: &str, journey_id: &str) -> Result<Option<JourneyState>, StoreError> {
    let Some(item) = store.get(&JourneyState::key(contact_id, journey_id)).await? else { return Ok(None) };
    from_item(item).map(Some).map_err(|e| StoreError::Backend(format!("a stored journey state cannot be read: {e}")))
}
