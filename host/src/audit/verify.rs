//! Walks the audit chain and its signed checkpoints; reports the first broken record.

use super::record::{chain_hash, checkpoint_message, ChainedRecord, Checkpoint, GENESIS};
use crate::error::Result;
use crate::store::AuditStore;
use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    /// Records that were walked.
    pub records: u64,
    /// Checkpoints whose signature and hash were checked.
    pub checkpoints: u64,
    /// Records after the last valid checkpoint (chained, not yet signed).
    pub unsigned_tail: u64,
    /// The last record moved to archive segments (0: none); the walk starts after it.
    pub archived_through: u64,
    /// Sequence number of the first record that breaks the chain, if any.
    pub first_broken: Option<u64>,
    pub reason: Option<String>,
    /// SHA-256 of the audit public key the signatures were checked with.
    pub key_fingerprint: String,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.first_broken.is_none()
    }
}

pub fn fingerprint(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

/// A DER ECDSA P-256/SHA-256 signature by `spki_der` over `message`.
pub fn signature_ok(spki_der: &[u8], message: &[u8], signature: &[u8]) -> bool {
    crate::pubkey::verify(
        keyward_shared::Algorithm::EccP256,
        spki_der,
        crate::pubkey::SignScheme::Ecdsa,
        message,
        false,
        signature,
    )
    .unwrap_or(false)
}

/// Checks every record's hash and link, and every checkpoint's signature and hash. A log
/// whose oldest records were archived starts at its anchor, which must be a validly signed
/// checkpoint, and must hold the archival's own record (so records cannot be dropped by
/// moving the anchor in the database).
pub fn verify(store: &dyn AuditStore, public_key: &[u8]) -> Result<Report> {
    let mut report = Report {
        records: 0,
        checkpoints: 0,
        unsigned_tail: 0,
        archived_through: 0,
        first_broken: None,
        reason: None,
        key_fingerprint: fingerprint(public_key),
    };
    let broken = |report: &mut Report, seq: u64, why: String| {
        if report.first_broken.is_none() {
            report.first_broken = Some(seq);
            report.reason = Some(why);
        }
    };
    let anchor = store.audit_anchor()?;
    let (mut prev, mut expected) = anchor.map_or((GENESIS, 1), |(seq, hash)| (hash, seq + 1));
    let checkpoints = store.checkpoints()?;
    if let Some((seq, hash)) = anchor {
        report.archived_through = seq;
        let signed = checkpoints.iter().any(|cp| {
            cp.seq == seq
                && cp.hash == hash
                && signature_ok(
                    public_key,
                    &checkpoint_message(cp.seq, &cp.hash, cp.create_time),
                    &cp.signature,
                )
        });
        if !signed {
            broken(
                &mut report,
                seq + 1,
                format!("the log claims records up to {seq} were archived, but no valid checkpoint signs that point"),
            );
            return Ok(report);
        }
    }
    let mut archival_recorded = anchor.is_none();
    let start = expected;
    let mut next_cp = checkpoints.iter().filter(|cp| cp.seq >= start).peekable();
    let mut last_signed = expected - 1;
    'walk: loop {
        let page = store.audit_after(expected - 1, 1000)?;
        if page.is_empty() {
            break;
        }
        for r in page {
            if let Some((seq, why)) = record_fault(&prev, expected, &r) {
                broken(&mut report, seq, why);
                break 'walk;
            }
            while let Some(cp) = next_cp.next_if(|cp| cp.seq <= r.seq) {
                if cp.seq < r.seq {
                    continue;
                }
                if let Some(why) = checkpoint_fault(public_key, cp, &r) {
                    broken(&mut report, r.seq, why);
                    break 'walk;
                }
                report.checkpoints += 1;
                last_signed = r.seq;
            }
            if let Some((seq, _)) = anchor {
                archival_recorded |= super::archive::records_archival(&r.record, seq);
            }
            prev = r.hash;
            report.records += 1;
            expected += 1;
        }
    }
    if report.ok() {
        if let Some(cp) = next_cp.next() {
            // A signed checkpoint beyond the last record: records at the end were removed.
            broken(
                &mut report,
                expected,
                format!(
                    "record {expected} is missing: a checkpoint signs the chain up to record {}",
                    cp.seq
                ),
            );
        } else if !archival_recorded {
            broken(
                &mut report,
                start,
                "the log starts after an archived part, but holds no record of that archival \
                 (records were removed by hand)"
                    .into(),
            );
        }
    }
    report.unsigned_tail = (expected - 1).saturating_sub(last_signed);
    Ok(report)
}

/// Why record `r` does not continue the chain that ended at `prev` with number `expected`:
/// the record number it concerns and the reason.
pub(super) fn record_fault(
    prev: &[u8; 32],
    expected: u64,
    r: &ChainedRecord,
) -> Option<(u64, String)> {
    if r.seq != expected {
        return Some((
            expected,
            format!(
                "record {expected} is missing (the next record is {})",
                r.seq
            ),
        ));
    }
    if r.prev_hash != *prev {
        return Some((
            r.seq,
            "its link to the previous record does not match (records deleted, inserted or \
             reordered)"
                .into(),
        ));
    }
    if chain_hash(prev, r.seq, &r.record) != r.hash {
        return Some((
            r.seq,
            "its content does not match its hash (the record was edited)".into(),
        ));
    }
    None
}

/// Why the checkpoint at record `r` does not hold.
pub(super) fn checkpoint_fault(
    public_key: &[u8],
    cp: &Checkpoint,
    r: &ChainedRecord,
) -> Option<String> {
    if cp.hash != r.hash {
        return Some(format!(
            "checkpoint at record {} names a different chain",
            cp.seq
        ));
    }
    let message = checkpoint_message(cp.seq, &cp.hash, cp.create_time);
    if !signature_ok(public_key, &message, &cp.signature) {
        return Some(format!(
            "checkpoint at record {} has an invalid signature",
            cp.seq
        ));
    }
    None
}
