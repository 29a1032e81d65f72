-- Hindsight catalog: access control. API tokens made with `hindsight token
-- create` (tokens from the configuration file are not stored here), and the
-- audit trail of every read, replay, maintenance run and token change.
-- Portable SQL (SQLite and PostgreSQL); times are microseconds since the
-- Unix epoch (UTC).

-- One row per token. Only the blake3 hash of the token is kept (hex); the
-- token itself is shown once, when it is made. `scope_json` is
-- {"sources": [patterns], "topics": [patterns]} (empty: everything). A
-- revoked token keeps its row (the audit trail names it) with `revoked_at`.
CREATE TABLE api_tokens (
    name VARCHAR(255) NOT NULL PRIMARY KEY,
    token_hash VARCHAR(64) NOT NULL UNIQUE,
    role VARCHAR(16) NOT NULL,
    scope_json TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by VARCHAR(255) NOT NULL,
    revoked_at BIGINT,
    revoked_by VARCHAR(255)
);

-- One row per audited action. `principal` is a token's name (or `jwt:` and
-- the subject, `cli:` and the user, `anonymous`); `address` the client's;
-- `action` what was done (`sql`, `events.search`, `replay.start`, ...);
-- `detail` what it named (the SQL text, the filter, the target), never a
-- secret; `status` the HTTP status (or 0 for a command), `count` the rows
-- or events it returned or touched when known. `id` is a UUID; `at` and
-- then `id` order it.
CREATE TABLE audit_log (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    at BIGINT NOT NULL,
    principal VARCHAR(255) NOT NULL,
    role VARCHAR(16) NOT NULL,
    address VARCHAR(64),
    action VARCHAR(64) NOT NULL,
    method VARCHAR(8),
    route VARCHAR(255),
    detail TEXT,
    status INTEGER NOT NULL,
    count BIGINT
);
CREATE INDEX audit_log_at ON audit_log (at);
