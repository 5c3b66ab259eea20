-- Core schema: instance metadata, organizations, signing keys, agents, token state, outbox.
-- Times are Unix seconds (INTEGER) unless the column name ends in _ms.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Organizations are never hard-deleted: a deleted row stays as a tombstone so its slug,
-- issuer and DID are never handed to a newcomer.
CREATE TABLE orgs (
    id             TEXT PRIMARY KEY,
    slug           TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    issuer         TEXT NOT NULL UNIQUE,
    did            TEXT NOT NULL UNIQUE,
    dek_wrapped    BLOB NOT NULL,
    dek_mk_version INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    deleted_at     INTEGER
);

CREATE TABLE signing_keys (
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    kid          TEXT NOT NULL,
    alg          TEXT NOT NULL,
    public_jwk   TEXT NOT NULL,
    private_enc  BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    activates_at INTEGER NOT NULL,
    retires_at   INTEGER,
    removed_at   INTEGER,
    PRIMARY KEY (org_id, kid)
);

CREATE TABLE agents (
    org_id                 TEXT NOT NULL REFERENCES orgs(id),
    id                     TEXT NOT NULL,
    name                   TEXT NOT NULL,
    description            TEXT,
    did                    TEXT NOT NULL,
    scopes                 TEXT NOT NULL,
    status                 TEXT NOT NULL,
    auth_method            TEXT NOT NULL,
    secret_digest          BLOB,
    secret_digest_version  INTEGER,
    prev_secret_digest     BLOB,
    prev_secret_version    INTEGER,
    prev_secret_expires_at INTEGER,
    jwks                   TEXT,
    jwks_uri               TEXT,
    access_token_alg       TEXT NOT NULL,
    id_token_alg           TEXT NOT NULL,
    access_token_ttl       INTEGER,
    tokens_valid_after_ms  INTEGER NOT NULL,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    deleted_at             INTEGER,
    PRIMARY KEY (org_id, id)
);

-- RFC 7009 revocations, kept until the token would have expired anyway.
CREATE TABLE revoked_tokens (
    org_id     TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, jti)
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);

-- Single-use markers (private_key_jwt jti, later partner assertions) when no Redis is configured.
CREATE TABLE replay_markers (
    key        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX replay_markers_expiry ON replay_markers (expires_at);

-- Transactional outbox: every change writes its event in the same transaction.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id     TEXT,
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
