-- Hindsight catalog: the archive as Iceberg tables.
-- Portable SQL (SQLite and PostgreSQL); times are microseconds since the Unix
-- epoch (UTC); every integer is BIGINT.

-- The Iceberg SQL catalog, as PyIceberg's SqlCatalog and Java's JdbcCatalog
-- (schema V1: `iceberg_type`, NULL meaning a table) define it, so those
-- engines can point at this database. One row per table; a commit moves
-- `metadata_location` by compare-and-set. IF NOT EXISTS: an engine may have
-- created them first.
CREATE TABLE IF NOT EXISTS iceberg_tables (
    catalog_name VARCHAR(255) NOT NULL,
    table_namespace VARCHAR(255) NOT NULL,
    table_name VARCHAR(255) NOT NULL,
    metadata_location VARCHAR(1000),
    previous_metadata_location VARCHAR(1000),
    iceberg_type VARCHAR(5),
    PRIMARY KEY (catalog_name, table_namespace, table_name)
);

CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (
    catalog_name VARCHAR(255) NOT NULL,
    namespace VARCHAR(255) NOT NULL,
    property_key VARCHAR(255) NOT NULL,
    property_value VARCHAR(1000),
    PRIMARY KEY (catalog_name, namespace, property_key)
);

-- Which committed segment is a data file of which table: its manifest entry
-- (`data_file`, JSON), the manifest that lists it now, and the snapshot and
-- sequence number that added it. A file a snapshot removed keeps its row
-- (`removed_sequence`) until every snapshot that still lists it has expired;
-- until then compaction's sweep keeps its object.
CREATE TABLE table_files (
    catalog_name VARCHAR(255) NOT NULL,
    table_namespace VARCHAR(255) NOT NULL,
    table_name VARCHAR(255) NOT NULL,
    segment_id TEXT NOT NULL,
    manifest TEXT,
    snapshot_id BIGINT NOT NULL,
    sequence_number BIGINT NOT NULL,
    data_file TEXT NOT NULL,
    removed_sequence BIGINT,
    PRIMARY KEY (catalog_name, table_namespace, table_name, segment_id)
);

CREATE INDEX table_files_by_segment ON table_files (segment_id);

-- The manifests of a table's snapshots: listed from `added_sequence` on,
-- and no longer from `dropped_sequence`. `entry` is the manifest list's
-- entry (JSON), so an unchanged manifest carries over without being read.
CREATE TABLE table_manifests (
    catalog_name VARCHAR(255) NOT NULL,
    table_namespace VARCHAR(255) NOT NULL,
    table_name VARCHAR(255) NOT NULL,
    path TEXT NOT NULL,
    entry TEXT NOT NULL,
    added_sequence BIGINT NOT NULL,
    dropped_sequence BIGINT,
    PRIMARY KEY (catalog_name, table_namespace, table_name, path)
);
