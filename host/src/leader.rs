//! Which daemon of a deployment does the scheduled work: the one holding the jobs lease
//! (`store::LeaseStore`). Every daemon tries to take it; the holder extends it every third
//! of its term; when the holder stops extending it (killed, paused, cut off), another takes
//! it once the term ends. Writes of the scheduled work carry the lease's fence, so a holder
//! that lost the lease without noticing cannot commit them (docs/postgres.md).
//!
//! With SQLite the daemon is alone and always holds it.

use crate::error::Result;
use crate::store::{Fence, LeaseStore, JOBS_LEASE};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Leadership {
    store: Arc<dyn LeaseStore>,
    /// This daemon's name in the lease table: host, process and a random part (a restarted
    /// daemon is another holder).
    holder: String,
    term: Duration,
    /// The token and when this daemon last took or extended the lease.
    held: Mutex<Option<(i64, Instant)>>,
}

impl Leadership {
    pub fn new(store: Arc<dyn LeaseStore>, term: Duration) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        let holder = format!(
            "{host}/{}/{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Leadership {
            store,
            holder,
            term,
            held: Mutex::new(None),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn term(&self) -> Duration {
        self.term
    }

    /// Takes or extends the lease; true when this daemon holds it afterwards. Logs each
    /// change of role.
    pub fn renew(&self) -> Result<bool> {
        let asked = Instant::now();
        let got = self
            .store
            .acquire_lease(JOBS_LEASE, &self.holder, self.term);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let before = held.map(|(t, _)| t);
        *held = match &got {
            // The term is counted from before the request: the store's term began no
            // earlier than that.
            Ok(Some(token)) => Some((*token, asked)),
            Ok(None) => None,
            // Unknown: the store may or may not have extended it. Keep the old term, which
            // runs out on its own.
            Err(_) => *held,
        };
        let after = held.map(|(t, _)| t);
        if before != after {
            match after {
                Some(token) => {
                    tracing::info!(holder = %self.holder, token, "this daemon now runs the scheduled jobs")
                }
                None => {
                    tracing::warn!(holder = %self.holder, "this daemon no longer runs the scheduled jobs")
                }
            }
        }
        got.map(|g| g.is_some())
    }

    /// The fence for work starting now: present while this daemon holds the lease with
    /// at least a third of its term left (so the work can finish inside it; the store's
    /// fencing still refuses it if it does not).
    pub fn fence(&self) -> Option<Fence> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.filter(|(_, at)| at.elapsed() < self.term * 2 / 3)
            .map(|(token, _)| Fence {
                lease: JOBS_LEASE,
                token,
            })
    }

    pub fn is_leader(&self) -> bool {
        self.fence().is_some()
    }

    /// Gives the lease up (clean shutdown), so another daemon takes over at once.
    pub fn release(&self) {
        let had = self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
        if had.is_some() {
            if let Err(e) = self.store.release_lease(JOBS_LEASE, &self.holder) {
                tracing::warn!(error = %e, "could not release the jobs lease");
            }
        }
    }
}
