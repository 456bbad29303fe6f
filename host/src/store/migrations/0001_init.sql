-- Keyward store, schema version 1.
-- Nothing secret is stored in plaintext: key material is sealed by the HSM backend and API
-- secret keys are encrypted under a system key that lives sealed as well.

CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

CREATE TABLE accounts (
    uin         INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('root', 'sub')),
    create_time INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    secret_id     TEXT PRIMARY KEY,
    uin           INTEGER NOT NULL REFERENCES accounts(uin),
    sealed_secret BLOB NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('Enabled', 'Disabled')),
    create_time   INTEGER NOT NULL
) STRICT;

CREATE TABLE keys (
    key_id           TEXT PRIMARY KEY,
    region           TEXT NOT NULL,
    owner_uin        INTEGER NOT NULL,
    creator_uin      INTEGER NOT NULL,
    alias            TEXT NOT NULL,
    description      TEXT NOT NULL,
    key_usage        TEXT NOT NULL,
    origin           TEXT NOT NULL,
    owner            TEXT NOT NULL,
    algorithm        INTEGER NOT NULL,
    state            TEXT NOT NULL,
    create_time      INTEGER NOT NULL,
    deletion_date    INTEGER NOT NULL DEFAULT 0,
    rotation_enabled INTEGER NOT NULL DEFAULT 0,
    rotate_days      INTEGER NOT NULL DEFAULT 0,
    next_rotate_time INTEGER NOT NULL DEFAULT 0,
    last_rotate_time INTEGER NOT NULL DEFAULT 0,
    current_version  INTEGER NOT NULL,
    tags             TEXT NOT NULL DEFAULT '[]',
    UNIQUE (region, owner_uin, alias)
) STRICT;

CREATE INDEX keys_by_owner ON keys (region, owner_uin, create_time);

CREATE TABLE key_versions (
    key_id      TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    backend     TEXT NOT NULL,
    sealed      BLOB NOT NULL,
    create_time INTEGER NOT NULL,
    PRIMARY KEY (key_id, version)
) STRICT;
