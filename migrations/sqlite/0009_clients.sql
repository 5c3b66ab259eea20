-- Clients of the authorization code flow (issue 12): an organization's OAuth clients are its
-- agents (kind 'agent', with a DID) and its people-facing apps (kind 'app': web, native and
-- browser apps, MCP clients; no DID). Both are rows of `agents`, so one authentication path, one
-- cache and one revocation path serve them. The lists are JSON arrays of strings (RFC 7591 §2
-- client metadata): the exact redirect URIs, the RP-Initiated Logout redirect URIs and the grant
-- types the client may use ('[]' on an agent: the agent grants, client credentials and the
-- exchanges).

ALTER TABLE agents ADD COLUMN kind TEXT NOT NULL DEFAULT 'agent';
ALTER TABLE agents ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '[]';
ALTER TABLE agents ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]';
ALTER TABLE agents ADD COLUMN grant_types TEXT NOT NULL DEFAULT '[]';
