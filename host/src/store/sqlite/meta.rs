//! SQLite: named deployment values.

use super::*;
use crate::error::Result;
use crate::store::*;
use rusqlite::{params, OptionalExtension};

impl MetaStore for SqliteStore {
    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.with(|conn| {
            Ok(conn
                .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                    r.get(0)
                })
                .optional()?)
        })
    }

    fn insert_meta(&self, name: &str, value: &[u8]) -> Result<bool> {
        self.with(|conn| {
            let n = conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES (?1, ?2)",
                params![name, value],
            )?;
            Ok(n == 1)
        })
    }

    fn set_meta(&self, name: &str, value: &[u8]) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )?;
            Ok(())
        })
    }
}
