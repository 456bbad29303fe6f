//! What a store announces about changes that per-process caches must follow, when other
//! processes can write to it (PostgreSQL: LISTEN/NOTIFY, docs/postgres.md).

use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A version of this key was changed or deleted (material deleted or expired, key
    /// deleted).
    KeyVersions(String),
    /// An API key or an account changed.
    Credentials,
    /// Users, groups, policies or attachments changed.
    Authorization,
    /// The store can no longer tell about changes (its notification connection is down):
    /// caches must serve and keep nothing until `Resumed`.
    Suspended,
    /// Announcements flow (again). Anything may have changed meanwhile: start empty.
    Resumed,
}

/// Where a store delivers its announcements; called on a thread of the store's.
pub type ChangeSink = Arc<dyn Fn(Change) + Send + Sync>;
