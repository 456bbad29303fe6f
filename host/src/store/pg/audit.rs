//! PostgreSQL: the audit log's hash chain, checkpoints and queries, and the commit that
//! appends a request's record inside the transaction of the change it describes.
//!
//! Appending computes the head inside the appending transaction under a transaction-scoped
//! advisory lock, so appenders (the batching writer, every audited write, other daemons on
//! the same database) take turns: each sees the previous one's committed records (READ
//! COMMITTED reads a fresh snapshot per statement) and the chain never forks. The lock is
//! the last one a transaction takes, right before it commits, so it is held only for the
//! append itself and never waited for while holding it.

use super::{bad, lock, u32_at, u64_at, PgStore};
use crate::error::{Error, Result};
use crate::store::audit::record::{chain_hash, AuditRecord, ChainedRecord, Checkpoint, GENESIS};
use crate::store::audit::{AuditAttribute, AuditQuery, AuditStore, Trail};
use postgres::types::ToSql;
use postgres::{GenericClient, Row, Transaction};
use std::sync::atomic::Ordering;

impl PgStore {
    /// Commits a write transaction, appending the trail's audit record to it first, so the
    /// change and its record are durable together or not at all.
    pub(super) fn commit(&self, tx: Transaction<'_>, trail: &Trail) -> Result<()> {
        self.timing.time(crate::store::StoreCall::Commit, || {
            self.commit_untimed(tx, trail)
        })
    }

    fn commit_untimed(&self, mut tx: Transaction<'_>, trail: &Trail) -> Result<()> {
        if let Some(fence) = trail.fence() {
            super::leases::check_fence(&mut tx, fence)?;
        }
        let record = trail.for_commit();
        if let Some(r) = &record {
            append_tx(&mut tx, std::slice::from_ref(r))?;
        }
        tx.commit()?;
        if record.is_some() {
            trail.mark_written();
            self.written_with_changes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Where the archived part of the log ended: `seq (8 bytes BE) || hash`.
const ANCHOR_META: &str = "audit_anchor";

/// The newest record, or (when every record has been archived) the archive's anchor.
fn head(c: &mut impl GenericClient) -> Result<Option<(u64, [u8; 32])>> {
    let newest = c.query_opt(
        "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
        &[],
    )?;
    match newest {
        Some(r) => Ok(Some((u64_at(&r, 0)?, hash_col(&r, 1)?))),
        None => anchor(c),
    }
}

fn anchor(c: &mut impl GenericClient) -> Result<Option<(u64, [u8; 32])>> {
    let value: Option<Vec<u8>> = c
        .query_opt("SELECT value FROM meta WHERE name = $1", &[&ANCHOR_META])?
        .map(|r| r.try_get(0))
        .transpose()?;
    match value {
        None => Ok(None),
        Some(v) if v.len() == 40 => {
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&v[..8]);
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&v[8..]);
            Ok(Some((u64::from_be_bytes(seq), hash)))
        }
        Some(_) => Err(Error::Store("the audit archive anchor is malformed".into())),
    }
}

/// Appends after the head, under the chain's lock (see the module comment).
fn append_tx(tx: &mut Transaction<'_>, records: &[AuditRecord]) -> Result<Option<(u64, [u8; 32])>> {
    lock(tx, "audit-chain")?;
    let (mut seq, mut prev) = head(tx)?.unwrap_or((0, GENESIS));
    let stmt = tx.prepare(
        "INSERT INTO audit_log (seq, event_id, event_time, region, service, action, read_only, \
         owner_uin, uin, username, secret_id, source_ip, user_agent, resource_type, resources, \
         request_id, result_code, key_id, key_version, prev_hash, hash) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
         $20, $21)",
    )?;
    for r in records {
        seq += 1;
        let hash = chain_hash(&prev, seq, r);
        let resources = serde_json::to_string(&r.resources)
            .map_err(|e| Error::Internal(format!("audit resources: {e}")))?;
        tx.execute(
            &stmt,
            &[
                &(seq as i64),
                &r.event_id,
                &r.event_time,
                &r.region,
                &r.service,
                &r.action,
                &r.read_only,
                &(r.owner_uin as i64),
                &(r.uin as i64),
                &r.username,
                &r.secret_id,
                &r.source_ip,
                &r.user_agent,
                &r.resource_type,
                &resources,
                &r.request_id,
                &r.result_code,
                &r.key_id,
                &i64::from(r.key_version),
                &prev.as_slice(),
                &hash.as_slice(),
            ],
        )?;
        prev = hash;
    }
    Ok((seq > 0).then_some((seq, prev)))
}

