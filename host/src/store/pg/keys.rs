//! PostgreSQL: keys, versions, import parameters and bindings. Read-modify-write steps lock
//! the key's row (`FOR UPDATE`), so two daemons changing one key take turns and version
//! numbers are never handed out twice.

use super::filter::Filter;
use super::*;
use crate::error::{Error, Result};
use crate::store::audit::Trail;
use crate::store::*;
use keyward_shared::Algorithm;
use postgres::{Row, Transaction};

const KEY_COLUMNS: &str = "key_id, region, owner_uin, creator_uin, alias, description, key_usage, \
    origin, owner, algorithm, state, create_time, deletion_date, rotation_enabled, rotate_days, \
    next_rotate_time, last_rotate_time, current_version, tags, last_manual_rotate, \
    last_alarm_time, valid_to, material_kcv";

fn key_from_row(r: &Row) -> Result<KeyRecord> {
    let alg: i64 = r.try_get(9)?;
    let state: String = r.try_get(10)?;
    Ok(KeyRecord {
        key_id: r.try_get(0)?,
        region: r.try_get(1)?,
        owner_uin: u64_at(r, 2)?,
        creator_uin: u64_at(r, 3)?,
        alias: r.try_get(4)?,
        description: r.try_get(5)?,
        key_usage: r.try_get(6)?,
        origin: r.try_get(7)?,
        owner: r.try_get(8)?,
        algorithm: u8::try_from(alg)
            .ok()
            .and_then(Algorithm::from_u8)
            .ok_or_else(|| bad("algorithm"))?,
        state: KeyState::parse(&state).ok_or_else(|| bad("state"))?,
        create_time: r.try_get(11)?,
        deletion_date: r.try_get(12)?,
        rotation_enabled: r.try_get(13)?,
        rotate_days: u32_at(r, 14)?,
        next_rotate_time: r.try_get(15)?,
        last_rotate_time: r.try_get(16)?,
        current_version: u32_at(r, 17)?,
        tags: tags_at(r, 18)?,
        last_manual_rotate: r.try_get(19)?,
        last_alarm_time: r.try_get(20)?,
        valid_to: r.try_get(21)?,
        material_kcv: r.try_get(22)?,
    })
}

/// A key as stored, its row locked until the transaction ends.
fn lock_key(
    tx: &mut Transaction<'_>,
    region: &str,
    owner_uin: u64,
    key_id: &str,
) -> Result<KeyRecord> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM keys WHERE key_id = $1 AND region = $2 AND owner_uin = $3 \
         FOR UPDATE"
    );
    tx.query_opt(&sql, &[&key_id, &region, &(owner_uin as i64)])?
        .as_ref()
        .map(key_from_row)
        .transpose()?
        .ok_or_else(|| Error::CmkNotFound(key_id.to_string()))
}

fn write_key_tx(tx: &mut Transaction<'_>, key: &KeyRecord) -> Result<()> {
    let res = tx.execute(
        "UPDATE keys SET alias = $2, description = $3, state = $4, deletion_date = $5, \
         rotation_enabled = $6, rotate_days = $7, next_rotate_time = $8, \
         last_rotate_time = $9, current_version = $10, tags = $11, last_manual_rotate = $12, \
         last_alarm_time = $13, valid_to = $14, material_kcv = $15 WHERE key_id = $1",
        &[
            &key.key_id,
            &key.alias,
            &key.description,
            &key.state.as_str(),
            &key.deletion_date,
            &key.rotation_enabled,
            &i64::from(key.rotate_days),
            &key.next_rotate_time,
            &key.last_rotate_time,
            &i64::from(key.current_version),
            &tags_json(&key.tags)?,
            &key.last_manual_rotate,
            &key.last_alarm_time,
            &key.valid_to,
            &key.material_kcv,
        ],
    );
    match res {
        Err(e) if is_unique_violation(&e) => Err(Error::AliasExists(key.alias.clone())),
        other => other.map(|_| ()).map_err(Error::from),
    }
}

/// The columns `version_from_row` reads, in order.
const VERSION_COLS: &str = "key_id, version, backend, sealed, create_time, public_key, tag";

fn version_from_row(r: &Row) -> Result<KeyVersion> {
    Ok(KeyVersion {
        key_id: r.try_get(0)?,
        version: u32_at(r, 1)?,
        backend: r.try_get(2)?,
        sealed: r.try_get(3)?,
        create_time: r.try_get(4)?,
        public_key: r.try_get(5)?,
        tag: r.try_get(6)?,
    })
}

fn insert_version_tx(tx: &mut Transaction<'_>, v: &KeyVersion) -> Result<()> {
    tx.execute(
        "INSERT INTO key_versions (key_id, version, backend, sealed, create_time, public_key, \
         tag) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &v.key_id,
            &i64::from(v.version),
            &v.backend,
            &v.sealed,
            &v.create_time,
            &v.public_key,
            &v.tag,
        ],
    )?;
    Ok(())
}

