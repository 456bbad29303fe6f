//! PostgreSQL: the change feed. The triggers of schema version 2 `NOTIFY keyward_changes`
//! with what changed; a thread of this store `LISTEN`s on a connection of its own and hands
//! each announcement to the daemon's caches (`crate::coherence`).
//!
//! How stale can a cache be? A NOTIFY is sent when the changing transaction commits and
//! arrives within milliseconds. A lost connection loses announcements, so the listener
//! checks its connection whenever it has been quiet for `QUIET` and suspends every cache
//! (`Change::Suspended`: serve and keep nothing) as soon as a check fails or takes longer
//! than `CHECK_TIMEOUT`; caches resume, empty, once it listens again. So no cache serves a
//! value more than `QUIET + CHECK_TIMEOUT` (1.5 s) after the change that ended it
//! committed, even when the connection dies silently.

use super::*;
use crate::store::{Change, ChangeSink};
use postgres::fallible_iterator::FallibleIterator;
use std::sync::atomic::{AtomicBool, Ordering};

const CHANNEL: &str = "keyward_changes";
const QUIET: Duration = Duration::from_millis(500);
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Wait between attempts to listen again.
const RETRY: Duration = Duration::from_millis(500);

/// What a notification's payload announces (the triggers' vocabulary).
pub(super) fn parse(payload: &str) -> Option<Change> {
    match payload {
        "credentials" => Some(Change::Credentials),
        "authorization" => Some(Change::Authorization),
        _ => payload
            .strip_prefix("key:")
            .map(|id| Change::KeyVersions(id.to_string())),
    }
}

impl PgStore {
    /// Starts the listener; returns once it listens (or with the reason it cannot).
    pub fn watch_changes(&self, sink: ChangeSink) -> Result<()> {
        let endpoint = self.endpoint.clone();
        let stop = self.stop_listening.clone();
        let first = blocking(|| listen(&endpoint))?;
        std::thread::Builder::new()
            .name("keyward-pg-changes".into())
            .spawn(move || {
                let mut client = Some(first);
                while !stop.load(Ordering::Relaxed) {
                    let mut c = match client.take() {
                        Some(c) => c,
                        None => match listen(&endpoint) {
                            Ok(c) => {
                                tracing::info!("store change feed: listening again");
                                sink(Change::Resumed);
                                c
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "store change feed: still down");
                                std::thread::sleep(RETRY);
                                continue;
                            }
                        },
                    };
                    match relay(&mut c, &sink, &stop) {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::error!(error = %e,
                                "store change feed lost: caches suspended until it is back");
                            sink(Change::Suspended);
                        }
                    }
                }
            })?;
        Ok(())
    }
}

fn listen(endpoint: &Endpoint) -> Result<postgres::Client> {
    let mut c = endpoint.connect()?;
    c.batch_execute(&format!("LISTEN {CHANNEL}"))?;
    Ok(c)
}

/// Hands announcements to `sink` until `stop` (Ok) or the connection fails (Err).
fn relay(c: &mut postgres::Client, sink: &ChangeSink, stop: &AtomicBool) -> Result<()> {
    while !stop.load(Ordering::Relaxed) {
        let mut quiet = true;
        {
            let mut notes = c.notifications();
            let mut iter = notes.timeout_iter(QUIET);
            while let Some(n) = iter.next()? {
                quiet = false;
                match parse(n.payload()) {
                    Some(change) => sink(change),
                    None => tracing::warn!(payload = n.payload(), "unknown store change"),
                }
            }
        }
        if quiet {
            c.is_valid(CHECK_TIMEOUT)?;
        }
    }
    Ok(())
}
