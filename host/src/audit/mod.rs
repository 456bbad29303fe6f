//! The audit log: every API request, allowed or refused, becomes one chained record (requests
//! refused before authentication only within a per-source budget, counted beyond it).
//!
//! Records of requests that change state are appended inside the store transaction that makes
//! the change (the request's `store::Trail` rides along with every store write), so the
//! change and its record are durable together.
//! Records of other requests (reads, crypto, refusals) go through a queue to one writer thread
//! that appends them in batches: one transaction, one fsync, for many requests. A power cut
//! can lose the queue, at most the last moment of read-only records; never a change's record.
//! The writer also signs checkpoints with a P-256 key held in the HSM (docs/audit.md).

pub mod archive;
#[cfg(test)]
mod tests;
pub mod verify;

/// The record and its chain hash are the audit log's persistent form, so they live with the
/// store; they are re-exported here where the rest of the daemon looks for them.
pub use crate::store::audit::record;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::hsm::Hsm;
use crate::leader::Leadership;
use crate::pubkey::SignScheme;
use crate::store::{AuditStore, MetaStore};
use keyward_shared::Algorithm;
use record::{checkpoint_message, AuditRecord, Checkpoint};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIGNING_KEY_META: &str = "audit_signing_key";
const PUBLIC_KEY_META: &str = "audit_public_key";
const QUEUE: usize = 65_536;
const BATCH: usize = 2_048;
/// How long the writer gathers records before committing them (measured in
/// docs/benchmarks.md: committing every few records cost a fifth of Encrypt's throughput).
const LINGER: Duration = Duration::from_millis(20);
/// The writer's waits between attempts to store a batch the store refused: doubling from the
/// first to the last, then the last until it succeeds.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Attempts a stopping daemon still makes before it counts a batch as lost.
const GIVE_UP_WHEN_STOPPING: u32 = 5;
/// How many of the newest records a retry searches for a batch an earlier attempt may have
/// committed (other daemons' appends since then included).
const RECHECK_WINDOW: u64 = 10_000;

/// The checkpoint key: P-256, generated in and held by the HSM; the store keeps its sealed
/// form and public key.
pub struct Signer {
    hsm: Arc<dyn Hsm>,
    sealed: Vec<u8>,
    pub public_key: Vec<u8>,
}

impl Signer {
    pub fn open(store: &dyn MetaStore, hsm: Arc<dyn Hsm>) -> Result<Self> {
        if store.get_meta(SIGNING_KEY_META)?.is_none() {
            let (sealed, public_key) = hsm.generate_key_pair(Algorithm::EccP256)?;
            store.set_meta(PUBLIC_KEY_META, &public_key)?;
            store.insert_meta(SIGNING_KEY_META, &sealed)?;
        }
        let sealed = store
            .get_meta(SIGNING_KEY_META)?
            .ok_or_else(|| Error::Internal("audit signing key vanished".into()))?;
        let public_key = store
            .get_meta(PUBLIC_KEY_META)?
            .ok_or_else(|| Error::Internal("audit public key vanished".into()))?;
        let signer = Signer {
            hsm,
            sealed,
            public_key,
        };
        // The stored public key must belong to the HSM key, or checkpoints would be
        // unverifiable (or verifiable against a key an intruder put there).
        let probe = b"keyward/audit-key-probe";
        let sig = signer.sign(probe)?;
        if !verify::signature_ok(&signer.public_key, probe, &sig) {
            return Err(Error::Config(
                "the stored audit public key does not match the HSM's audit key".into(),
            ));
        }
        Ok(signer)
    }

    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        self.hsm.sign(
            Algorithm::EccP256,
            &self.sealed,
            SignScheme::Ecdsa,
            message,
            false,
        )
    }

    /// SHA-256 fingerprint of the public key (hex), for pinning by auditors.
    pub fn fingerprint(&self) -> String {
        verify::fingerprint(&self.public_key)
    }
}

enum Msg {
    Record(Box<AuditRecord>),
    Flush(mpsc::Sender<()>),
}

#[derive(Default)]
pub struct Counters {
    /// Refusals before authentication beyond `unauthenticated_records_per_sec`: counted,
    /// not recorded.
    pub unauthenticated_unrecorded: AtomicU64,
    pub written: AtomicU64,
    pub failures: AtomicU64,
    pub checkpoints: AtomicU64,
    /// Records submitted and not yet taken by the writer (`/metrics`). Counted up before a
    /// record is sent and down when the writer takes it (or the send fails), so it never
    /// goes below zero.
    pub queued: std::sync::atomic::AtomicI64,
    /// The last write attempt failed (cleared by the next that succeeds): `/readyz`.
    pub failing: std::sync::atomic::AtomicBool,
}

