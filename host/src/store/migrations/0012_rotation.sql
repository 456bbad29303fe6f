-- Schema version 12: product secrets (credentials Keyward rotates on a database or for a
-- sub-account, docs/rotation.md) and asynchronous requests (FlowID).

CREATE TABLE product_secrets (
    region           TEXT NOT NULL,
    owner_uin        INTEGER NOT NULL,
    secret_name      TEXT NOT NULL,
    product          TEXT NOT NULL,
    instance_id      TEXT NOT NULL,
    user_prefix      TEXT NOT NULL,
    domains          TEXT NOT NULL,
    privileges       TEXT NOT NULL,
    rotation_enabled INTEGER NOT NULL,
    frequency_days   INTEGER NOT NULL,
    next_rotation    INTEGER NOT NULL,
    last_rotation    INTEGER NOT NULL,
    retire_account   TEXT NOT NULL DEFAULT '',
    retire_at        INTEGER NOT NULL DEFAULT 0,
    failures         INTEGER NOT NULL DEFAULT 0,
    retry_at         INTEGER NOT NULL DEFAULT 0,
    -- One rotation at a time: the term of whoever changes the credentials now.
    busy_until       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (region, owner_uin, secret_name),
    FOREIGN KEY (region, owner_uin, secret_name)
        REFERENCES secrets (region, owner_uin, secret_name) ON DELETE CASCADE
) STRICT;

CREATE TABLE async_requests (
    flow_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    region      TEXT NOT NULL,
    owner_uin   INTEGER NOT NULL,
    secret_name TEXT NOT NULL,
    action      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    description TEXT NOT NULL,
    create_time INTEGER NOT NULL
) STRICT;
