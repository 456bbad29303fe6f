//! PostgreSQL: hosted data keys.

use super::filter::Filter;
use super::*;
use crate::error::{Error, Result};
use crate::store::audit::Trail;
use crate::store::*;
use postgres::{GenericClient, Row};

const DATA_KEY_COLUMNS: &str = "data_key_id, region, owner_uin, creator_uin, name, description, \
    key_id, origin, owner, state, number_of_bytes, create_time, deletion_date, blob, tags";

fn data_key_from_row(r: &Row) -> Result<DataKeyRecord> {
    let state: String = r.try_get(9)?;
    Ok(DataKeyRecord {
        data_key_id: r.try_get(0)?,
        region: r.try_get(1)?,
        owner_uin: u64_at(r, 2)?,
        creator_uin: u64_at(r, 3)?,
        name: r.try_get(4)?,
        description: r.try_get(5)?,
        key_id: r.try_get(6)?,
        origin: r.try_get(7)?,
        owner: r.try_get(8)?,
        state: KeyState::parse(&state).ok_or_else(|| bad("state"))?,
        number_of_bytes: u32_at(r, 10)?,
        create_time: r.try_get(11)?,
        deletion_date: r.try_get(12)?,
        blob: r.try_get(13)?,
        tags: tags_at(r, 14)?,
    })
}

/// A data key; with `lock`, its row is locked until the transaction ends.
fn get_data_key_in(
    c: &mut impl GenericClient,
    region: &str,
    owner_uin: u64,
    id: &str,
    lock: bool,
) -> Result<Option<DataKeyRecord>> {
    let sql = format!(
        "SELECT {DATA_KEY_COLUMNS} FROM data_keys WHERE data_key_id = $1 AND region = $2 \
         AND owner_uin = $3{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    c.query_opt(&sql, &[&id, &region, &(owner_uin as i64)])?
        .as_ref()
        .map(data_key_from_row)
        .transpose()
}

impl DataKeyStore for PgStore {
    fn insert_data_key(&self, trail: &Trail, k: &DataKeyRecord, limit: u64) -> Result<()> {
        self.write(trail, |tx| {
            if count_owned_locked(tx, "data_keys", &k.region, k.owner_uin)? >= limit {
                return Err(Error::DataKeyLimitExceeded(limit));
            }
            let marks: Vec<String> = (1..=15).map(|i| format!("${i}")).collect();
            let sql = format!(
                "INSERT INTO data_keys ({DATA_KEY_COLUMNS}) VALUES ({})",
                marks.join(",")
            );
            let res = tx.execute(
                &sql,
                &[
                    &k.data_key_id,
                    &k.region,
                    &(k.owner_uin as i64),
                    &(k.creator_uin as i64),
                    &k.name,
                    &k.description,
                    &k.key_id,
                    &k.origin,
                    &k.owner,
                    &k.state.as_str(),
                    &i64::from(k.number_of_bytes),
                    &k.create_time,
                    &k.deletion_date,
                    &k.blob,
                    &tags_json(&k.tags)?,
                ],
            );
            match res {
                Err(e) if is_unique_violation(&e) && !violates(&e, "data_keys_pkey") => {
                    Err(Error::DataKeyNameExists(k.name.clone()))
                }
                other => other.map(|_| ()).map_err(Error::from),
            }
        })
    }

    fn get_data_key(
        &self,
        region: &str,
        owner_uin: u64,
        id: &str,
    ) -> Result<Option<DataKeyRecord>> {
        self.with(|c| get_data_key_in(c, region, owner_uin, id, false))
    }

    fn update_data_key(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        id: &str,
        f: DataKeyUpdate<'_>,
    ) -> Result<DataKeyRecord> {
        self.write(trail, |tx| {
            let mut k = get_data_key_in(tx, region, owner_uin, id, true)?
                .ok_or_else(|| Error::DataKeyNotFound(id.to_string()))?;
            f(&mut k)?;
            let res = tx.execute(
                "UPDATE data_keys SET name = $2, description = $3, state = $4, \
                 deletion_date = $5 WHERE data_key_id = $1",
                &[
                    &k.data_key_id,
                    &k.name,
                    &k.description,
                    &k.state.as_str(),
                    &k.deletion_date,
                ],
            );
            match res {
                Err(e) if is_unique_violation(&e) => Err(Error::DataKeyNameExists(k.name)),
                Err(e) => Err(e.into()),
                Ok(_) => Ok(k),
            }
        })
    }

    fn query_data_keys(&self, q: &DataKeyQuery) -> Result<(u64, Vec<DataKeyRecord>)> {
        let mut f = Filter::new("data_keys", DATA_KEY_COLUMNS, &q.region, q.owner_uin);
        f.states(&q.states);
        f.user_created(q.user_created);
        if let Some(origin) = &q.origin {
            f.eq("origin", origin.clone());
        }
        if let Some(key_id) = &q.key_id {
            f.eq("key_id", key_id.clone());
        }
        if let Some(n) = q.number_of_bytes {
            f.eq("number_of_bytes", i64::from(n));
        }
        f.search(["data_key_id", "name"], &q.search);
        f.tags(&q.tag_filters);
        self.with(|c| f.page(c, q.newest_first, q.offset, q.limit, data_key_from_row))
    }

    fn count_data_keys(&self, region: &str, owner_uin: u64) -> Result<u64> {
        self.with(|c| count_owned(c, "data_keys", region, owner_uin))
    }

    fn data_keys_in_state(&self, state: KeyState) -> Result<Vec<DataKeyRecord>> {
        self.with(|c| {
            rows_with(
                c,
                "data_keys",
                DATA_KEY_COLUMNS,
                "state",
                state.as_str(),
                data_key_from_row,
            )
        })
    }

    fn delete_data_key(&self, trail: &Trail, id: &str) -> Result<bool> {
        self.write(trail, |tx| {
            Ok(tx.execute("DELETE FROM data_keys WHERE data_key_id = $1", &[&id])? == 1)
        })
    }
}
