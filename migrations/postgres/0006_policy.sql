-- Organization policy (issue 11 point 3) and the agent credential lifecycle (point 6).
-- One policy document per organization (JSON, parsed strictly by the domain); no row is the
-- default policy (no restriction). `version` is its ETag.
CREATE TABLE org_policies (
    org_id     TEXT PRIMARY KEY REFERENCES orgs(id),
    policy     TEXT NOT NULL,
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- An agent may expire; a client secret has the instant it was issued (registration or rotation),
-- and the previous secret (during a rotation's grace period) keeps its own.
ALTER TABLE agents ADD COLUMN expires_at BIGINT;
ALTER TABLE agents ADD COLUMN secret_created_at BIGINT;
ALTER TABLE agents ADD COLUMN prev_secret_created_at BIGINT;
-- Existing secrets: issued at their last rotation (the outbox remembers it) or at registration.
UPDATE agents SET secret_created_at = COALESCE(
    (SELECT MAX(e.created_at) FROM events e
      WHERE e.kind = 'agent.secret_rotated' AND e.org_id = agents.org_id AND e.subject = agents.id),
    agents.created_at)
WHERE secret_digest IS NOT NULL;
CREATE INDEX agents_expiry ON agents (org_id, expires_at);
