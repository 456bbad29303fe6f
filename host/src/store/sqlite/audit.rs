//! SQLite: the audit log's hash chain, checkpoints and queries, and the commit that appends a
//! request's record inside the transaction of the change it describes.

use super::SqliteStore;
use crate::error::{Error, Result};
use crate::store::audit::record::{chain_hash, AuditRecord, ChainedRecord, Checkpoint, GENESIS};
use crate::store::audit::{AuditAttribute, AuditQuery, AuditStore, Trail};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, Transaction};
use std::sync::atomic::Ordering;

impl SqliteStore {
    /// Commits a write transaction, appending the trail's audit record to it first, so the
    /// change and its record are durable together or not at all.
    pub(super) fn commit(&self, tx: Transaction<'_>, trail: &Trail) -> Result<()> {
        self.timing.time(crate::store::StoreCall::Commit, || {
            self.commit_untimed(tx, trail)
        })
    }

    fn commit_untimed(&self, tx: Transaction<'_>, trail: &Trail) -> Result<()> {
        let record = trail.for_commit();
        if let Some(r) = &record {
            append_tx(&tx, std::slice::from_ref(r))?;
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
fn head_tx(conn: &Connection) -> Result<Option<(u64, [u8; 32])>> {
    let newest = conn
        .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)? as u64, hash_col(r, 1)?)))
        .optional()?;
    match newest {
        Some(h) => Ok(Some(h)),
        None => anchor_tx(conn),
    }
}

fn anchor_tx(conn: &Connection) -> Result<Option<(u64, [u8; 32])>> {
    let value: Option<Vec<u8>> = conn
        .query_row(
            "SELECT value FROM meta WHERE name = ?1",
            [ANCHOR_META],
            |r| r.get(0),
        )
        .optional()?;
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

/// How many records of a batch the audit writer appends before it yields the CPU (see
/// `append_audit`).
const YIELD_EVERY: usize = 32;

fn append_tx(conn: &Connection, records: &[AuditRecord]) -> Result<Option<(u64, [u8; 32])>> {
    append_tx_yielding(conn, records, usize::MAX)
}

/// Appends `records`, yielding the CPU after every `yield_every` of them.
fn append_tx_yielding(
    conn: &Connection,
    records: &[AuditRecord],
    yield_every: usize,
) -> Result<Option<(u64, [u8; 32])>> {
    let (mut seq, mut prev) = head_tx(conn)?.unwrap_or((0, GENESIS));
    let mut stmt = conn.prepare_cached(
        "INSERT INTO audit_log (seq, event_id, event_time, region, service, action, read_only, \
         owner_uin, uin, username, secret_id, source_ip, user_agent, resource_type, resources, \
         request_id, result_code, key_id, key_version, prev_hash, hash) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, \
         ?20, ?21)",
    )?;
    for (i, r) in records.iter().enumerate() {
        if i % yield_every == yield_every - 1 {
            std::thread::yield_now();
        }
        seq += 1;
        let hash = chain_hash(&prev, seq, r);
        let resources = serde_json::to_string(&r.resources)
            .map_err(|e| Error::Internal(format!("audit resources: {e}")))?;
        stmt.execute(params![
            seq as i64,
            r.event_id,
            r.event_time,
            r.region,
            r.service,
            r.action,
            r.read_only,
            r.owner_uin as i64,
            r.uin as i64,
            r.username,
            r.secret_id,
            r.source_ip,
            r.user_agent,
            r.resource_type,
            resources,
            r.request_id,
            r.result_code,
            r.key_id,
            r.key_version,
            prev.as_slice(),
            hash.as_slice(),
        ])?;
        prev = hash;
    }
    Ok((seq > 0).then_some((seq, prev)))
}

fn hash_col(r: &Row<'_>, i: usize) -> rusqlite::Result<[u8; 32]> {
    let v: Vec<u8> = r.get(i)?;
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

fn chained(r: &Row<'_>) -> rusqlite::Result<ChainedRecord> {
    let resources: String = r.get(14)?;
    Ok(ChainedRecord {
        seq: r.get::<_, i64>(0)? as u64,
        record: AuditRecord {
            event_id: r.get(1)?,
            event_time: r.get(2)?,
            region: r.get(3)?,
            service: r.get(4)?,
            action: r.get(5)?,
            read_only: r.get(6)?,
            owner_uin: r.get::<_, i64>(7)? as u64,
            uin: r.get::<_, i64>(8)? as u64,
            username: r.get(9)?,
            secret_id: r.get(10)?,
            source_ip: r.get(11)?,
            user_agent: r.get(12)?,
            resource_type: r.get(13)?,
            // An unparsable list is kept verbatim so verification flags the record.
            resources: serde_json::from_str(&resources).unwrap_or_else(|_| vec![resources]),
            request_id: r.get(15)?,
            result_code: r.get(16)?,
            key_id: r.get(17)?,
            key_version: r.get(18)?,
        },
        prev_hash: hash_col(r, 19)?,
        hash: hash_col(r, 20)?,
    })
}

fn checkpoint_row(r: &Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint {
        seq: r.get::<_, i64>(0)? as u64,
        hash: hash_col(r, 1)?,
        create_time: r.get(2)?,
        signature: r.get(3)?,
    })
}

impl AuditStore for SqliteStore {
    fn written_with_changes(&self) -> u64 {
        self.written_with_changes.load(Ordering::Relaxed)
    }

    fn append_audit(&self, records: &[AuditRecord]) -> Result<Option<(u64, [u8; 32])>> {
        if records.is_empty() {
            return self.audit_head();
        }
        // The writer gathers records for a while and appends them in one go: a millisecond or
        // more of CPU at full load. Run in one stretch, that burst takes a core from request
        // threads and made the tail latency of every audited action (p99 at concurrency 16,
        // docs/benchmarks.md Run 12); yielding every few records lets them in between at the
        // cost of a few context switches. Records still commit together, with one fsync.
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let head = append_tx_yielding(&tx, records, YIELD_EVERY)?;
            tx.commit()?;
            Ok(head)
        })
    }

    fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>> {
        self.with(|conn| head_tx(conn))
    }

    fn audit_anchor(&self) -> Result<Option<(u64, [u8; 32])>> {
        self.with(|conn| anchor_tx(conn))
    }

    fn archive_audit(&self, through: u64, hash: &[u8; 32], record: &AuditRecord) -> Result<()> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut anchor = through.to_be_bytes().to_vec();
            anchor.extend_from_slice(hash);
            tx.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)",
                params![ANCHOR_META, anchor],
            )?;
            tx.execute("DELETE FROM audit_log WHERE seq <= ?1", [through as i64])?;
            append_tx(&tx, std::slice::from_ref(record))?;
            tx.commit()?;
            Ok(())
        })
    }

    fn audit_after(&self, after: u64, limit: u32) -> Result<Vec<ChainedRecord>> {
        self.with(|conn| {
            let sql =
                format!("SELECT {COLUMNS} FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2");
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(params![after as i64, limit], chained)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn query_audit(&self, q: &AuditQuery) -> Result<Vec<ChainedRecord>> {
        let (clause, mut args) = where_clause(q, true);
        args.push(rusqlite::types::Value::Integer(q.limit as i64));
        let sql =
            format!("SELECT {COLUMNS} FROM audit_log WHERE {clause} ORDER BY seq DESC LIMIT ?");
        self.with(|conn| {
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt
                .query_map(params_from_iter(args.iter()), chained)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn count_audit(&self, q: &AuditQuery) -> Result<u64> {
        let (clause, args) = where_clause(q, false);
        let sql = format!("SELECT COUNT(*) FROM audit_log WHERE {clause}");
        self.with(|conn| {
            let n: i64 = conn.query_row(&sql, params_from_iter(args.iter()), |r| r.get(0))?;
            Ok(n as u64)
        })
    }

    fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO audit_checkpoints (seq, hash, create_time, signature) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    cp.seq as i64,
                    cp.hash.as_slice(),
                    cp.create_time,
                    cp.signature
                ],
            )?;
            Ok(())
        })
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, hash, create_time, signature FROM audit_checkpoints ORDER BY seq",
            )?;
            let rows = stmt
                .query_map([], checkpoint_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn last_checkpoint(&self) -> Result<Option<Checkpoint>> {
        self.with(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT seq, hash, create_time, signature FROM audit_checkpoints \
                     ORDER BY seq DESC LIMIT 1",
                )?
                .query_row([], checkpoint_row)
                .optional()?)
        })
    }
}

