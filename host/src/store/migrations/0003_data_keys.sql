-- Schema version 3: hosted data keys. The key itself is stored only as a ciphertext blob
-- under its CMK (the same blob format Encrypt returns, empty encryption context).

CREATE TABLE data_keys (
    data_key_id     TEXT PRIMARY KEY,
    region          TEXT NOT NULL,
    owner_uin       INTEGER NOT NULL,
    creator_uin     INTEGER NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    origin          TEXT NOT NULL,
    owner           TEXT NOT NULL,
    state           TEXT NOT NULL,
    number_of_bytes INTEGER NOT NULL,
    create_time     INTEGER NOT NULL,
    deletion_date   INTEGER NOT NULL DEFAULT 0,
    blob            BLOB NOT NULL,
    tags            TEXT NOT NULL DEFAULT '[]',
    UNIQUE (region, owner_uin, name)
) STRICT;

CREATE INDEX data_keys_by_owner ON data_keys (region, owner_uin, create_time);
