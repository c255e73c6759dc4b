-- The workspace: accounts and rights, items with immutable versions, configuration.
-- Secrets (variable values, webhook HMAC secrets) are stored only as Vault blobs.

CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'developer', 'operator', 'viewer')),
    email         TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL
);

CREATE TABLE groups (
    name       TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);

CREATE TABLE group_members (
    group_name TEXT NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
    user_name  TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    PRIMARY KEY (group_name, user_name)
);

CREATE TABLE folders (
    name       TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);

CREATE TABLE folder_rights (
    folder    TEXT NOT NULL REFERENCES folders (name) ON DELETE CASCADE,
    principal TEXT NOT NULL,
    "right"   TEXT NOT NULL CHECK ("right" IN ('owner', 'writer', 'viewer')),
    PRIMARY KEY (folder, principal)
);

-- Only the sha256 hex of a token's plaintext is kept.
CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    hash         TEXT NOT NULL UNIQUE,
    owner        TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    label        TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    created_at   REAL NOT NULL,
    expires_at   REAL,
    revoked      INTEGER NOT NULL DEFAULT 0,
    last_used_at REAL
);
CREATE INDEX tokens_owner ON tokens (owner);

CREATE TABLE sessions (
    hash       TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_name);

CREATE TABLE versions (
    kind       TEXT NOT NULL CHECK (kind IN ('script', 'flow')),
    path       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    hash       TEXT NOT NULL,
    content    TEXT NOT NULL,
    language   TEXT NOT NULL,
    summary    TEXT NOT NULL,
    author     TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (kind, path, version)
);

CREATE TABLE drafts (
    kind       TEXT NOT NULL CHECK (kind IN ('script', 'flow')),
    path       TEXT NOT NULL,
    content    TEXT NOT NULL,
    language   TEXT NOT NULL,
    author     TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (kind, path)
);

-- A plain variable keeps `value`; a secret keeps only `blob` (Vault ciphertext, AAD = path).
CREATE TABLE variables (
    path        TEXT PRIMARY KEY,
    secret      INTEGER NOT NULL,
    value       TEXT,
    blob        BLOB,
    description TEXT NOT NULL,
    updated_at  REAL NOT NULL,
    CHECK ((secret = 1 AND value IS NULL AND blob IS NOT NULL)
        OR (secret = 0 AND value IS NOT NULL AND blob IS NULL))
);

CREATE TABLE resource_types (
    name        TEXT PRIMARY KEY,
    schema      TEXT NOT NULL,
    description TEXT NOT NULL
);

CREATE TABLE resources (
    path          TEXT PRIMARY KEY,
    resource_type TEXT NOT NULL REFERENCES resource_types (name),
    value         TEXT NOT NULL,
    description   TEXT NOT NULL,
    updated_at    REAL NOT NULL
);

CREATE TABLE schedules (
    path         TEXT PRIMARY KEY,
    cron         TEXT NOT NULL,
    timezone     TEXT NOT NULL,
    target_kind  TEXT NOT NULL CHECK (target_kind IN ('script', 'flow')),
    target_path  TEXT NOT NULL,
    args         TEXT NOT NULL,
    enabled      INTEGER NOT NULL,
    no_overlap   INTEGER NOT NULL,
    catch_up     TEXT NOT NULL CHECK (catch_up IN ('all', 'latest', 'none')),
    on_failure   TEXT,
    on_recovery  TEXT,
    last_fire_at REAL,
    updated_at   REAL NOT NULL
);

-- The HMAC secret is a Vault blob (AAD = 'webhook:<kind>:<path>').
CREATE TABLE webhook_signing (
    kind        TEXT NOT NULL CHECK (kind IN ('script', 'flow')),
    path        TEXT NOT NULL,
    blob        BLOB NOT NULL,
    tolerance_s INTEGER NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (kind, path)
);

CREATE TABLE audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     REAL NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_actor ON audit (actor, id);
CREATE INDEX audit_action ON audit (action, id);
