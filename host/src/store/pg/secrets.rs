//! PostgreSQL: secrets and their versions. Changes lock the secret's row first, so version
//! limits and existing-id checks hold across daemons.

use super::filter::Filter;
use super::*;
use crate::error::{Error, Result};
use crate::store::audit::Trail;
use crate::store::*;
use postgres::{GenericClient, Row, Transaction};

const SECRET_COLUMNS: &str =
    "region, owner_uin, secret_name, create_uin, description, kms_key_id, \
    kms_key_type, status, secret_type, create_time, delete_time, tags, ssh_key_id, \
    ssh_key_name, project_id";

fn secret_from_row(r: &Row) -> Result<SecretRecord> {
    let status: String = r.try_get(7)?;
    Ok(SecretRecord {
        region: r.try_get(0)?,
        owner_uin: u64_at(r, 1)?,
        name: r.try_get(2)?,
        create_uin: u64_at(r, 3)?,
        description: r.try_get(4)?,
        kms_key_id: r.try_get(5)?,
        kms_key_type: r.try_get(6)?,
        status: SecretStatus::parse(&status).ok_or_else(|| bad("status"))?,
        secret_type: u64_at(r, 8)?,
        create_time: r.try_get(9)?,
        delete_time: r.try_get(10)?,
        tags: tags_at(r, 11)?,
        ssh_key_id: r.try_get(12)?,
        ssh_key_name: r.try_get(13)?,
        project_id: r.try_get(14)?,
    })
}

