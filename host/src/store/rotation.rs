//! Product secrets (credentials Keyward rotates on a database or for a sub-account): their
//! target and rotation schedule, and the asynchronous requests (`FlowID`) that create and
//! rotate them. The credentials themselves are ordinary secret versions (`secrets.rs`); a
//! product secret's row is deleted with its secret.

use super::audit::Trail;
use crate::error::Result;

/// What Keyward knows about a product secret besides its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSecretRecord {
    pub region: String,
    pub owner_uin: u64,
    pub name: String,
    /// `Mysql`, `PostgreSQL`, `Redis` or `Cam`.
    pub product: String,
    /// The `[[databases]]` id (`InstanceID`); for `Cam`, the sub-account's uin.
    pub instance_id: String,
    pub user_prefix: String,
    /// Hosts the accounts may log in from (MySQL host patterns).
    pub domains: Vec<String>,
    /// The grants as the request gave them (a JSON array of ProductPrivilegeUnit).
    pub privileges: String,
    pub rotation_enabled: bool,
    pub frequency_days: i64,
    /// Unix seconds of the next scheduled rotation.
    pub next_rotation: i64,
    /// Unix seconds of the last successful rotation (creation counts as one).
    pub last_rotation: i64,
    /// The account (or API key) that stops working at `retire_at`; empty when none waits.
    pub retire_account: String,
    pub retire_at: i64,
    /// Consecutive failed rotations; the next try waits until `retry_at`.
    pub failures: u32,
    pub retry_at: i64,
}

/// An asynchronous request: `status` 0 running, 1 succeeded, 2 failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    pub flow_id: i64,
    pub region: String,
    pub owner_uin: u64,
    pub secret_name: String,
    pub action: String,
    pub status: i64,
    pub description: String,
    pub create_time: i64,
}

pub const FLOW_RUNNING: i64 = 0;
pub const FLOW_SUCCEEDED: i64 = 1;
pub const FLOW_FAILED: i64 = 2;

pub type ProductSecretUpdate<'a> = &'a mut dyn FnMut(&mut ProductSecretRecord) -> Result<()>;

pub trait RotationStore: Send + Sync {
    /// Records a product secret's target and schedule; its secret must exist.
    fn insert_product_secret(&self, trail: &Trail, p: &ProductSecretRecord) -> Result<()>;
    fn get_product_secret(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
    ) -> Result<Option<ProductSecretRecord>>;
    /// Read-modify-write in one transaction; `None` when there is no such product secret.
    fn update_product_secret(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        name: &str,
        f: ProductSecretUpdate<'_>,
    ) -> Result<Option<ProductSecretRecord>>;
    /// Every product secret (the scheduler looks for due work among them).
    fn product_secrets(&self) -> Result<Vec<ProductSecretRecord>>;
    /// Takes the right to change a product secret's credentials until `until` (unix seconds)
    /// when nobody holds it or its holder's term ended before `now`: one rotation at a time,
    /// across daemons. Returns whether it was taken.
    fn claim_product_secret(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
        now: i64,
        until: i64,
    ) -> Result<bool>;
    fn release_product_secret(&self, region: &str, owner_uin: u64, name: &str) -> Result<()>;
    /// Records a new asynchronous request and returns its FlowID.
    fn insert_flow(&self, trail: &Trail, f: &FlowRecord) -> Result<i64>;
    fn finish_flow(
        &self,
        trail: &Trail,
        flow_id: i64,
        status: i64,
        description: &str,
    ) -> Result<()>;
    fn get_flow(&self, region: &str, owner_uin: u64, flow_id: i64) -> Result<Option<FlowRecord>>;
}
