//! CMK lifecycle: enable/disable, scheduled deletion, archive, rotation, ReEncrypt, cloud
//! resource bindings, the service-managed key, and the time-driven jobs (automatic rotation,
//! deletion reminders, deletion).

use super::state::{self, Op};
use super::{alias, check_batch, check_description, check_key_id, context, Caller, Kms};
use super::{KEY_USAGE_ENCRYPT_DECRYPT, ORIGIN_EXTERNAL, ORIGIN_KMS};
use crate::alarms;
use crate::audit::record::AuditRecord;
use crate::cam::policy;
use crate::error::{Error, Result};
use crate::store::{Fence, KeyRecord, KeyState, Trail};

/// Alias of the per-region service-managed CMK (the reserved prefix keeps users off it).
pub const MANAGED_KEY_ALIAS: &str = "KMS-Default";
/// Owner of the managed CMK: the service that uses it by default.
pub const MANAGED_KEY_OWNER: &str = "ssm";

const DAY: i64 = 86_400;
const MANUAL_ROTATION_INTERVAL: i64 = DAY;
/// Reminder alarms start this long before a key is deleted, once a day.
const REMINDER_WINDOW: i64 = 3 * DAY;

pub struct ReEncrypted {
    pub blob: Vec<u8>,
    pub key_id: String,
    pub source_key_id: String,
    pub re_encrypted: bool,
}

fn refuse_managed(k: &KeyRecord, what: &str) -> Result<()> {
    if k.owner != "user" {
        return Err(Error::NotUserCreatedCmk(format!(
            "CMK {} is managed by the service and cannot be {what}",
            k.key_id
        )));
    }
    Ok(())
}

impl Kms {
    /// The write path of the key pipeline, inside one store transaction: load the key,
    /// authorize the caller, refuse service-managed keys where `op` is for user keys only,
    /// apply `op` to the state table (its state change, if it has one), then `f`.
    fn change(
        &self,
        caller: &Caller,
        key_id: &str,
        op: Op,
        f: &mut dyn FnMut(&mut KeyRecord) -> Result<()>,
    ) -> Result<KeyRecord> {
        check_key_id(key_id)?;
        self.store.update_key(
            &caller.trail,
            &caller.region,
            caller.owner_uin,
            key_id,
            &mut |k| {
                caller.check_key(k)?;
                if let Some(what) = op.managed_refusal() {
                    refuse_managed(k, what)?;
                }
                state::transition(op, k)?;
                f(k)
            },
        )
    }

    /// Whether `change` would accept `op` on the key now (for batches, which validate every
    /// key before changing any).
    fn may_change(&self, caller: &Caller, key_id: &str, op: Op) -> Result<KeyRecord> {
        let k = self.describe_key(caller, key_id)?;
        if let Some(what) = op.managed_refusal() {
            refuse_managed(&k, what)?;
        }
        state::check(op, &k)?;
        Ok(k)
    }

    pub fn update_alias(&self, caller: &Caller, key_id: &str, new_alias: &str) -> Result<()> {
        alias::validate(new_alias)?;
        self.change(caller, key_id, Op::UpdateAlias, &mut |k| {
            k.alias = new_alias.to_string();
            Ok(())
        })
        .map(|_| ())
    }

    pub fn update_description(&self, caller: &Caller, key_id: &str, desc: &str) -> Result<()> {
        check_description(desc)?;
        self.change(caller, key_id, Op::UpdateDescription, &mut |k| {
            k.description = desc.to_string();
            Ok(())
        })
        .map(|_| ())
    }

    fn enable_op(enabled: bool) -> Op {
        if enabled {
            Op::Enable
        } else {
            Op::Disable
        }
    }

    pub fn set_enabled(&self, caller: &Caller, key_id: &str, enabled: bool) -> Result<()> {
        self.change(caller, key_id, Self::enable_op(enabled), &mut |_| Ok(()))
            .map(|_| ())
    }

    /// EnableKeys / DisableKeys: all-or-nothing. Every id is validated (format, duplicates,
    /// existence, state) before any key changes, so a bad id leaves every key as it was.
    pub fn set_enabled_batch(&self, caller: &Caller, ids: &[String], enabled: bool) -> Result<()> {
        check_batch(ids)?;
        for id in ids {
            self.may_change(caller, id, Self::enable_op(enabled))?;
        }
        for id in ids {
            self.set_enabled(caller, id, enabled)?;
        }
        Ok(())
    }

