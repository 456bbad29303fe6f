//! SQLite implementation of `Store`: WAL journal, `synchronous=FULL` (fsync on commit),
//! versioned migrations tracked in `PRAGMA user_version`.

use super::*;
use crate::error::Error;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, RwLock};

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
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_lifecycle.sql"),
    include_str!("migrations/0003_data_keys.sql"),
    include_str!("migrations/0004_secrets.sql"),
    include_str!("migrations/0005_ssh_keys.sql"),
    include_str!("migrations/0006_public_keys.sql"),
    include_str!("migrations/0007_byok.sql"),
    include_str!("migrations/0008_iam.sql"),
    include_str!("migrations/0009_audit.sql"),
];

pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Key records by id. The database is opened with an exclusive lock, so this process is
    /// its only writer and the cache stays coherent: every write below refreshes it after
    /// commit. It takes the store off the Encrypt/Decrypt path entirely.
    keys: RwLock<HashMap<String, KeyRecord>>,
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
        })
    }

    pub(super) fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| Error::Internal("store lock poisoned".into()))?;
        f(&mut conn)
    }

    fn alarms_query(&self, sql: &str, arg: rusqlite::types::Value) -> Result<Vec<Alarm>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt
                .query_map([arg], |r| {
                    Ok(Alarm {
                        id: r.get(0)?,
                        time: r.get(1)?,
                        region: r.get(2)?,
                        key_id: r.get(3)?,
                        kind: r.get(4)?,
                        message: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn cache_key(&self, key: &KeyRecord) {
        if let Ok(mut m) = self.keys.write() {
            m.insert(key.key_id.clone(), key.clone());
        }
    }
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
fn rows_with<T>(
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
fn count_owned(conn: &Connection, table: &str, region: &str, owner_uin: u64) -> Result<u64> {
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE region = ?1 AND owner_uin = ?2");
    let n: i64 = conn.query_row(&sql, params![region, owner_uin as i64], |r| r.get(0))?;
    Ok(n as u64)
}

/// A column whose stored text does not parse (a damaged or foreign database).
fn bad(i: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Text,
        format!("bad {what}").into(),
    )
}

/// The `tags` JSON column at index `i`.
fn tags_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Vec<Tag>> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text).map_err(|_| bad(i, "tags"))
}

const KEY_COLUMNS: &str = "key_id, region, owner_uin, creator_uin, alias, description, key_usage, \
    origin, owner, algorithm, state, create_time, deletion_date, rotation_enabled, rotate_days, \
    next_rotate_time, last_rotate_time, current_version, tags, last_manual_rotate, \
    last_alarm_time, valid_to, material_kcv";

fn key_from_row(r: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    let alg: u8 = r.get(9)?;
    let state: String = r.get(10)?;
    Ok(KeyRecord {
        key_id: r.get(0)?,
        region: r.get(1)?,
        owner_uin: r.get::<_, i64>(2)? as u64,
        creator_uin: r.get::<_, i64>(3)? as u64,
        alias: r.get(4)?,
        description: r.get(5)?,
        key_usage: r.get(6)?,
        origin: r.get(7)?,
        owner: r.get(8)?,
        algorithm: Algorithm::from_u8(alg).ok_or_else(|| bad(9, "algorithm"))?,
        state: KeyState::parse(&state).ok_or_else(|| bad(10, "state"))?,
        create_time: r.get(11)?,
        deletion_date: r.get(12)?,
        rotation_enabled: r.get(13)?,
        rotate_days: r.get(14)?,
        next_rotate_time: r.get(15)?,
        last_rotate_time: r.get(16)?,
        current_version: r.get(17)?,
        tags: tags_at(r, 18)?,
        last_manual_rotate: r.get(19)?,
        last_alarm_time: r.get(20)?,
        valid_to: r.get(21)?,
        material_kcv: r.get(22)?,
    })
}

const DATA_KEY_COLUMNS: &str = "data_key_id, region, owner_uin, creator_uin, name, description, \
    key_id, origin, owner, state, number_of_bytes, create_time, deletion_date, blob, tags";

fn data_key_from_row(r: &Row<'_>) -> rusqlite::Result<DataKeyRecord> {
    let state: String = r.get(9)?;
    Ok(DataKeyRecord {
        data_key_id: r.get(0)?,
        region: r.get(1)?,
        owner_uin: r.get::<_, i64>(2)? as u64,
        creator_uin: r.get::<_, i64>(3)? as u64,
        name: r.get(4)?,
        description: r.get(5)?,
        key_id: r.get(6)?,
        origin: r.get(7)?,
        owner: r.get(8)?,
        state: KeyState::parse(&state).ok_or_else(|| bad(9, "state"))?,
        number_of_bytes: r.get(10)?,
        create_time: r.get(11)?,
        deletion_date: r.get(12)?,
        blob: r.get(13)?,
        tags: tags_at(r, 14)?,
    })
}

fn get_data_key_tx(
    conn: &Connection,
    region: &str,
    owner_uin: u64,
    id: &str,
) -> Result<Option<DataKeyRecord>> {
    let sql = format!(
        "SELECT {DATA_KEY_COLUMNS} FROM data_keys WHERE data_key_id = ?1 AND region = ?2 AND owner_uin = ?3"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![id, region, owner_uin as i64], data_key_from_row)
        .optional()?)
}

/// A WHERE clause under construction, with its positional arguments; shared by the key and
/// data-key listings so their common filters mean the same thing.
struct Filter {
    table: &'static str,
    columns: &'static str,
    clauses: Vec<String>,
    args: Vec<rusqlite::types::Value>,
}

impl Filter {
    fn new(table: &'static str, columns: &'static str, region: &str, owner_uin: u64) -> Self {
        use rusqlite::types::Value;
        Filter {
            table,
            columns,
            clauses: vec!["region = ?".into(), "owner_uin = ?".into()],
            args: vec![Value::Text(region.into()), Value::Integer(owner_uin as i64)],
        }
    }

    fn eq(&mut self, column: &str, value: rusqlite::types::Value) {
        self.clauses.push(format!("{column} = ?"));
        self.args.push(value);
    }

    fn states(&mut self, states: &Option<Vec<KeyState>>) {
        if let Some(states) = states {
            let marks = vec!["?"; states.len()].join(",");
            self.clauses.push(format!("state IN ({marks})"));
            self.args.extend(
                states
                    .iter()
                    .map(|s| rusqlite::types::Value::Text(s.as_str().into())),
            );
        }
    }

    fn user_created(&mut self, user_created: Option<bool>) {
        match user_created {
            Some(true) => self.clauses.push("owner = 'user'".into()),
            Some(false) => self.clauses.push("owner <> 'user'".into()),
            None => {}
        }
    }

    /// Substring match on either column, LIKE wildcards in `text` taken literally.
    fn search(&mut self, columns: [&str; 2], text: &Option<String>) {
        if let Some(text) = text {
            self.clauses.push(format!(
                "({} LIKE ? ESCAPE '\\' OR {} LIKE ? ESCAPE '\\')",
                columns[0], columns[1]
            ));
            let p = like_pattern(text);
            self.args.push(rusqlite::types::Value::Text(p.clone()));
            self.args.push(rusqlite::types::Value::Text(p));
        }
    }

    /// Resources carrying a tag key (and, if given, one of the values) for every filter.
    fn tags(&mut self, filters: &[TagFilter]) {
        use rusqlite::types::Value;
        let table = self.table;
        for tf in filters {
            let mut c = format!(
                "EXISTS (SELECT 1 FROM json_each({table}.tags) t \
                 WHERE json_extract(t.value, '$.TagKey') = ?"
            );
            self.args.push(Value::Text(tf.key.clone()));
            if !tf.values.is_empty() {
                let marks = vec!["?"; tf.values.len()].join(",");
                c.push_str(&format!(
                    " AND json_extract(t.value, '$.TagValue') IN ({marks})"
                ));
                self.args
                    .extend(tf.values.iter().map(|v| Value::Text(v.clone())));
            }
            c.push(')');
            self.clauses.push(c);
        }
    }

    /// The total match count and one page, ordered by creation time.
    fn page<T>(
        &self,
        conn: &Connection,
        newest_first: bool,
        offset: u64,
        limit: u64,
        row: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<(u64, Vec<T>)> {
        use rusqlite::types::Value;
        let (table, columns) = (self.table, self.columns);
        let where_sql = self.clauses.join(" AND ");
        let total: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM {table} WHERE {where_sql}"),
            rusqlite::params_from_iter(self.args.iter()),
            |r| r.get(0),
        )?;
        let order = if newest_first { "DESC" } else { "ASC" };
        let mut args = self.args.clone();
        args.push(Value::Integer(limit.min(i64::MAX as u64) as i64));
        args.push(Value::Integer(offset.min(i64::MAX as u64) as i64));
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE {where_sql} \
             ORDER BY create_time {order}, rowid {order} LIMIT ? OFFSET ?"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((total as u64, rows))
    }
}

const SECRET_COLUMNS: &str =
    "region, owner_uin, secret_name, create_uin, description, kms_key_id, \
    kms_key_type, status, secret_type, create_time, delete_time, tags, ssh_key_id, \
    ssh_key_name, project_id";

fn secret_from_row(r: &Row<'_>) -> rusqlite::Result<SecretRecord> {
    let status: String = r.get(7)?;
    Ok(SecretRecord {
        region: r.get(0)?,
        owner_uin: r.get::<_, i64>(1)? as u64,
        name: r.get(2)?,
        create_uin: r.get::<_, i64>(3)? as u64,
        description: r.get(4)?,
        kms_key_id: r.get(5)?,
        kms_key_type: r.get(6)?,
        status: SecretStatus::parse(&status).ok_or_else(|| bad(7, "status"))?,
        secret_type: r.get::<_, i64>(8)? as u64,
        create_time: r.get(9)?,
        delete_time: r.get(10)?,
        tags: tags_at(r, 11)?,
        ssh_key_id: r.get(12)?,
        ssh_key_name: r.get(13)?,
        project_id: r.get(14)?,
    })
}

fn get_secret_tx(
    conn: &Connection,
    region: &str,
    owner_uin: u64,
    name: &str,
) -> Result<Option<SecretRecord>> {
    let sql = format!(
        "SELECT {SECRET_COLUMNS} FROM secrets WHERE region = ?1 AND owner_uin = ?2 AND secret_name = ?3"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![region, owner_uin as i64, name], secret_from_row)
        .optional()?)
}

