//! The time-driven jobs (automatic rotation, deletion reminders and executions, expiry of
//! imported material, secret deletion), run by the scheduler and, under the test clock, by
//! the admin actions `AdvanceClock` and `RunScheduledJobs`.

use crate::clock::AdjustableClock;
use crate::error::{Error, Result};
use crate::kms::Kms;
use crate::ssm::Ssm;
use crate::store::MetaStore;
use std::sync::Arc;

/// Where the adjustable test clock keeps its offset, so restarts do not turn time back.
pub const CLOCK_OFFSET_META: &str = "test_clock_offset";

/// What one pass of the jobs did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobReport {
    pub rotated: usize,
    pub reminded: usize,
    pub deleted: usize,
    pub secrets_deleted: usize,
}

impl JobReport {
    pub fn is_empty(&self) -> bool {
        *self == JobReport::default()
    }
}

pub struct Jobs {
    kms: Arc<Kms>,
    ssm: Arc<Ssm>,
    meta: Arc<dyn MetaStore>,
    /// Present only with `[testing] adjustable_clock`.
    adjustable_clock: Option<Arc<AdjustableClock>>,
}

impl Jobs {
    pub fn new(
        kms: Arc<Kms>,
        ssm: Arc<Ssm>,
        meta: Arc<dyn MetaStore>,
        adjustable_clock: Option<Arc<AdjustableClock>>,
    ) -> Self {
        Jobs {
            kms,
            ssm,
            meta,
            adjustable_clock,
        }
    }

    /// The stored offset of the adjustable clock (0 when none was stored).
    pub fn stored_clock_offset(meta: &dyn MetaStore) -> Result<i64> {
        Ok(meta
            .get_meta(CLOCK_OFFSET_META)?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// One pass of every job.
    pub fn run_due(&self) -> Result<JobReport> {
        let (rotated, reminded, deleted) = self.kms.run_due_jobs()?;
        Ok(JobReport {
            rotated,
            reminded,
            deleted,
            secrets_deleted: self.ssm.run_due_jobs()?,
        })
    }

    /// The test clock, which the test-only actions (AdvanceClock, RunScheduledJobs) need:
    /// a production daemon refuses them.
    pub fn test_clock(&self) -> Result<&Arc<AdjustableClock>> {
        self.adjustable_clock.as_ref().ok_or_else(|| {
            Error::Unsupported(
                "this is a test-only action: the daemon runs without [testing] adjustable_clock"
                    .into(),
            )
        })
    }

    /// Moves the test clock forward by `secs`, persists the new offset and runs the jobs
    /// once, so a test sees their effect deterministically. Returns the new time.
    pub fn advance_clock(&self, secs: u64) -> Result<(i64, JobReport)> {
        let clock = self.test_clock()?;
        let secs =
            i64::try_from(secs).map_err(|_| Error::InvalidValue("Seconds is too large".into()))?;
        let now = clock.advance(secs);
        self.meta
            .set_meta(CLOCK_OFFSET_META, clock.offset().to_string().as_bytes())?;
        Ok((now, self.run_due()?))
    }
}
