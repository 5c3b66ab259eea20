-- Row-level security: defence in depth for the organization scope every query already has.
--
-- The application's queries run as the role agentidp_app (no BYPASSRLS, not the tables'
-- owner); every pooled connection does SET ROLE agentidp_app on connect, while migrations (and
-- the leader lock) run on a direct connection as the connecting user. FORCE ROW LEVEL SECURITY
-- subjects the owner to the policies too (a superuser is never subject to them, which is why
-- the application does not run as one).
--
-- Every tenant table (every table with an org_id column, and orgs keyed on id) admits a row to
-- a statement, for reading and for writing, under one of two per-transaction settings
-- (set_config(..., true), so nothing outlives the transaction that set it):
--   agentidp.org_id = '<the organization id>'  one organization's rows: every store method on
--                                               one organization's data;
--   agentidp.scope = 'platform'                 every organization's rows: only the statements
--                                               that are platform-wide by nature (an
--                                               organization by its slug, listing organizations,
--                                               all_ids, re-basing every issuer, the outbox
--                                               relay, the revocations in force, purges).
-- A statement in neither sees no row of any organization and can write none. Events without an
-- organization (platform events) are visible in platform scope only.
--
-- A table added later with an org_id column needs the same: ENABLE, FORCE and the two policies
-- (the storage test `every_tenant_table_has_row_level_security` fails otherwise).

-- The role is cluster-wide: created when missing (agentidp normally creates it at start-up,
-- before this runs); another database of the cluster may create it at the same moment.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'agentidp_app') THEN
        BEGIN
            CREATE ROLE agentidp_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;

-- What the application may do: read and write the tables of this schema (and the ones later
-- migrations create), never the migration history.
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO agentidp_app', current_schema());
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO agentidp_app', current_schema());
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO agentidp_app', current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO agentidp_app', current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO agentidp_app', current_schema());
END
$$;
REVOKE ALL ON _sqlx_migrations FROM agentidp_app;

ALTER TABLE orgs ENABLE ROW LEVEL SECURITY;
ALTER TABLE orgs FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON orgs
    USING (id = current_setting('agentidp.org_id', true))
    WITH CHECK (id = current_setting('agentidp.org_id', true));
CREATE POLICY platform_scope ON orgs
    USING (current_setting('agentidp.scope', true) = 'platform')
    WITH CHECK (current_setting('agentidp.scope', true) = 'platform');

ALTER TABLE signing_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE signing_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON signing_keys
    USING (org_id = current_setting('agentidp.org_id', true))
    WITH CHECK (org_id = current_setting('agentidp.org_id', true));
CREATE POLICY platform_scope ON signing_keys
    USING (current_setting('agentidp.scope', true) = 'platform')
    WITH CHECK (current_setting('agentidp.scope', true) = 'platform');

ALTER TABLE agents ENABLE ROW LEVEL SECURITY;
ALTER TABLE agents FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON agents
    USING (org_id = current_setting('agentidp.org_id', true))
    WITH CHECK (org_id = current_setting('agentidp.org_id', true));
CREATE POLICY platform_scope ON agents
    USING (current_setting('agentidp.scope', true) = 'platform')
    WITH CHECK (current_setting('agentidp.scope', true) = 'platform');

ALTER TABLE agent_cards ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_cards FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON agent_cards
    USING (org_id = current_setting('agentidp.org_id', true))
    WITH CHECK (org_id = current_setting('agentidp.org_id', true));
CREATE POLICY platform_scope ON agent_cards
    USING (current_setting('agentidp.scope', true) = 'platform')
    WITH CHECK (current_setting('agentidp.scope', true) = 'platform');

ALTER TABLE partners ENABLE ROW LEVEL SECURITY;
ALTER TABLE partners FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON partners
    USING (org_id = current_setting('agentidp.org_id', true))
    WITH CHECK (org_id = current_setting('agentidp.org_id', true));
CREATE POLICY platform_scope ON partners
    USING (current_setting('agentidp.scope', true) = 'platform')
    WITH CHECK (current_setting('agentidp.scope', true) = 'platform');

ALTER TABLE revoked_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE revoked_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON revoked_tokens
    USING (org_id = current_setting('agentidp.org_id', true))
    WITH CHECK (org_id = current_setting('agentidp.org_id', true));
CREATE POLICY platform_scope ON revoked_tokens
    USING (current_setting('agentidp.scope', true) = 'platform')
    WITH CHECK (current_setting('agentidp.scope', true) = 'platform');

ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON events
    USING (org_id = current_setting('agentidp.org_id', true))
    WITH CHECK (org_id = current_setting('agentidp.org_id', true));
CREATE POLICY platform_scope ON events
    USING (current_setting('agentidp.scope', true) = 'platform')
    WITH CHECK (current_setting('agentidp.scope', true) = 'platform');

-- 0005: organization API keys (admin_tokens are the platform's: no org_id, no policy).
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON api_keys
    USING (org_id = current_setting('agentidp.org_id', true))
    WITH CHECK (org_id = current_setting('agentidp.org_id', true));
CREATE POLICY platform_scope ON api_keys
    USING (current_setting('agentidp.scope', true) = 'platform')
    WITH CHECK (current_setting('agentidp.scope', true) = 'platform');

-- 0006: organization policies.
ALTER TABLE org_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE org_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON org_policies
    USING (org_id = current_setting('agentidp.org_id', true))
    WITH CHECK (org_id = current_setting('agentidp.org_id', true));
CREATE POLICY platform_scope ON org_policies
    USING (current_setting('agentidp.scope', true) = 'platform')
    WITH CHECK (current_setting('agentidp.scope', true) = 'platform');
