//! PostgreSQL: the alarm outbox.

use super::*;
use crate::error::Result;
use crate::store::*;
use postgres::types::ToSql;

impl PgStore {
    fn alarms_query(&self, sql: &str, arg: &(dyn ToSql + Sync)) -> Result<Vec<Alarm>> {
        self.with(|c| {
            c.query(sql, &[arg])?
                .iter()
                .map(|r| {
                    Ok(Alarm {
                        id: r.try_get(0)?,
                        time: r.try_get(1)?,
                        region: r.try_get(2)?,
                        key_id: r.try_get(3)?,
                        kind: r.try_get(4)?,
                        message: r.try_get(5)?,
                    })
                })
                .collect()
        })
    }
}

impl AlarmStore for PgStore {
    fn insert_alarm(&self, a: &Alarm) -> Result<i64> {
        self.with(|c| {
            Ok(c.query_one(
                "INSERT INTO alarms (time, region, key_id, kind, message) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[&a.time, &a.region, &a.key_id, &a.kind, &a.message],
            )?
            .try_get(0)?)
        })
    }

    fn undelivered_alarms(&self, limit: u32) -> Result<Vec<Alarm>> {
        self.alarms_query(
            "SELECT id, time, region, key_id, kind, message FROM alarms \
             WHERE NOT delivered ORDER BY id LIMIT $1",
            &i64::from(limit),
        )
    }

    fn mark_alarm_delivered(&self, id: i64) -> Result<()> {
        self.with(|c| {
            c.execute("UPDATE alarms SET delivered = TRUE WHERE id = $1", &[&id])?;
            Ok(())
        })
    }

    fn alarms_for_key(&self, key_id: &str) -> Result<Vec<Alarm>> {
        self.alarms_query(
            "SELECT id, time, region, key_id, kind, message FROM alarms \
             WHERE key_id = $1 ORDER BY id",
            &key_id,
        )
    }
}
