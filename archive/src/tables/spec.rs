//! The Iceberg view of the event schema: the table schema (with the field
//! ids every segment carries since schema version 5), the name mapping for
//! segments written before, and the partition specs that follow the
//! segment layout.

use arrow::datatypes::{DataType, Field, TimeUnit};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::schema::{event_schema, field_id, LAST_FIELD_ID};

/// Partition field ids start here (the Iceberg convention).
const EVENT_TIME_HOUR_FIELD: i32 = 1000;
const PARTITION_FIELD: i32 = 1001;
const EVENT_TIME_DAY_FIELD: i32 = 1002;
pub const LAST_PARTITION_ID: i32 = EVENT_TIME_DAY_FIELD;

/// Which partition spec a data file is written under. A segment holds one
/// (topic, partition) within one UTC hour; a compacted quiet day spans a
/// day. Anything else (a partition column that is not one value) goes
/// unpartitioned, so a partition value never lies about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Spec {
    /// `hour(event_time)`, `identity(partition)`.
    Hourly = 0,
    /// `day(event_time)`, `identity(partition)`.
    Daily = 1,
    Unpartitioned = 2,
}

impl Spec {
    pub const ALL: [Spec; 3] = [Spec::Hourly, Spec::Daily, Spec::Unpartitioned];
    pub const DEFAULT: Spec = Spec::Hourly;

    pub fn id(self) -> i32 {
        self as i32
    }

    pub fn from_id(id: i32) -> Result<Spec> {
        Spec::ALL
            .into_iter()
            .find(|spec| spec.id() == id)
            .ok_or_else(|| Error::internal(format!("unknown partition spec id {id}")))
    }

