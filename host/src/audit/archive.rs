//! Audit retention: old records move out of the store into *segment files* that verify on
//! their own (docs/audit.md, "Retention and archival").
//!
//! A segment is JSON lines: one line per record (`Seq`, `PrevHash`, `Hash`, `Record`), then
//! one `Seal` line holding the signed checkpoint at its last record and the audit public key.
//! A segment always ends at a signed checkpoint, so anyone can check it offline
//! (`keyward audit verify-archive`): every record's hash and link, and the checkpoint's
//! signature. Consecutive segments link up (a segment's first `PrevHash` is the previous
//! one's last `Hash`), and the log left in the store starts from the same point (its
//! *anchor*), so the whole history still forms one chain.
//!
//! The segment is written and flushed to disk before the records leave the store; the store
//! then removes them, records the anchor and appends the archival's own audit record in one
//! transaction. A crash in between leaves the records in the store, and the next archival
//! writes the same segment again.

use super::record::{AuditRecord, ChainedRecord, Checkpoint, GENESIS};
use super::verify::{checkpoint_fault, fingerprint, record_fault};
use super::Audit;
use crate::error::{Error, Result};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// The archival's audit record names the range as `audit-log/<first>-<last>`.
const RESOURCE_PREFIX: &str = "audit-log/";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RecordLine {
    seq: u64,
    prev_hash: String,
    hash: String,
    record: AuditRecord,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SealLine {
    /// The format of the segment (1).
    seal: u32,
    first_seq: u64,
    last_seq: u64,
    checkpoint_seq: u64,
    checkpoint_hash: String,
    checkpoint_time: i64,
    /// Base64 DER ECDSA signature by the audit key.
    checkpoint_signature: String,
    /// Base64 DER SubjectPublicKeyInfo of the audit key, and its SHA-256 (hex).
    public_key: String,
    key_fingerprint: String,
}

/// What one archival moved.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArchiveReport {
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: u64,
    pub file: PathBuf,
}

/// What one segment file holds, once verified.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SegmentReport {
    pub file: PathBuf,
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: u64,
    pub key_fingerprint: String,
    #[serde(skip)]
    pub first_prev_hash: [u8; 32],
    #[serde(skip)]
    pub last_hash: [u8; 32],
}

/// Whether `record` is the archival that moved records up to `through`.
pub fn records_archival(record: &AuditRecord, through: u64) -> bool {
    record.action == "ArchiveAuditLog"
        && record.result_code == "Success"
        && record.resources.iter().any(|r| {
            r.rsplit_once(RESOURCE_PREFIX)
                .and_then(|(_, range)| range.split_once('-'))
                .is_some_and(|(_, last)| last == through.to_string())
        })
}

/// The segment being written: its temporary file, and where it may be cut (after the last
/// record that a valid checkpoint signs).
struct Draft {
    file: std::fs::File,
    first: u64,
    cut: Option<(u64, ChainedRecord, Checkpoint)>,
}

impl Audit {
    /// Moves the records older than `before` (unix seconds) into a segment file in `dir`,
    /// up to the newest signed checkpoint among them. `None` when there is nothing to move.
    pub fn archive_before(&self, before: i64, dir: &Path) -> Result<Option<ArchiveReport>> {
        let _one_at_a_time = self.archiving.lock().unwrap_or_else(|e| e.into_inner());
        self.flush();
        create_archive_dir(dir)?;
        let (prev, first) = match self.store.audit_anchor()? {
            Some((seq, hash)) => (hash, seq + 1),
            None => (GENESIS, 1),
        };
        let tmp = dir.join(format!(".segment-{first}.tmp"));
        let draft = self.write_draft(&tmp, first, prev, before)?;
        let Some((end, last, cp)) = draft.cut else {
            let _ = std::fs::remove_file(&tmp);
            return Ok(None);
        };
        let mut file = draft.file;
        file.set_len(end)?;
        file.seek(std::io::SeekFrom::End(0))?;
        let seal = SealLine {
            seal: 1,
            first_seq: draft.first,
            last_seq: last.seq,
            checkpoint_seq: cp.seq,
            checkpoint_hash: hex::encode(cp.hash),
            checkpoint_time: cp.create_time,
            checkpoint_signature: B64.encode(&cp.signature),
            public_key: B64.encode(&self.signer.public_key),
            key_fingerprint: fingerprint(&self.signer.public_key),
        };
        writeln!(file, "{}", json_line(&seal)?)?;
        file.sync_all()?;
        let path = dir.join(format!("audit-{:012}-{:012}.jsonl", draft.first, last.seq));
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        let record = AuditRecord::system("keyward", "ArchiveAuditLog", "", 0).about(
            "audit_log",
            format!(
                "qcs::keyward:::{RESOURCE_PREFIX}{}-{}",
                draft.first, last.seq
            ),
        );
        self.store.archive_audit(last.seq, &last.hash, &record)?;
        tracing::info!(first = draft.first, last = last.seq, file = %path.display(), "audit records archived");
        Ok(Some(ArchiveReport {
            first_seq: draft.first,
            last_seq: last.seq,
            records: last.seq + 1 - draft.first,
            file: path,
        }))
    }

