//! SQLite implementation of the store traits: WAL journal, `synchronous=FULL` (fsync on
//! commit), versioned migrations tracked in `PRAGMA user_version`. One file per aggregate,
//! each with one row-mapping function per record.

mod accounts;
mod alarms;
mod audit;
mod data_keys;
mod filter;
mod keys;
mod leases;
mod meta;
mod rotation;
mod secret_cache;
mod secrets;

use crate::error::{Error, Result};
use crate::store::audit::Trail;
use crate::store::StoreCall;
use crate::store::{AuthzSealer, KeyRecord, Tag};
use rusqlite::{params, Connection, Row, TransactionBehavior};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// The SQLite adapter's one conversion of rusqlite's errors: "busy" means another process
/// holds the database (the daemon opens it exclusively); everything else is a store failure.
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                Error::StoreBusy(e.to_string())
            }
            _ => Error::Store(e.to_string()),
        }
    }
}

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_lifecycle.sql"),
    include_str!("../migrations/0003_data_keys.sql"),
    include_str!("../migrations/0004_secrets.sql"),
    include_str!("../migrations/0005_ssh_keys.sql"),
    include_str!("../migrations/0006_public_keys.sql"),
    include_str!("../migrations/0007_byok.sql"),
    include_str!("../migrations/0008_iam.sql"),
    include_str!("../migrations/0009_audit.sql"),
    include_str!("../migrations/0010_id_sequences.sql"),
    include_str!("../migrations/0011_integrity_tags.sql"),
    include_str!("../migrations/0012_rotation.sql"),
];

pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Key records by id. The database is opened with an exclusive lock, so this process is
    /// its only writer and the cache stays coherent: every write below refreshes it after
    /// commit. It takes the store off the Encrypt/Decrypt path entirely.
    keys: RwLock<HashMap<String, KeyRecord>>,
    /// Secrets and versions as last read (`secret_cache.rs`): GetSecretValue without waiting
    /// for the connection.
    secrets: secret_cache::SecretCache,
    /// Audit records committed together with their change (for `/metrics`).
    written_with_changes: AtomicU64,
    /// Seals the authorization tables in every write that changes them.
    authz_sealer: OnceLock<Arc<dyn AuthzSealer>>,
    /// Where call times go (`/metrics`).
    pub(super) timing: crate::store::timing::Timing,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Deleted key material (sealed versions) is overwritten, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        // One daemon per data directory: a second one fails here instead of corrupting the
        // key cache's coherence, and reads skip the per-transaction file locking.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        // Take the exclusive lock now, so a second daemon on this directory fails at start.
        conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            keys: RwLock::new(HashMap::new()),
            secrets: Default::default(),
            written_with_changes: AtomicU64::new(0),
            authz_sealer: OnceLock::new(),
            timing: Default::default(),
        })
    }

    pub(super) fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        self.timing.time(StoreCall::Call, || self.with_untimed(f))
    }

    fn with_untimed<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| Error::Internal("store lock poisoned".into()))?;
        f(&mut conn)
    }

    fn cache_key(&self, key: &KeyRecord) {
        if let Ok(mut m) = self.keys.write() {
            m.insert(key.key_id.clone(), key.clone());
        }
    }

    /// One write transaction, carrying the current request's audit record, returning the
    /// closure's value.
    pub(super) fn audited_write<T>(
        &self,
        trail: &Trail,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            self.commit(tx, trail)?;
            Ok(out)
        })
    }
}

impl SqliteStore {
    /// Writes a consistent copy of the database to `dest` (a new file) with SQLite's online
    /// backup API, through this process's own connection: the daemon holds the file
    /// exclusively, so no other process could read it. Other store calls wait while the pages
    /// are copied (a few milliseconds per megabyte).
    pub fn backup_to(&self, dest: &Path) -> Result<()> {
        if dest.exists() {
            return Err(Error::Config(format!("{} already exists", dest.display())));
        }
        self.with(|conn| {
            conn.backup(rusqlite::DatabaseName::Main, dest, None)?;
            Ok(())
        })?;
        private_and_synced(dest)
    }