fn hash_col(r: &Row, i: usize) -> Result<[u8; 32]> {
    let v: Vec<u8> = r.try_get(i)?;
    // A damaged hash column must not stop the walk: it simply fails verification.
    let mut out = [0u8; 32];
    if v.len() == 32 {
        out.copy_from_slice(&v);
    } else {
        out[..v.len().min(32)].copy_from_slice(&v[..v.len().min(32)]);
        out[31] ^= 0xff;
    }
    Ok(out)
}

const COLUMNS: &str = "seq, event_id, event_time, region, service, action, read_only, owner_uin, \
     uin, username, secret_id, source_ip, user_agent, resource_type, resources, request_id, \
     result_code, key_id, key_version, prev_hash, hash";

fn chained(r: &Row) -> Result<ChainedRecord> {
    let resources: String = r.try_get(14)?;
    Ok(ChainedRecord {
        seq: u64_at(r, 0)?,
        record: AuditRecord {
            event_id: r.try_get(1)?,
            event_time: r.try_get(2)?,
            region: r.try_get(3)?,
            service: r.try_get(4)?,
            action: r.try_get(5)?,
            read_only: r.try_get(6)?,
            owner_uin: u64_at(r, 7)?,
            uin: u64_at(r, 8)?,
            username: r.try_get(9)?,
            secret_id: r.try_get(10)?,
            source_ip: r.try_get(11)?,
            user_agent: r.try_get(12)?,
            resource_type: r.try_get(13)?,
            // An unparsable list is kept verbatim so verification flags the record.
            resources: serde_json::from_str(&resources).unwrap_or_else(|_| vec![resources]),
            request_id: r.try_get(15)?,
            result_code: r.try_get(16)?,
            key_id: r.try_get(17)?,
            key_version: u32_at(r, 18).map_err(|_| bad("key_version"))?,
        },
        prev_hash: hash_col(r, 19)?,
        hash: hash_col(r, 20)?,
    })
}

fn checkpoint_row(r: &Row) -> Result<Checkpoint> {
    Ok(Checkpoint {
        seq: u64_at(r, 0)?,
        hash: hash_col(r, 1)?,
        create_time: r.try_get(2)?,
        signature: r.try_get(3)?,
    })
}

impl AuditStore for PgStore {
    fn written_with_changes(&self) -> u64 {
        self.written_with_changes.load(Ordering::Relaxed)
    }

    fn append_audit(&self, records: &[AuditRecord]) -> Result<Option<(u64, [u8; 32])>> {
        if records.is_empty() {
            return self.audit_head();
        }
        self.with(|c| {
            let mut tx = c.transaction()?;
            let head = append_tx(&mut tx, records)?;
            tx.commit()?;
            Ok(head)
        })
    }

    fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>> {
        // The newest row and the anchor must come from one snapshot (an archival between
        // the two reads would show neither).
        self.with(|c| {
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let h = head(&mut tx)?;
            tx.commit()?;
            Ok(h)
        })
    }

    fn audit_anchor(&self) -> Result<Option<(u64, [u8; 32])>> {
        self.with(anchor)
    }

