//! The storage port on Amazon DynamoDB: conditions and updates as Rust values become
//! expressions with placeholders; items map through `serde_dynamo`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::builders::DeleteItemFluentBuilder;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::builders::{ConditionCheckBuilder, DeleteBuilder, PutBuilder, UpdateBuilder};
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, ConsumedCapacity, Delete, Put, PutRequest, ReturnConsumedCapacity,
    TransactWriteItem, Update, WriteRequest,
};
use serde_json::{Map, Value};
use voronka_domain::ports::store::{GSI1_PK, GSI1_SK, MAX_BATCH_PUT, MAX_TRANSACTION_OPS, PK, SK};
use voronka_domain::ports::{
    Clock, Condition, Cursor, Index, Item, Key, Page, Query, SortKeyRange, Store, StoreError, TransactOp, UpdateAction,
};

use crate::CallCounter;

/// The name of the secondary index in the SAM template.
pub const GSI1_NAME: &str = "gsi1";
/// Rounds of retrying unprocessed items of a batch write before giving up.
const BATCH_RETRIES: u32 = 8;

type AttributeMap = HashMap<String, AttributeValue>;

pub struct DynamoStore {
    client: Client,
    table: String,
    clock: Arc<dyn Clock>,
    calls: Arc<CallCounter>,
}

impl DynamoStore {
    pub fn new(config: &aws_config::SdkConfig, table: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        DynamoStore { client: Client::new(config), table: table.into(), clock, calls: Arc::default() }
    }

    pub fn calls(&self) -> Arc<CallCounter> {
        self.calls.clone()
    }

    fn now(&self) -> i64 {
        self.clock.now().as_second()
    }

    fn consumed<'a>(&self, operation: &'static str, reported: impl IntoIterator<Item = &'a ConsumedCapacity>) {
        let units = reported.into_iter().filter_map(|c| c.capacity_units).sum();
        self.calls.record_capacity(operation, units);
    }
}

/// Maps an SDK error by its error code, the same way for every operation.
fn map_error<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = error.as_service_error().and_then(|e| e.code()).map(str::to_string);
    let text = DisplayErrorContext(&error).to_string();
    match code.as_deref() {
        Some("ConditionalCheckFailedException") => StoreError::ConditionFailed,
        Some(
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "TransactionConflictException"
            | "TransactionInProgressException"
            | "InternalServerError",
        ) => StoreError::Throttled(text),
        Some("ValidationException") => StoreError::Invalid(text),
        _ => StoreError::Backend(text),
    }
}

fn to_attributes(item: &Map<String, Value>) -> Result<AttributeMap, StoreError> {
    serde_dynamo::to_item(item).map_err(|e| StoreError::Invalid(format!("item cannot be mapped: {e}")))
}

fn to_attribute(value: &Value) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(|e| StoreError::Invalid(format!("value cannot be mapped: {e}")))
}

fn from_attributes(item: AttributeMap) -> Result<Item, StoreError> {
    match serde_dynamo::from_item::<_, Value>(item) {
        Ok(Value::Object(map)) => Ok(Item(map)),
        Ok(_) => Err(StoreError::Backend("an item is not a map".into())),
        Err(e) => Err(StoreError::Backend(format!("item cannot be read: {e}"))),
    }
}

fn key_attributes(key: &Key) -> AttributeMap {
    HashMap::from([
        (PK.to_string(), AttributeValue::S(key.pk.clone())),
        (SK.to_string(), AttributeValue::S(key.sk.clone())),
    ])
}

/// Builds expression strings with `#name` and `:value` placeholders.
#[derive(Default)]
struct Expression {
    names: HashMap<String, String>,
    values: AttributeMap,
}