    /// Writes the records older than `before` to `tmp`, checking the chain as it goes, and
    /// notes the last place a valid checkpoint signs.
    fn write_draft(
        &self,
        tmp: &Path,
        first: u64,
        mut prev: [u8; 32],
        before: i64,
    ) -> Result<Draft> {
        let checkpoints: HashMap<u64, Checkpoint> = self
            .store
            .checkpoints()?
            .into_iter()
            .filter(|c| c.seq >= first)
            .map(|c| (c.seq, c))
            .collect();
        let mut file = private_file(tmp)?;
        let mut written = 0u64;
        let mut cut = None;
        let mut expected = first;
        'walk: loop {
            let page = self.store.audit_after(expected - 1, 1000)?;
            if page.is_empty() {
                break;
            }
            for r in page {
                if r.record.event_time >= before {
                    break 'walk;
                }
                if let Some((seq, why)) = record_fault(&prev, expected, &r) {
                    return Err(Error::Internal(format!(
                        "the audit log is broken at record {seq} ({why}); it is not archived"
                    )));
                }
                let line = json_line(&RecordLine {
                    seq: r.seq,
                    prev_hash: hex::encode(r.prev_hash),
                    hash: hex::encode(r.hash),
                    record: r.record.clone(),
                })?;
                writeln!(file, "{line}")?;
                written += line.len() as u64 + 1;
                if let Some(cp) = checkpoints.get(&r.seq) {
                    if checkpoint_fault(&self.signer.public_key, cp, &r).is_none() {
                        cut = Some((written, r.clone(), cp.clone()));
                    }
                }
                prev = r.hash;
                expected += 1;
            }
        }
        Ok(Draft { file, first, cut })
    }
}

fn json_line<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Internal(format!("segment line: {e}")))
}

fn create_archive_dir(dir: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    Ok(b.create(dir)?)
}

fn private_file(path: &Path) -> Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    Ok(o.open(path)?)
}

/// Checks one segment file on its own: every record's hash and link, the seal's checkpoint
/// against the last record, and its signature by the public key in the seal (compare its
/// fingerprint with the deployment's, or pass the expected one to the CLI).
pub fn verify_segment(path: &Path) -> Result<SegmentReport> {
    let bad = |why: String| Error::Cli(format!("{}: {why}", path.display()));
    let reader = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut lines = Vec::new();
    for line in reader.lines() {
        lines.push(line?);
    }
    let (seal_line, record_lines) = lines
        .split_last()
        .ok_or_else(|| bad("the segment is empty".into()))?;
    let seal: SealLine = serde_json::from_str(seal_line)
        .map_err(|e| bad(format!("the last line is not a seal: {e}")))?;
    let hash32 = |h: &str| -> Result<[u8; 32]> {
        hex::decode(h)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .ok_or_else(|| bad(format!("`{h}` is not a SHA-256 hash")))
    };
    let mut chain: Option<ChainedRecord> = None;
    let mut first_prev_hash = GENESIS;
    for (i, text) in record_lines.iter().enumerate() {
        let line: RecordLine = serde_json::from_str(text)
            .map_err(|e| bad(format!("line {} is not a record: {e}", i + 1)))?;
        let r = ChainedRecord {
            seq: line.seq,
            prev_hash: hash32(&line.prev_hash)?,
            hash: hash32(&line.hash)?,
            record: line.record,
        };
        let (prev, expected) = match &chain {
            Some(p) => (p.hash, p.seq + 1),
            None => {
                first_prev_hash = r.prev_hash;
                (r.prev_hash, seal.first_seq)
            }
        };
        if let Some((seq, why)) = record_fault(&prev, expected, &r) {
            return Err(bad(format!("record {seq}: {why}")));
        }
        chain = Some(r);
    }
    let last = chain.ok_or_else(|| bad("the segment holds no records".into()))?;
    if last.seq != seal.last_seq || seal.checkpoint_seq != last.seq {
        return Err(bad(
            "the seal does not sign the segment's last record".into()
        ));
    }
    let public_key = B64
        .decode(&seal.public_key)
        .map_err(|_| bad("the seal's public key is not base64".into()))?;
    let cp = Checkpoint {
        seq: seal.checkpoint_seq,
        hash: hash32(&seal.checkpoint_hash)?,
        create_time: seal.checkpoint_time,
        signature: B64
            .decode(&seal.checkpoint_signature)
            .map_err(|_| bad("the seal's signature is not base64".into()))?,
    };
    if let Some(why) = checkpoint_fault(&public_key, &cp, &last) {
        return Err(bad(why));
    }
    Ok(SegmentReport {
        file: path.to_path_buf(),
        first_seq: seal.first_seq,
        last_seq: last.seq,
        records: record_lines.len() as u64,
        key_fingerprint: fingerprint(&public_key),
        first_prev_hash,
        last_hash: last.hash,
    })
}
