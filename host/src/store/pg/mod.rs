//! PostgreSQL implementation of the store traits, with the SQLite store's semantics
//! (docs/postgres.md). One file per aggregate, like `sqlite/`.
//!
//! **Client.** The store traits are synchronous, so this uses the synchronous `postgres`
//! client through an `r2d2` pool. That client runs each call on a private tokio runtime and
//! panics when called on a tokio worker thread, and a worker must not wait on the network
//! anyway, so: the store says so (`reads_inline()` is false) and the API runs every action
//! on the blocking pool; as a safety net, each call made on a multi-threaded runtime's worker
//! all the same goes through `tokio::task::block_in_place` instead of panicking.
//!
//! **Concurrency.** Several daemons may share one database, so every check-then-write is
//! protected inside its transaction (READ COMMITTED): read-modify-write steps lock their row
//! (`SELECT ... FOR UPDATE`), quotas take a transaction-scoped advisory lock per account and
//! table, uniqueness is left to the constraints, identifiers come from `id_sequences` rows
//! updated in place, changes to the authorization state are serialised by an advisory lock,
//! and the audit chain's appenders by another (taken last in every transaction, just before
//! commit, so no two locks are ever taken in opposite orders).
//!
//! **No cache across requests.** The SQLite store caches key records because it is the only
//! writer; here another daemon may change a key at any time, so every read goes to the
//! database (coherent caches across daemons are a later step of issue 14).
//!
//! **No secure_delete.** SQLite overwrites deleted rows (`secure_delete`); PostgreSQL keeps
//! dead row versions until VACUUM reuses their space, and in its WAL and backups. What is
//! deleted is sealed material and ciphertext only, never plaintext key material.

mod accounts;
mod alarms;
mod audit;
mod changes;
mod connect;
mod data_keys;
pub mod dump;
mod filter;
mod keys;
mod leases;
mod meta;
mod rotation;
mod secrets;

use crate::error::{Error, Result};
use crate::store::audit::Trail;
use crate::store::{AuthzSealer, Tag};
use postgres::error::SqlState;
use postgres::{GenericClient, Row, Transaction};
use r2d2_postgres::PostgresConnectionManager;
use sha2::{Digest, Sha256};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The PostgreSQL adapter's one conversion of the client's errors.
impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error::Store(format!("PostgreSQL: {e}"))
    }
}

/// Versioned migrations, applied in order and recorded in `keyward_schema`.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_init.sql"),
    include_str!("../migrations/postgres/0002_cluster.sql"),
    include_str!("../migrations/postgres/0003_rotation.sql"),
];

pub use connect::Endpoint;

type Pool = r2d2::Pool<PostgresConnectionManager<connect::StoreTls>>;

/// The pool, closed on a thread of its own when dropped: closing a connection blocks on the
/// client's private runtime, which panics when the last reference goes away on an async
/// thread (the daemon drops its state there at exit).
struct Connections(Option<Pool>);

impl std::ops::Deref for Connections {
    type Target = Pool;
    fn deref(&self) -> &Pool {
        self.0.as_ref().expect("the pool lives until drop")
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

pub struct PgStore {
    pool: Connections,
    /// Where the pool connects, for the change feed's own connection.
    endpoint: Endpoint,
    /// Ends the change feed's thread when the store goes.
    stop_listening: Arc<std::sync::atomic::AtomicBool>,
    /// Audit records committed together with their change (for `/metrics`).
    written_with_changes: AtomicU64,
    /// Seals the authorization tables in every write that changes them.
    authz_sealer: OnceLock<Arc<dyn AuthzSealer>>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.stop_listening
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgStore")
    }
}

/// Runs `f`, which waits on the network: directly on a plain or blocking-pool thread, through
/// `block_in_place` on a multi-threaded runtime's worker (see the module comment).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl PgStore {
    /// Connects to the database `endpoint` names, keeps up to `pool_size` connections, and
    /// migrates the schema.
    pub fn open(endpoint: Endpoint, pool_size: u32) -> Result<Self> {
        // One connection first: a wrong address, password or CA fails at once with its
        // cause, instead of after the pool's connection timeout with a summary.
        drop(blocking(|| endpoint.connect())?);
        let manager = PostgresConnectionManager::new(endpoint.config.clone(), endpoint.tls.clone());
        let pool = blocking(|| {
            r2d2::Pool::builder()
                .max_size(pool_size.max(1))
                .min_idle(Some(1))
                .connection_timeout(Duration::from_secs(15))
                .build(manager)
        })
        .map_err(|e| Error::Store(format!("cannot connect to PostgreSQL: {e}")))?;
        let store = PgStore {
            pool: Connections(Some(pool)),
            endpoint,
            stop_listening: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            written_with_changes: AtomicU64::new(0),
            authz_sealer: OnceLock::new(),
        };
        store.with(migrate)?;
        Ok(store)
    }

