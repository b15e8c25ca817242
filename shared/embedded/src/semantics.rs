//! DynamoDB's condition and update semantics, evaluated on JSON items.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};
use voronka_domain::ports::store::{PK, SK};
use voronka_domain::ports::{Condition, Key, StoreError, UpdateAction};

/// Whether `condition` holds for the stored item (None when nothing is stored).
pub fn condition_holds(condition: &Condition, item: Option<&Map<String, Value>>) -> bool {
    let attribute = |name: &str| item.and_then(|map| map.get(name));
    match condition {
        Condition::NotExists => item.is_none(),
        Condition::Exists => item.is_some(),
        Condition::AttributeExists(name) => attribute(name).is_some(),
        Condition::AttributeNotExists(name) => attribute(name).is_none(),
        Condition::Equals(name, expected) => {
            attribute(name).is_some_and(|v| compare(v, expected) == Some(Ordering::Equal))
        }
        // DynamoDB's `<>` is true for a missing attribute.
        Condition::NotEquals(name, expected) => {
            attribute(name).is_none_or(|v| compare(v, expected) != Some(Ordering::Equal))
        }
        Condition::LessThan(name, bound) => attribute(name).is_some_and(|v| compare(v, bound) == Some(Ordering::Less)),
        Condition::LessOrEqual(name, bound) => {
            attribute(name).is_some_and(|v| matches!(compare(v, bound), Some(Ordering::Less | Ordering::Equal)))
        }
        Condition::GreaterThan(name, bound) => {
            attribute(name).is_some_and(|v| compare(v, bound) == Some(Ordering::Greater))
        }
        Condition::GreaterOrEqual(name, bound) => {
            attribute(name).is_some_and(|v| matches!(compare(v, bound), Some(Ordering::Greater | Ordering::Equal)))
        }
        Condition::And(all) => all.iter().all(|c| condition_holds(c, item)),
        Condition::Or(any) => any.iter().any(|c| condition_holds(c, item)),
    }
}

/// Numbers numerically, strings by bytes, booleans and null for equality, other types never.
fn compare(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b),
        (Value::String(a), Value::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (Value::Bool(a), Value::Bool(b)) if a == b => Some(Ordering::Equal),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Array(_) | Value::Object(_), _) if left == right => Some(Ordering::Equal),
        _ => None,
    }
}

fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    match (a.as_i64(), b.as_i64()) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn add_numbers(a: &Number, b: &Number) -> Option<Number> {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return a.checked_add(b).map(Number::from);
    }
    Number::from_f64(a.as_f64()? + b.as_f64()?)
}

/// The item after `actions`, starting from the stored one or, for an upsert, from just its key.
pub fn apply_updates(
    key: &Key,
    current: Option<Map<String, Value>>,
    actions: &[UpdateAction],
) -> Result<Map<String, Value>, StoreError> {
    let mut item = current.unwrap_or_else(|| {
        let mut map = Map::new();
        map.insert(PK.into(), Value::String(key.pk.clone()));
        map.insert(SK.into(), Value::String(key.sk.clone()));
        map
    });
    for action in actions {
        let name = match action {
            UpdateAction::Set(name, _)
            | UpdateAction::SetIfNotExists(name, _)
            | UpdateAction::Add(name, _)
            | UpdateAction::Append(name, _)
            | UpdateAction::Remove(name) => name,
        };
        if name == PK || name == SK {
            return Err(StoreError::Invalid(format!("an update cannot change the key attribute `{name}`")));
        }
        match action {
            UpdateAction::Set(name, value) => {
                item.insert(name.clone(), value.clone());
            }
            UpdateAction::SetIfNotExists(name, value) => {
                item.entry(name.clone()).or_insert_with(|| value.clone());
            }
            UpdateAction::Add(name, amount) => {
                let Value::Number(amount) = amount else {
                    return Err(StoreError::Invalid(format!("ADD to `{name}` needs a number")));
                };
                let sum = match item.get(name) {
                    None => amount.clone(),
                    Some(Value::Number(current)) => add_numbers(current, amount)
                        .ok_or_else(|| StoreError::Invalid(format!("ADD to `{name}` overflows")))?,
                    Some(_) => {
                        return Err(StoreError::Invalid(format!("ADD to `{name}`, which is not a number")));
                    }
                };
                item.insert(name.clone(), Value::Number(sum));
            }
            UpdateAction::Append(name, values) => match item.get_mut(name) {
                None => {
                    item.insert(name.clone(), Value::Array(values.clone()));
                }
                Some(Value::Array(list)) => list.extend(values.iter().cloned()),
                Some(_) => {
                    return Err(StoreError::Invalid(format!("append to `{name}`, which is not a list")));
                }
            },
            UpdateAction::Remove(name) => {
                item.remove(name);
            }
        }
    }
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn comparisons_follow_dynamodb() {
        let item = json!({"n": 5, "s": "b", "f": 1.5}).as_object().unwrap().clone();
        assert!(condition_holds(&Condition::less_than("n", 6), Some(&item)));
        assert!(!condition_holds(&Condition::less_than("n", "6"), Some(&item)));
        assert!(condition_holds(&Condition::LessThan("f".into(), json!(2)), Some(&item)));
        assert!(condition_holds(&Condition::GreaterThan("s".into(), json!("a")), Some(&item)));
        assert!(condition_holds(&Condition::NotEquals("missing".into(), json!(1)), Some(&item)));
        assert!(!condition_holds(&Condition::Equals("missing".into(), Value::Null), Some(&item)));
    }
}
