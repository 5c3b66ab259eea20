-- Principals of the admin API besides the bootstrap token: organization API keys and platform
-- admin tokens. Only keyed digests of their secrets are stored (HMAC-SHA-256 under the master
-- key's digest key, as for client secrets). Times are Unix seconds.

CREATE TABLE api_keys (
    org_id               TEXT NOT NULL REFERENCES orgs(id),
    id                   TEXT NOT NULL,
    name                 TEXT NOT NULL,
    role                 TEXT NOT NULL,
    digest               BYTEA NOT NULL,
    digest_version       BIGINT NOT NULL,
    -- The secret before the last rotation, accepted until prev_expires_at (a grace period).
    prev_digest          BYTEA,
    prev_digest_version  BIGINT,
    prev_expires_at      BIGINT,
    allowed_cidrs        TEXT NOT NULL,
    expires_at           BIGINT,
    created_at           BIGINT NOT NULL,
    created_by           TEXT NOT NULL,
    rotated_at           BIGINT,
    last_used_at         BIGINT,
    last_used_ip         TEXT,
    revoked_at           BIGINT,
    PRIMARY KEY (org_id, id)
);
CREATE UNIQUE INDEX api_keys_id ON api_keys (id);

CREATE TABLE admin_tokens (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    digest         BYTEA NOT NULL,
    digest_version BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT,
    revoked_at     BIGINT
);
