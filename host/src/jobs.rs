//! The time-driven jobs (automatic rotation, deletion reminders and executions, expiry of
//! imported material, secret deletion), run by the scheduler and, under the test clock, by
//! the admin actions `AdvanceClock` and `RunScheduledJobs`.

use crate::clock::AdjustableClock;
use crate::error::{Error, Result};
use crate::kms::Kms;
use crate::leader::Leadership;
use crate::ssm::Ssm;
use crate::store::MetaStore;
use std::sync::{Arc, Mutex};

/// Where the adjustable test clock keeps its offset, so restarts do not turn time back.
pub const CLOCK_OFFSET_META: &str = "test_clock_offset";

/// What one pass of the jobs did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobReport {
    pub rotated: usize,
    pub reminded: usize,
    pub deleted: usize,
    pub secrets_deleted: usize,
    /// Product secrets rotated (scheduled rotations and retries of failed ones).
    pub secrets_rotated: usize,
    /// Whether this daemon holds the jobs lease (it ran nothing otherwise).
    pub leader: bool,
}

impl JobReport {
    pub fn is_empty(&self) -> bool {
        self.rotated + self.reminded + self.deleted + self.secrets_deleted + self.secrets_rotated
            == 0
    }
}

/// Named readiness checks and why each failed.
pub type Readiness = Vec<(&'static str, std::result::Result<(), String>)>;

pub struct Jobs {
    /// The last readiness probe and its result.
    last_probe: Mutex<Option<(std::time::Instant, Readiness)>>,
    kms: Arc<Kms>,
    ssm: Arc<Ssm>,
    meta: Arc<dyn MetaStore>,
    pub leader: Arc<Leadership>,
    /// Present only with `[testing] adjustable_clock`.
    adjustable_clock: Option<Arc<AdjustableClock>>,
}

impl Jobs {
    pub fn new(
        kms: Arc<Kms>,
        ssm: Arc<Ssm>,
        meta: Arc<dyn MetaStore>,
        leader: Arc<Leadership>,
        adjustable_clock: Option<Arc<AdjustableClock>>,
    ) -> Self {
        Jobs {
            last_probe: Mutex::new(None),
            kms,
            ssm,
            meta,
            leader,
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

    /// `/readyz`: the HSM answers (a random draw) and the store takes a write (a meta value
    /// with the probe's time), each failure with its reason. `/readyz` needs no credentials,
    /// so the probe runs at most once a second and callers in between get its result: a
    /// flood of probes cannot turn into a flood of HSM calls and fsyncs.
    pub fn readiness(&self, now: i64) -> Readiness {
        let mut last = self.last_probe.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, r)) = last.as_ref() {
            if at.elapsed() < std::time::Duration::from_secs(1) {
                return r.clone();
            }
        }
        let reason = |r: Result<()>| r.map_err(|e| e.to_string());
        let r = vec![
            ("hsm", reason(self.kms.hsm_answers())),
            (
                "store",
                reason(
                    self.meta
                        .set_meta("readyz_probe", now.to_string().as_bytes()),
                ),
            ),
        ];
        *last = Some((std::time::Instant::now(), r.clone()));
        r
    }

    /// One pass of every job, when this daemon holds the jobs lease (else nothing). Each
    /// write of the pass carries the lease's fence.
    pub fn run_due(&self) -> Result<JobReport> {
        let Some(fence) = self.leader.fence() else {
            return Ok(JobReport::default());
        };
        let (rotated, reminded, deleted) = self.kms.run_due_jobs(fence)?;
        Ok(JobReport {
            rotated,
            reminded,
            deleted,
            secrets_deleted: self.ssm.run_due_jobs(fence)?,
            secrets_rotated: self.ssm.run_rotation_jobs(fence)?,
            leader: true,
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
