-- Keyward store on PostgreSQL, schema version 1: the SQLite schema as of its version 11
-- (host/src/store/migrations/0001..0011), in one step. Same tables, columns, keys, foreign
-- keys and checks; PostgreSQL types: BIGINT for integers, BOOLEAN for flags, BYTEA for
-- blobs, TEXT for text (tags and audit resources stay JSON text, as in SQLite).
-- `rid` columns stand in for SQLite's rowid where listings break ties in insertion order.
-- Nothing secret is stored in plaintext: key material is sealed by the HSM backend and API
-- secret keys are encrypted under a system key that lives sealed as well.

CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE accounts (
    uin         BIGINT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL CHECK (kind IN ('root', 'sub')),
    create_time BIGINT NOT NULL,
    remark      TEXT NOT NULL DEFAULT ''
);

CREATE TABLE api_keys (
    secret_id     TEXT PRIMARY KEY,
    uin           BIGINT NOT NULL REFERENCES accounts(uin),
    sealed_secret BYTEA NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('Enabled', 'Disabled')),
    create_time   BIGINT NOT NULL,
    last_used     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_by_uin ON api_keys (uin);

CREATE TABLE keys (
    key_id             TEXT PRIMARY KEY,
    rid                BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    region             TEXT NOT NULL,
    owner_uin          BIGINT NOT NULL,
    creator_uin        BIGINT NOT NULL,
    alias              TEXT NOT NULL,
    description        TEXT NOT NULL,
    key_usage          TEXT NOT NULL,
    origin             TEXT NOT NULL,
    owner              TEXT NOT NULL,
    algorithm          BIGINT NOT NULL,
    state              TEXT NOT NULL,
    create_time        BIGINT NOT NULL,
    deletion_date      BIGINT NOT NULL DEFAULT 0,
    rotation_enabled   BOOLEAN NOT NULL DEFAULT FALSE,
    rotate_days        BIGINT NOT NULL DEFAULT 0,
    next_rotate_time   BIGINT NOT NULL DEFAULT 0,
    last_rotate_time   BIGINT NOT NULL DEFAULT 0,
    current_version    BIGINT NOT NULL,
    tags               TEXT NOT NULL DEFAULT '[]',
    last_manual_rotate BIGINT NOT NULL DEFAULT 0,
    last_alarm_time    BIGINT NOT NULL DEFAULT 0,
    valid_to           BIGINT NOT NULL DEFAULT 0,
    material_kcv       BYTEA NOT NULL DEFAULT '\x',
    UNIQUE (region, owner_uin, alias)
);
CREATE INDEX keys_by_owner ON keys (region, owner_uin, create_time);
CREATE INDEX keys_by_state ON keys (state);

CREATE TABLE key_versions (
    key_id      TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    backend     TEXT NOT NULL,
    sealed      BYTEA NOT NULL,
    create_time BIGINT NOT NULL,
    public_key  BYTEA NOT NULL DEFAULT '\x',
    tag         BYTEA NOT NULL DEFAULT '\x',
    PRIMARY KEY (key_id, version)
);

CREATE TABLE key_bindings (
    key_id      TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
    product_id  TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (key_id, product_id, resource_id)
);

CREATE TABLE import_params (
    token              TEXT PRIMARY KEY,
    key_id             TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
    wrapping_algorithm TEXT NOT NULL,
    sealed_private     BYTEA NOT NULL,
    public_key         BYTEA NOT NULL,
    valid_to           BIGINT NOT NULL,
    tag                BYTEA NOT NULL DEFAULT '\x'
);