impl Expression {
    fn name(&mut self, attribute: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, name)| name.as_str() == attribute) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), attribute.to_string());
        placeholder
    }

    fn value(&mut self, value: &Value) -> Result<String, StoreError> {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), to_attribute(value)?);
        Ok(placeholder)
    }

    fn condition(&mut self, condition: &Condition) -> Result<String, StoreError> {
        let mut compare = |name: &str, op: &str, value: &Value| -> Result<String, StoreError> {
            let n = self.name(name);
            let v = self.value(value)?;
            Ok(format!("{n} {op} {v}"))
        };
        Ok(match condition {
            Condition::NotExists => format!("attribute_not_exists({})", self.name(PK)),
            Condition::Exists => format!("attribute_exists({})", self.name(PK)),
            Condition::AttributeExists(name) => format!("attribute_exists({})", self.name(name)),
            Condition::AttributeNotExists(name) => {
                format!("attribute_not_exists({})", self.name(name))
            }
            Condition::Equals(name, value) => compare(name, "=", value)?,
            Condition::NotEquals(name, value) => compare(name, "<>", value)?,
            Condition::LessThan(name, value) => compare(name, "<", value)?,
            Condition::LessOrEqual(name, value) => compare(name, "<=", value)?,
            Condition::GreaterThan(name, value) => compare(name, ">", value)?,
            Condition::GreaterOrEqual(name, value) => compare(name, ">=", value)?,
            Condition::And(parts) | Condition::Or(parts) => {
                if parts.is_empty() {
                    return Err(StoreError::Invalid("an empty And/Or condition".into()));
                }
                let joiner = if matches!(condition, Condition::And(_)) { " AND " } else { " OR " };
                let parts =
                    parts.iter().map(|p| self.condition(p).map(|e| format!("({e})"))).collect::<Result<Vec<_>, _>>()?;
                parts.join(joiner)
            }
        })
    }

    fn update(&mut self, actions: &[UpdateAction]) -> Result<String, StoreError> {
        let (mut set, mut add, mut remove) = (Vec::new(), Vec::new(), Vec::new());
        for action in actions {
            match action {
                UpdateAction::Set(name, value) => {
                    let (n, v) = (self.name(name), self.value(value)?);
                    set.push(format!("{n} = {v}"));
                }
                UpdateAction::SetIfNotExists(name, value) => {
                    let (n, v) = (self.name(name), self.value(value)?);
                    set.push(format!("{n} = if_not_exists({n}, {v})"));
                }
                UpdateAction::Append(name, values) => {
                    let n = self.name(name);
                    let empty = self.value(&Value::Array(Vec::new()))?;
                    let v = self.value(&Value::Array(values.clone()))?;
                    set.push(format!("{n} = list_append(if_not_exists({n}, {empty}), {v})"));
                }
                UpdateAction::Add(name, value) => {
                    let (n, v) = (self.name(name), self.value(value)?);
                    add.push(format!("{n} {v}"));
                }
                UpdateAction::Remove(name) => remove.push(self.name(name)),
            }
        }
        let mut clauses = Vec::new();
        if !set.is_empty() {
            clauses.push(format!("SET {}", set.join(", ")));
        }
        if !add.is_empty() {
            clauses.push(format!("ADD {}", add.join(", ")));
        }
        if !remove.is_empty() {
            clauses.push(format!("REMOVE {}", remove.join(", ")));
        }
        if clauses.is_empty() {
            return Err(StoreError::Invalid("an update needs at least one action".into()));
        }
        Ok(clauses.join(" "))
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<AttributeMap> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// The condition of one write with its placeholders, built and attached the same way whether the
/// write is a request of its own or a part of a transaction.
struct Conditional {
    condition: Option<String>,
    names: Option<HashMap<String, String>>,
    values: Option<AttributeMap>,
}

impl Conditional {
    fn new(condition: Option<&Condition>) -> Result<Conditional, StoreError> {
        Conditional::finish(Expression::default(), condition)
    }

    /// An update expression and its condition, which share one set of placeholders.
    fn update(actions: &[UpdateAction], condition: Option<&Condition>) -> Result<(String, Conditional), StoreError> {
        check_update_keys(actions)?;
        let mut expression = Expression::default();
        let update = expression.update(actions)?;
        Ok((update, Conditional::finish(expression, condition)?))
    }

    fn finish(mut expression: Expression, condition: Option<&Condition>) -> Result<Conditional, StoreError> {
        let condition = condition.map(|c| expression.condition(c)).transpose()?;
        Ok(Conditional { condition, names: expression.names(), values: expression.values() })
    }
}

/// Every write builder of the SDK, single or transactional, takes a `Conditional` the same way.
trait WithConditional {
    fn conditional(self, conditional: Conditional) -> Self;
}

macro_rules! with_conditional {
    ($($builder:ty),+ $(,)?) => {$(
        impl WithConditional for $builder {
            fn conditional(self, conditional: Conditional) -> Self {
                self.set_condition_expression(conditional.condition)
                    .set_expression_attribute_names(conditional.names)
                    .set_expression_attribute_values(conditional.values)
            }
        }
    )+};
}

with_conditional!(
    PutItemFluentBuilder,
    UpdateItemFluentBuilder,
    DeleteItemFluentBuilder,
    PutBuilder,
    UpdateBuilder,
    DeleteBuilder,
    ConditionCheckBuilder,
);

fn invalid(error: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(error.to_string())
}

fn check_update_keys(actions: &[UpdateAction]) -> Result<(), StoreError> {
    for action in actions {
        let name = match action {
            UpdateAction::Set(n, _)
            | UpdateAction::SetIfNotExists(n, _)
            | UpdateAction::Add(n, _)
            | UpdateAction::Append(n, _)
            | UpdateAction::Remove(n) => n,
        };
        if name == PK || name == SK {
            return Err(StoreError::Invalid(format!("an update cannot change the key attribute `{name}`")));
        }
    }
    Ok(())
}

#[async_trait]
impl Store for DynamoStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.calls.record("dynamodb.GetItem");
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(map_error)?;
        self.consumed("dynamodb.GetItem", output.consumed_capacity());
        let now = self.now();
        Ok(output.item.map(from_attributes).transpose()?.filter(|item| !item.is_expired(now)))
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        let conditional = Conditional::new(condition.as_ref())?;
        self.calls.record("dynamodb.PutItem");
        let output = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_attributes(&item.0)?))
            .conditional(conditional)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(map_error)?;
        self.consumed("dynamodb.PutItem", output.consumed_capacity());
        Ok(())
    }

    async fn update(
        &self,
        key: &Key,
        actions: Vec<UpdateAction>,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError> {
        let (update, conditional) = Conditional::update(&actions, condition.as_ref())?;
        self.calls.record("dynamodb.UpdateItem");
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .update_expression(update)
            .conditional(conditional)
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(map_error)?;
        self.consumed("dynamodb.UpdateItem", output.consumed_capacity());
        from_attributes(output.attributes.unwrap_or_default())
    }

    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), StoreError> {
        let conditional = Conditional::new(condition.as_ref())?;
        self.calls.record("dynamodb.DeleteItem");
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .conditional(conditional)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(map_error)?;
        self.consumed("dynamodb.DeleteItem", output.consumed_capacity());
        Ok(())
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        let (pk_name, sk_name, index_name) = match query.index {
            Index::Table => (PK, SK, None),
            Index::Gsi1 => (GSI1_PK, GSI1_SK, Some(GSI1_NAME.to_string())),
        };
        let mut expression = Expression::default();
        let pk = expression.name(pk_name);
        let partition = expression.value(&Value::String(query.partition.clone()))?;
        let mut key_condition = format!("{pk} = {partition}");
        let mut bound = |value: &str| {
            let sk = expression.name(sk_name);
            expression.value(&Value::String(value.to_string())).map(|v| (sk, v))
        };
        match &query.range {
            SortKeyRange::All => {}
            SortKeyRange::BeginsWith(prefix) => {
                let (sk, v) = bound(prefix)?;
                key_condition.push_str(&format!(" AND begins_with({sk}, {v})"));
            }
            SortKeyRange::Between(low, high) => {
                let ((sk, low), (_, high)) = (bound(low)?, bound(high)?);
                key_condition.push_str(&format!(" AND {sk} BETWEEN {low} AND {high}"));
            }
            SortKeyRange::LessOrEqual(b) => {
                let (sk, v) = bound(b)?;
                key_condition.push_str(&format!(" AND {sk} <= {v}"));
            }
            SortKeyRange::GreaterOrEqual(b) => {
                let (sk, v) = bound(b)?;
                key_condition.push_str(&format!(" AND {sk} >= {v}"));
            }
        }
        let start_key = query.start_after.as_ref().map(|cursor| {
            let mut key = key_attributes(&cursor.key);
            if let Some(index_key) = &cursor.index_key {
                key.insert(GSI1_PK.to_string(), AttributeValue::S(index_key.pk.clone()));
                key.insert(GSI1_SK.to_string(), AttributeValue::S(index_key.sk.clone()));
            }
            key
        });
        self.calls.record("dynamodb.Query");
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(index_name)
            .key_condition_expression(key_condition)
            .set_expression_attribute_names(expression.names())
            .set_expression_attribute_values(expression.values())
            .scan_index_forward(query.forward)
            .set_limit(query.limit.map(|l| l as i32))
            .set_exclusive_start_key(start_key)
            // Only the table's own key supports strongly consistent reads.
            .consistent_read(query.index == Index::Table)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(map_error)?;
        self.consumed("dynamodb.Query", output.consumed_capacity());
        let now = self.now();
        let items = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_attributes)
            .filter(|item| item.as_ref().map_or(true, |item| !item.is_expired(now)))
            .collect::<Result<Vec<_>, _>>()?;
        let next = output.last_evaluated_key.map(|key| {
            let text = |name: &str| match key.get(name) {
                Some(AttributeValue::S(s)) => s.clone(),
                _ => String::new(),
            };
            Cursor {
                key: Key::new(text(PK), text(SK)),
                index_key: (query.index == Index::Gsi1).then(|| Key::new(text(GSI1_PK), text(GSI1_SK))),
            }
        });
        Ok(Page { items, next })
    }

    async fn transact(&self, ops: Vec<TransactOp>) -> Result<(), StoreError> {
        if ops.is_empty() || ops.len() > MAX_TRANSACTION_OPS {
            return Err(StoreError::Invalid(format!("a transaction holds 1 to {MAX_TRANSACTION_OPS} operations")));
        }
        let mut items = Vec::with_capacity(ops.len());
        for op in &ops {
            let item = TransactWriteItem::builder();
            let item = match op {
                TransactOp::Put { item: put, condition } => item.put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(to_attributes(&put.0)?))
                        .conditional(Conditional::new(condition.as_ref())?)
                        .build()
                        .map_err(invalid)?,
                ),
                TransactOp::Update { key, actions, condition } => {
                    let (update, conditional) = Conditional::update(actions, condition.as_ref())?;
                    item.update(
                        Update::builder()
                            .table_name(&self.table)
                            .set_key(Some(key_attributes(key)))
                            .update_expression(update)
                            .conditional(conditional)
                            .build()
                            .map_err(invalid)?,
                    )
                }
                TransactOp::Delete { key, condition } => item.delete(
                    Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_attributes(key)))
                        .conditional(Conditional::new(condition.as_ref())?)
                        .build()
                        .map_err(invalid)?,
                ),
                TransactOp::Check { key, condition } => item.condition_check(
                    ConditionCheck::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_attributes(key)))
                        .conditional(Conditional::new(Some(condition))?)
                        .build()
                        .map_err(invalid)?,
                ),
            };
            items.push(item.build());
        }
        self.calls.record("dynamodb.TransactWriteItems");
        let request = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        match request.send().await {
            Ok(output) => {
                self.consumed("dynamodb.TransactWriteItems", output.consumed_capacity());
                Ok(())
            }
            Err(error) => {
                if let Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(
                    cancelled,
                )) = error.as_service_error()
                {
                    let reasons = cancelled.cancellation_reasons();
                    let failed: Vec<usize> = reasons
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                        .map(|(i, _)| i)
                        .collect();
                    let conflict = reasons.iter().any(|r| {
                        matches!(r.code(), Some("TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"))
                    });
                    if failed.is_empty() && conflict {
                        return Err(StoreError::Throttled("the transaction conflicted with another".into()));
                    }
                    return Err(StoreError::TransactionCancelled { failed });
                }
                Err(map_error(error))
            }
        }
    }

    async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        if items.len() > MAX_BATCH_PUT {
            return Err(StoreError::Invalid(format!("a batch holds at most {MAX_BATCH_PUT} items")));
        }
        if items.is_empty() {
            return Ok(());
        }
        let mut requests = items
            .iter()
            .map(|item| {
                let put = PutRequest::builder()
                    .set_item(Some(to_attributes(&item.0)?))
                    .build()
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        for attempt in 0..=BATCH_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20 * 2u64.pow(attempt.min(6)))).await;
            }
            self.calls.record("dynamodb.BatchWriteItem");
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(map_error)?;
            self.consumed("dynamodb.BatchWriteItem", output.consumed_capacity());
            requests = output.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
        }
        Err(StoreError::Throttled(format!("{} items stayed unprocessed after retries", requests.len())))
    }
}

