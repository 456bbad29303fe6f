-- Schema version 10: identifiers of accounts, groups and policies are never reused. SQLite's
-- INTEGER PRIMARY KEY (and the old MAX(uin)+1) hands a deleted row's id to the next insert,
-- so a new user inherited a deleted user's rights through policies naming its uin. Each
-- sequence only grows; allocation takes the larger of it and the table's MAX+1.
CREATE TABLE id_sequences (
    name TEXT PRIMARY KEY,
    next INTEGER NOT NULL
) STRICT;
INSERT INTO id_sequences (name, next) VALUES
    ('uin', (SELECT COALESCE(MAX(uin), 0) + 1 FROM accounts)),
    ('group_id', (SELECT COALESCE(MAX(group_id), 0) + 1 FROM groups)),
    ('policy_id', (SELECT COALESCE(MAX(policy_id), 0) + 1 FROM policies));
