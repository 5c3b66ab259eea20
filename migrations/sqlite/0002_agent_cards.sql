-- Agent card metadata set by operators (A2A AgentCard / OASF fields beyond name and description).
CREATE TABLE agent_cards (
    org_id     TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    card       TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, agent_id),
    FOREIGN KEY (org_id, agent_id) REFERENCES agents (org_id, id)
);
