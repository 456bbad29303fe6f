//! Persistence, split by aggregate: one trait per kind of record (keys, data keys, secrets,
//! product secrets and their rotation, accounts and policies, audit log, alarm outbox,
//! metadata), so each service takes only what it uses. The traits name no database types: SQLite (`sqlite/`) is the embedded default,
//! PostgreSQL (`pg/`, docs/postgres.md) implements the same traits with the same semantics.
//!
//! Every write is one transaction: a crash leaves either the old or the new state.

pub mod accounts;
pub mod alarms;
pub mod audit;
pub mod changes;
#[cfg(test)]
pub(crate) mod conformance;
pub mod data_keys;
pub mod keys;
pub mod leases;
pub mod meta;
mod pg;
pub mod rotation;
pub mod secrets;
mod sqlite;

pub use accounts::{
    AccountRecord, AccountStore, ApiKeyRecord, AuthzSealer, AuthzState, GroupRecord, PolicyRecord,
    Target,
};
pub use alarms::{Alarm, AlarmStore};
pub use audit::{AuditAttribute, AuditQuery, AuditStore, Trail};
pub use changes::{Change, ChangeSink};
pub use data_keys::{DataKeyQuery, DataKeyRecord, DataKeyStore, DataKeyUpdate};
pub use keys::{
    ImportParams, KeyQuery, KeyRecord, KeyState, KeyStore, KeyUpdate, KeyVersion, NewVersion, Tag,
    TagFilter,
};
pub use leases::{Fence, LeaseStore, JOBS_LEASE};
pub use meta::MetaStore;
pub use pg::dump as pg_dump;
pub use pg::{Endpoint as PgEndpoint, PgStore};
pub use rotation::{
    FlowRecord, ProductSecretRecord, ProductSecretUpdate, RotationStore, FLOW_FAILED, FLOW_RUNNING,
    FLOW_SUCCEEDED,
};
pub use secrets::{
    SecretQuery, SecretRecord, SecretStatus, SecretStore, SecretUpdate, SecretVersion, VersionWrite,
};
pub use sqlite::SqliteStore;

/// Every aggregate at once: what start-up opens and hands out, one trait object per service.
pub trait Store:
    KeyStore
    + DataKeyStore
    + SecretStore
    + RotationStore
    + AccountStore
    + AuditStore
    + AlarmStore
    + MetaStore
    + LeaseStore
{
    /// Whether reads take so little time (no network, no waiting on another process) that
    /// they may run on an async worker thread: true for the embedded SQLite store, false for
    /// PostgreSQL, whose every call is a network round trip (and whose synchronous client
    /// must not run on a tokio worker at all). When false the API runs every action on the
    /// blocking pool.
    fn reads_inline(&self) -> bool;
    /// Writes a consistent copy of the whole store to the new file `dest`, while it serves.
    fn backup_to(&self, dest: &std::path::Path) -> crate::error::Result<()>;
    /// Delivers to `sink` what other processes change in the store, from now on, for as
    /// long as the store lives. Returns once announcements flow.
    fn watch_changes(&self, sink: ChangeSink) -> crate::error::Result<()>;
}

impl Store for SqliteStore {
    fn reads_inline(&self) -> bool {
        true
    }

    fn backup_to(&self, dest: &std::path::Path) -> crate::error::Result<()> {
        SqliteStore::backup_to(self, dest)
    }

    /// The daemon holds its file exclusively: no other process changes it, and the
    /// daemon's services invalidate their caches for their own changes.
    fn watch_changes(&self, _: ChangeSink) -> crate::error::Result<()> {
        Ok(())
    }
}

impl Store for PgStore {
    fn reads_inline(&self) -> bool {
        false
    }

    fn backup_to(&self, _: &std::path::Path) -> crate::error::Result<()> {
        Err(crate::error::Error::Config(
            "a PostgreSQL store is backed up by `keyward backup` with pg_dump, outside the \
             daemon (docs/postgres.md)"
                .into(),
        ))
    }

    fn watch_changes(&self, sink: ChangeSink) -> crate::error::Result<()> {
        PgStore::watch_changes(self, sink)
    }
}