fn write_secret_tx(tx: &Connection, s: &SecretRecord) -> Result<()> {
    tx.execute(
        "UPDATE secrets SET description = ?4, status = ?5, delete_time = ?6, tags = ?7 \
         WHERE region = ?1 AND owner_uin = ?2 AND secret_name = ?3",
        params![
            s.region,
            s.owner_uin as i64,
            s.name,
            s.description,
            s.status.as_str(),
            s.delete_time,
            tags_json(&s.tags)?
        ],
    )?;
    Ok(())
}

fn insert_version_tx(
    tx: &Connection,
    region: &str,
    owner_uin: u64,
    name: &str,
    v: &SecretVersion,
) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT INTO secret_versions (region, owner_uin, secret_name, version_id, create_time, \
         is_binary, key_blob, nonce, ciphertext) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
        params![
            region,
            owner_uin as i64,
            name,
            v.version_id,
            v.create_time,
            v.is_binary,
            v.key_blob,
            v.nonce,
            v.ciphertext
        ],
    )
}

fn tags_json(tags: &[Tag]) -> Result<String> {
    serde_json::to_string(tags).map_err(|e| Error::Internal(e.to_string()))
}

/// A primary-key or unique violation (SQLite reports primary keys of rowid tables and of
/// other tables with different extended codes).
fn is_constraint(e: &rusqlite::Error) -> bool {
    is_unique_violation(e)
        || matches!(e, rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation
            && f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

fn get_key_tx(
    conn: &Connection,
    region: &str,
    owner_uin: u64,
    key_id: &str,
) -> Result<Option<KeyRecord>> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM keys WHERE key_id = ?1 AND region = ?2 AND owner_uin = ?3"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![key_id, region, owner_uin as i64], key_from_row)
        .optional()?)
}

