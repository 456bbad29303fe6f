//! PostgreSQL: product secrets and asynchronous requests.

use super::*;
use crate::error::{Error, Result};
use crate::store::audit::Trail;
use crate::store::*;
use postgres::{GenericClient, Row};

const PRODUCT_COLUMNS: &str = "region, owner_uin, secret_name, product, instance_id, \
    user_prefix, domains, privileges, rotation_enabled, frequency_days, next_rotation, \
    last_rotation, retire_account, retire_at, failures, retry_at";

const FLOW_COLUMNS: &str =
    "flow_id, region, owner_uin, secret_name, action, status, description, create_time";

fn product_from_row(r: &Row) -> Result<ProductSecretRecord> {
    let domains: String = r.try_get(6)?;
    Ok(ProductSecretRecord {
        region: r.try_get(0)?,
        owner_uin: u64_at(r, 1)?,
        name: r.try_get(2)?,
        product: r.try_get(3)?,
        instance_id: r.try_get(4)?,
        user_prefix: r.try_get(5)?,
        domains: serde_json::from_str(&domains).map_err(|_| bad("domains"))?,
        privileges: r.try_get(7)?,
        rotation_enabled: r.try_get(8)?,
        frequency_days: r.try_get(9)?,
        next_rotation: r.try_get(10)?,
        last_rotation: r.try_get(11)?,
        retire_account: r.try_get(12)?,
        retire_at: r.try_get(13)?,
        failures: u32_at(r, 14)?,
        retry_at: r.try_get(15)?,
    })
}

fn flow_from_row(r: &Row) -> Result<FlowRecord> {
    Ok(FlowRecord {
        flow_id: r.try_get(0)?,
        region: r.try_get(1)?,
        owner_uin: u64_at(r, 2)?,
        secret_name: r.try_get(3)?,
        action: r.try_get(4)?,
        status: r.try_get(5)?,
        description: r.try_get(6)?,
        create_time: r.try_get(7)?,
    })
}

/// A product secret; with `lock`, its row is locked until the transaction ends.
fn get_product_in(
    c: &mut impl GenericClient,
    region: &str,
    owner_uin: u64,
    name: &str,
    lock: bool,
) -> Result<Option<ProductSecretRecord>> {
    let sql = format!(
        "SELECT {PRODUCT_COLUMNS} FROM product_secrets \
         WHERE region = $1 AND owner_uin = $2 AND secret_name = $3{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    c.query_opt(&sql, &[&region, &(owner_uin as i64), &name])?
        .map(|r| product_from_row(&r))
        .transpose()
}

fn domains_json(p: &ProductSecretRecord) -> Result<String> {
    serde_json::to_string(&p.domains).map_err(|e| Error::Internal(e.to_string()))
}

impl RotationStore for PgStore {
    fn insert_product_secret(&self, trail: &Trail, p: &ProductSecretRecord) -> Result<()> {
        let domains = domains_json(p)?;
        self.write(trail, |tx| {
            let sql = format!(
                "INSERT INTO product_secrets ({PRODUCT_COLUMNS}) VALUES \
                 ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)"
            );
            tx.execute(
                &sql,
                &[
                    &p.region,
                    &(p.owner_uin as i64),
                    &p.name,
                    &p.product,
                    &p.instance_id,
                    &p.user_prefix,
                    &domains,
                    &p.privileges,
                    &p.rotation_enabled,
                    &p.frequency_days,
                    &p.next_rotation,
                    &p.last_rotation,
                    &p.retire_account,
                    &p.retire_at,
                    &i64::from(p.failures),
                    &p.retry_at,
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
        self.with(|c| get_product_in(c, region, owner_uin, name, false))
    }

    fn update_product_secret(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        name: &str,
        f: ProductSecretUpdate<'_>,
    ) -> Result<Option<ProductSecretRecord>> {
        self.write(trail, |tx| {
            let Some(mut p) = get_product_in(tx, region, owner_uin, name, true)? else {
                return Ok(None);
            };
            f(&mut p)?;
            tx.execute(
                "UPDATE product_secrets SET rotation_enabled = $4, frequency_days = $5, \
                 next_rotation = $6, last_rotation = $7, retire_account = $8, retire_at = $9, \
                 failures = $10, retry_at = $11 \
                 WHERE region = $1 AND owner_uin = $2 AND secret_name = $3",
                &[
                    &region,
                    &(owner_uin as i64),
                    &name,
                    &p.rotation_enabled,
                    &p.frequency_days,
                    &p.next_rotation,
                    &p.last_rotation,
                    &p.retire_account,
                    &p.retire_at,
                    &i64::from(p.failures),
                    &p.retry_at,
                ],
            )?;
            Ok(Some(p))
        })
    }

    fn product_secrets(&self) -> Result<Vec<ProductSecretRecord>> {
        self.with(|c| {
            let sql = format!("SELECT {PRODUCT_COLUMNS} FROM product_secrets");
            c.query(&sql, &[])?.iter().map(product_from_row).collect()
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
        self.with(|c| {
            let n = c.execute(
                "UPDATE product_secrets SET busy_until = $5 \
                 WHERE region = $1 AND owner_uin = $2 AND secret_name = $3 AND busy_until < $4",
                &[&region, &(owner_uin as i64), &name, &now, &until],
            )?;
            Ok(n == 1)
        })
    }

    fn release_product_secret(&self, region: &str, owner_uin: u64, name: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE product_secrets SET busy_until = 0 \
                 WHERE region = $1 AND owner_uin = $2 AND secret_name = $3",
                &[&region, &(owner_uin as i64), &name],
            )?;
            Ok(())
        })
    }

    fn insert_flow(&self, trail: &Trail, f: &FlowRecord) -> Result<i64> {
        self.write(trail, |tx| {
            Ok(tx
                .query_one(
                    "INSERT INTO async_requests \
                     (region, owner_uin, secret_name, action, status, description, create_time) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING flow_id",
                    &[
                        &f.region,
                        &(f.owner_uin as i64),
                        &f.secret_name,
                        &f.action,
                        &f.status,
                        &f.description,
                        &f.create_time,
                    ],
                )?
                .try_get(0)?)
        })
    }

    fn finish_flow(
        &self,
        trail: &Trail,
        flow_id: i64,
        status: i64,
        description: &str,
    ) -> Result<()> {
        self.write(trail, |tx| {
            tx.execute(
                "UPDATE async_requests SET status = $2, description = $3 WHERE flow_id = $1",
                &[&flow_id, &status, &description],
            )?;
            Ok(())
        })
    }

    fn get_flow(&self, region: &str, owner_uin: u64, flow_id: i64) -> Result<Option<FlowRecord>> {
        self.with(|c| {
            let sql = format!(
                "SELECT {FLOW_COLUMNS} FROM async_requests \
                 WHERE flow_id = $1 AND region = $2 AND owner_uin = $3"
            );
            c.query_opt(&sql, &[&flow_id, &region, &(owner_uin as i64)])?
                .map(|r| flow_from_row(&r))
                .transpose()
        })
    }
}
