-- Schema version 2: several daemons on one database (docs/postgres.md, "Several daemons").

-- The leases of leader-run work. One row per lease; `token` grows by one whenever the
-- holder changes, and every write of the leased work checks it in its own transaction
-- (fencing): a daemon that lost the lease cannot commit that work's writes.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- Cache invalidation. Each daemon keeps a few caches (key versions, API credentials, parsed
-- policies) and LISTENs on `keyward_changes`; these triggers announce every change to what
-- those caches hold, whoever makes it (another daemon, a restore, an operator with psql).
-- A NOTIFY is delivered when its transaction commits, and only then.
CREATE FUNCTION keyward_notify_key_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keyward_changes', 'key:' || OLD.key_id);
    RETURN NULL;
END $$;

-- Versions are immutable once written: updates and deletions (BYOK material deleted or
-- expired, a key deleted) are what a cache can miss. Inserts are new versions, which no
-- cache holds yet.
CREATE TRIGGER key_versions_changed AFTER UPDATE OR DELETE ON key_versions
    FOR EACH ROW EXECUTE FUNCTION keyward_notify_key_versions();

-- The topic is the trigger's argument.
CREATE FUNCTION keyward_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keyward_changes', TG_ARGV[0]);
    RETURN NULL;
END $$;

-- API keys: a status, secret or owner change, or a deletion (also by cascade). The periodic
-- `last_used` updates change nothing a cache holds, so they stay silent.
CREATE TRIGGER api_keys_changed AFTER UPDATE ON api_keys FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.sealed_secret IS DISTINCT FROM NEW.sealed_secret
          OR OLD.uin IS DISTINCT FROM NEW.uin)
    EXECUTE FUNCTION keyward_notify('credentials');
CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION keyward_notify('credentials');
-- Credentials carry their account's name (the audit log's Username).
CREATE TRIGGER accounts_changed AFTER UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION keyward_notify('credentials');

-- Every change to users, groups, policies or attachments re-seals the authorization state
-- in the same transaction: its seal changing is the one signal for all of them.
CREATE FUNCTION keyward_notify_authz() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (CASE TG_OP WHEN 'DELETE' THEN OLD.name ELSE NEW.name END) = 'authz_seal' THEN
        PERFORM pg_notify('keyward_changes', 'authorization');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER authz_seal_changed AFTER INSERT OR UPDATE OR DELETE ON meta
    FOR EACH ROW EXECUTE FUNCTION keyward_notify_authz();