fn write_key_tx(tx: &Connection, key: &KeyRecord) -> Result<()> {
    let res = tx.execute(
        "UPDATE keys SET alias = ?2, description = ?3, state = ?4, deletion_date = ?5, \
         rotation_enabled = ?6, rotate_days = ?7, next_rotate_time = ?8, \
         last_rotate_time = ?9, current_version = ?10, tags = ?11, last_manual_rotate = ?12, \
         last_alarm_time = ?13, valid_to = ?14, material_kcv = ?15 WHERE key_id = ?1",
        params![
            key.key_id,
            key.alias,
            key.description,
            key.state.as_str(),
            key.deletion_date,
            key.rotation_enabled,
            key.rotate_days,
            key.next_rotate_time,
            key.last_rotate_time,
            key.current_version,
            tags_json(&key.tags)?,
            key.last_manual_rotate,
            key.last_alarm_time,
            key.valid_to,
            key.material_kcv,
        ],
    );
    match res {
        Err(e) if is_unique_violation(&e) => Err(Error::AliasExists(key.alias.clone())),
        other => other.map(|_| ()).map_err(Error::from),
    }
}

/// Escapes LIKE wildcards so a search for `a_b` matches only that text.
fn like_pattern(s: &str) -> String {
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

impl Store for SqliteStore {
    fn insert_key(&self, key: &KeyRecord, version: Option<&KeyVersion>, limit: u64) -> Result<()> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if count_owned(&tx, "keys", &key.region, key.owner_uin)? >= limit {
                return Err(Error::CmkLimitExceeded(limit));
            }
            let sql = format!(
                "INSERT INTO keys ({KEY_COLUMNS}) VALUES \
                 (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23)"
            );
            let res = tx.execute(
                &sql,
                params![
                    key.key_id,
                    key.region,
                    key.owner_uin as i64,
                    key.creator_uin as i64,
                    key.alias,
                    key.description,
                    key.key_usage,
                    key.origin,
                    key.owner,
                    key.algorithm.id(),
                    key.state.as_str(),
                    key.create_time,
                    key.deletion_date,
                    key.rotation_enabled,
                    key.rotate_days,
                    key.next_rotate_time,
                    key.last_rotate_time,
                    key.current_version,
                    tags_json(&key.tags)?,
                    key.last_manual_rotate,
                    key.last_alarm_time,
                    key.valid_to,
                    key.material_kcv,
                ],
            );
            match res {
                Err(e) if is_unique_violation(&e) => {
                    return Err(Error::AliasExists(key.alias.clone()))
                }
                other => other?,
            };
            if let Some(v) = version {
                tx.execute(
                    "INSERT INTO key_versions (key_id, version, backend, sealed, create_time, \
                     public_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        v.key_id,
                        v.version,
                        v.backend,
                        v.sealed,
                        v.create_time,
                        v.public_key
                    ],
                )?;
            }
            super::audit::commit(tx)?;
            Ok(())
        })?;
        self.cache_key(key);
        Ok(())
    }

    fn get_key(&self, region: &str, owner_uin: u64, key_id: &str) -> Result<Option<KeyRecord>> {
        if let Some(k) = self.keys.read().ok().and_then(|m| m.get(key_id).cloned()) {
            return Ok((k.region == region && k.owner_uin == owner_uin).then_some(k));
        }
        let found = self.with(|conn| get_key_tx(conn, region, owner_uin, key_id))?;
        if let Some(k) = &found {
            self.cache_key(k);
        }
        Ok(found)
    }

    fn get_version(&self, key_id: &str, version: u32) -> Result<Option<KeyVersion>> {
        self.with(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT key_id, version, backend, sealed, create_time, public_key \
                     FROM key_versions WHERE key_id = ?1 AND version = ?2",
                )?
                .query_row(params![key_id, version], |r| {
                    Ok(KeyVersion {
                        key_id: r.get(0)?,
                        version: r.get(1)?,
                        backend: r.get(2)?,
                        sealed: r.get(3)?,
                        create_time: r.get(4)?,
                        public_key: r.get(5)?,
                    })
                })
                .optional()?)
        })
    }

    fn update_key(
        &self,
        region: &str,
        owner_uin: u64,
        key_id: &str,
        f: KeyUpdate<'_>,
    ) -> Result<KeyRecord> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut key = get_key_tx(&tx, region, owner_uin, key_id)?
                .ok_or_else(|| Error::CmkNotFound(key_id.to_string()))?;
            f(&mut key)?;
            write_key_tx(&tx, &key)?;
            super::audit::commit(tx)?;
            Ok(key)
        })
        .inspect(|key| self.cache_key(key))
    }

    fn add_version(
        &self,
        region: &str,
        owner_uin: u64,
        key_id: &str,
        backend: &str,
        sealed: &[u8],
        f: KeyUpdate<'_>,
    ) -> Result<KeyRecord> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut key = get_key_tx(&tx, region, owner_uin, key_id)?
                .ok_or_else(|| Error::CmkNotFound(key_id.to_string()))?;
            f(&mut key)?;
            key.current_version += 1;
            tx.execute(
                "INSERT INTO key_versions (key_id, version, backend, sealed, create_time) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    key.key_id,
                    key.current_version,
                    backend,
                    sealed,
                    key.last_rotate_time
                ],
            )?;
            write_key_tx(&tx, &key)?;
            super::audit::commit(tx)?;
            Ok(key)
        })
        .inspect(|key| self.cache_key(key))
    }

    fn delete_key(&self, key_id: &str) -> Result<bool> {
        let n = self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM key_versions WHERE key_id = ?1", [key_id])?;
            tx.execute("DELETE FROM key_bindings WHERE key_id = ?1", [key_id])?;
            let n = tx.execute("DELETE FROM keys WHERE key_id = ?1", [key_id])?;
            super::audit::commit(tx)?;
            Ok(n)
        })?;
        if let Ok(mut m) = self.keys.write() {
            m.remove(key_id);
        }
        Ok(n == 1)
    }

    fn keys_in_state(&self, state: KeyState) -> Result<Vec<KeyRecord>> {
        self.with(|conn| {
            rows_with(
                conn,
                "keys",
                KEY_COLUMNS,
                "state",
                state.as_str(),
                key_from_row,
            )
        })
    }

    fn keys_rotation_due(&self, now: i64) -> Result<Vec<KeyRecord>> {
        self.with(|conn| {
            let sql = format!(
                "SELECT {KEY_COLUMNS} FROM keys WHERE rotation_enabled = 1 \
                 AND next_rotate_time > 0 AND next_rotate_time <= ?1"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt
                .query_map([now], key_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn set_key_material(
        &self,
        region: &str,
        owner_uin: u64,
        key_id: &str,
        sealed: Option<(&str, &[u8])>,
        f: KeyUpdate<'_>,
    ) -> Result<KeyRecord> {
        let key = self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut key = get_key_tx(&tx, region, owner_uin, key_id)?
                .ok_or_else(|| Error::CmkNotFound(key_id.to_string()))?;
            f(&mut key)?;
            tx.execute("DELETE FROM key_versions WHERE key_id = ?1", [key_id])?;
            key.current_version = 0;
            if let Some((backend, sealed)) = sealed {
                key.current_version = 1;
                tx.execute(
                    "INSERT INTO key_versions (key_id, version, backend, sealed, create_time, \
                     public_key) VALUES (?1, 1, ?2, ?3, ?4, x'')",
                    params![key_id, backend, sealed, key.create_time],
                )?;
            }
            write_key_tx(&tx, &key)?;
            super::audit::commit(tx)?;
            Ok(key)
        })?;
        self.cache_key(&key);
        Ok(key)
    }

    fn insert_import_params(&self, p: &ImportParams) -> Result<()> {
        self.audited_write(|conn| {
            conn.execute(
                "INSERT INTO import_params (token, key_id, wrapping_algorithm, sealed_private, \
                 public_key, valid_to) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    p.token,
                    p.key_id,
                    p.wrapping_algorithm,
                    p.sealed_private,
                    p.public_key,
                    p.valid_to
                ],
            )?;
            Ok(())
        })
    }

    fn get_import_params(&self, token: &str) -> Result<Option<ImportParams>> {
        self.with(|conn| {
            Ok(conn
                .query_row(
                    "SELECT token, key_id, wrapping_algorithm, sealed_private, public_key, valid_to \
                     FROM import_params WHERE token = ?1",
                    [token],
                    |r| {
                        Ok(ImportParams {
                            token: r.get(0)?,
                            key_id: r.get(1)?,
                            wrapping_algorithm: r.get(2)?,
                            sealed_private: r.get(3)?,
                            public_key: r.get(4)?,
                            valid_to: r.get(5)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    fn bind(&self, key_id: &str, product: &str, resource: &str, now: i64) -> Result<bool> {
        self.audited_write(|conn| {
            let n = conn.execute(
                "INSERT OR IGNORE INTO key_bindings (key_id, product_id, resource_id, create_time) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![key_id, product, resource, now],
            )?;
            Ok(n == 1)
        })
    }

    fn unbind(&self, key_id: &str, product: &str, resource: &str) -> Result<bool> {
        self.audited_write(|conn| {
            let n = conn.execute(
                "DELETE FROM key_bindings WHERE key_id = ?1 AND product_id = ?2 AND resource_id = ?3",
                params![key_id, product, resource],
            )?;
            Ok(n == 1)
        })
    }

    fn count_bindings(&self, key_id: &str) -> Result<u64> {
        self.with(|conn| {
            let n: i64 = conn.query_row(
                "SELECT COUNT(*) FROM key_bindings WHERE key_id = ?1",
                [key_id],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
    }

    fn insert_data_key(&self, k: &DataKeyRecord, limit: u64) -> Result<()> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if count_owned(&tx, "data_keys", &k.region, k.owner_uin)? >= limit {
                return Err(Error::DataKeyLimitExceeded(limit));
            }
            let sql = format!(
                "INSERT INTO data_keys ({DATA_KEY_COLUMNS}) VALUES \
                 (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)"
            );
            let res = tx.execute(
                &sql,
                params![
                    k.data_key_id,
                    k.region,
                    k.owner_uin as i64,
                    k.creator_uin as i64,
                    k.name,
                    k.description,
                    k.key_id,
                    k.origin,
                    k.owner,
                    k.state.as_str(),
                    k.number_of_bytes,
                    k.create_time,
                    k.deletion_date,
                    k.blob,
                    tags_json(&k.tags)?,
                ],
            );
            match res {
                Err(e) if is_unique_violation(&e) => {
                    return Err(Error::DataKeyNameExists(k.name.clone()))
                }
                other => other?,
            };
            super::audit::commit(tx)?;
            Ok(())
        })
    }

    fn get_data_key(
        &self,
        region: &str,
        owner_uin: u64,
        id: &str,
    ) -> Result<Option<DataKeyRecord>> {
        self.with(|conn| get_data_key_tx(conn, region, owner_uin, id))
    }

    fn update_data_key(
        &self,
        region: &str,
        owner_uin: u64,
        id: &str,
        f: DataKeyUpdate<'_>,
    ) -> Result<DataKeyRecord> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut k = get_data_key_tx(&tx, region, owner_uin, id)?
                .ok_or_else(|| Error::DataKeyNotFound(id.to_string()))?;
            f(&mut k)?;
            let res = tx.execute(
                "UPDATE data_keys SET name = ?2, description = ?3, state = ?4, deletion_date = ?5 \
                 WHERE data_key_id = ?1",
                params![
                    k.data_key_id,
                    k.name,
                    k.description,
                    k.state.as_str(),
                    k.deletion_date
                ],
            );
            match res {
                Err(e) if is_unique_violation(&e) => return Err(Error::DataKeyNameExists(k.name)),
                other => other?,
            };
            super::audit::commit(tx)?;
            Ok(k)
        })
    }

    fn query_data_keys(&self, q: &DataKeyQuery) -> Result<(u64, Vec<DataKeyRecord>)> {
        use rusqlite::types::Value;
        let mut f = Filter::new("data_keys", DATA_KEY_COLUMNS, &q.region, q.owner_uin);
        f.states(&q.states);
        f.user_created(q.user_created);
        if let Some(origin) = &q.origin {
            f.eq("origin", Value::Text(origin.clone()));
        }
        if let Some(key_id) = &q.key_id {
            f.eq("key_id", Value::Text(key_id.clone()));
        }
        if let Some(n) = q.number_of_bytes {
            f.eq("number_of_bytes", Value::Integer(n.into()));
        }
        f.search(["data_key_id", "name"], &q.search);
        f.tags(&q.tag_filters);
        self.with(|conn| f.page(conn, q.newest_first, q.offset, q.limit, data_key_from_row))
    }

    fn count_data_keys(&self, region: &str, owner_uin: u64) -> Result<u64> {
        self.with(|conn| count_owned(conn, "data_keys", region, owner_uin))
    }

    fn data_keys_in_state(&self, state: KeyState) -> Result<Vec<DataKeyRecord>> {
        self.with(|conn| {
            rows_with(
                conn,
                "data_keys",
                DATA_KEY_COLUMNS,
                "state",
                state.as_str(),
                data_key_from_row,
            )
        })
    }

    fn delete_data_key(&self, id: &str) -> Result<bool> {
        self.audited_write(|conn| {
            Ok(conn.execute("DELETE FROM data_keys WHERE data_key_id = ?1", [id])? == 1)
        })
    }

    fn insert_secret(&self, sec: &SecretRecord, first: &SecretVersion, limit: u64) -> Result<()> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if count_owned(&tx, "secrets", &sec.region, sec.owner_uin)? >= limit {
                return Err(Error::SecretLimitExceeded(limit));
            }
            let sql = format!(
                "INSERT INTO secrets ({SECRET_COLUMNS}) VALUES \
                 (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)"
            );
            let res = tx.execute(
                &sql,
                params![
                    sec.region,
                    sec.owner_uin as i64,
                    sec.name,
                    sec.create_uin as i64,
                    sec.description,
                    sec.kms_key_id,
                    sec.kms_key_type,
                    sec.status.as_str(),
                    sec.secret_type as i64,
                    sec.create_time,
                    sec.delete_time,
                    tags_json(&sec.tags)?,
                    sec.ssh_key_id,
                    sec.ssh_key_name,
                    sec.project_id,
                ],
            );
            match res {
                Err(e) if is_constraint(&e) => return Err(Error::SecretExists(sec.name.clone())),
                other => other?,
            };
            insert_version_tx(&tx, &sec.region, sec.owner_uin, &sec.name, first)?;
            super::audit::commit(tx)?;
            Ok(())
        })
    }

    fn get_secret(&self, region: &str, owner_uin: u64, name: &str) -> Result<Option<SecretRecord>> {
        self.with(|conn| get_secret_tx(conn, region, owner_uin, name))
    }

    fn update_secret(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
        f: SecretUpdate<'_>,
    ) -> Result<SecretRecord> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut sec = get_secret_tx(&tx, region, owner_uin, name)?
                .ok_or_else(|| Error::SecretNotFound(name.to_string()))?;
            f(&mut sec)?;
            write_secret_tx(&tx, &sec)?;
            super::audit::commit(tx)?;
            Ok(sec)
        })
    }

    fn delete_secret(&self, region: &str, owner_uin: u64, name: &str) -> Result<bool> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM secret_versions WHERE region = ?1 AND owner_uin = ?2 AND secret_name = ?3",
                params![region, owner_uin as i64, name],
            )?;
            let n = tx.execute(
                "DELETE FROM secrets WHERE region = ?1 AND owner_uin = ?2 AND secret_name = ?3",
                params![region, owner_uin as i64, name],
            )?;
            super::audit::commit(tx)?;
            Ok(n == 1)
        })
    }

    fn query_secrets(&self, q: &SecretQuery) -> Result<(u64, Vec<SecretRecord>)> {
        use rusqlite::types::Value;
        let mut f = Filter::new("secrets", SECRET_COLUMNS, &q.region, q.owner_uin);
        if let Some(status) = q.status {
            f.eq("status", Value::Text(status.as_str().into()));
        }
        f.eq("secret_type", Value::Integer(q.secret_type as i64));
        f.search(["secret_name", "secret_name"], &q.search);
        f.tags(&q.tag_filters);
        self.with(|conn| f.page(conn, q.newest_first, q.offset, q.limit, secret_from_row))
    }

    fn secret_by_ssh_key(
        &self,
        region: &str,
        owner_uin: u64,
        ssh_key_id: &str,
    ) -> Result<Option<SecretRecord>> {
        self.with(|conn| {
            let sql = format!(
                "SELECT {SECRET_COLUMNS} FROM secrets WHERE region = ?1 AND owner_uin = ?2 \
                 AND ssh_key_id = ?3 AND secret_type = 2"
            );
            Ok(conn
                .prepare_cached(&sql)?
                .query_row(
                    params![region, owner_uin as i64, ssh_key_id],
                    secret_from_row,
                )
                .optional()?)
        })
    }

    fn count_secrets(&self, region: &str, owner_uin: u64) -> Result<u64> {
        self.with(|conn| count_owned(conn, "secrets", region, owner_uin))
    }

    fn secrets_in_status(&self, status: SecretStatus) -> Result<Vec<SecretRecord>> {
        self.with(|conn| {
            rows_with(
                conn,
                "secrets",
                SECRET_COLUMNS,
                "status",
                status.as_str(),
                secret_from_row,
            )
        })
    }

    fn put_secret_version(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
        v: &SecretVersion,
        mode: VersionWrite,
        check: SecretUpdate<'_>,
    ) -> Result<()> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut sec = get_secret_tx(&tx, region, owner_uin, name)?
                .ok_or_else(|| Error::SecretNotFound(name.to_string()))?;
            check(&mut sec)?;
            if let VersionWrite::Add { max_versions } = mode {
                // An existing id is the more specific refusal, so it is checked first.
                let exists: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM secret_versions WHERE region = ?1 \
                     AND owner_uin = ?2 AND secret_name = ?3 AND version_id = ?4)",
                    params![region, owner_uin as i64, name, v.version_id],
                    |r| r.get(0),
                )?;
                if exists {
                    return Err(Error::VersionIdExists(v.version_id.clone()));
                }
                let count: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM secret_versions WHERE region = ?1 AND owner_uin = ?2 \
                     AND secret_name = ?3",
                    params![region, owner_uin as i64, name],
                    |r| r.get(0),
                )?;
                if count as u64 >= max_versions {
                    return Err(Error::SecretVersionLimit(max_versions));
                }
                match insert_version_tx(&tx, region, owner_uin, name, v) {
                    Err(e) if is_constraint(&e) => {
                        return Err(Error::VersionIdExists(v.version_id.clone()))
                    }
                    other => other?,
                };
            } else {
                let n = tx.execute(
                    "UPDATE secret_versions SET is_binary = ?5, key_blob = ?6, nonce = ?7, \
                     ciphertext = ?8 WHERE region = ?1 AND owner_uin = ?2 AND secret_name = ?3 \
                     AND version_id = ?4",
                    params![
                        region,
                        owner_uin as i64,
                        name,
                        v.version_id,
                        v.is_binary,
                        v.key_blob,
                        v.nonce,
                        v.ciphertext
                    ],
                )?;
                if n == 0 {
                    return Err(Error::SecretVersionNotFound(v.version_id.clone()));
                }
            }
            super::audit::commit(tx)?;
            Ok(())
        })
    }

    fn get_secret_version(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
        version_id: &str,
    ) -> Result<Option<SecretVersion>> {
        self.with(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT version_id, create_time, is_binary, key_blob, nonce, ciphertext \
                     FROM secret_versions WHERE region = ?1 AND owner_uin = ?2 \
                     AND secret_name = ?3 AND version_id = ?4",
                )?
                .query_row(params![region, owner_uin as i64, name, version_id], |r| {
                    Ok(SecretVersion {
                        version_id: r.get(0)?,
                        create_time: r.get(1)?,
                        is_binary: r.get(2)?,
                        key_blob: r.get(3)?,
                        nonce: r.get(4)?,
                        ciphertext: r.get(5)?,
                    })
                })
                .optional()?)
        })
    }

    fn list_secret_versions(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
    ) -> Result<Vec<(String, i64)>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT version_id, create_time FROM secret_versions WHERE region = ?1 \
                 AND owner_uin = ?2 AND secret_name = ?3 ORDER BY create_time, rowid",
            )?;
            let rows = stmt
                .query_map(params![region, owner_uin as i64, name], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn delete_secret_version(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
        version_id: &str,
    ) -> Result<bool> {
        self.audited_write(|conn| {
            let n = conn.execute(
                "DELETE FROM secret_versions WHERE region = ?1 AND owner_uin = ?2 \
                 AND secret_name = ?3 AND version_id = ?4",
                params![region, owner_uin as i64, name, version_id],
            )?;
            Ok(n == 1)
        })
    }

    fn insert_alarm(&self, a: &Alarm) -> Result<i64> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO alarms (time, region, key_id, kind, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![a.time, a.region, a.key_id, a.kind, a.message],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    fn undelivered_alarms(&self, limit: u32) -> Result<Vec<Alarm>> {
        self.alarms_query(
            "SELECT id, time, region, key_id, kind, message FROM alarms \
             WHERE delivered = 0 ORDER BY id LIMIT ?1",
            rusqlite::types::Value::Integer(limit as i64),
        )
    }

    fn mark_alarm_delivered(&self, id: i64) -> Result<()> {
        self.with(|conn| {
            conn.execute("UPDATE alarms SET delivered = 1 WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    fn alarms_for_key(&self, key_id: &str) -> Result<Vec<Alarm>> {
        self.alarms_query(
            "SELECT id, time, region, key_id, kind, message FROM alarms \
             WHERE key_id = ?1 ORDER BY id",
            rusqlite::types::Value::Text(key_id.into()),
        )
    }

    fn query_keys(&self, q: &KeyQuery) -> Result<(u64, Vec<KeyRecord>)> {
        use rusqlite::types::Value;
        let mut f = Filter::new("keys", KEY_COLUMNS, &q.region, q.owner_uin);
        f.states(&q.states);
        f.user_created(q.user_created);
        if let Some(origin) = &q.origin {
            f.eq("origin", Value::Text(origin.clone()));
        }
        if let Some(usage) = &q.key_usage {
            f.eq("key_usage", Value::Text(usage.clone()));
        }
        f.search(["key_id", "alias"], &q.search);
        f.tags(&q.tag_filters);
        self.with(|conn| f.page(conn, q.newest_first, q.offset, q.limit, key_from_row))
    }

    fn count_keys(&self, region: &str, owner_uin: u64) -> Result<u64> {
        self.with(|conn| {
            let n: i64 = conn.query_row(
                "SELECT COUNT(*) FROM keys WHERE region = ?1 AND owner_uin = ?2 AND owner = 'user'",
                params![region, owner_uin as i64],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
    }

    fn insert_account(&self, a: &AccountRecord) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO accounts (uin, name, kind, remark, create_time) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![a.uin as i64, a.name, a.kind, a.remark, a.create_time],
            )?;
            Ok(())
        })
    }

    fn insert_api_key(&self, k: &ApiKeyRecord) -> Result<()> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO api_keys (secret_id, uin, sealed_secret, status, create_time) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    k.secret_id,
                    k.uin as i64,
                    k.sealed_secret,
                    if k.enabled { "Enabled" } else { "Disabled" },
                    k.create_time
                ],
            )?;
            super::audit::commit(tx)?;
            Ok(())
        })
    }

    fn get_api_key(&self, secret_id: &str) -> Result<Option<ApiKeyRecord>> {
        self.with(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT secret_id, uin, sealed_secret, status, create_time, last_used \
                     FROM api_keys WHERE secret_id = ?1",
                )?
                .query_row(params![secret_id], super::iam::api_key_row)
                .optional()?)
        })
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.with(|conn| {
            Ok(conn
                .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                    r.get(0)
                })
                .optional()?)
        })
    }

    fn set_meta(&self, name: &str, value: &[u8]) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )?;
            Ok(())
        })
    }

    fn insert_meta(&self, name: &str, value: &[u8]) -> Result<bool> {
        self.with(|conn| {
            let n = conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES (?1, ?2)",
                params![name, value],
            )?;
            Ok(n == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, alias: &str, t: i64) -> KeyRecord {
        KeyRecord {
            key_id: id.into(),
            region: "r".into(),
            owner_uin: 1,
            creator_uin: 1,
            alias: alias.into(),
            description: String::new(),
            key_usage: "ENCRYPT_DECRYPT".into(),
            origin: "TENCENT_KMS".into(),
            owner: "user".into(),
            algorithm: Algorithm::Aes256Gcm,
            state: KeyState::Enabled,
            create_time: t,
            deletion_date: 0,
            rotation_enabled: false,
            rotate_days: 0,
            next_rotate_time: 0,
            last_rotate_time: 0,
            current_version: 1,
            tags: vec![Tag {
                key: "env".into(),
                value: alias.into(),
            }],
            last_manual_rotate: 0,
            last_alarm_time: 0,
            valid_to: 0,
            material_kcv: vec![],
        }
    }

    #[test]
    fn alias_unique_quota_and_failed_update_leaves_record() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("k.db")).unwrap();
        s.insert_key(&key("a", "one", 1), None, 2).unwrap();
        assert!(matches!(
            s.insert_key(&key("b", "one", 2), None, 2),
            Err(Error::AliasExists(_))
        ));
        s.insert_key(&key("b", "two", 2), None, 2).unwrap();
        assert!(matches!(
            s.insert_key(&key("c", "three", 3), None, 2),
            Err(Error::CmkLimitExceeded(2))
        ));
        // A closure error aborts the transaction: nothing changes.
        let r = s.update_key("r", 1, "a", &mut |k| {
            k.description = "changed".into();
            Err(Error::CmkDisabled("a".into()))
        });
        assert!(r.is_err());
        assert_eq!(s.get_key("r", 1, "a").unwrap().unwrap().description, "");
        let r = s.update_key("r", 1, "a", &mut |k| {
            k.alias = "two".into();
            Ok(())
        });
        assert!(matches!(r, Err(Error::AliasExists(_))));
    }

    #[test]
    fn query_filters_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("k.db")).unwrap();
        for i in 0..5 {
            s.insert_key(&key(&format!("id{i}"), &format!("al_{i}"), i), None, 100)
                .unwrap();
        }
        let mut q = KeyQuery {
            region: "r".into(),
            owner_uin: 1,
            states: None,
            origin: None,
            key_usage: None,
            search: None,
            tag_filters: vec![],
            user_created: None,
            newest_first: true,
            offset: 1,
            limit: 2,
        };
        let (total, page) = s.query_keys(&q).unwrap();
        assert_eq!(total, 5);
        assert_eq!(
            page.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
            ["id3", "id2"]
        );
        q.search = Some("l_3".into());
        assert_eq!(s.query_keys(&q).unwrap().0, 1);
        q.search = Some("%".into());
        assert_eq!(s.query_keys(&q).unwrap().0, 0);
        q.search = None;
        q.tag_filters = vec![TagFilter {
            key: "env".into(),
            values: vec!["al_1".into(), "al_4".into()],
        }];
        assert_eq!(s.query_keys(&q).unwrap().0, 2);
    }

    #[test]
    fn reopen_keeps_data_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.db");
        SqliteStore::open(&p)
            .unwrap()
            .insert_key(&key("a", "x", 1), None, 10)
            .unwrap();
        let s = SqliteStore::open(&p).unwrap();
        assert!(s.get_key("r", 1, "a").unwrap().is_some());
    }
}