    /// ScheduleKeyDeletion: returns the deletion date.
    pub fn schedule_deletion(&self, caller: &Caller, key_id: &str, days: u64) -> Result<i64> {
        if !(7..=30).contains(&days) {
            return Err(Error::InvalidPendingWindow(format!(
                "PendingWindowInDays must be 7 to 30, not {days}"
            )));
        }
        check_key_id(key_id)?;
        if self.store.count_bindings(key_id)? > 0 {
            // Checked again below against the loaded key; this gives the right code first.
            let k = self.describe_key(caller, key_id)?;
            refuse_managed(&k, "deleted")?;
            return Err(Error::CmkUsedByCloudProduct(key_id.to_string()));
        }
        let now = self.clock.now();
        let k = self.change(caller, key_id, Op::ScheduleDeletion, &mut |k| {
            k.deletion_date = now + days as i64 * DAY;
            k.last_alarm_time = 0;
            Ok(())
        })?;
        tracing::warn!(
            key_id,
            deletion_date = k.deletion_date,
            "CMK scheduled for deletion"
        );
        Ok(k.deletion_date)
    }

    pub fn cancel_deletion(&self, caller: &Caller, key_id: &str) -> Result<()> {
        self.change(caller, key_id, Op::CancelDeletion, &mut |k| {
            k.deletion_date = 0;
            k.last_alarm_time = 0;
            Ok(())
        })
        .map(|_| ())
    }

    pub fn archive(&self, caller: &Caller, key_id: &str, archive: bool) -> Result<()> {
        let op = if archive {
            Op::Archive
        } else {
            Op::CancelArchive
        };
        self.change(caller, key_id, op, &mut |_| Ok(())).map(|_| ())
    }

    pub fn enable_rotation(&self, caller: &Caller, key_id: &str, days: Option<u64>) -> Result<()> {
        let days = days.unwrap_or(365);
        if !(7..=365).contains(&days) {
            return Err(Error::InvalidValue(format!(
                "RotateDays must be 7 to 365, not {days}"
            )));
        }
        let now = self.clock.now();
        // A key's algorithm and origin never change, so they are checked before the
        // transaction; its state is checked inside it.
        let key = self.describe_key(caller, key_id)?;
        if !key.algorithm.is_symmetric() {
            return Err(Error::RotateNotSupported(format!(
                "CMK {} is asymmetric; asymmetric keys do not rotate",
                key.key_id
            )));
        }
        if key.origin == ORIGIN_EXTERNAL {
            return Err(Error::ExternalCmkCanNotRotate(format!(
                "CMK {} holds imported material and cannot rotate",
                key.key_id
            )));
        }
        self.change(caller, key_id, Op::EnableRotation, &mut |k| {
            k.rotation_enabled = true;
            k.rotate_days = days as u32;
            k.next_rotate_time = now + days as i64 * DAY;
            Ok(())
        })
        .map(|_| ())
    }

    pub fn disable_rotation(&self, caller: &Caller, key_id: &str) -> Result<()> {
        self.change(caller, key_id, Op::DisableRotation, &mut |k| {
            k.rotation_enabled = false;
            k.next_rotate_time = 0;
            Ok(())
        })
        .map(|_| ())
    }

    pub fn rotation_status(&self, caller: &Caller, key_id: &str) -> Result<KeyRecord> {
        self.key_for(caller, key_id, Op::GetRotationStatus)
    }

    /// RotateKey: a new version now, at most once per 24 hours. Encrypt then uses the new
    /// version; older blobs keep decrypting with theirs.
    pub fn rotate_now(&self, caller: &Caller, key_id: &str) -> Result<KeyRecord> {
        let k = self.describe_key(caller, key_id)?;
        if k.origin != ORIGIN_KMS || !k.algorithm.is_symmetric() {
            return Err(Error::RotateNotSupported(format!(
                "CMK {} holds imported material and cannot rotate",
                k.key_id
            )));
        }
        state::check(Op::Rotate, &k)?;
        let now = self.clock.now();
        // Generated before the transaction (HSM calls do not belong inside it); if the
        // transaction refuses, the sealed material is simply dropped.
        let sealed = self.hsm.generate(k.algorithm)?;
        self.store.add_version(
            &caller.trail,
            &caller.region,
            caller.owner_uin,
            key_id,
            &mut |k| {
                state::check(Op::Rotate, k)?;
                if k.last_manual_rotate > 0 && now - k.last_manual_rotate < MANUAL_ROTATION_INTERVAL
                {
                    return Err(Error::RotateRateLimited(format!(
                        "CMK {} was rotated manually less than 24 hours ago",
                        k.key_id
                    )));
                }
                k.last_manual_rotate = now;
                k.last_rotate_time = now;
                Ok(())
            },
            &mut |k| self.new_version(&k.key_id, k.current_version, sealed.clone(), vec![], now),
        )
    }

