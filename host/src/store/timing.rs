//! How long store calls take, reported to whoever watches (the daemon's metrics) without the
//! store naming a metrics crate.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// What kind of store call was timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreCall {
    /// One store call from taking a connection to giving it back (reads and writes alike).
    Call,
    /// The commit of a write transaction with its audit record appended (the durable part:
    /// fsync on SQLite, the server's commit on PostgreSQL); also inside its `Call`.
    Commit,
}

pub trait StoreObserver: Send + Sync {
    fn observed(&self, call: StoreCall, took: Duration);
}

/// A store's observer, set once after opening (calls before it are not timed).
#[derive(Default)]
pub struct Timing(OnceLock<Arc<dyn StoreObserver>>);

impl Timing {
    pub fn set(&self, observer: Arc<dyn StoreObserver>) {
        let _ = self.0.set(observer);
    }

    /// Runs `f` and reports its time, including any wait for the connection inside it.
    pub fn time<T>(&self, call: StoreCall, f: impl FnOnce() -> T) -> T {
        let Some(o) = self.0.get() else {
            return f();
        };
        let started = Instant::now();
        let out = f();
        o.observed(call, started.elapsed());
        out
    }
}