pub struct Audit {
    tx: Option<SyncSender<Msg>>,
    pub signer: Arc<Signer>,
    pub counters: Arc<Counters>,
    worker: Option<std::thread::JoinHandle<()>>,
    store: Arc<dyn AuditStore>,
    /// One archival at a time: the scheduler's retention and an operator's ArchiveAuditLog
    /// would otherwise walk records the other is removing.
    archiving: std::sync::Mutex<()>,
    /// Set when the daemon stops: the writer then stops retrying a store that is away.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Audit {
    /// Stops the writer once it has stored (and signed) everything queued. Joining matters
    /// beyond durability: the writer holds the HSM, and a PKCS#11 library must be finalized
    /// by its last user, not torn down by process exit while a session is still open.
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.tx.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Audit {
    pub fn start(
        store: Arc<dyn AuditStore>,
        meta: &dyn MetaStore,
        hsm: Arc<dyn Hsm>,
        cfg: &crate::config::AuditConfig,
        leader: Arc<Leadership>,
    ) -> Result<Self> {
        let signer = Arc::new(Signer::open(meta, hsm)?);
        let counters = Arc::new(Counters::default());
        if !cfg.enabled {
            return Ok(Audit {
                tx: None,
                signer,
                counters,
                worker: None,
                store,
                archiving: std::sync::Mutex::new(()),
                stopping: Arc::default(),
            });
        }
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let stopping = Arc::<std::sync::atomic::AtomicBool>::default();
        let w = Writer {
            stopping: stopping.clone(),
            store: store.clone(),
            signer: signer.clone(),
            counters: counters.clone(),
            every: cfg.checkpoint_every.max(1),
            interval: Duration::from_secs(cfg.checkpoint_secs.max(1)),
            leader,
        };
        // A crash leaves the records since the last checkpoint unsigned; sign them before
        // serving, so the unsigned tail never grows across restarts. (With several daemons
        // the lease holder does it; a starting daemon that does not hold it leaves it to it.)
        let mut signed = w.last_signed();
        w.checkpoint_if_due(&mut signed, Why::Start);
        let worker = std::thread::Builder::new()
            .name("keyward-audit".into())
            .spawn(move || w.run(rx, signed))?;
        Ok(Audit {
            tx: Some(tx),
            signer,
            counters,
            worker: Some(worker),
            store,
            archiving: std::sync::Mutex::new(()),
            stopping,
        })
    }

    /// Checks the whole chain and every checkpoint signature, after the queue is stored.
    pub fn verify_log(&self) -> Result<verify::Report> {
        self.flush();
        verify::verify(self.store.as_ref(), &self.signer.public_key)
    }

    /// The newest record's number and the last archived one's (0: none), queue included.
    pub fn positions(&self) -> Result<(u64, u64)> {
        self.flush();
        let head = self.store.audit_head()?.map_or(0, |(seq, _)| seq);
        let archived = self.store.audit_anchor()?.map_or(0, |(seq, _)| seq);
        Ok((head, archived))
    }

    /// Applies `[audit] retain_days`: archives the records older than that.
    pub fn apply_retention(
        &self,
        now: i64,
        cfg: &crate::config::Config,
    ) -> Result<Option<archive::ArchiveReport>> {
        if cfg.audit.retain_days == 0 || !self.enabled() {
            return Ok(None);
        }
        let before = now - i64::from(cfg.audit.retain_days) * 86_400;
        self.archive_before(before, &Self::archive_dir(cfg))
    }

    /// Where archived segments go.
    pub fn archive_dir(cfg: &crate::config::Config) -> std::path::PathBuf {
        cfg.audit
            .archive_dir
            .clone()
            .unwrap_or_else(|| cfg.data_dir.join("audit-archive"))
    }

    /// Up to `limit` records after sequence number `after`, oldest first, queue included.
    pub fn export(&self, after: u64, limit: u32) -> Result<Vec<record::ChainedRecord>> {
        self.flush();
        self.store.audit_after(after, limit)
    }

    /// One page of a LookUpEvents query (newest first, records still queued included) and
    /// how many records match the query without its paging.
    pub fn look_up(
        &self,
        q: &crate::store::AuditQuery,
    ) -> Result<(Vec<record::ChainedRecord>, u64)> {
        self.flush();
        let rows = self.store.query_audit(q)?;
        let total = self.store.count_audit(&crate::store::AuditQuery {
            before_seq: None,
            ..q.clone()
        })?;
        Ok((rows, total))
    }

    /// Records committed together with the change they describe (the writer counts the
    /// others in `counters.written`).
    pub fn written_with_changes(&self) -> u64 {
        self.store.written_with_changes()
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Whether the audit log can take records: off, or its writer thread still running and
    /// no write has failed since the last successful one.
    pub fn healthy(&self) -> bool {
        match &self.worker {
            None => !self.enabled(),
            Some(w) => !w.is_finished() && !self.counters.failing.load(Ordering::Relaxed),
        }
    }

    /// Queues a record from async code. When the queue is full the wait for room happens
    /// with the runtime told (`block_in_place`), so other connections keep being served.
    pub fn submit(&self, record: AuditRecord) {
        let Some(tx) = &self.tx else {
            return;
        };
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        let sent = match tx.try_send(Msg::Record(Box::new(record))) {
            Ok(()) => true,
            Err(mpsc::TrySendError::Full(msg)) => {
                tokio::task::block_in_place(|| tx.send(msg)).is_ok()
            }
            Err(mpsc::TrySendError::Disconnected(_)) => false,
        };
        if !sent {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every record queued so far is in the store, and signs a checkpoint.
    pub fn flush(&self) {
        if let Some(tx) = &self.tx {
            let (done, wait) = mpsc::channel();
            if tx.send(Msg::Flush(done)).is_ok() {
                let _ = wait.recv_timeout(Duration::from_secs(30));
            }
        }
    }
}

struct Writer {
    store: Arc<dyn AuditStore>,
    signer: Arc<Signer>,
    counters: Arc<Counters>,
    every: u64,
    interval: Duration,
    leader: Arc<Leadership>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl Writer {
    /// Where the stored chain was last signed.
    fn last_signed(&self) -> Signed {
        Signed {
            seq: self
                .store
                .last_checkpoint()
                .ok()
                .flatten()
                .map(|c| c.seq)
                .unwrap_or(0),
            at: Instant::now(),
        }
    }

    fn run(self, rx: Receiver<Msg>, mut signed: Signed) {
        loop {
            let first = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    // Everything sent before the sender went away has been stored.
                    self.checkpoint_if_due(&mut signed, Why::Stop);
                    return;
                }
            };
            let mut batch = Vec::new();
            let mut waiters = Vec::new();
            let mut take = |m: Msg, batch: &mut Vec<AuditRecord>| match m {
                Msg::Record(r) => {
                    self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                    batch.push(*r)
                }
                Msg::Flush(w) => waiters.push(w),
            };
            if let Some(m) = first {
                let flushing = matches!(m, Msg::Flush(_));
                take(m, &mut batch);
                // Let records gather while asleep: senders to a receiver that is not
                // waiting pay no wake-up, and one commit (one fsync) covers them all. A
                // flush (an auditor is reading) is served at once.
                if !flushing {
                    std::thread::sleep(LINGER);
                }
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(m) => take(m, &mut batch),
                        Err(_) => break,
                    }
                }
            }
            if !batch.is_empty() {
                self.append(&batch);
            }
            let why = match waiters.is_empty() {
                true => Why::Due,
                false => Why::Flush,
            };
            self.checkpoint_if_due(&mut signed, why);
            for w in waiters {
                let _ = w.send(());
            }
        }
    }

    /// Stores the batch, however long the store takes to come back: a record of a request
    /// that was answered is never dropped because the database was briefly away (a
    /// PostgreSQL restart, a full disk being cleared). Meanwhile `/readyz` says the log is
    /// failing, the queue fills, and once it is full requests wait for room (`submit`). Only
    /// a daemon that is stopping gives up, after a few more attempts, and counts what it
    /// could not store in `keyward_audit_write_failures`.
    fn append(&self, batch: &[AuditRecord]) {
        let mut wait = RETRY_FIRST;
        let mut attempt = 0u32;
        loop {
            // A failed attempt may still have committed (a connection lost while
            // committing): then retrying would record the batch's requests twice. A store
            // that cannot say fails this attempt without a second wait for it.
            let stored = match attempt {
                0 => Ok(false),
                _ => self.already_stored(batch),
            }
            .and_then(|done| match done {
                true => {
                    tracing::warn!("audit records stored by an attempt that reported failure");
                    Ok(())
                }
                false => self.store.append_audit(batch).map(|_| ()),
            });
            match stored {
                Ok(()) => {
                    self.counters
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    if self.counters.failing.swap(false, Ordering::Relaxed) {
                        tracing::warn!(attempt, "audit records stored again");
                    }
                    return;
                }
                Err(e) => {
                    self.counters.failing.store(true, Ordering::Relaxed);
                    // Every attempt at first, then one line a minute or so.
                    if attempt < 3 || attempt.is_multiple_of(30) {
                        tracing::error!(error = %e, attempt, records = batch.len(),
                            "cannot append audit records; retrying");
                    }
                }
            }
            attempt += 1;
            if self.stopping.load(Ordering::Relaxed) && attempt >= GIVE_UP_WHEN_STOPPING {
                tracing::error!(
                    records = batch.len(),
                    "stopping: audit records could not be stored and are lost"
                );
                self.counters
                    .failures
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                return;
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// Whether the batch is already in the chain. Appends are serialised, so a committed
    /// batch lies among the newest records: the last `RECHECK_WINDOW` are searched for its
    /// last record's event id (a fresh UUID per record).
    fn already_stored(&self, batch: &[AuditRecord]) -> Result<bool> {
        let Some(last) = batch.last().filter(|r| !r.event_id.is_empty()) else {
            return Ok(false);
        };
        let Some((head, _)) = self.store.audit_head()? else {
            return Ok(false);
        };
        let mut after = head.saturating_sub(RECHECK_WINDOW);
        while after < head {
            let rows = self.store.audit_after(after, 1_000)?;
            if rows.iter().any(|c| c.record.event_id == last.event_id) {
                return Ok(true);
            }
            match rows.last() {
                Some(c) => after = c.seq,
                None => break,
            }
        }
        Ok(false)
    }

    /// Signs the chain's head when due: after `every` new records, or after `interval` with
    /// any unsigned record; a flush (an auditor is about to read) also signs what is there,
    /// and so do the start and stop of the writer. The signed position is kept here; only
    /// the head, which writes in request transactions also move, is read from the store.
    ///
    /// With several daemons on one store, the scheduled signing is the jobs lease holder's
    /// work, so one daemon keeps the deployment's one chain signed; start, stop and flush
    /// sign on any daemon (a daemon restarted after a crash signs what its killed self left
    /// unsigned even while the dead process's lease runs out; a checkpoint at a position
    /// already signed is written once).
    fn checkpoint_if_due(&self, signed: &mut Signed, why: Why) {
        if why == Why::Due && !self.leader.is_leader() {
            return;
        }
        let flushing = why != Why::Due;
        let (seq, hash) = match self.store.audit_head() {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the audit chain's head");
                return;
            }
        };
        if seq <= signed.seq
            || !(seq - signed.seq >= self.every || signed.at.elapsed() >= self.interval || flushing)
        {
            return;
        }
        signed.at = Instant::now();
        let create_time = crate::clock::SystemClock.now();
        let result = self
            .signer
            .sign(&checkpoint_message(seq, &hash, create_time))
            .and_then(|signature| {
                self.store.insert_checkpoint(&Checkpoint {
                    seq,
                    hash,
                    create_time,
                    signature,
                })
            });
        match result {
            Ok(()) => {
                signed.seq = seq;
                self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(error = %e, "cannot sign an audit checkpoint"),
        }
    }
}

/// What asks the writer to sign.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    Due,
    Flush,
    Start,
    Stop,
}

/// The newest signed checkpoint, as the writer last made it.
struct Signed {
    seq: u64,
    at: Instant,
}

/// One record as a JSON object (the export format, one per line in `keyward audit export`).
pub fn export_json(c: &record::ChainedRecord) -> serde_json::Value {
    let r = &c.record;
    serde_json::json!({
        "Seq": c.seq,
        "EventId": r.event_id,
        "EventTime": r.event_time,
        "Region": r.region,
        "Service": r.service,
        "Action": r.action,
        "ReadOnly": r.read_only,
        "OwnerUin": r.owner_uin,
        "Uin": r.uin,
        "Username": r.username,
        "SecretId": r.secret_id,
        "SourceIp": r.source_ip,
        "UserAgent": r.user_agent,
        "ResourceType": r.resource_type,
        "Resources": r.resources,
        "RequestId": r.request_id,
        "ResultCode": r.result_code,
        "KeyId": r.key_id,
        "KeyVersion": r.key_version,
        "PrevHash": hex::encode(c.prev_hash),
        "Hash": hex::encode(c.hash),
    })
}