    /// ReEncrypt: decrypt and encrypt again inside the daemon, under the newest version of the
    /// destination key (default: the blob's own key) and the destination context.
    pub fn re_encrypt(
        &self,
        caller: &Caller,
        blob: &[u8],
        destination: Option<&str>,
        source_context: Option<&str>,
        destination_context: Option<&str>,
    ) -> Result<ReEncrypted> {
        let src_ctx = context::canonical(source_context)?;
        let dst_ctx = context::canonical(destination_context)?;
        let (src, version, plaintext) =
            self.open_blob(caller, blob, &src_ctx, Op::ReEncryptFrom)?;
        let dst = match destination.filter(|d| !d.is_empty()) {
            Some(id) if id != src.key_id => self.describe_key(caller, id)?,
            _ => src.clone(),
        };
        self.gate(Op::ReEncryptTo, &dst)?;
        if dst.key_id == src.key_id && version == src.current_version && src_ctx == dst_ctx {
            return Ok(ReEncrypted {
                blob: blob.to_vec(),
                key_id: src.key_id.clone(),
                source_key_id: src.key_id,
                re_encrypted: false,
            });
        }
        let dst_version = self.version(caller, &dst, dst.current_version)?;
        let new_blob = self.seal_data(&dst, &dst_version, &dst_ctx, &plaintext)?;
        Ok(ReEncrypted {
            blob: new_blob,
            key_id: dst.key_id,
            source_key_id: src.key_id,
            re_encrypted: true,
        })
    }

    pub fn bind(&self, caller: &Caller, key_id: &str, product: &str, resource: &str) -> Result<()> {
        let k = self.key_for(caller, key_id, Op::Bind)?;
        self.store.bind(
            &caller.trail,
            &k.key_id,
            product,
            resource,
            self.clock.now(),
        )?;
        Ok(())
    }

    pub fn unbind(
        &self,
        caller: &Caller,
        key_id: &str,
        product: &str,
        resource: &str,
    ) -> Result<()> {
        let k = self.key_for(caller, key_id, Op::Unbind)?;
        if !self
            .store
            .unbind(&caller.trail, &k.key_id, product, resource)?
        {
            return Err(Error::ResourceBindingNotFound(format!(
                "CMK {key_id} is not bound to {product}/{resource}"
            )));
        }
        Ok(())
    }

    /// The region's service-managed CMK, created on first need.
    pub fn managed_key(&self, region: &str, owner_uin: u64) -> Result<KeyRecord> {
        let q = crate::store::KeyQuery {
            region: region.to_string(),
            owner_uin,
            states: None,
            origin: None,
            key_usage: None,
            search: None,
            tag_filters: vec![],
            user_created: Some(false),
            newest_first: false,
            offset: 0,
            limit: 10,
        };
        if let Some(k) = self
            .store
            .query_keys(&q)?
            .1
            .into_iter()
            .find(|k| k.alias == MANAGED_KEY_ALIAS)
        {
            return Ok(k);
        }
        let algorithm = self.region_algorithm(region)?;
        let now = self.clock.now();
        let key_id = uuid::Uuid::new_v4().to_string();
        let version = self.new_version(&key_id, 1, self.hsm.generate(algorithm)?, vec![], now)?;
        let key = KeyRecord {
            key_id,
            region: region.to_string(),
            owner_uin,
            creator_uin: owner_uin,
            alias: MANAGED_KEY_ALIAS.into(),
            description:
                "Service-managed default key (used by Secrets Manager when no KmsKeyId is given)"
                    .into(),
            key_usage: KEY_USAGE_ENCRYPT_DECRYPT.into(),
            origin: ORIGIN_KMS.into(),
            owner: MANAGED_KEY_OWNER.into(),
            algorithm,
            state: KeyState::Enabled,
            create_time: now,
            deletion_date: 0,
            rotation_enabled: false,
            rotate_days: 0,
            next_rotate_time: 0,
            last_rotate_time: 0,
            current_version: 1,
            tags: vec![],
            last_manual_rotate: 0,
            last_alarm_time: 0,
            valid_to: 0,
            material_kcv: vec![],
        };
        // Created on first need (start-up), not by a request: no record.
        match self
            .store
            .insert_key(&Trail::off(), &key, Some(&version), u64::MAX)
        {
            Ok(()) => Ok(key),
            // Another request created it first: use that one.
            Err(Error::AliasExists(_)) => self.managed_key(region, owner_uin),
            Err(e) => Err(e),
        }
    }