    /// The partition fields: (field id, name, transform, source column).
    fn fields(self) -> &'static [(i32, &'static str, &'static str, &'static str)] {
        match self {
            Spec::Hourly => &[
                (
                    EVENT_TIME_HOUR_FIELD,
                    "event_time_hour",
                    "hour",
                    "event_time",
                ),
                (PARTITION_FIELD, "partition", "identity", "partition"),
            ],
            Spec::Daily => &[
                (EVENT_TIME_DAY_FIELD, "event_time_day", "day", "event_time"),
                (PARTITION_FIELD, "partition", "identity", "partition"),
            ],
            Spec::Unpartitioned => &[],
        }
    }

    /// The spec as table metadata writes it.
    pub fn to_json(self) -> Result<Value> {
        let fields = self
            .fields()
            .iter()
            .map(|(id, name, transform, column)| {
                Ok(json!({
                    "name": name,
                    "transform": transform,
                    "source-id": column_id(column)?,
                    "field-id": id,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(json!({ "spec-id": self.id(), "fields": fields }))
    }

    /// The Avro type of a manifest's `partition` record for this spec.
    pub fn avro_partition_type(self) -> Value {
        let fields: Vec<Value> = self
            .fields()
            .iter()
            .map(|(id, name, transform, _)| {
                let value_type = if *transform == "day" {
                    json!({"type": "int", "logicalType": "date"})
                } else {
                    json!("int")
                };
                json!({"name": name, "type": ["null", value_type], "default": null, "field-id": id})
            })
            .collect();
        json!({"type": "record", "name": "r102", "fields": fields})
    }

    /// How many partition values a file of this spec carries.
    pub fn width(self) -> usize {
        self.fields().len()
    }

    /// The spec of a file whose events span `[min_event_time, max_event_time]`
    /// (microseconds) and whose `partition` column holds `partition` in
    /// every row (`Some(None)`: NULL in every row; `None`: several values).
    /// Returns the spec and the partition tuple.
    pub fn of_file(
        min_event_time: i64,
        max_event_time: i64,
        partition: Option<Option<i32>>,
    ) -> (Spec, Vec<Option<i32>>) {
        const HOUR: i64 = 3_600_000_000;
        const DAY: i64 = 24 * HOUR;
        let Some(partition) = partition else {
            return (Spec::Unpartitioned, Vec::new());
        };
        let hour = min_event_time.div_euclid(HOUR);
        let day = min_event_time.div_euclid(DAY);
        let as_int = |value: i64| i32::try_from(value).ok();
        if hour == max_event_time.div_euclid(HOUR) {
            if let Some(hour) = as_int(hour) {
                return (Spec::Hourly, vec![Some(hour), partition]);
            }
        }
        if day == max_event_time.div_euclid(DAY) {
            if let Some(day) = as_int(day) {
                return (Spec::Daily, vec![Some(day), partition]);
            }
        }
        (Spec::Unpartitioned, Vec::new())
    }
}

/// The field id of a top-level column.
pub fn column_id(name: &str) -> Result<i32> {
    event_schema()
        .field_with_name(name)
        .ok()
        .and_then(field_id)
        .ok_or_else(|| Error::internal(format!("column {name} has no field id")))
}

/// The Iceberg schema (id 0) of the event schema.
pub fn iceberg_schema() -> Result<Value> {
    let fields = event_schema()
        .fields()
        .iter()
        .map(|field| iceberg_field(field))
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({"type": "struct", "schema-id": 0, "fields": fields}))
}

pub fn last_column_id() -> i32 {
    LAST_FIELD_ID
}

fn iceberg_field(field: &Field) -> Result<Value> {
    let id = field_id(field)
        .ok_or_else(|| Error::internal(format!("field {} has no field id", field.name())))?;
    Ok(json!({
        "id": id,
        "name": field.name(),
        "required": !field.is_nullable(),
        "type": iceberg_type(field.data_type())?,
    }))
}

fn iceberg_type(data_type: &DataType) -> Result<Value> {
    Ok(match data_type {
        DataType::Utf8 => json!("string"),
        DataType::Binary => json!("binary"),
        DataType::Int32 => json!("int"),
        DataType::Int64 => json!("long"),
        DataType::Boolean => json!("boolean"),
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => json!("timestamptz"),
        DataType::Timestamp(TimeUnit::Microsecond, None) => json!("timestamp"),
        DataType::List(element) => json!({
            "type": "list",
            "element-id": field_id(element).ok_or_else(|| Error::internal("list element has no field id"))?,
            "element": iceberg_type(element.data_type())?,
            "element-required": !element.is_nullable(),
        }),
        DataType::Struct(fields) => json!({
            "type": "struct",
            "fields": fields.iter().map(|field| iceberg_field(field)).collect::<Result<Vec<_>>>()?,
        }),
        other => {
            return Err(Error::internal(format!(
                "no Iceberg type for the Arrow type {other}"
            )))
        }
    })
}

/// `schema.name-mapping.default`: how a reader finds the columns of a
/// segment written before field ids (schema versions up to 4). A list
/// element answers to `element` (Iceberg's name) and `item` (arrow-rs's).
pub fn name_mapping() -> Result<String> {
    fn mapping(field: &Field) -> Result<Value> {
        let id = field_id(field)
            .ok_or_else(|| Error::internal(format!("field {} has no field id", field.name())))?;
        let mut names = vec![field.name().clone()];
        if field.name() == "item" {
            names.insert(0, "element".to_owned());
        }
        let nested = match field.data_type() {
            DataType::List(element) => vec![mapping(element)?],
            DataType::Struct(fields) => fields
                .iter()
                .map(|field| mapping(field))
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        let mut entry = json!({"field-id": id, "names": names});
        if !nested.is_empty() {
            entry["fields"] = Value::Array(nested);
        }
        Ok(entry)
    }
    let fields = event_schema()
        .fields()
        .iter()
        .map(|field| mapping(field))
        .collect::<Result<Vec<_>>>()?;
    Ok(serde_json::to_string(&fields)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_a_unique_id_up_to_the_last() {
        let schema = iceberg_schema().unwrap();
        let mut ids = Vec::new();
        fn collect(value: &Value, ids: &mut Vec<i64>) {
            if let Some(id) = value.get("id").or_else(|| value.get("element-id")) {
                ids.push(id.as_i64().unwrap());
            }
            for nested in ["fields", "type", "element"] {
                match value.get(nested) {
                    Some(Value::Array(items)) => items.iter().for_each(|item| collect(item, ids)),
                    Some(object @ Value::Object(_)) => collect(object, ids),
                    _ => {}
                }
            }
        }
        collect(&schema, &mut ids);
        ids.sort_unstable();
        let expected: Vec<i64> = (1..=i64::from(LAST_FIELD_ID)).collect();
        assert_eq!(ids, expected);
        assert_eq!(column_id("event_time").unwrap(), 27);
        assert_eq!(column_id("partition").unwrap(), 6);
    }

    #[test]
    fn a_file_gets_the_narrowest_spec_that_holds_it() {
        const HOUR: i64 = 3_600_000_000;
        let start = 490_000 * HOUR;
        assert_eq!(
            Spec::of_file(start, start + HOUR - 1, Some(Some(3))),
            (Spec::Hourly, vec![Some(490_000), Some(3)])
        );
        assert_eq!(
            Spec::of_file(start, start + 2 * HOUR, Some(None)),
            (Spec::Daily, vec![Some(490_000 / 24), None])
        );
        assert_eq!(
            Spec::of_file(start, start + 30 * HOUR, Some(Some(1))).0,
            Spec::Unpartitioned
        );
        assert_eq!(
            Spec::of_file(start, start + 1, None),
            (Spec::Unpartitioned, vec![])
        );
    }

    #[test]
    fn the_name_mapping_names_the_list_element_both_ways() {
        let mapping: Value = serde_json::from_str(&name_mapping().unwrap()).unwrap();
        let headers = mapping
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["names"][0] == "headers")
            .unwrap();
        assert_eq!(headers["fields"][0]["names"], json!(["element", "item"]));
        assert_eq!(headers["fields"][0]["fields"][1]["field-id"], json!(33));
    }
}
