-- Delegation grants (issue 12 point 9): a person lets one of the organization's agents act for
-- them with at most these scopes (a JSON list), until expires_at (Unix seconds; NULL: until
-- revoked). Made by the person's consent in the code flow or by an admin; revoked by either.
-- Tokens issued under a grant name it (the `dlg` claim) and stop being good when it is revoked.

CREATE TABLE delegations (
    org_id     TEXT NOT NULL REFERENCES orgs(id),
    id         TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX delegations_user ON delegations (org_id, user_id);
CREATE INDEX delegations_agent ON delegations (org_id, agent_id);
