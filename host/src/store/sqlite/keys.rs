//! SQLite: keys, versions, import parameters and bindings.

use super::filter::Filter;
use super::*;
use crate::error::{Error, Result};
use crate::store::audit::Trail;
use crate::store::*;
use keyward_shared::Algorithm;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

const KEY_COLUMNS: &str = "key_id, region, owner_uin, creator_uin, alias, description, key_usage, \
    origin, owner, algorithm, state, create_time, deletion_date, rotation_enabled, rotate_days, \
    next_rotate_time, last_rotate_time, current_version, tags, last_manual_rotate, \
    last_alarm_time, valid_to, material_kcv";

pub(super) fn key_from_row(r: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    let alg: u8 = r.get(9)?;
    let state: String = r.get(10)?;
    Ok(KeyRecord {
        key_id: r.get(0)?,
        region: r.get(1)?,
        owner_uin: r.get::<_, i64>(2)? as u64,
        creator_uin: r.get::<_, i64>(3)? as u64,
        alias: r.get(4)?,
        description: r.get(5)?,
        key_usage: r.get(6)?,
        origin: r.get(7)?,
        owner: r.get(8)?,
        algorithm: Algorithm::from_u8(alg).ok_or_else(|| bad(9, "algorithm"))?,
        state: KeyState::parse(&state).ok_or_else(|| bad(10, "state"))?,
        create_time: r.get(11)?,
        deletion_date: r.get(12)?,
        rotation_enabled: r.get(13)?,
        rotate_days: r.get(14)?,
        next_rotate_time: r.get(15)?,
        last_rotate_time: r.get(16)?,
        current_version: r.get(17)?,
        tags: tags_at(r, 18)?,
        last_manual_rotate: r.get(19)?,
        last_alarm_time: r.get(20)?,
        valid_to: r.get(21)?,
        material_kcv: r.get(22)?,
    })
}

fn get_key_tx(
    conn: &Connection,
    region: &str,
    owner_uin: u64,
    key_id: &str,
) -> Result<Option<KeyRecord>> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM keys WHERE key_id = ?1 AND region = ?2 AND owner_uin = ?3"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![key_id, region, owner_uin as i64], key_from_row)
        .optional()?)
}

fn write_key_tx(tx: &Connection, key: &KeyRecord) -> Result<()> {
    let res = tx.execute(
        "UPDATE keys SET alias = ?2, description = ?3, state = ?4, deletion_date = ?5, \
         rotation_enabled = ?6, rotate_days = ?7, next_rotate_time = ?8, \
         last_rotate_time = ?9, current_version = ?10, tags = ?11, last_manual_rotate = ?12, \
         last_alarm_time = ?13, valid_to = ?14, material_kcv = ?15 WHERE key_id = ?1",
        params![
            key.key_id,
            key.alias,
            key.description,
            key.state.as_str(),
            key.deletion_date,
            key.rotation_enabled,
            key.rotate_days,
            key.next_rotate_time,
            key.last_rotate_time,
            key.current_version,
            tags_json(&key.tags)?,
            key.last_manual_rotate,
            key.last_alarm_time,
            key.valid_to,
            key.material_kcv,
        ],
    );
    match res {
        Err(e) if is_unique_violation(&e) => Err(Error::AliasExists(key.alias.clone())),
        other => other.map(|_| ()).map_err(Error::from),
    }
}

/// The columns `version_from_row` reads, in order.
const VERSION_COLS: &str = "key_id, version, backend, sealed, create_time, public_key, tag";

fn version_from_row(r: &Row<'_>) -> rusqlite::Result<KeyVersion> {
    Ok(KeyVersion {
        key_id: r.get(0)?,
        version: r.get(1)?,
        backend: r.get(2)?,
        sealed: r.get(3)?,
        create_time: r.get(4)?,
        public_key: r.get(5)?,
        tag: r.get(6)?,
    })
}

fn insert_version_tx(tx: &Connection, v: &KeyVersion) -> Result<()> {
    tx.execute(
        "INSERT INTO key_versions (key_id, version, backend, sealed, create_time, public_key, \
         tag) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            v.key_id,
            v.version,
            v.backend,
            v.sealed,
            v.create_time,
            v.public_key,
            v.tag
        ],
    )?;
    Ok(())
}

/// `token, key_id, wrapping_algorithm, sealed_private, public_key, valid_to, tag`.
fn import_params_from_row(r: &Row<'_>) -> rusqlite::Result<ImportParams> {
    Ok(ImportParams {
        token: r.get(0)?,
        key_id: r.get(1)?,
        wrapping_algorithm: r.get(2)?,
        sealed_private: r.get(3)?,
        public_key: r.get(4)?,
        valid_to: r.get(5)?,
        tag: r.get(6)?,
    })
}

