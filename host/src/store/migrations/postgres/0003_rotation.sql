-- Schema version 3: product secrets (credentials Keyward rotates on a database or for a
-- sub-account, docs/rotation.md) and asynchronous requests (FlowID).

CREATE TABLE product_secrets (
    region           TEXT NOT NULL,
    owner_uin        BIGINT NOT NULL,
    secret_name      TEXT NOT NULL,
    product          TEXT NOT NULL,
    instance_id      TEXT NOT NULL,
    user_prefix      TEXT NOT NULL,
    domains          TEXT NOT NULL,
    privileges       TEXT NOT NULL,
    rotation_enabled BOOLEAN NOT NULL,
    frequency_days   BIGINT NOT NULL,
    next_rotation    BIGINT NOT NULL,
    last_rotation    BIGINT NOT NULL,
    retire_account   TEXT NOT NULL DEFAULT '',
    retire_at        BIGINT NOT NULL DEFAULT 0,
    failures         BIGINT NOT NULL DEFAULT 0,
    retry_at         BIGINT NOT NULL DEFAULT 0,
    -- One rotation at a time: the term of whoever changes the credentials now.
    busy_until       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (region, owner_uin, secret_name),
    FOREIGN KEY (region, owner_uin, secret_name)
        REFERENCES secrets (region, owner_uin, secret_name) ON DELETE CASCADE
);

CREATE TABLE async_requests (
    flow_id     BIGSERIAL PRIMARY KEY,
    region      TEXT NOT NULL,
    owner_uin   BIGINT NOT NULL,
    secret_name TEXT NOT NULL,
    action      TEXT NOT NULL,
    status      BIGINT NOT NULL,
    description TEXT NOT NULL,
    create_time BIGINT NOT NULL
);
