-- Schema version 2: key lifecycle (rotation rate limit, deletion alarms), cloud-resource
-- bindings, and the alarm outbox the webhook deliverer drains.

ALTER TABLE keys ADD COLUMN last_manual_rotate INTEGER NOT NULL DEFAULT 0;
ALTER TABLE keys ADD COLUMN last_alarm_time INTEGER NOT NULL DEFAULT 0;

CREATE TABLE key_bindings (
    key_id      TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
    product_id  TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    PRIMARY KEY (key_id, product_id, resource_id)
) STRICT;

CREATE TABLE alarms (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time        INTEGER NOT NULL,
    region      TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    message     TEXT NOT NULL,
    delivered   INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX alarms_undelivered ON alarms (delivered, id);
