//! The `payload_schemas` table: every schema that decodes archived
//! payloads, as fetched from a registry or imported. The decoding itself
//! lives in the `schemas` crate; this is only storage.

use sqlx::Row;

use crate::catalog::Catalog;
use crate::event::now_micros;
use crate::Result;

/// One stored schema, as text: the `schemas` crate gives it meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadSchemaRow {
    pub registry: String,
    /// The id in decimal, or `guid:` and the GUID.
    pub schema_key: String,
    pub schema_id: Option<i64>,
    pub schema_guid: Option<String>,
    /// `avro`, `protobuf` or `json`.
    pub format: String,
    pub schema_text: String,
    pub references_json: String,
    pub subject: Option<String>,
    pub version: Option<i64>,
    pub stored_at: i64,
}

impl Catalog {
    /// Stores a schema unless (registry, id) is stored already: the first
    /// schema seen under an id stays. Returns whether it was new.
    pub async fn put_payload_schema(&self, row: &PayloadSchemaRow) -> Result<bool> {
        let stored_at = if row.stored_at > 0 {
            row.stored_at
        } else {
            now_micros()
        };
        let inserted = sqlx::query(
            "INSERT INTO payload_schemas (registry, schema_key, schema_id, schema_guid, format, \
             schema_text, references_json, subject, version, stored_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
        )
        .bind(&row.registry)
        .bind(&row.schema_key)
        .bind(row.schema_id)
        .bind(row.schema_guid.as_deref())
        .bind(&row.format)
        .bind(&row.schema_text)
        .bind(&row.references_json)
        .bind(row.subject.as_deref())
        .bind(row.version)
        .bind(stored_at)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(inserted > 0)
    }

    /// Every stored schema, by registry and id.
    pub async fn payload_schemas(&self) -> Result<Vec<PayloadSchemaRow>> {
        let rows = sqlx::query(
            "SELECT registry, schema_key, schema_id, schema_guid, format, schema_text, \
             references_json, subject, version, stored_at FROM payload_schemas \
             ORDER BY registry, schema_id, schema_key",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PayloadSchemaRow {
                    registry: row.try_get("registry")?,
                    schema_key: row.try_get("schema_key")?,
                    schema_id: row.try_get("schema_id")?,
                    schema_guid: row.try_get("schema_guid")?,
                    format: row.try_get("format")?,
                    schema_text: row.try_get("schema_text")?,
                    references_json: row.try_get("references_json")?,
                    subject: row.try_get("subject")?,
                    version: row.try_get("version")?,
                    stored_at: row.try_get("stored_at")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stored_schema_is_never_rewritten() {
        let directory = tempfile::tempdir().unwrap();
        let catalog = Catalog::open_for_test(directory.path()).await;
        let row = PayloadSchemaRow {
            registry: "main".to_owned(),
            schema_key: "7".to_owned(),
            schema_id: Some(7),
            schema_guid: None,
            format: "avro".to_owned(),
            schema_text: "\"string\"".to_owned(),
            references_json: "[]".to_owned(),
            subject: Some("orders-value".to_owned()),
            version: Some(1),
            stored_at: 0,
        };
        assert!(catalog.put_payload_schema(&row).await.unwrap());
        let rebuilt = PayloadSchemaRow {
            schema_text: "\"long\"".to_owned(),
            ..row.clone()
        };
        assert!(!catalog.put_payload_schema(&rebuilt).await.unwrap());
        let stored = catalog.payload_schemas().await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].schema_text, "\"string\"");
        assert!(stored[0].stored_at > 0);
    }
}
