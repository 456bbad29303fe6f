//! Leases for the work one daemon of a deployment does at a time (the scheduled jobs,
//! checkpoints, retention, alarm delivery), with fencing tokens (docs/postgres.md).

use crate::error::Result;
use std::time::Duration;

/// The lease of the scheduled work.
pub const JOBS_LEASE: &str = "jobs";

/// Proof that a lease was held when some work began. Every write of that work carries it
/// (`Trail::fenced`), and the store commits the write only while the lease still has this
/// token: a daemon that paused past its lease's end and lost it to another cannot commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub lease: &'static str,
    pub token: i64,
}

pub trait LeaseStore: Send + Sync {
    /// Takes the lease `name` for `holder` for `ttl` when it is free or has expired, or
    /// extends it when `holder` has it. Returns its token when `holder` holds it afterwards,
    /// `None` while another holder's term runs. The token changes exactly when the holder
    /// does. Expiry is judged by the store's clock, so daemons' clocks need not agree.
    fn acquire_lease(&self, name: &'static str, holder: &str, ttl: Duration)
        -> Result<Option<i64>>;
    /// Ends `holder`'s term at once (a clean shutdown), so the next daemon need not wait.
    fn release_lease(&self, name: &'static str, holder: &str) -> Result<()>;
}
