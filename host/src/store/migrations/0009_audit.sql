-- Schema version 9: the audit log. One row per API request, chained: `hash` is
-- SHA-256(prev_hash || canonical JSON of the row's fields), so editing, deleting or reordering
-- rows breaks the chain at that row. Checkpoints sign (seq, hash) with a key held in the HSM.
CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY,
    event_id     TEXT NOT NULL,
    event_time   INTEGER NOT NULL,
    region       TEXT NOT NULL,
    service      TEXT NOT NULL,
    action       TEXT NOT NULL,
    read_only    INTEGER NOT NULL,
    owner_uin    INTEGER NOT NULL,
    uin          INTEGER NOT NULL,
    username     TEXT NOT NULL,
    secret_id    TEXT NOT NULL,
    source_ip    TEXT NOT NULL,
    user_agent   TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resources    TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    result_code  TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    key_version  INTEGER NOT NULL,
    prev_hash    BLOB NOT NULL,
    hash         BLOB NOT NULL
) STRICT;
CREATE INDEX audit_by_time ON audit_log (event_time);

CREATE TABLE audit_checkpoints (
    seq         INTEGER PRIMARY KEY,
    hash        BLOB NOT NULL,
    create_time INTEGER NOT NULL,
    signature   BLOB NOT NULL
) STRICT;
