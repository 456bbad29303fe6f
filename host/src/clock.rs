//! Time source. Everything that depends on "now" asks a `Clock`, so tests can run days of
//! rotation and deletion schedules without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

pub trait Clock: Send + Sync {
    /// Unix seconds.
    fn now(&self) -> i64;
}

fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        system_now()
    }
}

/// System time plus an offset that only moves forward. Installed when the configuration
/// enables `[testing] adjustable_clock`, so end-to-end tests can jump days ahead.
#[derive(Default)]
pub struct AdjustableClock {
    offset: AtomicI64,
}

impl AdjustableClock {
    /// Starts `offset` seconds ahead of the system clock (restored across restarts).
    pub fn with_offset(offset: i64) -> Self {
        AdjustableClock {
            offset: AtomicI64::new(offset.max(0)),
        }
    }

    pub fn offset(&self) -> i64 {
        self.offset.load(Ordering::SeqCst)
    }

    /// Moves the clock forward by `seconds` (negative values are ignored) and returns now.
    pub fn advance(&self, seconds: i64) -> i64 {
        self.offset.fetch_add(seconds.max(0), Ordering::SeqCst);
        self.now()
    }
}

impl Clock for AdjustableClock {
    fn now(&self) -> i64 {
        system_now() + self.offset.load(Ordering::SeqCst)
    }
}