fn insert_key_tx(tx: &mut Transaction<'_>, key: &KeyRecord) -> Result<()> {
    let marks: Vec<String> = (1..=23).map(|i| format!("${i}")).collect();
    let sql = format!(
        "INSERT INTO keys ({KEY_COLUMNS}) VALUES ({})",
        marks.join(",")
    );
    let res = tx.execute(
        &sql,
        &[
            &key.key_id,
            &key.region,
            &(key.owner_uin as i64),
            &(key.creator_uin as i64),
            &key.alias,
            &key.description,
            &key.key_usage,
            &key.origin,
            &key.owner,
            &i64::from(key.algorithm.id()),
            &key.state.as_str(),
            &key.create_time,
            &key.deletion_date,
            &key.rotation_enabled,
            &i64::from(key.rotate_days),
            &key.next_rotate_time,
            &key.last_rotate_time,
            &i64::from(key.current_version),
            &tags_json(&key.tags)?,
            &key.last_manual_rotate,
            &key.last_alarm_time,
            &key.valid_to,
            &key.material_kcv,
        ],
    );
    match res {
        // The primary key (a duplicate id) is a store failure, as in SQLite.
        Err(e) if is_unique_violation(&e) && !violates(&e, "keys_pkey") => {
            Err(Error::AliasExists(key.alias.clone()))
        }
        other => other.map(|_| ()).map_err(Error::from),
    }
}

impl KeyStore for PgStore {
    fn insert_key(
        &self,
        trail: &Trail,
        key: &KeyRecord,
        version: Option<&KeyVersion>,
        limit: u64,
    ) -> Result<()> {
        self.write(trail, |tx| {
            if count_owned_locked(tx, "keys", &key.region, key.owner_uin)? >= limit {
                return Err(Error::CmkLimitExceeded(limit));
            }
            insert_key_tx(tx, key)?;
            if let Some(v) = version {
                insert_version_tx(tx, v)?;
            }
            Ok(())
        })
    }

