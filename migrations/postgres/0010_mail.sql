-- Mail (issue 12): single-use links of a user (email verification, password reset), ownership
-- transfers, and when a user's password last changed. Times are Unix seconds; only a keyed
-- digest (HMAC-SHA-256 under the master key's digest key) of a link's token is stored.

-- When the password was last set by its owner (a reset link); sessions older than it end.
ALTER TABLE users ADD COLUMN password_changed_at BIGINT;

CREATE TABLE user_links (
    org_id           TEXT NOT NULL REFERENCES orgs(id),
    id               TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    -- verify_email or password_reset.
    purpose          TEXT NOT NULL,
    -- The address the link was made for: it proves only that one.
    email_normalized TEXT NOT NULL,
    digest           BYTEA NOT NULL,
    digest_version   BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    -- When it was used, or invalidated (another reset link of the user was used).
    used_at          BIGINT,
    PRIMARY KEY (org_id, id)
);
CREATE UNIQUE INDEX user_links_id ON user_links (id);
CREATE INDEX user_links_user ON user_links (org_id, user_id, purpose);

CREATE TABLE ownership_transfers (
    org_id         TEXT NOT NULL REFERENCES orgs(id),
    id             TEXT NOT NULL,
    -- The person named: becomes an owner on acceptance.
    user_id        TEXT NOT NULL,
    -- The owner handing over (becomes an admin on acceptance), when a person.
    from_user_id   TEXT,
    -- The principal that started it (platform, admin_token:ID, api_key:ID).
    initiated_by   TEXT NOT NULL,
    digest         BYTEA NOT NULL,
    digest_version BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    -- pending, accepted, revoked or expired; closed_at is when it left pending.
    state          TEXT NOT NULL,
    closed_at      BIGINT,
    PRIMARY KEY (org_id, id)
);
CREATE UNIQUE INDEX ownership_transfers_id ON ownership_transfers (id);
-- One pending transfer per organization.
CREATE UNIQUE INDEX ownership_transfers_pending ON ownership_transfers (org_id)
    WHERE state = 'pending';

-- Row-level security, exactly as 0007_rls.sql does for every tenant table.
ALTER TABLE user_links ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_links FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON user_links
    USING (org_id = current_setting('agentidp.org_id', true))
    WITH CHECK (org_id = current_setting('agentidp.org_id', true));
CREATE POLICY platform_scope ON user_links
    USING (current_setting('agentidp.scope', true) = 'platform')
    WITH CHECK (current_setting('agentidp.scope', true) = 'platform');

ALTER TABLE ownership_transfers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ownership_transfers FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON ownership_transfers
    USING (org_id = current_setting('agentidp.org_id', true))
    WITH CHECK (org_id = current_setting('agentidp.org_id', true));
CREATE POLICY platform_scope ON ownership_transfers
    USING (current_setting('agentidp.scope', true) = 'platform')
    WITH CHECK (current_setting('agentidp.scope', true) = 'platform');
