//! PostgreSQL: named deployment values.

use super::*;
use crate::error::Result;
use crate::store::*;

impl MetaStore for PgStore {
    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.with(|c| {
            c.query_opt("SELECT value FROM meta WHERE name = $1", &[&name])?
                .map(|r| r.try_get(0).map_err(Into::into))
                .transpose()
        })
    }

    fn insert_meta(&self, name: &str, value: &[u8]) -> Result<bool> {
        self.with(|c| {
            let n = c.execute(
                "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &value],
            )?;
            Ok(n == 1)
        })
    }

    fn set_meta(&self, name: &str, value: &[u8]) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO meta (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&name, &value],
            )?;
            Ok(())
        })
    }
}