    fn archive_audit(&self, through: u64, hash: &[u8; 32], record: &AuditRecord) -> Result<()> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            // The chain's lock first: no record may be appended between the deletion and
            // the archival's own record.
            lock(&mut tx, "audit-chain")?;
            let mut value = through.to_be_bytes().to_vec();
            value.extend_from_slice(hash);
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&ANCHOR_META, &value],
            )?;
            tx.execute(
                "DELETE FROM audit_log WHERE seq <= $1",
                &[&(through as i64)],
            )?;
            append_tx(&mut tx, std::slice::from_ref(record))?;
            tx.commit()?;
            Ok(())
        })
    }

    fn audit_after(&self, after: u64, limit: u32) -> Result<Vec<ChainedRecord>> {
        self.with(|c| {
            let sql =
                format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2");
            c.query(&sql, &[&(after as i64), &i64::from(limit)])?
                .iter()
                .map(chained)
                .collect()
        })
    }

    fn query_audit(&self, q: &AuditQuery) -> Result<Vec<ChainedRecord>> {
        let (clause, mut args) = where_clause(q, true);
        args.push(Box::new(i64::from(q.limit)));
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_log WHERE {clause} ORDER BY seq DESC LIMIT ${}",
            args.len()
        );
        self.with(|c| c.query(&sql, &refs(&args))?.iter().map(chained).collect())
    }

    fn count_audit(&self, q: &AuditQuery) -> Result<u64> {
        let (clause, args) = where_clause(q, false);
        let sql = format!("SELECT COUNT(*) FROM audit_log WHERE {clause}");
        self.with(|c| u64_at(&c.query_one(&sql, &refs(&args))?, 0))
    }

    fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO audit_checkpoints (seq, hash, create_time, signature) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (seq) DO UPDATE SET hash = excluded.hash, \
                 create_time = excluded.create_time, signature = excluded.signature",
                &[
                    &(cp.seq as i64),
                    &cp.hash.as_slice(),
                    &cp.create_time,
                    &cp.signature,
                ],
            )?;
            Ok(())
        })
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.with(|c| {
            c.query(
                "SELECT seq, hash, create_time, signature FROM audit_checkpoints ORDER BY seq",
                &[],
            )?
            .iter()
            .map(checkpoint_row)
            .collect()
        })
    }

    fn last_checkpoint(&self) -> Result<Option<Checkpoint>> {
        self.with(|c| {
            c.query_opt(
                "SELECT seq, hash, create_time, signature FROM audit_checkpoints \
                 ORDER BY seq DESC LIMIT 1",
                &[],
            )?
            .as_ref()
            .map(checkpoint_row)
            .transpose()
        })
    }
}

/// Query arguments, owned so a clause builder can collect them.
pub(super) type Args = Vec<Box<dyn ToSql + Sync + Send>>;

pub(super) fn refs(args: &Args) -> Vec<&(dyn ToSql + Sync)> {
    args.iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// The WHERE clause of an audit query and its arguments (values are always bound, never
/// spliced into the SQL).
fn where_clause(q: &AuditQuery, paged: bool) -> (String, Args) {
    let mut args: Args = vec![Box::new(q.start_time), Box::new(q.end_time)];
    let mut clauses = vec![
        "event_time >= $1".to_string(),
        "event_time <= $2".to_string(),
    ];
    if let (true, Some(b)) = (paged, q.before_seq) {
        args.push(Box::new(b as i64));
        clauses.push(format!("seq < ${}", args.len()));
    }
    for group in q.attributes.iter().filter(|g| !g.is_empty()) {
        let mut alternatives = Vec::new();
        for a in group {
            let (column, arg): (&str, Box<dyn ToSql + Sync + Send>) = match a {
                AuditAttribute::RequestId(v) => ("request_id", Box::new(v.clone())),
                AuditAttribute::EventName(v) => ("action", Box::new(v.clone())),
                AuditAttribute::EventId(v) => ("event_id", Box::new(v.clone())),
                AuditAttribute::Username(v) => ("username", Box::new(v.clone())),
                AuditAttribute::ResourceType(v) => ("resource_type", Box::new(v.clone())),
                AuditAttribute::AccessKeyId(v) => ("secret_id", Box::new(v.clone())),
                AuditAttribute::ReadOnly(v) => ("read_only", Box::new(*v)),
                AuditAttribute::ResultCode(v) => ("result_code", Box::new(v.clone())),
                AuditAttribute::SourceIp(v) => ("source_ip", Box::new(v.clone())),
                AuditAttribute::Uin(v) => ("uin", Box::new(*v as i64)),
                // A short name (key id, secret name) matches the last path segment of a CAM
                // resource name; a full name matches exactly.
                AuditAttribute::ResourceName(v) => {
                    args.push(Box::new(v.clone()));
                    let n = args.len();
                    alternatives.push(format!(
                        "EXISTS (SELECT 1 FROM jsonb_array_elements_text(audit_log.resources::jsonb) \
                         AS j(v) WHERE j.v = ${n} OR right(j.v, length(${n}) + 1) = '/' || ${n})"
                    ));
                    continue;
                }
            };
            args.push(arg);
            alternatives.push(format!("{column} = ${}", args.len()));
        }
        clauses.push(format!("({})", alternatives.join(" OR ")));
    }
    (clauses.join(" AND "), args)
}