-- Identity columns never hand out a number twice, like SQLite's AUTOINCREMENT.
CREATE TABLE alarms (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time      BIGINT NOT NULL,
    region    TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    kind      TEXT NOT NULL,
    message   TEXT NOT NULL,
    delivered BOOLEAN NOT NULL DEFAULT FALSE,
    attempts  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX alarms_undelivered ON alarms (delivered, id);

CREATE TABLE data_keys (
    data_key_id     TEXT PRIMARY KEY,
    rid             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    region          TEXT NOT NULL,
    owner_uin       BIGINT NOT NULL,
    creator_uin     BIGINT NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    origin          TEXT NOT NULL,
    owner           TEXT NOT NULL,
    state           TEXT NOT NULL,
    number_of_bytes BIGINT NOT NULL,
    create_time     BIGINT NOT NULL,
    deletion_date   BIGINT NOT NULL DEFAULT 0,
    blob            BYTEA NOT NULL,
    tags            TEXT NOT NULL DEFAULT '[]',
    UNIQUE (region, owner_uin, name)
);
CREATE INDEX data_keys_by_owner ON data_keys (region, owner_uin, create_time);

CREATE TABLE secrets (
    region       TEXT NOT NULL,
    owner_uin    BIGINT NOT NULL,
    secret_name  TEXT NOT NULL,
    rid          BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    create_uin   BIGINT NOT NULL,
    description  TEXT NOT NULL,
    kms_key_id   TEXT NOT NULL,
    kms_key_type TEXT NOT NULL CHECK (kms_key_type IN ('DEFAULT', 'CUSTOMER')),
    status       TEXT NOT NULL,
    secret_type  BIGINT NOT NULL,
    create_time  BIGINT NOT NULL,
    delete_time  BIGINT NOT NULL DEFAULT 0,
    tags         TEXT NOT NULL DEFAULT '[]',
    ssh_key_id   TEXT NOT NULL DEFAULT '',
    ssh_key_name TEXT NOT NULL DEFAULT '',
    project_id   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (region, owner_uin, secret_name)
);
CREATE INDEX secrets_by_time ON secrets (region, owner_uin, create_time);
CREATE INDEX secrets_by_ssh_key ON secrets (region, owner_uin, ssh_key_id);

CREATE TABLE secret_versions (
    region      TEXT NOT NULL,
    owner_uin   BIGINT NOT NULL,
    secret_name TEXT NOT NULL,
    version_id  TEXT NOT NULL,
    rid         BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    create_time BIGINT NOT NULL,
    is_binary   BOOLEAN NOT NULL,
    key_blob    BYTEA NOT NULL,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    PRIMARY KEY (region, owner_uin, secret_name, version_id),
    FOREIGN KEY (region, owner_uin, secret_name)
        REFERENCES secrets (region, owner_uin, secret_name) ON DELETE CASCADE
);

CREATE TABLE groups (
    group_id    BIGINT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    remark      TEXT NOT NULL,
    create_time BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id BIGINT NOT NULL REFERENCES groups(group_id) ON DELETE CASCADE,
    uin      BIGINT NOT NULL REFERENCES accounts(uin) ON DELETE CASCADE,
    PRIMARY KEY (group_id, uin)
);

CREATE TABLE policies (
    policy_id   BIGINT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    document    TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);

-- target_kind 'user' names an account uin, 'group' a group id.
CREATE TABLE policy_attachments (
    policy_id   BIGINT NOT NULL REFERENCES policies(policy_id) ON DELETE CASCADE,
    target_kind TEXT NOT NULL CHECK (target_kind IN ('user', 'group')),
    target_id   BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (policy_id, target_kind, target_id)
);
CREATE INDEX attachments_by_target ON policy_attachments (target_kind, target_id);

-- The audit log: one row per API request, hash-chained (docs/audit.md). Appenders are
-- serialised by a transaction-scoped advisory lock (store/pg/audit.rs).
CREATE TABLE audit_log (
    seq           BIGINT PRIMARY KEY,
    event_id      TEXT NOT NULL,
    event_time    BIGINT NOT NULL,
    region        TEXT NOT NULL,
    service       TEXT NOT NULL,
    action        TEXT NOT NULL,
    read_only     BOOLEAN NOT NULL,
    owner_uin     BIGINT NOT NULL,
    uin           BIGINT NOT NULL,
    username      TEXT NOT NULL,
    secret_id     TEXT NOT NULL,
    source_ip     TEXT NOT NULL,
    user_agent    TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resources     TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    result_code   TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    key_version   BIGINT NOT NULL,
    prev_hash     BYTEA NOT NULL,
    hash          BYTEA NOT NULL
);
CREATE INDEX audit_by_time ON audit_log (event_time);

CREATE TABLE audit_checkpoints (
    seq         BIGINT PRIMARY KEY,
    hash        BYTEA NOT NULL,
    create_time BIGINT NOT NULL,
    signature   BYTEA NOT NULL
);

-- Identifiers of accounts, groups and policies are never reused (SQLite schema 10).
CREATE TABLE id_sequences (
    name TEXT PRIMARY KEY,
    next BIGINT NOT NULL
);
INSERT INTO id_sequences (name, next) VALUES ('uin', 1), ('group_id', 1), ('policy_id', 1);
