-- People (issue 12, first part): user accounts of an organization and invites to become one.
-- Times are Unix seconds. Only an argon2id PHC string of a password is stored, and only a keyed
-- digest (HMAC-SHA-256 under the master key's digest key) of an invite's token.

CREATE TABLE users (
    org_id           TEXT NOT NULL REFERENCES orgs(id),
    id               TEXT NOT NULL,
    -- As given (trimmed); email_normalized (trimmed, lower-cased) is what is unique and compared.
    email            TEXT NOT NULL,
    email_normalized TEXT NOT NULL,
    name             TEXT NOT NULL,
    role             TEXT NOT NULL,
    status           TEXT NOT NULL,
    password_hash    TEXT,
    email_verified   BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (org_id, id)
);
CREATE UNIQUE INDEX users_id ON users (id);
CREATE UNIQUE INDEX users_email ON users (org_id, email_normalized);

CREATE TABLE invites (
    org_id           TEXT NOT NULL REFERENCES orgs(id),
    id               TEXT NOT NULL,
    email            TEXT NOT NULL,
    email_normalized TEXT NOT NULL,
    role             TEXT NOT NULL,
    digest           BYTEA NOT NULL,
    digest_version   BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    created_by       TEXT NOT NULL,
    expires_at       BIGINT NOT NULL,
    -- pending, accepted, declined or revoked; closed_at is when it left pending.
    state            TEXT NOT NULL,
    closed_at        BIGINT,
    -- The account an accepted invite created.
    user_id          TEXT,
    PRIMARY KEY (org_id, id)
);
CREATE UNIQUE INDEX invites_id ON invites (id);
-- The instance-wide cap on pending invites per address counts through this.
CREATE INDEX invites_pending ON invites (email_normalized, state, expires_at);

-- Row-level security, exactly as 0007_rls.sql does for every tenant table.
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON users
    USING (org_id = current_setting('agentidp.org_id', true))
    WITH CHECK (org_id = current_setting('agentidp.org_id', true));
CREATE POLICY platform_scope ON users
    USING (current_setting('agentidp.scope', true) = 'platform')
    WITH CHECK (current_setting('agentidp.scope', true) = 'platform');

ALTER TABLE invites ENABLE ROW LEVEL SECURITY;
ALTER TABLE invites FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON invites
    USING (org_id = current_setting('agentidp.org_id', true))
    WITH CHECK (org_id = current_setting('agentidp.org_id', true));
CREATE POLICY platform_scope ON invites
    USING (current_setting('agentidp.scope', true) = 'platform')
    WITH CHECK (current_setting('agentidp.scope', true) = 'platform');
