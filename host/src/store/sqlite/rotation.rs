//! SQLite: product secrets and asynchronous requests.

use super::*;
use crate::error::Result;
use crate::store::audit::Trail;
use crate::store::*;
use rusqlite::{params, Connection, OptionalExtension, Row};

const PRODUCT_COLUMNS: &str = "region, owner_uin, secret_name, product, instance_id, \
    user_prefix, domains, privileges, rotation_enabled, frequency_days, next_rotation, \
    last_rotation, retire_account, retire_at, failures, retry_at";

const FLOW_COLUMNS: &str =
    "flow_id, region, owner_uin, secret_name, action, status, description, create_time";

fn product_from_row(r: &Row<'_>) -> rusqlite::Result<ProductSecretRecord> {
    let domains: String = r.get(6)?;
    Ok(ProductSecretRecord {
        region: r.get(0)?,
        owner_uin: r.get::<_, i64>(1)? as u64,
        name: r.get(2)?,
        product: r.get(3)?,
        instance_id: r.get(4)?,
        user_prefix: r.get(5)?,
        domains: serde_json::from_str(&domains).map_err(|_| bad(6, "domains"))?,
        privileges: r.get(7)?,
        rotation_enabled: r.get::<_, i64>(8)? != 0,
        frequency_days: r.get(9)?,
        next_rotation: r.get(10)?,
        last_rotation: r.get(11)?,
        retire_account: r.get(12)?,
        retire_at: r.get(13)?,
        failures: r.get::<_, i64>(14)? as u32,
        retry_at: r.get(15)?,
    })
}

fn flow_from_row(r: &Row<'_>) -> rusqlite::Result<FlowRecord> {
    Ok(FlowRecord {
        flow_id: r.get(0)?,
        region: r.get(1)?,
        owner_uin: r.get::<_, i64>(2)? as u64,
        secret_name: r.get(3)?,
        action: r.get(4)?,
        status: r.get(5)?,
        description: r.get(6)?,
        create_time: r.get(7)?,
    })
}

fn get_product_tx(
    conn: &Connection,
    region: &str,
    owner_uin: u64,
    name: &str,
) -> Result<Option<ProductSecretRecord>> {
    let sql = format!(
        "SELECT {PRODUCT_COLUMNS} FROM product_secrets \
         WHERE region = ?1 AND owner_uin = ?2 AND secret_name = ?3"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![region, owner_uin as i64, name], product_from_row)
        .optional()?)
}

fn domains_json(p: &ProductSecretRecord) -> Result<String> {
    serde_json::to_string(&p.domains).map_err(|e| crate::error::Error::Internal(e.to_string()))
}

impl RotationStore for SqliteStore {
    fn insert_product_secret(&self, trail: &Trail, p: &ProductSecretRecord) -> Result<()> {
        let domains = domains_json(p)?;
        self.audited_write(trail, |tx| {
            let sql = format!(
                "INSERT INTO product_secrets ({PRODUCT_COLUMNS}) VALUES \
                 (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)"
            );
            tx.execute(
                &sql,
                params![
                    p.region,
                    p.owner_uin as i64,
                    p.name,
                    p.product,
                    p.instance_id,
                    p.user_prefix,
                    domains,
                    p.privileges,
                    p.rotation_enabled as i64,
                    p.frequency_days,
                    p.next_rotation,
                    p.last_rotation,
                    p.retire_account,
                    p.retire_at,
                    p.failures as i64,
                    p.retry_at,
                ],
            )?;
            Ok(())
        })
    }

    fn get_product_secret(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
    ) -> Result<Option<ProductSecretRecord>> {
        self.with(|conn| get_product_tx(conn, region, owner_uin, name))
    }

    fn update_product_secret(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        name: &str,
        f: ProductSecretUpdate<'_>,
    ) -> Result<Option<ProductSecretRecord>> {
        self.audited_write(trail, |tx| {
            let Some(mut p) = get_product_tx(tx, region, owner_uin, name)? else {
                return Ok(None);
            };
            f(&mut p)?;
            tx.execute(
                "UPDATE product_secrets SET rotation_enabled = ?4, frequency_days = ?5, \
                 next_rotation = ?6, last_rotation = ?7, retire_account = ?8, retire_at = ?9, \
                 failures = ?10, retry_at = ?11 \
                 WHERE region = ?1 AND owner_uin = ?2 AND secret_name = ?3",
                params![
                    region,
                    owner_uin as i64,
                    name,
                    p.rotation_enabled as i64,
                    p.frequency_days,
                    p.next_rotation,
                    p.last_rotation,
                    p.retire_account,
                    p.retire_at,
                    p.failures as i64,
                    p.retry_at,
                ],
            )?;
            Ok(Some(p))
        })
    }

    fn product_secrets(&self) -> Result<Vec<ProductSecretRecord>> {
        self.with(|conn| {
            let sql = format!("SELECT {PRODUCT_COLUMNS} FROM product_secrets");
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt
                .query_map([], product_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn claim_product_secret(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
        now: i64,
        until: i64,
    ) -> Result<bool> {
        self.with(|conn| {
            let n = conn.execute(
                "UPDATE product_secrets SET busy_until = ?5 \
                 WHERE region = ?1 AND owner_uin = ?2 AND secret_name = ?3 AND busy_until < ?4",
                params![region, owner_uin as i64, name, now, until],
            )?;
            Ok(n == 1)
        })
    }

    fn release_product_secret(&self, region: &str, owner_uin: u64, name: &str) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "UPDATE product_secrets SET busy_until = 0 \
                 WHERE region = ?1 AND owner_uin = ?2 AND secret_name = ?3",
                params![region, owner_uin as i64, name],
            )?;
            Ok(())
        })
    }

    fn insert_flow(&self, trail: &Trail, f: &FlowRecord) -> Result<i64> {
        self.audited_write(trail, |tx| {
            tx.execute(
                "INSERT INTO async_requests \
                 (region, owner_uin, secret_name, action, status, description, create_time) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    f.region,
                    f.owner_uin as i64,
                    f.secret_name,
                    f.action,
                    f.status,
                    f.description,
                    f.create_time
                ],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    fn finish_flow(
        &self,
        trail: &Trail,
        flow_id: i64,
        status: i64,
        description: &str,
    ) -> Result<()> {
        self.audited_write(trail, |tx| {
            tx.execute(
                "UPDATE async_requests SET status = ?2, description = ?3 WHERE flow_id = ?1",
                params![flow_id, status, description],
            )?;
            Ok(())
        })
    }

    fn get_flow(&self, region: &str, owner_uin: u64, flow_id: i64) -> Result<Option<FlowRecord>> {
        self.with(|conn| {
            let sql = format!(
                "SELECT {FLOW_COLUMNS} FROM async_requests \
                 WHERE flow_id = ?1 AND region = ?2 AND owner_uin = ?3"
            );
            Ok(conn
                .prepare_cached(&sql)?
                .query_row(params![flow_id, region, owner_uin as i64], flow_from_row)
                .optional()?)
        })
    }
}
