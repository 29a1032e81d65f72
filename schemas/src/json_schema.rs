//! JSON Schema payloads: the body is JSON, and it must match the schema it
//! was written with, as confluent-kafka's `JSONDeserializer` checks.
//!
//! Validation is the `jsonschema` crate's, offline: a `$ref` resolves only
//! to the schema's registry references (by the name the schema uses), never
//! to the network. Formats (`date-time`, `email`, …) are annotations, not
//! checks, as in Python's `jsonschema` without a format checker, so a body
//! the Python deserializer accepts is accepted here too.

use std::collections::HashMap;

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::Value;

use crate::error::DecodeError;

/// A compiled JSON Schema.
pub struct JsonSchema {
    validator: Validator,
}

impl JsonSchema {
    /// Compiles `schema`, with `references` as (name, schema text) pairs.
    pub fn parse(schema: &str, references: &[(String, String)]) -> Result<Self, DecodeError> {
        let schema: Value = serde_json::from_str(schema).map_err(|error| {
            DecodeError::bad_schema(format!("the JSON Schema is not JSON: {error}"))
        })?;
        let mut by_name = HashMap::new();
        for (name, text) in references {
            let value: Value = serde_json::from_str(text).map_err(|error| {
                DecodeError::bad_schema(format!(
                    "the JSON Schema reference {name:?} is not JSON: {error}"
                ))
            })?;
            by_name.insert(name.trim_start_matches('/').to_owned(), value);
        }
        let validator = jsonschema::options()
            .should_validate_formats(false)
            .with_retriever(References(by_name))
            .build(&schema)
            .map_err(|error| {
                DecodeError::bad_schema(format!("the JSON Schema does not compile: {error}"))
            })?;
        Ok(JsonSchema { validator })
    }

    /// Parses a body and checks it against the schema.
    pub fn decode(&self, body: &[u8]) -> Result<Value, DecodeError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|error| DecodeError::mismatch(format!("the body is not JSON: {error}")))?;
        if let Err(error) = self.validator.validate(&value) {
            let at = error.instance_path().to_string();
            let at = if at.is_empty() { "/".to_owned() } else { at };
            return Err(DecodeError::mismatch(format!(
                "the body does not match its JSON Schema at {at}: {error}"
            )));
        }
        Ok(value)
    }
}

/// Resolves a `$ref` to one of the schema's registry references: the name
/// the referring schema uses, relative to its (absent) base, so the URI's
/// path ends with it.
struct References(HashMap<String, Value>);

impl Retrieve for References {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let wanted = uri.as_str();
        self.0
            .iter()
            .filter(|(name, _)| wanted == name.as_str() || wanted.ends_with(&format!("/{name}")))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, value)| value.clone())
            .ok_or_else(|| {
                format!("{wanted} is not one of the schema's references (nothing is fetched)")
                    .into()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DecodeErrorKind;

    fn order_schema() -> &'static str {
        r#"{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "properties": {"id": {"type": "string"}, "amount": {"type": "number"},
                           "created": {"type": "string", "format": "date-time"},
                           "customer": {"$ref": "customer.json"}},
            "required": ["id"], "additionalProperties": false}"#
    }

    fn customer() -> Vec<(String, String)> {
        vec![(
            "customer.json".to_owned(),
            r#"{"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}"#
                .to_owned(),
        )]
    }

    #[test]
    fn a_body_that_matches_decodes_and_formats_are_not_checked() {
        let schema = JsonSchema::parse(order_schema(), &customer()).unwrap();
        let value = schema
            .decode(br#"{"id": "o1", "amount": 2.5, "created": "not a time", "customer": {"name": "Ada"}}"#)
            .unwrap();
        assert_eq!(value["customer"]["name"], "Ada");
    }

    #[test]
    fn a_body_that_does_not_match_names_where() {
        let schema = JsonSchema::parse(order_schema(), &customer()).unwrap();
        for (body, at) in [
            (&br#"{"id": "o1", "amount": "ten"}"#[..], "/amount"),
            (br#"{"amount": 1}"#, "/"),
            (br#"{"id": "o1", "extra": 1}"#, "/"),
            (
                br#"{"id": "o1", "customer": {"name": 7}}"#,
                "/customer/name",
            ),
        ] {
            let error = schema.decode(body).unwrap_err();
            assert_eq!(error.kind, DecodeErrorKind::Mismatch);
            assert!(
                error.message.contains(&format!("at {at}:")),
                "{}",
                error.message
            );
        }
        let error = schema.decode(b"{\"id\": ").unwrap_err();
        assert!(error.message.contains("not JSON"), "{}", error.message);
    }

    #[test]
    fn a_reference_that_is_not_given_is_never_fetched() {
        let error = JsonSchema::parse(
            r#"{"properties": {"a": {"$ref": "http://127.0.0.1:9/remote.json"}}}"#,
            &[],
        )
        .err()
        .expect("a missing reference cannot compile");
        assert_eq!(error.kind, DecodeErrorKind::BadSchema);
        assert!(error.message.contains("remote.json"), "{}", error.message);
    }
}