    /// One pooled connection for `f`.
    pub(super) fn with<T>(&self, f: impl FnOnce(&mut postgres::Client) -> Result<T>) -> Result<T> {
        blocking(|| {
            let mut conn = self
                .pool
                .get()
                .map_err(|e| Error::Store(format!("no PostgreSQL connection: {e}")))?;
            f(&mut conn)
        })
    }

    /// One write transaction, carrying the trail's audit record, returning the closure's
    /// value.
    pub(super) fn write<T>(
        &self,
        trail: &Trail,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let out = f(&mut tx)?;
            self.commit(tx, trail)?;
            Ok(out)
        })
    }
}

/// Applies the migrations this database has not seen, in one transaction (PostgreSQL's DDL
/// is transactional: all of them or none), under an advisory lock so two daemons starting
/// together do not both apply one.
fn migrate(c: &mut postgres::Client) -> Result<()> {
    let mut tx = c.transaction()?;
    lock(&mut tx, "schema")?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS keyward_schema (version BIGINT PRIMARY KEY, \
         applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )?;
    let current: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM keyward_schema", &[])?
        .get(0);
    let current = current.max(0) as usize;
    if current > MIGRATIONS.len() {
        return Err(Error::Config(format!(
            "the store has schema version {current}, newer than this build ({}) understands",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO keyward_schema (version) VALUES ($1)",
            &[&((i + 1) as i64)],
        )?;
        tracing::info!(version = i + 1, "PostgreSQL schema migrated");
    }
    tx.commit()?;
    Ok(())
}

/// A transaction-scoped advisory lock named `name` (released at commit or rollback): what
/// serialises two daemons' check-then-write steps that no row lock covers.
pub(super) fn lock(tx: &mut Transaction<'_>, name: &str) -> Result<()> {
    let digest = Sha256::digest(format!("keyward/lock/{name}").as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&i64::from_be_bytes(key)],
    )?;
    Ok(())
}

/// How many rows of `table` belong to one account in one region, counted under the quota
/// lock of that account and table, so two daemons cannot both take the last place.
pub(super) fn count_owned_locked(
    tx: &mut Transaction<'_>,
    table: &str,
    region: &str,
    owner_uin: u64,
) -> Result<u64> {
    lock(tx, &format!("quota/{table}/{region}/{owner_uin}"))?;
    count_owned(tx, table, region, owner_uin)
}

pub(super) fn count_owned(
    c: &mut impl GenericClient,
    table: &str,
    region: &str,
    owner_uin: u64,
) -> Result<u64> {
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE region = $1 AND owner_uin = $2");
    let n: i64 = c.query_one(&sql, &[&region, &(owner_uin as i64)])?.get(0);
    Ok(n as u64)
}

/// Rows of `table` whose `column` equals `value` (background jobs scan by state).
pub(super) fn rows_with<T>(
    c: &mut impl GenericClient,
    table: &str,
    columns: &str,
    column: &str,
    value: &str,
    row: fn(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    let sql = format!("SELECT {columns} FROM {table} WHERE {column} = $1");
    c.query(&sql, &[&value])?.iter().map(row).collect()
}

/// A column whose stored value does not fit (a damaged or foreign database).
pub(super) fn bad(what: &str) -> Error {
    Error::Store(format!("bad {what} in the PostgreSQL store"))
}

/// A non-negative integer column read as `u32`.
pub(super) fn u32_at(r: &Row, i: usize) -> Result<u32> {
    u32::try_from(r.try_get::<_, i64>(i)?).map_err(|_| bad(r.columns()[i].name()))
}

/// An integer column read as `u64` (uins, counts: stored as BIGINT, as in SQLite).
pub(super) fn u64_at(r: &Row, i: usize) -> Result<u64> {
    Ok(r.try_get::<_, i64>(i)? as u64)
}

/// The `tags` JSON column at index `i`.
pub(super) fn tags_at(r: &Row, i: usize) -> Result<Vec<Tag>> {
    let text: String = r.try_get(i)?;
    serde_json::from_str(&text).map_err(|_| bad("tags"))
}

pub(super) fn tags_json(tags: &[Tag]) -> Result<String> {
    serde_json::to_string(tags).map_err(|e| Error::Internal(e.to_string()))
}

/// A unique or primary-key violation.
pub(super) fn is_unique_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Whether `e` is a violation of the constraint named `name`.
pub(super) fn violates(e: &postgres::Error, name: &str) -> bool {
    e.as_db_error().and_then(|d| d.constraint()) == Some(name)
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
mod tests;
