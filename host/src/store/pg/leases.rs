//! PostgreSQL: leases with fencing tokens, judged by the database's clock.

use super::*;
use crate::store::{Fence, LeaseStore};

impl LeaseStore for PgStore {
    fn acquire_lease(
        &self,
        name: &'static str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<i64>> {
        self.with(|c| {
            // One statement, so taking and extending cannot interleave with another
            // daemon's: the row lock of the upsert orders them.
            let row = c.query_opt(
                "INSERT INTO leases (name, holder, token, expires_at) \
                 VALUES ($1, $2, 1, now() + make_interval(secs => $3)) \
                 ON CONFLICT (name) DO UPDATE SET \
                   token = CASE WHEN leases.holder = excluded.holder \
                           THEN leases.token ELSE leases.token + 1 END, \
                   holder = excluded.holder, expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at < now() \
                 RETURNING token",
                &[&name, &holder, &ttl.as_secs_f64()],
            )?;
            row.map(|r| r.try_get(0)).transpose().map_err(Into::into)
        })
    }

    fn release_lease(&self, name: &'static str, holder: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE leases SET expires_at = now() - interval '1 second' \
                 WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )?;
            Ok(())
        })
    }
}

/// Refuses to commit leased work whose lease has changed hands. `FOR SHARE` keeps the row
/// as it is until this transaction ends: a takeover (an `UPDATE` of the row) waits for the
/// commit, so the work either commits before the new holder starts or not at all.
pub(super) fn check_fence(tx: &mut Transaction<'_>, fence: Fence) -> Result<()> {
    let token: Option<i64> = tx
        .query_opt(
            "SELECT token FROM leases WHERE name = $1 FOR SHARE",
            &[&fence.lease],
        )?
        .map(|r| r.try_get(0))
        .transpose()?;
    if token == Some(fence.token) {
        return Ok(());
    }
    Err(Error::LeaseLost(format!(
        "the {} lease has passed to another daemon (token {token:?}, this work held {}); \
         its writes are not committed",
        fence.lease, fence.token
    )))
}
