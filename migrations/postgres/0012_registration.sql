-- Registration (issue 12 points 7 and 8): enrollment tokens (RFC 7591 initial access tokens an
-- admin hands to agent runtimes) and, on every client registered at {iss}/oauth2/register, the
-- digest of its RFC 7592 registration access token and the enrollment token that enrolled it.
-- Times are Unix seconds; only keyed digests (HMAC-SHA-256 under the master key's digest key) of
-- the tokens are stored.

CREATE TABLE enrollment_tokens (
    org_id          TEXT NOT NULL REFERENCES orgs(id),
    id              TEXT NOT NULL,
    -- The name prefix of the agents it enrolls ('' for none).
    name            TEXT NOT NULL,
    digest          BYTEA NOT NULL,
    digest_version  BIGINT NOT NULL,
    -- JSON array: the ceiling of the enrolled agents' scopes.
    scopes          TEXT NOT NULL,
    max_uses        BIGINT NOT NULL,
    uses            BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    revoked_at      BIGINT,
    PRIMARY KEY (org_id, id)
);
CREATE UNIQUE INDEX enrollment_tokens_id ON enrollment_tokens (id);

ALTER TABLE agents ADD COLUMN enrollment_id TEXT;
ALTER TABLE agents ADD COLUMN registration_digest BYTEA;
ALTER TABLE agents ADD COLUMN registration_digest_version BIGINT;
CREATE INDEX agents_enrollment ON agents (org_id, enrollment_id);

-- Row-level security, exactly as 0007_rls.sql does for every tenant table.
ALTER TABLE enrollment_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE enrollment_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON enrollment_tokens
    USING (org_id = current_setting('agentidp.org_id', true))
    WITH CHECK (org_id = current_setting('agentidp.org_id', true));
CREATE POLICY platform_scope ON enrollment_tokens
    USING (current_setting('agentidp.scope', true) = 'platform')
    WITH CHECK (current_setting('agentidp.scope', true) = 'platform');
