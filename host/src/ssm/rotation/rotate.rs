//! Rotation (manual and scheduled), its failures, and the locking of the previous account
//! once its overlap is over.

use super::api_keys::PRODUCT_CAM;
use super::target::{self, connect_admin, AccountSpec, Login};
use super::{accounts, CLAIM_SECS, DAY};
use crate::cam::Caller;
use crate::error::{Error, Result};
use crate::ssm::{check, SecretOp, Ssm};
use crate::store::audit::record::AuditRecord;
use crate::store::{
    Fence, FlowRecord, ProductSecretRecord, SecretRecord, SecretStatus, Trail, FLOW_FAILED,
    FLOW_RUNNING, FLOW_SUCCEEDED,
};
use std::sync::Arc;

impl Ssm {
    /// RotateProductSecret: starts the rotation and returns its FlowID at once; the
    /// rotation runs on a thread of its own (a server that does not answer holds no API
    /// request) and records its outcome as the flow's TaskStatus 1 or 2. A failure is also
    /// counted for the scheduler's retries.
    pub fn rotate_product_secret(self: &Arc<Self>, caller: &Caller, name: &str) -> Result<i64> {
        let (s, p) = self.product_secret(caller, name)?;
        if s.status != SecretStatus::Enabled {
            check(SecretOp::Read, &s)?;
        }
        let flow = self.rotation.insert_flow(
            &caller.trail,
            &FlowRecord {
                flow_id: 0,
                region: s.region.clone(),
                owner_uin: s.owner_uin,
                secret_name: s.name.clone(),
                action: "RotateProductSecret".into(),
                status: FLOW_RUNNING,
                description: String::new(),
                create_time: self.clock.now(),
            },
        )?;
        let this = self.clone();
        // The request's record is written (with the flow): later writes add none to it.
        let trail = caller.trail.clone();
        std::thread::Builder::new()
            .name("keyward-rotation".into())
            .spawn(move || {
                let outcome = this.rotate(
                    &this.system_caller(&p, "RotateProductSecret", None),
                    &p,
                    false,
                );
                let (status, description) = match &outcome {
                    Ok(()) => (FLOW_SUCCEEDED, "rotated".to_string()),
                    Err(e) if e.is_internal() => {
                        tracing::error!(secret = %p.name, error = %e, "rotation failed");
                        (
                            FLOW_FAILED,
                            "internal error: see the server log".to_string(),
                        )
                    }
                    Err(e) => (FLOW_FAILED, e.to_string()),
                };
                if let Err(e) = this
                    .rotation
                    .finish_flow(&trail, flow, status, &description)
                {
                    tracing::error!(flow, error = %e, "could not record a rotation's outcome");
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start a rotation: {e}")))?;
        Ok(flow)
    }

    /// A caller acting as the service on a product secret, with its own audit record.
    fn system_caller(&self, p: &ProductSecretRecord, action: &str, fence: Option<Fence>) -> Caller {
        let record = AuditRecord::system("ssm", action, &p.region, p.owner_uin)
            .about("ssm_secret", self.resource_of(p));
        let mut c = Caller::new(p.owner_uin, p.owner_uin, p.region.clone());
        c.trail = Arc::new(Trail::system(record, self.cfg.audit.enabled).fenced(fence));
        c
    }

    fn resource_of(&self, p: &ProductSecretRecord) -> String {
        self.store
            .get_secret(&p.region, p.owner_uin, &p.name)
            .ok()
            .flatten()
            .map(|s| crate::ssm::secret_resource(&s))
            .unwrap_or_else(|| {
                crate::cam::policy::ssm_secret_resource(
                    &p.region,
                    p.owner_uin,
                    p.owner_uin,
                    &p.name,
                )
            })
    }

    /// Takes the secret's claim (until `now + CLAIM_SECS`); false: another holds it.
    fn claim(&self, p: &ProductSecretRecord, now: i64) -> Result<bool> {
        self.rotation
            .claim_product_secret(&p.region, p.owner_uin, &p.name, now, now + CLAIM_SECS)
    }

    /// Takes the secret's claim, or answers that a rotation is under way.
    fn claim_or_busy(&self, p: &ProductSecretRecord, now: i64) -> Result<()> {
        if self.claim(p, now)? {
            return Ok(());
        }
        Err(Error::RotationBusy(format!(
            "secret {} is being rotated; try again shortly",
            p.name
        )))
    }

    /// One rotation under the secret's claim; failures are counted, alarmed and audited.
    fn rotate(&self, caller: &Caller, p: &ProductSecretRecord, scheduled: bool) -> Result<()> {
        let now = self.clock.now();
        self.claim_or_busy(p, now)?;
        let outcome = self.rotate_claimed(caller, p, now, scheduled);
        if let Err(e) = self
            .rotation
            .release_product_secret(&p.region, p.owner_uin, &p.name)
        {
            tracing::warn!(secret = %p.name, error = %e, "could not release a rotation claim");
        }
        let counter = match &outcome {
            Ok(()) => &self.rotations.succeeded,
            Err(_) => &self.rotations.failed,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = &outcome {
            self.rotation_failed(p, e, caller.trail.fence(), now)?;
        }
        outcome
    }

    fn rotate_claimed(
        &self,
        caller: &Caller,
        p: &ProductSecretRecord,
        now: i64,
        scheduled: bool,
    ) -> Result<()> {
        let secret = self
            .store
            .get_secret(&p.region, p.owner_uin, &p.name)?
            .ok_or_else(|| Error::SecretNotFound(p.name.clone()))?;
        let current = self.current_login(caller, &secret)?;
        if p.product == PRODUCT_CAM {
            self.rotate_api_key(caller, p, &secret, now)?;
        } else {
            self.rotate_account(caller, p, &secret, &current, now)?;
        }
        self.rotated(caller, p, &current.user, now, scheduled)
    }

    /// Re-keys the database account not published now, checks its login, publishes it.
    fn rotate_account(
        &self,
        caller: &Caller,
        p: &ProductSecretRecord,
        secret: &SecretRecord,
        current: &Login,
        now: i64,
    ) -> Result<()> {
        let db = self.database(&p.product, &p.instance_id)?.clone();
        let [a, b] = accounts(&p.user_prefix);
        let next = if current.user == a { b } else { a };
        let grants = Self::grants_of(p)?;
        let spec = AccountSpec {
            name: &next,
            domains: &p.domains,
            grants: &grants,
        };
        let admin = self.admin_login(caller, &db)?;
        let login = Login {
            user: next.clone(),
            password: target::new_password(),
        };
        let mut t = connect_admin(&db, &admin)?;
        t.set_password(&spec, &login.password)?;
        if let Err(e) = target::check_login(&db, &login) {
            // Never publish a password the server does not take; lock the account again.
            let _ = t.lock(&spec);
            return Err(e);
        }
        self.publish(caller, secret, &login, now)?;
        tracing::info!(secret = %p.name, database = %db.id, account = %next, "product secret rotated");
        Ok(())
    }

    /// Records a published rotation: the previous credential retires after the overlap,
    /// the failure count resets, a scheduled rotation moves to its next period.
    fn rotated(
        &self,
        caller: &Caller,
        p: &ProductSecretRecord,
        previous: &str,
        now: i64,
        scheduled: bool,
    ) -> Result<()> {
        let overlap = self.cfg.rotation.overlap_secs as i64;
        self.rotation.update_product_secret(
            &caller.trail,
            &p.region,
            p.owner_uin,
            &p.name,
            &mut |r| {
                r.last_rotation = now;
                r.retire_account = previous.to_string();
                r.retire_at = now + overlap;
                r.failures = 0;
                r.retry_at = 0;
                if scheduled && r.rotation_enabled {
                    let step = r.frequency_days.max(1) * DAY;
                    while r.next_rotation <= now {
                        r.next_rotation += step;
                    }
                }
                Ok(())
            },
        )?;
        Ok(())
    }

    /// Counts a failed rotation, schedules its retry, and raises an alarm; the record of
    /// the failure goes to the audit log with the update.
    fn rotation_failed(
        &self,
        p: &ProductSecretRecord,
        e: &Error,
        fence: Option<Fence>,
        now: i64,
    ) -> Result<()> {
        let mut record =
            AuditRecord::system("ssm", "ProductSecretRotationFailed", &p.region, p.owner_uin)
                .about("ssm_secret", self.resource_of(p));
        record.result_code = "FailedOperation".into();
        let trail = Trail::failed(record, self.cfg.audit.enabled).fenced(fence);
        let cfg = &self.cfg.rotation;
        let updated = self.rotation.update_product_secret(
            &trail,
            &p.region,
            p.owner_uin,
            &p.name,
            &mut |r| {
                r.failures = r.failures.saturating_add(1);
                let wait = cfg
                    .retry_initial_secs
                    .saturating_mul(1u64 << (r.failures - 1).min(20))
                    .min(cfg.retry_max_secs);
                r.retry_at = now + wait as i64;
                Ok(())
            },
        )?;
        let failures = updated.map(|r| r.failures).unwrap_or(0);
        tracing::warn!(secret = %p.name, database = %p.instance_id, failures, error = %e, "product secret rotation failed");
        self.alarms.raise(
            now,
            &p.region,
            &p.name,
            "SecretRotationFailed",
            format!(
                "rotation of secret {} on {} failed ({failures} in a row); the current credential is unchanged: {e}",
                p.name, p.instance_id
            ),
        )
    }

    /// Locks the account published before the last rotation once its overlap is over.
    fn retire(&self, p: &ProductSecretRecord, fence: Fence) -> Result<()> {
        let now = self.clock.now();
        if !self.claim(p, now)? {
            return Ok(());
        }
        let caller = self.system_caller(p, "ProductSecretAccountRetired", Some(fence));
        let outcome = if p.product == PRODUCT_CAM {
            self.retire_api_key(&caller, p)
        } else {
            self.retire_account(&caller, p)
        };
        let _ = self
            .rotation
            .release_product_secret(&p.region, p.owner_uin, &p.name);
        outcome
    }

    /// The scheduler's pass over product secrets: due and retried rotations, and accounts
    /// whose overlap ended. Returns how many rotations succeeded. Every write carries
    /// `fence`.
    pub fn run_rotation_jobs(&self, fence: Fence) -> Result<usize> {
        let now = self.clock.now();
        let mut rotated = 0;
        for p in self.rotation.product_secrets()? {
            if !p.retire_account.is_empty() && p.retire_at <= now {
                if let Err(e) = self.retire(&p, fence) {
                    if matches!(e, Error::LeaseLost(_)) {
                        return Err(e);
                    }
                    tracing::warn!(secret = %p.name, error = %e, "could not lock the previous account; will retry");
                }
            }
            let due = (p.rotation_enabled && p.next_rotation <= now) || p.failures > 0;
            if !due || p.retry_at > now {
                continue;
            }
            match self.store.get_secret(&p.region, p.owner_uin, &p.name)? {
                Some(s) if s.status == SecretStatus::Enabled => {}
                _ => continue,
            }
            let p = match self
                .rotation
                .get_product_secret(&p.region, p.owner_uin, &p.name)?
            {
                Some(p) => p,
                None => continue,
            };
            let caller = self.system_caller(&p, "ScheduledProductSecretRotation", Some(fence));
            match self.rotate(&caller, &p, true) {
                Ok(()) => rotated += 1,
                Err(e @ Error::LeaseLost(_)) => return Err(e),
                Err(_) => {} // counted, alarmed and audited by `rotate`
            }
        }
        Ok(rotated)
    }

    /// DeleteSecret with DeleteMode 1, before the secret itself goes: drops both database
    /// accounts, or deletes the API keys (current and retiring). Holds the claim, so no
    /// rotation runs meanwhile; a failure leaves the secret in place to try again.
    pub fn drop_credentials(&self, caller: &Caller, s: &SecretRecord) -> Result<()> {
        let p = self
            .rotation
            .get_product_secret(&s.region, s.owner_uin, &s.name)?
            .ok_or_else(|| {
                Error::Unsupported(
                    "DeleteMode 1 deletes the accounts of product secrets only".into(),
                )
            })?;
        let now = self.clock.now();
        self.claim_or_busy(&p, now)?;
        let outcome = (|| {
            if p.product == PRODUCT_CAM {
                let current = self.current_login(caller, s)?;
                let retiring = p.retire_account.rsplit(':').next().unwrap_or_default();
                self.delete_api_keys(caller, &p, &[&current.user, retiring])
            } else {
                let db = self.database(&p.product, &p.instance_id)?.clone();
                let grants = Self::grants_of(&p)?;
                let admin = self.admin_login(caller, &db)?;
                let mut t = connect_admin(&db, &admin)?;
                for name in accounts(&p.user_prefix) {
                    let spec = AccountSpec {
                        name: &name,
                        domains: &p.domains,
                        grants: &grants,
                    };
                    t.lock(&spec).ok();
                    t.end_sessions(&name).ok();
                    t.drop_account(&spec)?;
                }
                Ok(())
            }
        })();
        let _ = self
            .rotation
            .release_product_secret(&p.region, p.owner_uin, &p.name);
        outcome
    }

    /// Locks the database account published before the last rotation.
    fn retire_account(&self, caller: &Caller, p: &ProductSecretRecord) -> Result<()> {
        let secret = self
            .store
            .get_secret(&p.region, p.owner_uin, &p.name)?
            .ok_or_else(|| Error::SecretNotFound(p.name.clone()))?;
        let current = self.current_login(caller, &secret)?;
        if current.user != p.retire_account {
            let db = self.database(&p.product, &p.instance_id)?.clone();
            let grants = Self::grants_of(p)?;
            let spec = AccountSpec {
                name: &p.retire_account,
                domains: &p.domains,
                grants: &grants,
            };
            let admin = self.admin_login(caller, &db)?;
            let mut t = connect_admin(&db, &admin)?;
            t.lock(&spec)?;
            // Locked is what matters; sessions the admin may not end are only reported.
            match t.end_sessions(&p.retire_account) {
                Ok(n) => {
                    tracing::info!(secret = %p.name, account = %p.retire_account, sessions = n, "sessions of the previous account ended")
                }
                Err(e) => {
                    tracing::warn!(secret = %p.name, account = %p.retire_account, error = %e, "could not end the previous account's sessions")
                }
            }
        }
        self.retired(caller, p, None)?;
        tracing::info!(secret = %p.name, account = %p.retire_account, "previous account locked after its overlap");
        Ok(())
    }

    /// Records that `p.retire_account` is done with, or (`next`) what retires next and when.
    pub(super) fn retired(
        &self,
        caller: &Caller,
        p: &ProductSecretRecord,
        next: Option<(String, i64)>,
    ) -> Result<()> {
        let retired = p.retire_account.clone();
        self.rotation.update_product_secret(
            &caller.trail,
            &p.region,
            p.owner_uin,
            &p.name,
            &mut |r| {
                // A rotation in between chose another account to retire: leave it.
                if r.retire_account == retired {
                    (r.retire_account, r.retire_at) = next.clone().unwrap_or_default();
                }
                Ok(())
            },
        )?;
        Ok(())
    }
}
