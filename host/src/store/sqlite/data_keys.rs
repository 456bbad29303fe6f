//! SQLite: hosted data keys.

use super::filter::Filter;
use super::*;
use crate::error::{Error, Result};
use crate::store::audit::Trail;
use crate::store::*;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

const DATA_KEY_COLUMNS: &str = "data_key_id, region, owner_uin, creator_uin, name, description, \
    key_id, origin, owner, state, number_of_bytes, create_time, deletion_date, blob, tags";

fn data_key_from_row(r: &Row<'_>) -> rusqlite::Result<DataKeyRecord> {
    let state: String = r.get(9)?;
    Ok(DataKeyRecord {
        data_key_id: r.get(0)?,
        region: r.get(1)?,
        owner_uin: r.get::<_, i64>(2)? as u64,
        creator_uin: r.get::<_, i64>(3)? as u64,
        name: r.get(4)?,
        description: r.get(5)?,
        key_id: r.get(6)?,
        origin: r.get(7)?,
        owner: r.get(8)?,
        state: KeyState::parse(&state).ok_or_else(|| bad(9, "state"))?,
        number_of_bytes: r.get(10)?,
        create_time: r.get(11)?,
        deletion_date: r.get(12)?,
        blob: r.get(13)?,
        tags: tags_at(r, 14)?,
    })
}

fn get_data_key_tx(
    conn: &Connection,
    region: &str,
    owner_uin: u64,
    id: &str,
) -> Result<Option<DataKeyRecord>> {
    let sql = format!(
        "SELECT {DATA_KEY_COLUMNS} FROM data_keys WHERE data_key_id = ?1 AND region = ?2 AND owner_uin = ?3"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![id, region, owner_uin as i64], data_key_from_row)
        .optional()?)
}

impl DataKeyStore for SqliteStore {
    fn insert_data_key(&self, trail: &Trail, k: &DataKeyRecord, limit: u64) -> Result<()> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if count_owned(&tx, "data_keys", &k.region, k.owner_uin)? >= limit {
                return Err(Error::DataKeyLimitExceeded(limit));
            }
            let sql = format!(
                "INSERT INTO data_keys ({DATA_KEY_COLUMNS}) VALUES \
                 (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)"
            );
            let res = tx.execute(
                &sql,
                params![
                    k.data_key_id,
                    k.region,
                    k.owner_uin as i64,
                    k.creator_uin as i64,
                    k.name,
                    k.description,
                    k.key_id,
                    k.origin,
                    k.owner,
                    k.state.as_str(),
                    k.number_of_bytes,
                    k.create_time,
                    k.deletion_date,
                    k.blob,
                    tags_json(&k.tags)?,
                ],
            );
            match res {
                Err(e) if is_unique_violation(&e) => {
                    return Err(Error::DataKeyNameExists(k.name.clone()))
                }
                other => other?,
            };
            self.commit(tx, trail)?;
            Ok(())
        })
    }

    fn get_data_key(
        &self,
        region: &str,
        owner_uin: u64,
        id: &str,
    ) -> Result<Option<DataKeyRecord>> {
        self.with(|conn| get_data_key_tx(conn, region, owner_uin, id))
    }

    fn update_data_key(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        id: &str,
        f: DataKeyUpdate<'_>,
    ) -> Result<DataKeyRecord> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut k = get_data_key_tx(&tx, region, owner_uin, id)?
                .ok_or_else(|| Error::DataKeyNotFound(id.to_string()))?;
            f(&mut k)?;
            let res = tx.execute(
                "UPDATE data_keys SET name = ?2, description = ?3, state = ?4, deletion_date = ?5 \
                 WHERE data_key_id = ?1",
                params![
                    k.data_key_id,
                    k.name,
                    k.description,
                    k.state.as_str(),
                    k.deletion_date
                ],
            );
            match res {
                Err(e) if is_unique_violation(&e) => return Err(Error::DataKeyNameExists(k.name)),
                other => other?,
            };
            self.commit(tx, trail)?;
            Ok(k)
        })
    }

    fn query_data_keys(&self, q: &DataKeyQuery) -> Result<(u64, Vec<DataKeyRecord>)> {
        use rusqlite::types::Value;
        let mut f = Filter::new("data_keys", DATA_KEY_COLUMNS, &q.region, q.owner_uin);
        f.states(&q.states);
        f.user_created(q.user_created);
        if let Some(origin) = &q.origin {
            f.eq("origin", Value::Text(origin.clone()));
        }
        if let Some(key_id) = &q.key_id {
            f.eq("key_id", Value::Text(key_id.clone()));
        }
        if let Some(n) = q.number_of_bytes {
            f.eq("number_of_bytes", Value::Integer(n.into()));
        }
        f.search(["data_key_id", "name"], &q.search);
        f.tags(&q.tag_filters);
        self.with(|conn| f.page(conn, q.newest_first, q.offset, q.limit, data_key_from_row))
    }

    fn count_data_keys(&self, region: &str, owner_uin: u64) -> Result<u64> {
        self.with(|conn| count_owned(conn, "data_keys", region, owner_uin))
    }

    fn data_keys_in_state(&self, state: KeyState) -> Result<Vec<DataKeyRecord>> {
        self.with(|conn| {
            rows_with(
                conn,
                "data_keys",
                DATA_KEY_COLUMNS,
                "state",
                state.as_str(),
                data_key_from_row,
            )
        })
    }

    fn delete_data_key(&self, trail: &Trail, id: &str) -> Result<bool> {
        self.audited_write(trail, |conn| {
            Ok(conn.execute("DELETE FROM data_keys WHERE data_key_id = ?1", [id])? == 1)
        })
    }
}
