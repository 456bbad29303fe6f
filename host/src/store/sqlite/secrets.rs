//! SQLite: secrets and their versions.

use super::filter::Filter;
use super::*;
use crate::error::{Error, Result};
use crate::store::audit::Trail;
use crate::store::*;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

const SECRET_COLUMNS: &str =
    "region, owner_uin, secret_name, create_uin, description, kms_key_id, \
    kms_key_type, status, secret_type, create_time, delete_time, tags, ssh_key_id, \
    ssh_key_name, project_id";

fn secret_from_row(r: &Row<'_>) -> rusqlite::Result<SecretRecord> {
    let status: String = r.get(7)?;
    Ok(SecretRecord {
        region: r.get(0)?,
        owner_uin: r.get::<_, i64>(1)? as u64,
        name: r.get(2)?,
        create_uin: r.get::<_, i64>(3)? as u64,
        description: r.get(4)?,
        kms_key_id: r.get(5)?,
        kms_key_type: r.get(6)?,
        status: SecretStatus::parse(&status).ok_or_else(|| bad(7, "status"))?,
        secret_type: r.get::<_, i64>(8)? as u64,
        create_time: r.get(9)?,
        delete_time: r.get(10)?,
        tags: tags_at(r, 11)?,
        ssh_key_id: r.get(12)?,
        ssh_key_name: r.get(13)?,
        project_id: r.get(14)?,
    })
}

fn get_secret_tx(
    conn: &Connection,
    region: &str,
    owner_uin: u64,
    name: &str,
) -> Result<Option<SecretRecord>> {
    let sql = format!(
        "SELECT {SECRET_COLUMNS} FROM secrets WHERE region = ?1 AND owner_uin = ?2 AND secret_name = ?3"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![region, owner_uin as i64, name], secret_from_row)
        .optional()?)
}

fn write_secret_tx(tx: &Connection, s: &SecretRecord) -> Result<()> {
    tx.execute(
        "UPDATE secrets SET description = ?4, status = ?5, delete_time = ?6, tags = ?7 \
         WHERE region = ?1 AND owner_uin = ?2 AND secret_name = ?3",
        params![
            s.region,
            s.owner_uin as i64,
            s.name,
            s.description,
            s.status.as_str(),
            s.delete_time,
            tags_json(&s.tags)?
        ],
    )?;
    Ok(())
}

fn insert_version_tx(
    tx: &Connection,
    region: &str,
    owner_uin: u64,
    name: &str,
    v: &SecretVersion,
) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT INTO secret_versions (region, owner_uin, secret_name, version_id, create_time, \
         is_binary, key_blob, nonce, ciphertext) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
        params![
            region,
            owner_uin as i64,
            name,
            v.version_id,
            v.create_time,
            v.is_binary,
            v.key_blob,
            v.nonce,
            v.ciphertext
        ],
    )
}

impl SecretStore for SqliteStore {
    fn insert_secret(
        &self,
        trail: &Trail,
        sec: &SecretRecord,
        first: &SecretVersion,
        limit: u64,
    ) -> Result<()> {
        self.with(|conn| {
            self.secrets.forget(&sec.region, sec.owner_uin, &sec.name);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if count_owned(&tx, "secrets", &sec.region, sec.owner_uin)? >= limit {
                return Err(Error::SecretLimitExceeded(limit));
            }
            let sql = format!(
                "INSERT INTO secrets ({SECRET_COLUMNS}) VALUES \
                 (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)"
            );
            let res = tx.execute(
                &sql,
                params![
                    sec.region,
                    sec.owner_uin as i64,
                    sec.name,
                    sec.create_uin as i64,
                    sec.description,
                    sec.kms_key_id,
                    sec.kms_key_type,
                    sec.status.as_str(),
                    sec.secret_type as i64,
                    sec.create_time,
                    sec.delete_time,
                    tags_json(&sec.tags)?,
                    sec.ssh_key_id,
                    sec.ssh_key_name,
                    sec.project_id,
                ],
            );
            match res {
                Err(e) if is_constraint(&e) => return Err(Error::SecretExists(sec.name.clone())),
                other => other?,
            };
            insert_version_tx(&tx, &sec.region, sec.owner_uin, &sec.name, first)?;
            self.commit(tx, trail)?;
            Ok(())
        })
    }

