-- Sign-in and the authorization code flow (issue 12): people's sessions, authorization codes,
-- consents and refresh tokens. Times are Unix seconds. Only keyed digests (HMAC-SHA-256 under
-- the master key's digest key) of session cookies, codes and refresh tokens are stored.

CREATE TABLE sessions (
    org_id         TEXT NOT NULL REFERENCES orgs(id),
    id             TEXT NOT NULL,
    digest         BLOB NOT NULL,
    digest_version BIGINT NOT NULL,
    user_id        TEXT NOT NULL,
    -- When the person last proved who they are (OIDC auth_time) and how (amr, a JSON list).
    auth_time      BIGINT NOT NULL,
    amr            TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    -- The absolute end; the idle end is last_seen_at + the policy's idle timeout.
    expires_at     BIGINT NOT NULL,
    ip             TEXT NOT NULL,
    user_agent     TEXT NOT NULL,
    ended_at       BIGINT,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX sessions_user ON sessions (org_id, user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- A code is used once (used_at); the access token and refresh-token family it was redeemed for
-- are written in the same statement, so a second redemption finds what to revoke.
CREATE TABLE authorization_codes (
    org_id         TEXT NOT NULL REFERENCES orgs(id),
    id             TEXT NOT NULL,
    digest         BLOB NOT NULL,
    digest_version BIGINT NOT NULL,
    client_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    session_id     TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    scope          TEXT NOT NULL,
    nonce          TEXT,
    resource       TEXT NOT NULL,
    auth_time      BIGINT NOT NULL,
    amr            TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
    access_jti     TEXT,
    access_exp     BIGINT,
    refresh_family TEXT,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_at);

-- What a person agreed a client may have (scopes, a JSON list).
CREATE TABLE consents (
    org_id     TEXT NOT NULL REFERENCES orgs(id),
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id, client_id)
);

-- Refresh tokens, rotated on every use: a family is one chain from one code. A used (rotated)
-- token presented again revokes its whole family (RFC 9700 §4.14.2).
CREATE TABLE refresh_tokens (
    org_id            TEXT NOT NULL REFERENCES orgs(id),
    id                TEXT NOT NULL,
    family_id         TEXT NOT NULL,
    digest            BLOB NOT NULL,
    digest_version    BIGINT NOT NULL,
    client_id         TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    session_id        TEXT NOT NULL,
    scope             TEXT NOT NULL,
    resource          TEXT NOT NULL,
    auth_time         BIGINT NOT NULL,
    amr               TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    -- The idle end of this token; the family's absolute end.
    expires_at        BIGINT NOT NULL,
    family_expires_at BIGINT NOT NULL,
    -- The access token issued with this one (revoked with the family).
    access_jti        TEXT NOT NULL,
    access_exp        BIGINT NOT NULL,
    used_at           BIGINT,
    revoked_at        BIGINT,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (org_id, family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (org_id, user_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (family_expires_at);
