//! The audit record of one unit of work: a request, or a change the service makes by itself
//! (a scheduled rotation or deletion). Every store write takes the trail of the work it does,
//! and the write transaction that commits a change appends the trail's record to the log in
//! the same transaction, so a change and the record describing it are durable together.
//!
//! Passing it explicitly, rather than finding it in a thread-local, puts "every change is
//! audited" into the signatures: a write cannot be called without saying whose work it is.

use super::record::AuditRecord;
use crate::store::Fence;
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
pub struct Trail {
    entry: Mutex<Option<Entry>>,
    /// Set for leased work (scheduled jobs): its writes commit only under this fence.
    fence: Option<Fence>,
    /// The work failed and what commits is its bookkeeping (a failed rotation's retry
    /// schedule): the record keeps its own result code instead of `Success`.
    failed: bool,
}

struct Entry {
    record: AuditRecord,
    /// Set once a write transaction has committed the record.
    written: bool,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Trail")
    }
}

impl Trail {
    /// A unit of work recorded with `record` (`None`: the audit log is off).
    pub fn new(record: Option<AuditRecord>) -> Self {
        Trail {
            entry: Mutex::new(record.map(|record| Entry {
                record,
                written: false,
            })),
            fence: None,
            failed: false,
        }
    }

    /// Work that failed, whose writes record the failure (`record.result_code` says how).
    pub fn failed(record: AuditRecord, audit_on: bool) -> Self {
        Trail {
            failed: true,
            ..Self::system(record, audit_on)
        }
    }

    /// Work done under a lease: the store refuses its writes once the lease has another
    /// holder (`LeaseStore`).
    pub fn fenced(mut self, fence: Option<Fence>) -> Self {
        self.fence = fence;
        self
    }

    pub fn fence(&self) -> Option<Fence> {
        self.fence
    }

    /// Work that leaves no record: start-up, and the service's own housekeeping while the
    /// audit log is off.
    pub fn off() -> Self {
        Self::default()
    }

    /// A change the service makes by itself, recorded only when the audit log is on.
    pub fn system(record: AuditRecord, audit_on: bool) -> Self {
        Self::new(audit_on.then_some(record))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Entry>> {
        // A panic while holding the lock leaves a consistent record (every update is a
        // plain field write), so a poisoned lock is still usable.
        self.entry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the record, until a write has committed it.
    pub fn update(&self, f: impl FnOnce(&mut AuditRecord)) {
        if let Some(e) = self.lock().as_mut().filter(|e| !e.written) {
            f(&mut e.record)
        }
    }

    /// Notes a resource the work touched (once each).
    pub fn resource(&self, kind: &str, name: &str) {
        self.update(|r| {
            if !r.resources.iter().any(|n| n == name) {
                r.resources.push(name.to_string());
            }
            if r.resource_type.is_empty() {
                r.resource_type = kind.to_string();
            }
        });
    }

    /// Notes the CMK version a cryptographic action used (the first one; for ReEncrypt the
    /// source).
    pub fn key_version(&self, key_id: &str, version: u32) {
        self.update(|r| {
            if r.key_id.is_empty() {
                r.key_id = key_id.to_string();
                r.key_version = version;
            }
        });
    }

    /// The record a committing write appends: present until one write has appended it.
    pub fn for_commit(&self) -> Option<AuditRecord> {
        self.lock().as_ref().filter(|e| !e.written).map(|e| {
            let mut r = e.record.clone();
            if !self.failed {
                r.result_code = "Success".into();
            }
            r
        })
    }

    /// Called by the store once the transaction carrying `for_commit`'s record committed.
    pub fn mark_written(&self) {
        if let Some(e) = self.lock().as_mut() {
            e.written = true;
        }
    }

    /// Ends the work: the record, and whether a write transaction already committed it.
    pub fn take(&self) -> Option<(AuditRecord, bool)> {
        self.lock().take().map(|e| (e.record, e.written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_record_is_frozen_and_taken_once() {
        let t = Trail::new(Some(AuditRecord::default()));
        t.resource("kms_key", "a");
        t.resource("kms_key", "a");
        t.key_version("k", 2);
        let r = t.for_commit().unwrap();
        assert_eq!((r.resources.len(), r.key_version), (1, 2));
        assert_eq!(r.result_code, "Success");
        t.mark_written();
        assert!(t.for_commit().is_none());
        t.resource("kms_key", "b");
        let (r, written) = t.take().unwrap();
        assert!(written && r.resources == ["a"]);
        assert!(t.take().is_none());
        assert!(Trail::off().for_commit().is_none());
        assert!(Trail::system(AuditRecord::default(), false)
            .take()
            .is_none());
    }
}
