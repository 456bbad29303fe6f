-- Schema version 4: Secrets Manager. Each version's value is envelope-encrypted: a fresh data
-- key from KMS (stored only as its CMK ciphertext blob) encrypts the value; both are bound to
-- the region, secret name and version id.

CREATE TABLE secrets (
    region       TEXT NOT NULL,
    owner_uin    INTEGER NOT NULL,
    secret_name  TEXT NOT NULL,
    create_uin   INTEGER NOT NULL,
    description  TEXT NOT NULL,
    kms_key_id   TEXT NOT NULL,
    kms_key_type TEXT NOT NULL CHECK (kms_key_type IN ('DEFAULT', 'CUSTOMER')),
    status       TEXT NOT NULL,
    secret_type  INTEGER NOT NULL,
    create_time  INTEGER NOT NULL,
    delete_time  INTEGER NOT NULL DEFAULT 0,
    tags         TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (region, owner_uin, secret_name)
) STRICT;

CREATE INDEX secrets_by_time ON secrets (region, owner_uin, create_time);

CREATE TABLE secret_versions (
    region      TEXT NOT NULL,
    owner_uin   INTEGER NOT NULL,
    secret_name TEXT NOT NULL,
    version_id  TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    is_binary   INTEGER NOT NULL,
    key_blob    BLOB NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    PRIMARY KEY (region, owner_uin, secret_name, version_id),
    FOREIGN KEY (region, owner_uin, secret_name)
        REFERENCES secrets (region, owner_uin, secret_name) ON DELETE CASCADE
) STRICT;