/// The WHERE clause of an audit query and its arguments (values are always bound, never
/// spliced into the SQL).
fn where_clause(q: &AuditQuery, paged: bool) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut clauses = vec!["event_time >= ?".to_string(), "event_time <= ?".to_string()];
    let mut args: Vec<Value> = vec![Value::Integer(q.start_time), Value::Integer(q.end_time)];
    if let (true, Some(b)) = (paged, q.before_seq) {
        clauses.push("seq < ?".into());
        args.push(Value::Integer(b as i64));
    }
    for group in q.attributes.iter().filter(|g| !g.is_empty()) {
        let mut alternatives = Vec::new();
        for a in group {
            let text = |v: &String| Value::Text(v.clone());
            let (clause, arg, times) = match a {
                AuditAttribute::RequestId(v) => ("request_id = ?", text(v), 1),
                AuditAttribute::EventName(v) => ("action = ?", text(v), 1),
                AuditAttribute::EventId(v) => ("event_id = ?", text(v), 1),
                AuditAttribute::Username(v) => ("username = ?", text(v), 1),
                AuditAttribute::ResourceType(v) => ("resource_type = ?", text(v), 1),
                AuditAttribute::AccessKeyId(v) => ("secret_id = ?", text(v), 1),
                AuditAttribute::ReadOnly(v) => ("read_only = ?", Value::Integer(*v as i64), 1),
                AuditAttribute::ResultCode(v) => ("result_code = ?", text(v), 1),
                AuditAttribute::SourceIp(v) => ("source_ip = ?", text(v), 1),
                AuditAttribute::Uin(v) => ("uin = ?", Value::Integer(*v as i64), 1),
                // A short name (key id, secret name) matches the last path segment of a CAM
                // resource name; a full name matches exactly.
                AuditAttribute::ResourceName(v) => (
                    "EXISTS (SELECT 1 FROM json_each(audit_log.resources) AS j WHERE \
                     j.value = ? OR substr(j.value, -length(?) - 1) = '/' || ?)",
                    text(v),
                    3,
                ),
            };
            alternatives.push(clause.to_string());
            for _ in 0..times {
                args.push(arg.clone());
            }
        }
        clauses.push(format!("({})", alternatives.join(" OR ")));
    }
    (clauses.join(" AND "), args)
}
