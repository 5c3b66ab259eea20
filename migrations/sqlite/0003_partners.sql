-- Federation partners: other issuers (agentidp organizations or any OIDC issuer) whose signed
-- assertions an organization accepts.
CREATE TABLE partners (
    org_id                 TEXT NOT NULL REFERENCES orgs(id),
    id                     TEXT NOT NULL,
    issuer                 TEXT NOT NULL,
    name                   TEXT,
    jwks_uri               TEXT,
    jwks                   TEXT,
    did                    TEXT,
    allowed_scopes         TEXT NOT NULL,
    allowed_audiences      TEXT NOT NULL,
    max_assertion_lifetime INTEGER NOT NULL,
    claim_mapping          TEXT NOT NULL,
    enabled                INTEGER NOT NULL,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, issuer)
);