/// Reading back every item of a kind, for checks after a run (the demo's invariants against
/// moto): a paginated Scan filtered on the partition key's prefix. Not a call the functions make
/// (a Scan reads the whole table), so it is not counted in `calls`, which the cost model compares
/// with its own count of the functions' calls.
impl DynamoStore {
    /// Visits every item whose partition key starts with `prefix`, expired or not (DynamoDB keeps
    /// an expired item until its TTL sweeper gets to it), page by page.
    pub async fn scan_under(&self, prefix: &str, visit: &mut (dyn FnMut(Item) + Send)) -> Result<(), StoreError> {
        self.scan_pages(prefix, None, &mut |attributes| {
            visit(from_attributes(attributes)?);
            Ok(())
        })
        .await
    }

    /// Visits the key (pk, sk) of every item whose partition key starts with `prefix`, reading
    /// only the keys.
    pub async fn scan_keys_under(
        &self,
        prefix: &str,
        visit: &mut (dyn FnMut(&str, &str) + Send),
    ) -> Result<(), StoreError> {
        self.scan_pages(prefix, Some("#pk, #sk".to_string()), &mut |attributes| {
            let text = |name: &str| match attributes.get(name) {
                Some(AttributeValue::S(s)) => Ok(s.as_str()),
                _ => Err(StoreError::Backend(format!("an item without a string {name}"))),
            };
            visit(text(PK)?, text(SK)?);
            Ok(())
        })
        .await
    }

    async fn scan_pages(
        &self,
        prefix: &str,
        projection: Option<String>,
        visit: &mut (dyn FnMut(AttributeMap) -> Result<(), StoreError> + Send),
    ) -> Result<(), StoreError> {
        let mut start: Option<AttributeMap> = None;
        loop {
            let mut names = HashMap::from([("#pk".to_string(), PK.to_string())]);
            if projection.is_some() {
                names.insert("#sk".to_string(), SK.to_string());
            }
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(#pk, :prefix)")
                .set_expression_attribute_names(Some(names))
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_string()))
                .set_projection_expression(projection.clone())
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(map_error)?;
            for attributes in output.items.unwrap_or_default() {
                visit(attributes)?;
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(()),
            }
        }
    }
}
