//! Redaction policies: values masked for principals whose role is below a
//! policy's, applied to the table itself.
//!
//! For such a session, `events_raw` is a view over the archive's table
//! (which is registered nowhere, so SQL cannot name it) whose `payload`,
//! `key` and `headers` columns are computed by the functions here. Every
//! other table and view (`events`, `events_dedup`, the typed views), every
//! SQL function (`payload_text`, `decode_payload`, the JSON functions,
//! `LIKE`, casts, `substr`), ordering and grouping, search and event fetch
//! therefore see only masked values: a filter on `payload` is evaluated on
//! the masked value, even when DataFusion pushes it into the scan.
//!
//! - **JSON paths** (`$.card.number`, `$.lines[*].sku`, `$.*.email`): the
//!   value at each path becomes `****` and its last four characters when it
//!   is a string or number of more than four, else `****`. A payload framed
//!   by a schema (Avro, Protobuf, JSON Schema) is decoded and shown as its
//!   masked JSON; a payload that is neither JSON nor decodable is hidden
//!   whole (`"****"`), since its fields cannot be found.
//! - **Headers** by name (case-insensitive): the value becomes `****`.
//! - **The key**: `****` and its last four characters.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, GenericListArray, StringArray, StructArray,
};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use hindsight_archive::access::{glob_matches, Role};
use hindsight_schemas::Schemas;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::functions::{as_binary, bytes_at, string_at};

/// The mask of a value that shows nothing.
pub const MASK: &str = "****";

/// One `[[redaction]]` of the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedactionPolicy {
    /// Sources it applies to (names or patterns); all when empty.
    pub sources: Vec<String>,
    /// Topics it applies to (names or patterns); all when empty.
    pub topics: Vec<String>,
    /// JSON paths in payloads: `$.a.b`, `$.a[*].b`, `$.*.b`.
    pub json_paths: Vec<String>,
    /// Header names whose values are masked (case-insensitive).
    pub headers: Vec<String>,
    /// Mask the key.
    pub key: bool,
    /// The least role that sees the values unmasked (default `admin`).
    pub unmasked_for: Option<Role>,
}

impl RedactionPolicy {
    fn unmasked_for(&self) -> Role {
        self.unmasked_for.unwrap_or(Role::Admin)
    }

    fn applies(&self, source: &str, topic: &str) -> bool {
        let matches = |patterns: &[String], name: &str| {
            patterns.is_empty() || patterns.iter().any(|pattern| glob_matches(pattern, name))
        };
        matches(&self.sources, source) && matches(&self.topics, topic)
    }

    /// Problems, each prefixed by `path` (`redaction[2]`).
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for json_path in &self.json_paths {
            if let Err(problem) = parse_path(json_path) {
                problems.push(format!("{path}.json_paths: {json_path:?}: {problem}"));
            }
        }
        if self.json_paths.is_empty() && self.headers.is_empty() && !self.key {
            problems.push(format!(
                "{path}: masks nothing (give json_paths, headers or key = true)"
            ));
        }
        problems
    }
}

/// The policies that apply to one role.
#[derive(Debug, Clone, Default)]
pub struct Redactions {
    policies: Vec<RedactionPolicy>,
}

/// What is masked in one topic.
#[derive(Debug, Default)]
struct TopicMask {
    paths: Vec<Vec<Step>>,
    headers: Vec<String>,
    key: bool,
}

