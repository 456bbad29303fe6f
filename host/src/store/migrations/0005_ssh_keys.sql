-- Schema version 5: SSH key pair secrets (SecretType 2) carry their key pair's identity.
ALTER TABLE secrets ADD COLUMN ssh_key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE secrets ADD COLUMN ssh_key_name TEXT NOT NULL DEFAULT '';
ALTER TABLE secrets ADD COLUMN project_id INTEGER NOT NULL DEFAULT 0;
CREATE INDEX secrets_by_ssh_key ON secrets (region, owner_uin, ssh_key_id);