    /// One pass of the time-driven jobs. Returns how many keys each job touched.
    /// Every write carries `fence`: the pass commits nothing once the jobs lease has passed
    /// to another daemon.
    pub fn run_due_jobs(&self, fence: Fence) -> Result<(usize, usize, usize)> {
        let now = self.clock.now();
        let rotated = self.rotate_due(now, fence)?;
        let (reminded, mut deleted) = self.delete_or_remind_due(now, fence)?;
        deleted += self.delete_due_data_keys(now, fence)?;
        self.expire_materials(now, fence)?;
        Ok((rotated, reminded, deleted))
    }

    /// Automatic rotations whose time has come; returns how many keys rotated.
    fn rotate_due(&self, now: i64, fence: Fence) -> Result<usize> {
        let mut rotated = 0;
        for k in self.store.keys_rotation_due(now)? {
            // Disabled and archived keys are not rotated; they rotate once enabled again.
            if k.state != KeyState::Enabled || k.origin != ORIGIN_KMS || !k.algorithm.is_symmetric()
            {
                continue;
            }
            let sealed = self.hsm.generate(k.algorithm)?;
            let record = AuditRecord::system("kms", "ScheduledKeyRotation", &k.region, k.owner_uin)
                .about(
                    "kms_key",
                    policy::kms_key_resource(&k.region, k.owner_uin, &k.key_id),
                );
            let res = {
                self.store.add_version(
                    &self.system_trail(record).fenced(Some(fence)),
                    &k.region,
                    k.owner_uin,
                    &k.key_id,
                    &mut |k| {
                        if !(k.rotation_enabled
                            && k.next_rotate_time > 0
                            && k.next_rotate_time <= now)
                        {
                            return Err(Error::Internal("rotation no longer due".into()));
                        }
                        k.last_rotate_time = now;
                        k.next_rotate_time = now + i64::from(k.rotate_days.max(1)) * DAY;
                        Ok(())
                    },
                    &mut |k| {
                        self.new_version(&k.key_id, k.current_version, sealed.clone(), vec![], now)
                    },
                )
            };
            match res {
                Ok(k) => {
                    rotated += 1;
                    tracing::info!(key_id = %k.key_id, version = k.current_version, "CMK rotated");
                }
                Err(e) => {
                    tracing::warn!(key_id = %k.key_id, error = %e, "automatic rotation skipped")
                }
            }
        }
        Ok(rotated)
    }

    /// Deletes keys whose deletion date has passed and reminds (once a day, in the last
    /// three days) of those about to go. Returns (reminded, deleted).
    fn delete_or_remind_due(&self, now: i64, fence: Fence) -> Result<(usize, usize)> {
        let (mut reminded, mut deleted) = (0, 0);
        for k in self.store.keys_in_state(KeyState::PendingDelete)? {
            if k.deletion_date <= now {
                let record =
                    AuditRecord::system("kms", "ScheduledKeyDeletion", &k.region, k.owner_uin)
                        .about(
                            "kms_key",
                            policy::kms_key_resource(&k.region, k.owner_uin, &k.key_id),
                        );
                if self
                    .store
                    .delete_key(&self.system_trail(record).fenced(Some(fence)), &k.key_id)?
                {
                    deleted += 1;
                    self.forget_versions(&k.key_id);
                    self.alarms.raise(
                        now,
                        &k.region,
                        &k.key_id,
                        alarms::KIND_KEY_DELETED,
                        format!("CMK {} was deleted with all its key material", k.key_id),
                    )?;
                }
            } else if k.deletion_date - now <= REMINDER_WINDOW && now - k.last_alarm_time >= DAY {
                let key_id = k.key_id.clone();
                let updated = self
                    .store
                    // Bookkeeping of the reminder, not a change anyone made: no record.
                    .update_key(
                        &Trail::off().fenced(Some(fence)),
                        &k.region,
                        k.owner_uin,
                        &key_id,
                        &mut |k| {
                            if k.state != KeyState::PendingDelete || now - k.last_alarm_time < DAY {
                                return Err(Error::Internal("reminder no longer due".into()));
                            }
                            k.last_alarm_time = now;
                            Ok(())
                        },
                    );
                if updated.is_ok() {
                    reminded += 1;
                    self.alarms.raise(
                        now,
                        &k.region,
                        &k.key_id,
                        alarms::KIND_DELETION_REMINDER,
                        format!(
                            "CMK {} will be deleted in {} hours (at {})",
                            k.key_id,
                            (k.deletion_date - now) / 3600,
                            k.deletion_date
                        ),
                    )?;
                }
            }
        }
        Ok((reminded, deleted))
    }
}
