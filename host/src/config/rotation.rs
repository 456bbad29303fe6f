//! `[[databases]]` and `[rotation]`: the servers product secrets rotate on, and how.

use serde::Deserialize;
use std::path::PathBuf;

/// What kind of server a `[[databases]]` entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    /// MySQL or MariaDB (product `Mysql`).
    Mysql,
    /// PostgreSQL (product `PostgreSQL`).
    Postgresql,
    /// Redis 6+ ACL users (product `Redis`).
    Redis,
}

/// A database server that product secrets may name as their `InstanceID`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The `InstanceID` callers name.
    pub id: String,
    pub kind: DatabaseKind,
    /// `host:port` of a TCP listener; or give `socket`.
    #[serde(default)]
    pub address: Option<String>,
    /// A unix socket: the socket file (MySQL, Redis) or its directory (PostgreSQL).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// The Keyward secret (in the product secret's region and account) whose `SSM_Current`
    /// value is the administrative login as JSON `{"UserName": …, "Password": …}`: the
    /// password never appears in this file.
    pub admin_secret: String,
    /// TLS to the server (`address` only), its certificate verified against this CA bundle
    /// (PEM) for the host of `address` (a name or an IP address in the certificate). Without
    /// it the connection is plain: keep it to loopback, a unix socket or a protected network.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// The databases product secrets may be granted on (MySQL, PostgreSQL); when set,
    /// `GlobalPrivileges` are refused too. Unset: any database but MySQL's system schemas.
    /// Whoever may call CreateProductSecret acts with the admin login's rights within it.
    #[serde(default)]
    pub grant_databases: Option<Vec<String>>,
    /// PostgreSQL: the database the administrative login connects to, and the one the
    /// accounts log in to by default.
    #[serde(default)]
    pub database: Option<String>,
    /// Connect and query timeout.
    #[serde(default = "default_database_timeout")]
    pub timeout_secs: u64,
}

fn default_database_timeout() -> u64 {
    5
}

/// Rotation of product secrets (docs/rotation.md). A field left out keeps its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotationConfig {
    /// How long the credential published before a rotation keeps working after it, so that
    /// applications have time to fetch the new one (default an hour).
    pub overlap_secs: u64,
    /// The first retry of a failed rotation waits this long (a minute); each further
    /// failure doubles the wait, up to `retry_max_secs` (an hour).
    pub retry_initial_secs: u64,
    pub retry_max_secs: u64,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            overlap_secs: 3600,
            retry_initial_secs: 60,
            retry_max_secs: 3600,
        }
    }
}