    fn get_secret(&self, region: &str, owner_uin: u64, name: &str) -> Result<Option<SecretRecord>> {
        if let Some(r) = self.secrets.record(region, owner_uin, name) {
            return Ok(Some(r));
        }
        self.with(|conn| {
            let r = get_secret_tx(conn, region, owner_uin, name)?;
            if let Some(r) = &r {
                self.secrets.put_record(r);
            }
            Ok(r)
        })
    }

    fn update_secret(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        name: &str,
        f: SecretUpdate<'_>,
    ) -> Result<SecretRecord> {
        self.with(|conn| {
            self.secrets.forget(region, owner_uin, name);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut sec = get_secret_tx(&tx, region, owner_uin, name)?
                .ok_or_else(|| Error::SecretNotFound(name.to_string()))?;
            f(&mut sec)?;
            write_secret_tx(&tx, &sec)?;
            self.commit(tx, trail)?;
            Ok(sec)
        })
    }

    fn delete_secret(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        name: &str,
    ) -> Result<bool> {
        self.with(|conn| {
            self.secrets.forget(region, owner_uin, name);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM secret_versions WHERE region = ?1 AND owner_uin = ?2 AND secret_name = ?3",
                params![region, owner_uin as i64, name],
            )?;
            let n = tx.execute(
                "DELETE FROM secrets WHERE region = ?1 AND owner_uin = ?2 AND secret_name = ?3",
                params![region, owner_uin as i64, name],
            )?;
            self.commit(tx, trail)?;
            Ok(n == 1)
        })
    }

    fn query_secrets(&self, q: &SecretQuery) -> Result<(u64, Vec<SecretRecord>)> {
        use rusqlite::types::Value;
        let mut f = Filter::new("secrets", SECRET_COLUMNS, &q.region, q.owner_uin);
        if let Some(status) = q.status {
            f.eq("status", Value::Text(status.as_str().into()));
        }
        f.eq("secret_type", Value::Integer(q.secret_type as i64));
        f.search(["secret_name", "secret_name"], &q.search);
        f.tags(&q.tag_filters);
        self.with(|conn| f.page(conn, q.newest_first, q.offset, q.limit, secret_from_row))
    }

    fn count_secrets(&self, region: &str, owner_uin: u64) -> Result<u64> {
        self.with(|conn| count_owned(conn, "secrets", region, owner_uin))
    }

    fn secret_by_ssh_key(
        &self,
        region: &str,
        owner_uin: u64,
        ssh_key_id: &str,
    ) -> Result<Option<SecretRecord>> {
        self.with(|conn| {
            let sql = format!(
                "SELECT {SECRET_COLUMNS} FROM secrets WHERE region = ?1 AND owner_uin = ?2 \
                 AND ssh_key_id = ?3 AND secret_type = 2"
            );
            Ok(conn
                .prepare_cached(&sql)?
                .query_row(
                    params![region, owner_uin as i64, ssh_key_id],
                    secret_from_row,
                )
                .optional()?)
        })
    }

    fn secrets_in_status(&self, status: SecretStatus) -> Result<Vec<SecretRecord>> {
        self.with(|conn| {
            rows_with(
                conn,
                "secrets",
                SECRET_COLUMNS,
                "status",
                status.as_str(),
                secret_from_row,
            )
        })
    }

    // The trail, the record\'s three-part address and the write itself.
    #[allow(clippy::too_many_arguments)]
    fn put_secret_version(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        name: &str,
        v: &SecretVersion,
        mode: VersionWrite,
        check: SecretUpdate<'_>,
    ) -> Result<()> {
        self.with(|conn| {
            self.secrets.forget(region, owner_uin, name);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut sec = get_secret_tx(&tx, region, owner_uin, name)?
                .ok_or_else(|| Error::SecretNotFound(name.to_string()))?;
            check(&mut sec)?;
            if let VersionWrite::Add { max_versions } = mode {
                // An existing id is the more specific refusal, so it is checked first.
                let exists: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM secret_versions WHERE region = ?1 \
                     AND owner_uin = ?2 AND secret_name = ?3 AND version_id = ?4)",
                    params![region, owner_uin as i64, name, v.version_id],
                    |r| r.get(0),
                )?;
                if exists {
                    return Err(Error::VersionIdExists(v.version_id.clone()));
                }
                let count: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM secret_versions WHERE region = ?1 AND owner_uin = ?2 \
                     AND secret_name = ?3",
                    params![region, owner_uin as i64, name],
                    |r| r.get(0),
                )?;
                if count as u64 >= max_versions {
                    return Err(Error::SecretVersionLimit(max_versions));
                }
                match insert_version_tx(&tx, region, owner_uin, name, v) {
                    Err(e) if is_constraint(&e) => {
                        return Err(Error::VersionIdExists(v.version_id.clone()))
                    }
                    other => other?,
                };
            } else {
                let n = tx.execute(
                    "UPDATE secret_versions SET is_binary = ?5, key_blob = ?6, nonce = ?7, \
                     ciphertext = ?8 WHERE region = ?1 AND owner_uin = ?2 AND secret_name = ?3 \
                     AND version_id = ?4",
                    params![
                        region,
                        owner_uin as i64,
                        name,
                        v.version_id,
                        v.is_binary,
                        v.key_blob,
                        v.nonce,
                        v.ciphertext
                    ],
                )?;
                if n == 0 {
                    return Err(Error::SecretVersionNotFound(v.version_id.clone()));
                }
            }
            self.commit(tx, trail)?;
            Ok(())
        })
    }

    fn get_secret_version(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
        version_id: &str,
    ) -> Result<Option<SecretVersion>> {
        if let Some(v) = self.secrets.version(region, owner_uin, name, version_id) {
            return Ok(Some(v));
        }
        self.with(|conn| {
            let v = conn
                .prepare_cached(
                    "SELECT version_id, create_time, is_binary, key_blob, nonce, ciphertext \
                     FROM secret_versions WHERE region = ?1 AND owner_uin = ?2 \
                     AND secret_name = ?3 AND version_id = ?4",
                )?
                .query_row(params![region, owner_uin as i64, name, version_id], |r| {
                    Ok(SecretVersion {
                        version_id: r.get(0)?,
                        create_time: r.get(1)?,
                        is_binary: r.get(2)?,
                        key_blob: r.get(3)?,
                        nonce: r.get(4)?,
                        ciphertext: r.get(5)?,
                    })
                })
                .optional()?;
            if let Some(v) = &v {
                self.secrets.put_version(region, owner_uin, name, v);
            }
            Ok(v)
        })
    }

    fn list_secret_versions(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
    ) -> Result<Vec<(String, i64)>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT version_id, create_time FROM secret_versions WHERE region = ?1 \
                 AND owner_uin = ?2 AND secret_name = ?3 ORDER BY create_time, rowid",
            )?;
            let rows = stmt
                .query_map(params![region, owner_uin as i64, name], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn delete_secret_version(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        name: &str,
        version_id: &str,
    ) -> Result<bool> {
        self.audited_write(trail, |conn| {
            self.secrets.forget(region, owner_uin, name);
            let n = conn.execute(
                "DELETE FROM secret_versions WHERE region = ?1 AND owner_uin = ?2 \
                 AND secret_name = ?3 AND version_id = ?4",
                params![region, owner_uin as i64, name, version_id],
            )?;
            Ok(n == 1)
        })
    }
}
