//! SQLite: the alarm outbox.

use super::*;
use crate::error::Result;
use crate::store::*;
use rusqlite::params;

impl SqliteStore {
    fn alarms_query(&self, sql: &str, arg: rusqlite::types::Value) -> Result<Vec<Alarm>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt
                .query_map([arg], |r| {
                    Ok(Alarm {
                        id: r.get(0)?,
                        time: r.get(1)?,
                        region: r.get(2)?,
                        key_id: r.get(3)?,
                        kind: r.get(4)?,
                        message: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }
}

impl AlarmStore for SqliteStore {
    fn insert_alarm(&self, a: &Alarm) -> Result<i64> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO alarms (time, region, key_id, kind, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![a.time, a.region, a.key_id, a.kind, a.message],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    fn undelivered_alarms(&self, limit: u32) -> Result<Vec<Alarm>> {
        self.alarms_query(
            "SELECT id, time, region, key_id, kind, message FROM alarms \
             WHERE delivered = 0 ORDER BY id LIMIT ?1",
            rusqlite::types::Value::Integer(limit as i64),
        )
    }

    fn mark_alarm_delivered(&self, id: i64) -> Result<()> {
        self.with(|conn| {
            conn.execute("UPDATE alarms SET delivered = 1 WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    fn alarms_for_key(&self, key_id: &str) -> Result<Vec<Alarm>> {
        self.alarms_query(
            "SELECT id, time, region, key_id, kind, message FROM alarms \
             WHERE key_id = ?1 ORDER BY id",
            rusqlite::types::Value::Text(key_id.into()),
        )
    }
}
