//! Audit log persistence: the hash chain, checkpoints, queries, and the ambient record of the
//! request being served, which a write transaction appends so that a change and the record
//! describing it commit together.

pub mod record;

use crate::error::Result;
use record::AuditRecord;
use record::{ChainedRecord, Checkpoint};
use std::cell::RefCell;

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
    fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>>;
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
}

// ---- the request being served ----------------------------------------------------------

thread_local! {
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

struct Pending {
    record: AuditRecord,
    /// Set once a write transaction has committed the record.
    written: bool,
}

/// The audit record of the request running on this thread. Action handlers run synchronously
/// on one thread (a runtime worker or a blocking-pool thread), so a thread-local carries the
/// record from the dispatcher into the store without threading it through every call.
pub mod pending {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Set when the daemon's audit log is on: changes the service makes by itself are
    /// recorded only then.
    static SYSTEM_RECORDS: AtomicBool = AtomicBool::new(false);

    pub fn record_system_changes(on: bool) {
        SYSTEM_RECORDS.store(on, Ordering::Relaxed);
    }

    /// Runs a change the service makes on its own (a scheduled rotation or deletion) with
    /// an audit record of its own, which the change's transaction commits. A request being
    /// served on this thread (AdvanceClock runs the jobs) keeps its own record.
    pub fn system_change<T>(record: AuditRecord, f: impl FnOnce() -> T) -> T {
        if !SYSTEM_RECORDS.load(Ordering::Relaxed) {
            return f();
        }
        let outer = PENDING.with(|p| p.borrow_mut().take());
        begin(record);
        let out = f();
        PENDING.with(|p| *p.borrow_mut() = outer);
        out
    }

    pub fn begin(record: AuditRecord) {
        PENDING.with(|p| {
            *p.borrow_mut() = Some(Pending {
                record,
                written: false,
            })
        });
    }

    /// Ends the request: the record, and whether a write transaction already committed it.
    pub fn finish() -> Option<(AuditRecord, bool)> {
        PENDING.with(|p| p.borrow_mut().take().map(|p| (p.record, p.written)))
    }

    pub fn update(f: impl FnOnce(&mut AuditRecord)) {
        PENDING.with(|p| {
            if let Some(p) = p.borrow_mut().as_mut() {
                if !p.written {
                    f(&mut p.record)
                }
            }
        });
    }

    /// Notes a resource the request touched (once each).
    pub fn resource(kind: &str, name: &str) {
        update(|r| {
            if !r.resources.iter().any(|n| n == name) {
                r.resources.push(name.to_string());
            }
            if r.resource_type.is_empty() {
                r.resource_type = kind.to_string();
            }
        });
    }

    /// Notes the CMK version a cryptographic action used (the first one, for ReEncrypt the
    /// source).
    pub fn key_version(key_id: &str, version: u32) {
        update(|r| {
            if r.key_id.is_empty() {
                r.key_id = key_id.to_string();
                r.key_version = version;
            }
        });
    }

    pub(crate) fn for_commit() -> Option<AuditRecord> {
        PENDING.with(|p| {
            p.borrow().as_ref().filter(|p| !p.written).map(|p| {
                let mut r = p.record.clone();
                r.result_code = "Success".into();
                r
            })
        })
    }

    pub(crate) fn mark_written() {
        PENDING.with(|p| {
            if let Some(p) = p.borrow_mut().as_mut() {
                p.written = true;
            }
        });
    }
}
