-- Schema version 8: access control. Sub-accounts, several API keys per account, groups and
-- CAM-syntax policies attached to users and groups.
ALTER TABLE accounts ADD COLUMN remark TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX accounts_by_name ON accounts (name);

ALTER TABLE api_keys ADD COLUMN last_used INTEGER NOT NULL DEFAULT 0;
CREATE INDEX api_keys_by_uin ON api_keys (uin);

CREATE TABLE groups (
    group_id    INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    remark      TEXT NOT NULL,
    create_time INTEGER NOT NULL
) STRICT;

CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES groups(group_id) ON DELETE CASCADE,
    uin      INTEGER NOT NULL REFERENCES accounts(uin) ON DELETE CASCADE,
    PRIMARY KEY (group_id, uin)
) STRICT;

CREATE TABLE policies (
    policy_id   INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    document    TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL
) STRICT;

-- target_kind 'user' names an account uin, 'group' a group id.
CREATE TABLE policy_attachments (
    policy_id   INTEGER NOT NULL REFERENCES policies(policy_id) ON DELETE CASCADE,
    target_kind TEXT NOT NULL CHECK (target_kind IN ('user', 'group')),
    target_id   INTEGER NOT NULL,
    create_time INTEGER NOT NULL,
    PRIMARY KEY (policy_id, target_kind, target_id)
) STRICT;
CREATE INDEX attachments_by_target ON policy_attachments (target_kind, target_id);
