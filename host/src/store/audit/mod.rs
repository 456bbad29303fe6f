//! Audit log persistence: the record and its hash chain, checkpoints, queries, and the
//! `Trail` that every write carries so that a change and the record describing it commit
//! together.

pub mod record;
pub mod trail;

pub use trail::Trail;

use crate::error::Result;
use record::AuditRecord;
use record::{ChainedRecord, Checkpoint};

/// What LookUpEvents can filter on (CloudAudit's LookupAttributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditAttribute {
    RequestId(String),
    EventName(String),
    EventId(String),
    Username(String),
    ResourceType(String),
    /// A resource id (key id, secret name) or a full CAM resource name.
    ResourceName(String),
    AccessKeyId(String),
    ReadOnly(bool),
    /// The result: `Success` or a Tencent error code.
    ResultCode(String),
    SourceIp(String),
    /// The calling account's uin.
    Uin(u64),
}

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Inclusive bounds in unix seconds.
    pub start_time: i64,
    pub end_time: i64,
    /// Every group must hold; within a group, any attribute may (CloudAudit ORs repeated
    /// keys and ANDs different ones).
    pub attributes: Vec<Vec<AuditAttribute>>,
    /// Paging: only records with a smaller sequence number (newest first).
    pub before_seq: Option<u64>,
    pub limit: u32,
}

pub trait AuditStore: Send + Sync {
    /// Appends records after the current head in one transaction; returns the new head.
    fn append_audit(&self, records: &[AuditRecord]) -> Result<Option<(u64, [u8; 32])>>;
    /// The newest record's place in the chain (the archive's anchor once every record has
    /// been archived).
    fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>>;
    /// Where the archived part of the log ends (`None`: nothing archived).
    fn audit_anchor(&self) -> Result<Option<(u64, [u8; 32])>>;
    /// Removes the records up to `through` (archived elsewhere; `hash` is the last one's),
    /// records the new anchor and appends `record`, the archival's own audit record, in one
    /// transaction.
    fn archive_audit(&self, through: u64, hash: &[u8; 32], record: &AuditRecord) -> Result<()>;
    /// Records with `seq > after`, oldest first.
    fn audit_after(&self, after: u64, limit: u32) -> Result<Vec<ChainedRecord>>;
    /// Newest first.
    fn query_audit(&self, q: &AuditQuery) -> Result<Vec<ChainedRecord>>;
    /// How many records match, ignoring paging.
    fn count_audit(&self, q: &AuditQuery) -> Result<u64>;
    fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<()>;
    /// Oldest first.
    fn checkpoints(&self) -> Result<Vec<Checkpoint>>;
    fn last_checkpoint(&self) -> Result<Option<Checkpoint>>;
    /// How many records were committed together with the change they describe (for
    /// `/metrics`; the batching writer counts the others).
    fn written_with_changes(&self) -> u64;
}