    fn get_key(&self, region: &str, owner_uin: u64, key_id: &str) -> Result<Option<KeyRecord>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM keys WHERE key_id = $1 AND region = $2 AND owner_uin = $3"
        );
        self.with(|c| {
            c.query_opt(&sql, &[&key_id, &region, &(owner_uin as i64)])?
                .as_ref()
                .map(key_from_row)
                .transpose()
        })
    }

    fn get_version(&self, key_id: &str, version: u32) -> Result<Option<KeyVersion>> {
        let sql =
            format!("SELECT {VERSION_COLS} FROM key_versions WHERE key_id = $1 AND version = $2");
        self.with(|c| {
            c.query_opt(&sql, &[&key_id, &i64::from(version)])?
                .as_ref()
                .map(version_from_row)
                .transpose()
        })
    }

    fn update_key(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        key_id: &str,
        f: KeyUpdate<'_>,
    ) -> Result<KeyRecord> {
        self.write(trail, |tx| {
            let mut key = lock_key(tx, region, owner_uin, key_id)?;
            f(&mut key)?;
            write_key_tx(tx, &key)?;
            Ok(key)
        })
    }

    fn query_keys(&self, q: &KeyQuery) -> Result<(u64, Vec<KeyRecord>)> {
        let mut f = Filter::new("keys", KEY_COLUMNS, &q.region, q.owner_uin);
        f.states(&q.states);
        f.user_created(q.user_created);
        if let Some(origin) = &q.origin {
            f.eq("origin", origin.clone());
        }
        if let Some(usage) = &q.key_usage {
            f.eq("key_usage", usage.clone());
        }
        f.search(["key_id", "alias"], &q.search);
        f.tags(&q.tag_filters);
        self.with(|c| f.page(c, q.newest_first, q.offset, q.limit, key_from_row))
    }

    fn count_keys(&self, region: &str, owner_uin: u64) -> Result<u64> {
        self.with(|c| {
            u64_at(
                &c.query_one(
                    "SELECT COUNT(*) FROM keys WHERE region = $1 AND owner_uin = $2 \
                     AND owner = 'user'",
                    &[&region, &(owner_uin as i64)],
                )?,
                0,
            )
        })
    }

    fn add_version(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        key_id: &str,
        f: KeyUpdate<'_>,
        version: NewVersion<'_>,
    ) -> Result<KeyRecord> {
        self.write(trail, |tx| {
            let mut key = lock_key(tx, region, owner_uin, key_id)?;
            f(&mut key)?;
            key.current_version += 1;
            let v = version(&key)?;
            if v.key_id != key.key_id || v.version != key.current_version {
                return Err(Error::Internal(
                    "a new key version names another key".into(),
                ));
            }
            insert_version_tx(tx, &v)?;
            write_key_tx(tx, &key)?;
            Ok(key)
        })
    }

    fn delete_key(&self, trail: &Trail, key_id: &str) -> Result<bool> {
        self.write(trail, |tx| {
            // Versions, bindings and import parameters go with it (ON DELETE CASCADE).
            Ok(tx.execute("DELETE FROM keys WHERE key_id = $1", &[&key_id])? == 1)
        })
    }

    fn keys_in_state(&self, state: KeyState) -> Result<Vec<KeyRecord>> {
        self.with(|c| {
            rows_with(
                c,
                "keys",
                KEY_COLUMNS,
                "state",
                state.as_str(),
                key_from_row,
            )
        })
    }

    fn keys_rotation_due(&self, now: i64) -> Result<Vec<KeyRecord>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM keys WHERE rotation_enabled \
             AND next_rotate_time > 0 AND next_rotate_time <= $1"
        );
        self.with(|c| c.query(&sql, &[&now])?.iter().map(key_from_row).collect())
    }

    fn set_key_material(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        key_id: &str,
        version: Option<&KeyVersion>,
        f: KeyUpdate<'_>,
    ) -> Result<KeyRecord> {
        self.write(trail, |tx| {
            let mut key = lock_key(tx, region, owner_uin, key_id)?;
            f(&mut key)?;
            tx.execute("DELETE FROM key_versions WHERE key_id = $1", &[&key_id])?;
            key.current_version = 0;
            if let Some(v) = version {
                if v.key_id != key_id || v.version != 1 {
                    return Err(Error::Internal(
                        "imported material must be version 1".into(),
                    ));
                }
                key.current_version = 1;
                insert_version_tx(tx, v)?;
            }
            write_key_tx(tx, &key)?;
            Ok(key)
        })
    }

    fn untagged_versions(&self) -> Result<Vec<KeyVersion>> {
        let sql = format!("SELECT {VERSION_COLS} FROM key_versions WHERE length(tag) = 0");
        self.with(|c| c.query(&sql, &[])?.iter().map(version_from_row).collect())
    }

    fn set_version_tag(&self, key_id: &str, version: u32, tag: &[u8]) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE key_versions SET tag = $3 WHERE key_id = $1 AND version = $2 \
                 AND length(tag) = 0",
                &[&key_id, &i64::from(version), &tag],
            )?;
            Ok(())
        })
    }

    fn insert_import_params(&self, trail: &Trail, p: &ImportParams) -> Result<()> {
        self.write(trail, |tx| {
            tx.execute(
                "INSERT INTO import_params (token, key_id, wrapping_algorithm, sealed_private, \
                 public_key, valid_to, tag) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &p.token,
                    &p.key_id,
                    &p.wrapping_algorithm,
                    &p.sealed_private,
                    &p.public_key,
                    &p.valid_to,
                    &p.tag,
                ],
            )?;
            Ok(())
        })
    }

    fn get_import_params(&self, token: &str) -> Result<Option<ImportParams>> {
        self.with(|c| {
            c.query_opt(
                "SELECT token, key_id, wrapping_algorithm, sealed_private, public_key, \
                 valid_to, tag FROM import_params WHERE token = $1",
                &[&token],
            )?
            .map(|r| {
                Ok(ImportParams {
                    token: r.try_get(0)?,
                    key_id: r.try_get(1)?,
                    wrapping_algorithm: r.try_get(2)?,
                    sealed_private: r.try_get(3)?,
                    public_key: r.try_get(4)?,
                    valid_to: r.try_get(5)?,
                    tag: r.try_get(6)?,
                })
            })
            .transpose()
        })
    }

    fn bind(
        &self,
        trail: &Trail,
        key_id: &str,
        product: &str,
        resource: &str,
        now: i64,
    ) -> Result<bool> {
        self.write(trail, |tx| {
            let n = tx.execute(
                "INSERT INTO key_bindings (key_id, product_id, resource_id, create_time) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&key_id, &product, &resource, &now],
            )?;
            Ok(n == 1)
        })
    }

    fn unbind(&self, trail: &Trail, key_id: &str, product: &str, resource: &str) -> Result<bool> {
        self.write(trail, |tx| {
            let n = tx.execute(
                "DELETE FROM key_bindings WHERE key_id = $1 AND product_id = $2 \
                 AND resource_id = $3",
                &[&key_id, &product, &resource],
            )?;
            Ok(n == 1)
        })
    }

    fn count_bindings(&self, key_id: &str) -> Result<u64> {
        self.with(|c| {
            u64_at(
                &c.query_one(
                    "SELECT COUNT(*) FROM key_bindings WHERE key_id = $1",
                    &[&key_id],
                )?,
                0,
            )
        })
    }
}
