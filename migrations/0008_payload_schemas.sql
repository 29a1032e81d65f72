-- Hindsight catalog: the schemas that wrote archived payloads (Avro,
-- Protobuf, JSON Schema), kept so that an event decodes with the schema it
-- was written with, after its registry is gone or rebuilt.
-- Portable SQL (SQLite and PostgreSQL); times are microseconds since the
-- Unix epoch (UTC).

-- One row per (registry, schema): `schema_key` is the schema id in
-- decimal, or `guid:` and the GUID for a schema known only by the GUID that
-- newer serializers put in the `__value_schema_id` header. `registry` is the
-- configured registry's name, or the label an import gave. A row is never rewritten:
-- a registry rebuilt with other ids keeps the schema the archive first saw.
-- `references_json` holds the referenced schemas themselves
-- ([{"name", "subject", "version", "schema"}], dependencies first), so a
-- row decodes on its own. No credentials are stored.
CREATE TABLE payload_schemas (
    registry VARCHAR(255) NOT NULL,
    schema_key VARCHAR(64) NOT NULL,
    schema_id BIGINT,
    schema_guid VARCHAR(64),
    format VARCHAR(16) NOT NULL,
    schema_text TEXT NOT NULL,
    references_json TEXT NOT NULL,
    subject VARCHAR(1000),
    version BIGINT,
    stored_at BIGINT NOT NULL,
    PRIMARY KEY (registry, schema_key)
);