impl KeyStore for SqliteStore {
    fn insert_key(
        &self,
        trail: &Trail,
        key: &KeyRecord,
        version: Option<&KeyVersion>,
        limit: u64,
    ) -> Result<()> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if count_owned(&tx, "keys", &key.region, key.owner_uin)? >= limit {
                return Err(Error::CmkLimitExceeded(limit));
            }
            let sql = format!(
                "INSERT INTO keys ({KEY_COLUMNS}) VALUES \
                 (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23)"
            );
            let res = tx.execute(
                &sql,
                params![
                    key.key_id,
                    key.region,
                    key.owner_uin as i64,
                    key.creator_uin as i64,
                    key.alias,
                    key.description,
                    key.key_usage,
                    key.origin,
                    key.owner,
                    key.algorithm.id(),
                    key.state.as_str(),
                    key.create_time,
                    key.deletion_date,
                    key.rotation_enabled,
                    key.rotate_days,
                    key.next_rotate_time,
                    key.last_rotate_time,
                    key.current_version,
                    tags_json(&key.tags)?,
                    key.last_manual_rotate,
                    key.last_alarm_time,
                    key.valid_to,
                    key.material_kcv,
                ],
            );
            match res {
                Err(e) if is_unique_violation(&e) => {
                    return Err(Error::AliasExists(key.alias.clone()))
                }
                other => other?,
            };
            if let Some(v) = version {
                insert_version_tx(&tx, v)?;
            }
            self.commit(tx, trail)?;
            Ok(())
        })?;
        self.cache_key(key);
        Ok(())
    }

    fn get_key(&self, region: &str, owner_uin: u64, key_id: &str) -> Result<Option<KeyRecord>> {
        if let Some(k) = self.keys.read().ok().and_then(|m| m.get(key_id).cloned()) {
            return Ok((k.region == region && k.owner_uin == owner_uin).then_some(k));
        }
        let found = self.with(|conn| get_key_tx(conn, region, owner_uin, key_id))?;
        if let Some(k) = &found {
            self.cache_key(k);
        }
        Ok(found)
    }

    fn get_version(&self, key_id: &str, version: u32) -> Result<Option<KeyVersion>> {
        self.with(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {VERSION_COLS} FROM key_versions WHERE key_id = ?1 AND version = ?2"
                ))?
                .query_row(params![key_id, version], version_from_row)
                .optional()?)
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
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut key = get_key_tx(&tx, region, owner_uin, key_id)?
                .ok_or_else(|| Error::CmkNotFound(key_id.to_string()))?;
            f(&mut key)?;
            write_key_tx(&tx, &key)?;
            self.commit(tx, trail)?;
            Ok(key)
        })
        .inspect(|key| self.cache_key(key))
    }

    fn query_keys(&self, q: &KeyQuery) -> Result<(u64, Vec<KeyRecord>)> {
        use rusqlite::types::Value;
        let mut f = Filter::new("keys", KEY_COLUMNS, &q.region, q.owner_uin);
        f.states(&q.states);
        f.user_created(q.user_created);
        if let Some(origin) = &q.origin {
            f.eq("origin", Value::Text(origin.clone()));
        }
        if let Some(usage) = &q.key_usage {
            f.eq("key_usage", Value::Text(usage.clone()));
        }
        f.search(["key_id", "alias"], &q.search);
        f.tags(&q.tag_filters);
        self.with(|conn| f.page(conn, q.newest_first, q.offset, q.limit, key_from_row))
    }

    fn count_keys(&self, region: &str, owner_uin: u64) -> Result<u64> {
        self.with(|conn| {
            let n: i64 = conn.query_row(
                "SELECT COUNT(*) FROM keys WHERE region = ?1 AND owner_uin = ?2 AND owner = 'user'",
                params![region, owner_uin as i64],
                |r| r.get(0),
            )?;
            Ok(n as u64)
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
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut key = get_key_tx(&tx, region, owner_uin, key_id)?
                .ok_or_else(|| Error::CmkNotFound(key_id.to_string()))?;
            f(&mut key)?;
            key.current_version += 1;
            let v = version(&key)?;
            if v.key_id != key.key_id || v.version != key.current_version {
                return Err(Error::Internal(
                    "a new key version names another key".into(),
                ));
            }
            insert_version_tx(&tx, &v)?;
            write_key_tx(&tx, &key)?;
            self.commit(tx, trail)?;
            Ok(key)
        })
        .inspect(|key| self.cache_key(key))
    }

    fn delete_key(&self, trail: &Trail, key_id: &str) -> Result<bool> {
        let n = self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM key_versions WHERE key_id = ?1", [key_id])?;
            tx.execute("DELETE FROM key_bindings WHERE key_id = ?1", [key_id])?;
            let n = tx.execute("DELETE FROM keys WHERE key_id = ?1", [key_id])?;
            self.commit(tx, trail)?;
            Ok(n)
        })?;
        if let Ok(mut m) = self.keys.write() {
            m.remove(key_id);
        }
        Ok(n == 1)
    }

    fn keys_in_state(&self, state: KeyState) -> Result<Vec<KeyRecord>> {
        self.with(|conn| {
            rows_with(
                conn,
                "keys",
                KEY_COLUMNS,
                "state",
                state.as_str(),
                key_from_row,
            )
        })
    }

    fn keys_rotation_due(&self, now: i64) -> Result<Vec<KeyRecord>> {
        self.with(|conn| {
            let sql = format!(
                "SELECT {KEY_COLUMNS} FROM keys WHERE rotation_enabled = 1 \
                 AND next_rotate_time > 0 AND next_rotate_time <= ?1"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt
                .query_map([now], key_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
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
        let key = self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut key = get_key_tx(&tx, region, owner_uin, key_id)?
                .ok_or_else(|| Error::CmkNotFound(key_id.to_string()))?;
            f(&mut key)?;
            tx.execute("DELETE FROM key_versions WHERE key_id = ?1", [key_id])?;
            key.current_version = 0;
            if let Some(v) = version {
                if v.key_id != key_id || v.version != 1 {
                    return Err(Error::Internal(
                        "imported material must be version 1".into(),
                    ));
                }
                key.current_version = 1;
                insert_version_tx(&tx, v)?;
            }
            write_key_tx(&tx, &key)?;
            self.commit(tx, trail)?;
            Ok(key)
        })?;
        self.cache_key(&key);
        Ok(key)
    }

    fn untagged_versions(&self) -> Result<Vec<KeyVersion>> {
        self.with(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {VERSION_COLS} FROM key_versions WHERE length(tag) = 0"
            ))?;
            let rows = stmt
                .query_map([], version_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn set_version_tag(&self, key_id: &str, version: u32, tag: &[u8]) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "UPDATE key_versions SET tag = ?3 WHERE key_id = ?1 AND version = ?2 \
                 AND length(tag) = 0",
                params![key_id, version, tag],
            )?;
            Ok(())
        })
    }

    fn insert_import_params(&self, trail: &Trail, p: &ImportParams) -> Result<()> {
        self.audited_write(trail, |conn| {
            conn.execute(
                "INSERT INTO import_params (token, key_id, wrapping_algorithm, sealed_private, \
                 public_key, valid_to, tag) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    p.token,
                    p.key_id,
                    p.wrapping_algorithm,
                    p.sealed_private,
                    p.public_key,
                    p.valid_to,
                    p.tag
                ],
            )?;
            Ok(())
        })
    }

    fn get_import_params(&self, token: &str) -> Result<Option<ImportParams>> {
        self.with(|conn| {
            Ok(conn
                .query_row(
                    "SELECT token, key_id, wrapping_algorithm, sealed_private, public_key, \
                     valid_to, tag FROM import_params WHERE token = ?1",
                    [token],
                    import_params_from_row,
                )
                .optional()?)
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
        self.audited_write(trail, |conn| {
            let n = conn.execute(
                "INSERT OR IGNORE INTO key_bindings (key_id, product_id, resource_id, create_time) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![key_id, product, resource, now],
            )?;
            Ok(n == 1)
        })
    }

    fn unbind(&self, trail: &Trail, key_id: &str, product: &str, resource: &str) -> Result<bool> {
        self.audited_write(trail, |conn| {
            let n = conn.execute(
                "DELETE FROM key_bindings WHERE key_id = ?1 AND product_id = ?2 AND resource_id = ?3",
                params![key_id, product, resource],
            )?;
            Ok(n == 1)
        })
    }

    fn count_bindings(&self, key_id: &str) -> Result<u64> {
        self.with(|conn| {
            let n: i64 = conn.query_row(
                "SELECT COUNT(*) FROM key_bindings WHERE key_id = ?1",
                [key_id],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
    }
}
