//! Keeps the daemon's caches in step with the store when other daemons share it: the
//! store's change feed (`Store::watch_changes`) names what changed, and this drops it from
//! the cache that holds it (docs/postgres.md, "Several daemons").

use crate::cam::Cam;
use crate::kms::Kms;
use crate::store::{Change, ChangeSink};
use std::sync::Arc;

/// The sink for the store's change feed.
pub fn sink(kms: Arc<Kms>, cam: Arc<Cam>) -> ChangeSink {
    Arc::new(move |change: Change| {
        tracing::debug!(?change, "store change");
        match change {
            Change::KeyVersions(key_id) => kms.forget_versions(&key_id),
            Change::Credentials => cam.accounts.credential_cache().clear(),
            Change::Authorization => cam.policy_cache().clear(),
            Change::Suspended | Change::Resumed => {
                let on = change == Change::Resumed;
                kms.version_cache().set_enabled(on);
                cam.accounts.credential_cache().set_enabled(on);
                cam.policy_cache().set_enabled(on);
            }
        }
    })
}