    /// Restores a backup made by `backup_to` as the store at `dest`, which must not exist:
    /// the backup must be a sound Keyward store no newer than this build.
    pub fn restore(backup: &Path, dest: &Path) -> Result<()> {
        if dest.exists() {
            return Err(Error::Config(format!(
                "{} already exists: restore needs a data directory without a store",
                dest.display()
            )));
        }
        let src = Connection::open_with_flags(backup, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let check: String = src.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        let version: usize = src.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let has_audit: bool = src.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'audit_log')",
            [],
            |r| r.get(0),
        )?;
        if check != "ok" || version == 0 || version > MIGRATIONS.len() || !has_audit {
            return Err(Error::Config(format!(
                "{} is not a Keyward store this build can restore (integrity: {check}, \
                 schema version {version})",
                backup.display()
            )));
        }
        src.backup(rusqlite::DatabaseName::Main, dest, None)?;
        private_and_synced(dest)
    }
}

/// A store file only its owner may read, flushed to disk.
fn private_and_synced(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::File::open(path)?.sync_all()?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > MIGRATIONS.len() {
        return Err(Error::Config(format!(
            "the store has schema version {current}, newer than this build ({}) understands",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    Ok(())
}

/// Rows of `table` whose `column` equals `value` (background jobs scan by state).
pub(super) fn rows_with<T>(
    conn: &Connection,
    table: &str,
    columns: &str,
    column: &str,
    value: &str,
    row: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let sql = format!("SELECT {columns} FROM {table} WHERE {column} = ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map([value], row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// How many rows of `table` belong to one account in one region.
pub(super) fn count_owned(
    conn: &Connection,
    table: &str,
    region: &str,
    owner_uin: u64,
) -> Result<u64> {
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE region = ?1 AND owner_uin = ?2");
    let n: i64 = conn.query_row(&sql, params![region, owner_uin as i64], |r| r.get(0))?;
    Ok(n as u64)
}

/// A column whose stored text does not parse (a damaged or foreign database).
pub(super) fn bad(i: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Text,
        format!("bad {what}").into(),
    )
}

/// The `tags` JSON column at index `i`.
pub(super) fn tags_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Vec<Tag>> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text).map_err(|_| bad(i, "tags"))
}

pub(super) fn tags_json(tags: &[Tag]) -> Result<String> {
    serde_json::to_string(tags).map_err(|e| Error::Internal(e.to_string()))
}

/// A primary-key or unique violation (SQLite reports primary keys of rowid tables and of
/// other tables with different extended codes).
pub(super) fn is_constraint(e: &rusqlite::Error) -> bool {
    is_unique_violation(e)
        || matches!(e, rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

pub(super) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation
            && f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// Escapes LIKE wildcards so a search for `a_b` matches only that text.
pub(super) fn like_pattern(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{self, key};
    use crate::store::KeyStore;

    fn fresh() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("k.db")).unwrap();
        (dir, s)
    }

    #[test]
    fn alias_unique_quota_and_failed_update_leaves_record() {
        conformance::alias_unique_quota_and_failed_update_leaves_record(&fresh().1);
    }

    #[test]
    fn product_secrets_claims_and_flows() {
        conformance::product_secrets_claims_and_flows(&fresh().1);
    }

    #[test]
    fn query_filters_and_pages() {
        conformance::query_filters_and_pages(&fresh().1);
    }

    #[test]
    fn secret_reads_follow_every_write() {
        conformance::secret_reads_follow_every_write(&fresh().1);
    }

    #[test]
    fn reopen_keeps_data_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.db");
        SqliteStore::open(&p)
            .unwrap()
            .insert_key(&Trail::off(), &key("a", "x", 1), None, 10)
            .unwrap();
        let s = SqliteStore::open(&p).unwrap();
        assert!(s.get_key("r", 1, "a").unwrap().is_some());
    }
}