impl Redactions {
    /// The policies of `all` that mask values for `role`.
    pub fn for_role(all: &[RedactionPolicy], role: Role) -> Redactions {
        Redactions {
            policies: all
                .iter()
                .filter(|policy| role < policy.unmasked_for())
                .cloned()
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Whether a policy masks something of (source, topic).
    pub fn covers(&self, source: &str, topic: &str) -> bool {
        self.policies
            .iter()
            .any(|policy| policy.applies(source, topic))
    }

    /// Whether any policy masks payloads, keys, headers: a column no
    /// policy masks is passed through untouched.
    pub fn masks(&self) -> (bool, bool, bool) {
        let any = |test: fn(&RedactionPolicy) -> bool| self.policies.iter().any(test);
        (
            any(|policy| !policy.json_paths.is_empty()),
            any(|policy| policy.key),
            any(|policy| !policy.headers.is_empty()),
        )
    }

    fn mask_of(&self, source: &str, topic: &str) -> Option<TopicMask> {
        let mut mask = TopicMask::default();
        let mut any = false;
        for policy in self
            .policies
            .iter()
            .filter(|policy| policy.applies(source, topic))
        {
            any = true;
            mask.paths
                .extend(policy.json_paths.iter().filter_map(|p| parse_path(p).ok()));
            mask.headers
                .extend(policy.headers.iter().map(|h| h.to_ascii_lowercase()));
            mask.key |= policy.key;
        }
        any.then_some(mask)
    }

    /// The three functions of the redacting view: `payload`, `key` and
    /// `headers`, each of (value, source, topic[, headers]).
    pub fn functions(&self, schemas: &Arc<Schemas>) -> [ScalarUDF; 3] {
        let make = |part| {
            ScalarUDF::new_from_impl(Redact {
                redactions: self.clone(),
                schemas: Arc::clone(schemas),
                part,
                signature: Signature::variadic_any(Volatility::Immutable),
            })
        };
        [make(Part::Payload), make(Part::Key), make(Part::Headers)]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Any,
}

fn parse_path(path: &str) -> std::result::Result<Vec<Step>, String> {
    let rest = path
        .trim()
        .strip_prefix('$')
        .ok_or("a JSON path starts with $")?;
    let mut steps = Vec::new();
    // A payload that is an array: `$[*].ssn`.
    let rest = match rest.strip_prefix("[*]") {
        Some(after) => {
            steps.push(Step::Any);
            after
        }
        None => rest,
    };
    if !rest.is_empty() && !rest.starts_with('.') {
        return Err("after $ comes .name or [*]".to_owned());
    }
    for part in rest.split('.').skip(1) {
        let (name, wildcard) = match part.strip_suffix("[*]") {
            Some(name) => (name, true),
            None => (part, false),
        };
        match name {
            "" if wildcard => {}
            "" => return Err("an empty step (..) is not supported".to_owned()),
            "*" => steps.push(Step::Any),
            name if name.contains(['[', ']']) => {
                return Err(format!("{name:?}: only [*] is supported"))
            }
            name => steps.push(Step::Field(name.to_owned())),
        }
        if wildcard {
            steps.push(Step::Any);
        }
    }
    if steps.is_empty() {
        return Err("the path names no field".to_owned());
    }
    Ok(steps)
}

fn mask_text(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() > 4 {
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{MASK}{tail}")
    } else {
        MASK.to_owned()
    }
}

fn mask_value(value: &mut Value) {
    *value = match value {
        Value::String(text) => Value::String(mask_text(text)),
        Value::Number(number) => Value::String(mask_text(&number.to_string())),
        _ => Value::String(MASK.to_owned()),
    };
}

fn mask_path(value: &mut Value, steps: &[Step]) {
    let Some((step, rest)) = steps.split_first() else {
        mask_value(value);
        return;
    };
    match (step, value) {
        (Step::Field(name), Value::Object(object)) => {
            if let Some(child) = object.get_mut(name) {
                mask_path(child, rest);
            }
        }
        (Step::Any, Value::Object(object)) => {
            object.values_mut().for_each(|child| mask_path(child, rest));
        }
        (Step::Any, Value::Array(items)) => {
            items.iter_mut().for_each(|child| mask_path(child, rest));
        }
        _ => {}
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Part {
    Payload,
    Key,
    Headers,
}

#[derive(Debug)]
struct Redact {
    redactions: Redactions,
    schemas: Arc<Schemas>,
    part: Part,
    signature: Signature,
}

impl PartialEq for Redact {
    fn eq(&self, other: &Self) -> bool {
        self.part == other.part
            && self.redactions.policies == other.redactions.policies
            && Arc::ptr_eq(&self.schemas, &other.schemas)
    }
}

impl Eq for Redact {}

impl Hash for Redact {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.part.hash(state);
        self.redactions.policies.len().hash(state);
    }
}

impl ScalarUDFImpl for Redact {
    fn name(&self) -> &str {
        match self.part {
            Part::Payload => "hindsight_redacted_payload",
            Part::Key => "hindsight_redacted_key",
            Part::Headers => "hindsight_redacted_headers",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(data_type) => Ok(data_type.clone()),
            None => exec_err!("{} takes the column first", self.name()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (Some(value), Some(sources), Some(topics)) =
            (arrays.first(), arrays.get(1), arrays.get(2))
        else {
            return exec_err!("{} takes (value, source, topic)", self.name());
        };
        let sources = arrow::compute::cast(sources, &DataType::Utf8)?;
        let topics = arrow::compute::cast(topics, &DataType::Utf8)?;
        // One mask per (source, topic) of the batch, not one per row.
        let mut by_topic: HashMap<(&str, &str), Option<Arc<TopicMask>>> = HashMap::new();
        let masks: Vec<Option<Arc<TopicMask>>> = (0..value.len())
            .map(|row| {
                let source = string_at(sources.as_ref(), row).unwrap_or_default();
                let topic = string_at(topics.as_ref(), row).unwrap_or_default();
                by_topic
                    .entry((source, topic))
                    .or_insert_with(|| self.redactions.mask_of(source, topic).map(Arc::new))
                    .clone()
            })
            .collect();
        let out = match self.part {
            Part::Key => self.keys(value, &masks)?,
            Part::Payload => self.payloads(value, &masks, arrays.get(3), &topics)?,
            Part::Headers => mask_headers(value, &masks)?,
        };
        Ok(ColumnarValue::Array(out))
    }
}

impl Redact {
    fn keys(&self, keys: &ArrayRef, masks: &[Option<Arc<TopicMask>>]) -> Result<ArrayRef> {
        let keys = as_binary(keys, self.name())?;
        let keys = keys.as_binary::<i32>();
        let mut out = BinaryBuilder::with_capacity(keys.len(), 0);
        for (row, mask) in masks.iter().enumerate() {
            if keys.is_null(row) {
                out.append_null();
            } else if mask.as_ref().is_some_and(|mask| mask.key) {
                out.append_value(mask_text(&String::from_utf8_lossy(keys.value(row))));
            } else {
                out.append_value(keys.value(row));
            }
        }
        Ok(Arc::new(out.finish()))
    }

    fn payloads(
        &self,
        payloads: &ArrayRef,
        masks: &[Option<Arc<TopicMask>>],
        headers: Option<&ArrayRef>,
        topics: &ArrayRef,
    ) -> Result<ArrayRef> {
        let payloads = as_binary(payloads, self.name())?;
        let payloads = payloads.as_binary::<i32>();
        let schema_headers = match headers {
            Some(headers) => {
                crate::decode::schema_headers(Some(headers), self.name(), payloads.len())?
            }
            None => vec![None; payloads.len()],
        };
        let mut out = BinaryBuilder::with_capacity(payloads.len(), 0);
        for (row, mask) in masks.iter().enumerate() {
            let Some(mask) = mask.as_ref().filter(|mask| !mask.paths.is_empty()) else {
                if payloads.is_null(row) {
                    out.append_null();
                } else {
                    out.append_value(payloads.value(row));
                }
                continue;
            };
            if payloads.is_null(row) {
                out.append_null();
                continue;
            }
            let payload = payloads.value(row);
            let decoded = serde_json::from_slice::<Value>(payload).ok().or_else(|| {
                let topic = string_at(topics.as_ref(), row);
                let header = schema_headers.get(row).and_then(Option::as_deref);
                self.schemas
                    .decode(None, topic, payload, header)
                    .ok()
                    .map(|decoded| decoded.value)
            });
            match decoded {
                Some(mut value) => {
                    for path in &mask.paths {
                        mask_path(&mut value, path);
                    }
                    out.append_value(value.to_string());
                }
                None => out.append_value(format!("\"{MASK}\"")),
            }
        }
        Ok(Arc::new(out.finish()))
    }
}

/// `headers` (list of {name, value}) with the masked names' values replaced.
fn mask_headers(headers: &ArrayRef, masks: &[Option<Arc<TopicMask>>]) -> Result<ArrayRef> {
    if masks
        .iter()
        .all(|mask| mask.as_ref().is_none_or(|mask| mask.headers.is_empty()))
    {
        return Ok(Arc::clone(headers));
    }
    let Some(list) = headers.as_list_opt::<i32>() else {
        return exec_err!("headers is a list of {{name, value}}");
    };
    let entries = list.values().as_struct();
    let (Some(names), Some(values)) = (
        entries.column_by_name("name"),
        entries.column_by_name("value"),
    ) else {
        return exec_err!("headers entries have a name and a value");
    };
    let names = arrow::compute::cast(names, &DataType::Utf8)?;
    let names: &StringArray = names.as_string::<i32>();
    let mut masked_values = BinaryBuilder::with_capacity(values.len(), 0);
    let offsets = list.value_offsets();
    let mut row = 0;
    for index in 0..values.len() {
        while row + 1 < offsets.len() && (offsets[row + 1] as usize) <= index {
            row += 1;
        }
        let masked = masks.get(row).and_then(Option::as_ref).is_some_and(|mask| {
            string_at(names, index)
                .is_some_and(|name| mask.headers.contains(&name.to_ascii_lowercase()))
        });
        match bytes_at(values.as_ref(), index) {
            None => masked_values.append_null(),
            Some(_) if masked => masked_values.append_value(MASK),
            Some(bytes) => masked_values.append_value(bytes),
        }
    }
    let masked_values = arrow::compute::cast(
        &(Arc::new(masked_values.finish()) as ArrayRef),
        values.data_type(),
    )?;
    let (fields, mut columns, nulls) = entries.clone().into_parts();
    if let Some(position) = fields.iter().position(|field| field.name() == "value") {
        columns[position] = masked_values;
    }
    let entries = StructArray::try_new(fields, columns, nulls)?;
    let (field, offsets, _, nulls) = list.clone().into_parts();
    Ok(Arc::new(GenericListArray::<i32>::try_new(
        field,
        offsets,
        Arc::new(entries),
        nulls,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_mask_what_they_name_and_keep_the_last_four() {
        let mut value: Value = serde_json::json!({
            "card": {"number": "4111111111111111", "cvc": 123},
            "lines": [{"sku": "abc-12345"}, {"sku": "xy"}],
            "people": {"a": {"email": "a@example.com"}, "b": {"email": "b@example.com"}},
            "keep": "visible"
        });
        for path in [
            "$.card.number",
            "$.card.cvc",
            "$.lines[*].sku",
            "$.people.*.email",
        ] {
            mask_path(&mut value, &parse_path(path).unwrap());
        }
        assert_eq!(value["card"]["number"], "****1111");
        assert_eq!(value["card"]["cvc"], "****");
        assert_eq!(value["lines"][0]["sku"], "****2345");
        assert_eq!(value["lines"][1]["sku"], "****");
        assert_eq!(value["people"]["b"]["email"], "****.com");
        assert_eq!(value["keep"], "visible");
        assert!(!value.to_string().contains("4111111111"));
        let mut list: Value = serde_json::json!([{"ssn": "123-45-6789"}]);
        mask_path(&mut list, &parse_path("$[*].ssn").unwrap());
        assert_eq!(list[0]["ssn"], "****6789");
        for bad in ["card.number", "$", "$..x", "$.a[0]", "$[0].x", "$x"] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_policy_masks_for_the_roles_below_its_own() {
        let policy = RedactionPolicy {
            topics: vec!["payments".to_owned()],
            key: true,
            unmasked_for: Some(Role::Operator),
            ..RedactionPolicy::default()
        };
        let all = vec![policy];
        assert!(!Redactions::for_role(&all, Role::Analyst).is_empty());
        assert!(Redactions::for_role(&all, Role::Operator).is_empty());
        let analyst = Redactions::for_role(&all, Role::Analyst);
        assert!(analyst.mask_of("any", "payments").is_some());
        assert!(analyst.mask_of("any", "orders").is_none());
    }
}
