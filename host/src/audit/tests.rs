//! The writer against a store that refuses its appends for a while (a database restarting):
//! nothing queued is dropped while the daemon runs, and a stopping daemon does not wait for
//! a store that never comes back.

use super::*;
use crate::config::AuditConfig;
use crate::hsm::EmbeddedHsm;
use crate::store::audit::record::ChainedRecord;
use crate::store::{AuditQuery, SqliteStore};
use std::sync::atomic::AtomicU32;

/// A SQLite store whose `append_audit` fails while `refusals` lasts (`u32::MAX`: forever),
/// and, while `lost_acks` lasts, stores the records and then reports failure (a connection
/// lost while committing).
struct Refusing {
    inner: Arc<SqliteStore>,
    refusals: AtomicU32,
    lost_acks: AtomicU32,
}

impl AuditStore for Refusing {
    fn append_audit(&self, records: &[AuditRecord]) -> Result<Option<(u64, [u8; 32])>> {
        if self.lost_acks.load(Ordering::SeqCst) > 0 {
            self.lost_acks.fetch_sub(1, Ordering::SeqCst);
            self.inner.append_audit(records)?;
            return Err(Error::Store(
                "the connection was lost while committing".into(),
            ));
        }
        let left = self.refusals.load(Ordering::SeqCst);
        if left > 0 {
            if left != u32::MAX {
                self.refusals.store(left - 1, Ordering::SeqCst);
            }
            return Err(Error::Store("the database is away".into()));
        }
        self.inner.append_audit(records)
    }
    fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>> {
        self.inner.audit_head()
    }
    fn audit_anchor(&self) -> Result<Option<(u64, [u8; 32])>> {
        self.inner.audit_anchor()
    }
    fn archive_audit(&self, through: u64, hash: &[u8; 32], record: &AuditRecord) -> Result<()> {
        self.inner.archive_audit(through, hash, record)
    }
    fn audit_after(&self, after: u64, limit: u32) -> Result<Vec<ChainedRecord>> {
        self.inner.audit_after(after, limit)
    }
    fn query_audit(&self, q: &AuditQuery) -> Result<Vec<ChainedRecord>> {
        self.inner.query_audit(q)
    }
    fn count_audit(&self, q: &AuditQuery) -> Result<u64> {
        self.inner.count_audit(q)
    }
    fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        self.inner.insert_checkpoint(cp)
    }
    fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.inner.checkpoints()
    }
    fn last_checkpoint(&self) -> Result<Option<Checkpoint>> {
        self.inner.last_checkpoint()
    }
    fn written_with_changes(&self) -> u64 {
        self.inner.written_with_changes()
    }
}

/// An audit log on a fresh SQLite store behind `Refusing`, with the embedded HSM's key.
fn audit_refusing(dir: &std::path::Path, refusals: u32) -> (Audit, Arc<SqliteStore>) {
    audit_on(dir, refusals, 0)
}

fn audit_on(dir: &std::path::Path, refusals: u32, lost_acks: u32) -> (Audit, Arc<SqliteStore>) {
    let sqlite = Arc::new(SqliteStore::open(&dir.join("keyward.db")).unwrap());
    let store = Arc::new(Refusing {
        inner: sqlite.clone(),
        refusals: AtomicU32::new(0),
        lost_acks: AtomicU32::new(0),
    });
    let hsm: Arc<dyn Hsm> = Arc::new(EmbeddedHsm::open(dir).unwrap());
    let leader = Arc::new(Leadership::new(sqlite.clone(), Duration::from_secs(30)));
    let audit = Audit::start(
        store.clone(),
        sqlite.as_ref(),
        hsm,
        &AuditConfig::default(),
        leader,
    )
    .unwrap();
    // Refusing only from here: the start-up itself needs the store.
    store.refusals.store(refusals, Ordering::SeqCst);
    store.lost_acks.store(lost_acks, Ordering::SeqCst);
    (audit, sqlite)
}

fn record(n: usize) -> AuditRecord {
    AuditRecord {
        event_id: uuid::Uuid::new_v4().to_string(),
        action: "Encrypt".into(),
        request_id: format!("request-{n}"),
        result_code: "Success".into(),
        ..Default::default()
    }
}

/// The store holds exactly records 0..n, in order, each once.
#[track_caller]
fn assert_stored_once(sqlite: &SqliteStore, n: usize) {
    let stored: Vec<String> = sqlite
        .audit_after(0, 100)
        .unwrap()
        .into_iter()
        .map(|c| c.record.request_id)
        .collect();
    let want: Vec<String> = (0..n).map(|n| format!("request-{n}")).collect();
    assert_eq!(stored, want);
}

#[test]
fn records_wait_out_a_store_that_refuses_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    // More refusals than the three attempts the writer used to make before it dropped a batch.
    let (audit, sqlite) = audit_refusing(dir.path(), 5);
    for n in 0..10 {
        audit.submit(record(n));
    }
    audit.flush();
    assert_stored_once(&sqlite, 10);
    assert_eq!(audit.counters.failures.load(Ordering::SeqCst), 0);
    assert!(
        audit.healthy(),
        "the log is healthy again once a batch is stored"
    );
    assert!(audit.verify_log().unwrap().ok());
}

#[test]
fn a_stopping_daemon_gives_up_on_a_store_that_stays_away_and_counts_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, sqlite) = audit_refusing(dir.path(), u32::MAX);
    for n in 0..3 {
        audit.submit(record(n));
    }
    // Let the writer take the batch and fail on it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !audit.counters.failing.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the writer never reported failing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!audit.healthy());
    let counters = audit.counters.clone();
    drop(audit);
    assert_eq!(counters.failures.load(Ordering::SeqCst), 3);
    assert!(sqlite.audit_after(0, 100).unwrap().is_empty());
}

#[test]
fn a_batch_committed_by_an_attempt_that_reported_failure_is_not_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, sqlite) = audit_on(dir.path(), 0, 1);
    for n in 0..10 {
        audit.submit(record(n));
    }
    audit.flush();
    assert_stored_once(&sqlite, 10);
    assert!(audit.healthy());
}