/// A secret; with `lock`, its row is locked until the transaction ends.
fn get_secret_in(
    c: &mut impl GenericClient,
    region: &str,
    owner_uin: u64,
    name: &str,
    lock: bool,
) -> Result<Option<SecretRecord>> {
    let sql = format!(
        "SELECT {SECRET_COLUMNS} FROM secrets WHERE region = $1 AND owner_uin = $2 \
         AND secret_name = $3{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    c.query_opt(&sql, &[&region, &(owner_uin as i64), &name])?
        .as_ref()
        .map(secret_from_row)
        .transpose()
}

fn locked(
    tx: &mut Transaction<'_>,
    region: &str,
    owner_uin: u64,
    name: &str,
) -> Result<SecretRecord> {
    get_secret_in(tx, region, owner_uin, name, true)?
        .ok_or_else(|| Error::SecretNotFound(name.to_string()))
}

fn insert_version_tx(
    tx: &mut Transaction<'_>,
    region: &str,
    owner_uin: u64,
    name: &str,
    v: &SecretVersion,
) -> std::result::Result<u64, postgres::Error> {
    tx.execute(
        "INSERT INTO secret_versions (region, owner_uin, secret_name, version_id, create_time, \
         is_binary, key_blob, nonce, ciphertext) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
        &[
            &region,
            &(owner_uin as i64),
            &name,
            &v.version_id,
            &v.create_time,
            &v.is_binary,
            &v.key_blob,
            &v.nonce,
            &v.ciphertext,
        ],
    )
}

/// VersionWrite::Add: refuses an existing id, then a full secret, then inserts.
fn add_version_tx(
    tx: &mut Transaction<'_>,
    region: &str,
    owner_uin: u64,
    name: &str,
    v: &SecretVersion,
    max_versions: u64,
) -> Result<()> {
    let owner = owner_uin as i64;
    // An existing id is the more specific refusal, so it is checked first.
    let exists = tx
        .query_opt(
            "SELECT 1 FROM secret_versions WHERE region = $1 AND owner_uin = $2 \
             AND secret_name = $3 AND version_id = $4",
            &[&region, &owner, &name, &v.version_id],
        )?
        .is_some();
    if exists {
        return Err(Error::VersionIdExists(v.version_id.clone()));
    }
    let count = u64_at(
        &tx.query_one(
            "SELECT COUNT(*) FROM secret_versions WHERE region = $1 AND owner_uin = $2 \
             AND secret_name = $3",
            &[&region, &owner, &name],
        )?,
        0,
    )?;
    if count >= max_versions {
        return Err(Error::SecretVersionLimit(max_versions));
    }
    match insert_version_tx(tx, region, owner_uin, name, v) {
        Err(e) if is_unique_violation(&e) => Err(Error::VersionIdExists(v.version_id.clone())),
        other => other.map(|_| ()).map_err(Error::from),
    }
}

impl SecretStore for PgStore {
    fn insert_secret(
        &self,
        trail: &Trail,
        sec: &SecretRecord,
        first: &SecretVersion,
        limit: u64,
    ) -> Result<()> {
        self.write(trail, |tx| {
            if count_owned_locked(tx, "secrets", &sec.region, sec.owner_uin)? >= limit {
                return Err(Error::SecretLimitExceeded(limit));
            }
            let marks: Vec<String> = (1..=15).map(|i| format!("${i}")).collect();
            let sql = format!(
                "INSERT INTO secrets ({SECRET_COLUMNS}) VALUES ({})",
                marks.join(",")
            );
            let res = tx.execute(
                &sql,
                &[
                    &sec.region,
                    &(sec.owner_uin as i64),
                    &sec.name,
                    &(sec.create_uin as i64),
                    &sec.description,
                    &sec.kms_key_id,
                    &sec.kms_key_type,
                    &sec.status.as_str(),
                    &(sec.secret_type as i64),
                    &sec.create_time,
                    &sec.delete_time,
                    &tags_json(&sec.tags)?,
                    &sec.ssh_key_id,
                    &sec.ssh_key_name,
                    &sec.project_id,
                ],
            );
            match res {
                Err(e) if is_unique_violation(&e) => {
                    return Err(Error::SecretExists(sec.name.clone()))
                }
                other => other?,
            };
            insert_version_tx(tx, &sec.region, sec.owner_uin, &sec.name, first)?;
            Ok(())
        })
    }

    fn get_secret(&self, region: &str, owner_uin: u64, name: &str) -> Result<Option<SecretRecord>> {
        self.with(|c| get_secret_in(c, region, owner_uin, name, false))
    }

    fn update_secret(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        name: &str,
        f: SecretUpdate<'_>,
    ) -> Result<SecretRecord> {
        self.write(trail, |tx| {
            let mut s = locked(tx, region, owner_uin, name)?;
            f(&mut s)?;
            tx.execute(
                "UPDATE secrets SET description = $4, status = $5, delete_time = $6, tags = $7 \
                 WHERE region = $1 AND owner_uin = $2 AND secret_name = $3",
                &[
                    &s.region,
                    &(s.owner_uin as i64),
                    &s.name,
                    &s.description,
                    &s.status.as_str(),
                    &s.delete_time,
                    &tags_json(&s.tags)?,
                ],
            )?;
            Ok(s)
        })
    }

    fn delete_secret(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        name: &str,
    ) -> Result<bool> {
        self.write(trail, |tx| {
            // The versions go with it (ON DELETE CASCADE).
            let n = tx.execute(
                "DELETE FROM secrets WHERE region = $1 AND owner_uin = $2 AND secret_name = $3",
                &[&region, &(owner_uin as i64), &name],
            )?;
            Ok(n == 1)
        })
    }

    fn query_secrets(&self, q: &SecretQuery) -> Result<(u64, Vec<SecretRecord>)> {
        let mut f = Filter::new("secrets", SECRET_COLUMNS, &q.region, q.owner_uin);
        if let Some(status) = q.status {
            f.eq("status", status.as_str().to_string());
        }
        f.eq("secret_type", q.secret_type as i64);
        f.search(["secret_name", "secret_name"], &q.search);
        f.tags(&q.tag_filters);
        self.with(|c| f.page(c, q.newest_first, q.offset, q.limit, secret_from_row))
    }

    fn count_secrets(&self, region: &str, owner_uin: u64) -> Result<u64> {
        self.with(|c| count_owned(c, "secrets", region, owner_uin))
    }

    fn secret_by_ssh_key(
        &self,
        region: &str,
        owner_uin: u64,
        ssh_key_id: &str,
    ) -> Result<Option<SecretRecord>> {
        let sql = format!(
            "SELECT {SECRET_COLUMNS} FROM secrets WHERE region = $1 AND owner_uin = $2 \
             AND ssh_key_id = $3 AND secret_type = 2 LIMIT 1"
        );
        self.with(|c| {
            c.query_opt(&sql, &[&region, &(owner_uin as i64), &ssh_key_id])?
                .as_ref()
                .map(secret_from_row)
                .transpose()
        })
    }

    fn secrets_in_status(&self, status: SecretStatus) -> Result<Vec<SecretRecord>> {
        self.with(|c| {
            rows_with(
                c,
                "secrets",
                SECRET_COLUMNS,
                "status",
                status.as_str(),
                secret_from_row,
            )
        })
    }

    // The trail, the record's three-part address and the write itself.
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
        self.write(trail, |tx| {
            let mut sec = locked(tx, region, owner_uin, name)?;
            check(&mut sec)?;
            match mode {
                VersionWrite::Add { max_versions } => {
                    add_version_tx(tx, region, owner_uin, name, v, max_versions)
                }
                VersionWrite::Replace => {
                    let n = tx.execute(
                        "UPDATE secret_versions SET is_binary = $5, key_blob = $6, nonce = $7, \
                         ciphertext = $8 WHERE region = $1 AND owner_uin = $2 \
                         AND secret_name = $3 AND version_id = $4",
                        &[
                            &region,
                            &(owner_uin as i64),
                            &name,
                            &v.version_id,
                            &v.is_binary,
                            &v.key_blob,
                            &v.nonce,
                            &v.ciphertext,
                        ],
                    )?;
                    if n == 0 {
                        return Err(Error::SecretVersionNotFound(v.version_id.clone()));
                    }
                    Ok(())
                }
            }
        })
    }

    fn get_secret_version(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
        version_id: &str,
    ) -> Result<Option<SecretVersion>> {
        self.with(|c| {
            c.query_opt(
                "SELECT version_id, create_time, is_binary, key_blob, nonce, ciphertext \
                 FROM secret_versions WHERE region = $1 AND owner_uin = $2 \
                 AND secret_name = $3 AND version_id = $4",
                &[&region, &(owner_uin as i64), &name, &version_id],
            )?
            .map(|r| {
                Ok(SecretVersion {
                    version_id: r.try_get(0)?,
                    create_time: r.try_get(1)?,
                    is_binary: r.try_get(2)?,
                    key_blob: r.try_get(3)?,
                    nonce: r.try_get(4)?,
                    ciphertext: r.try_get(5)?,
                })
            })
            .transpose()
        })
    }

    fn list_secret_versions(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
    ) -> Result<Vec<(String, i64)>> {
        self.with(|c| {
            c.query(
                "SELECT version_id, create_time FROM secret_versions WHERE region = $1 \
                 AND owner_uin = $2 AND secret_name = $3 ORDER BY create_time, rid",
                &[&region, &(owner_uin as i64), &name],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
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
        self.write(trail, |tx| {
            let n = tx.execute(
                "DELETE FROM secret_versions WHERE region = $1 AND owner_uin = $2 \
                 AND secret_name = $3 AND version_id = $4",
                &[&region, &(owner_uin as i64), &name, &version_id],
            )?;
            Ok(n == 1)
        })
    }
}
