//! Secrets Manager: named secrets with versions, each value envelope-encrypted through KMS.
//!
//! Every version gets a fresh data key from `Kms::generate_data_key` under the secret's CMK,
//! with the encryption context `{"SecretName", "VersionId"}`; only that key's CMK blob is
//! stored. The value is AES-256-GCM (SM4-GCM when the CMK is SM4) under the data key, with the
//! region, name and version as associated data. Reading goes through KMS Decrypt, so the CMK's
//! state governs the secret, and a stored ciphertext moved to another secret or version fails
//! to authenticate instead of revealing the other value.

pub mod rotation;
pub mod ssh;

use crate::alarms::Alarms;
use crate::cam::policy;
use crate::cam::Caller;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::kms::envelope::{Binding, Sealed};
use crate::kms::{Kms, KEY_USAGE_ENCRYPT_DECRYPT};
use crate::store::{
    Fence, RotationStore, SecretQuery, SecretRecord, SecretStatus, SecretStore, SecretVersion, Tag,
    Trail, VersionWrite,
};
use std::sync::Arc;
use zeroize::Zeroizing;

pub const DEFAULT_VERSION_ID: &str = "SSM_Current";
pub const MAX_VALUE_BYTES: usize = 32 * 1024;
pub const MAX_VERSIONS: u64 = 10;
pub const MAX_DESCRIPTION_BYTES: usize = 2048;
const DAY: i64 = 86_400;

/// A secret value: text (`SecretString`) or bytes (`SecretBinary`).
pub struct SecretValue {
    pub bytes: Zeroizing<Vec<u8>>,
    pub is_binary: bool,
}

/// What the state of a secret permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOp {
    Read,
    Write,
    Enable,
    Disable,
    Delete,
    Restore,
}

pub fn check(op: SecretOp, s: &SecretRecord) -> Result<()> {
    use SecretStatus::*;
    let name = || s.name.clone();
    match (op, s.status) {
        (SecretOp::Read, Enabled) => Ok(()),
        (SecretOp::Read, Disabled) => Err(Error::SecretDisabled(name())),
        (SecretOp::Restore, PendingDelete) => Ok(()),
        (SecretOp::Restore, _) => Err(Error::OperationDenied(format!(
            "secret {} is not pending deletion",
            s.name
        ))),
        (SecretOp::Delete, Enabled) => Err(Error::OperationDenied(format!(
            "secret {} must be disabled before it can be deleted",
            s.name
        ))),
        // A pending-delete secret may still be deleted at once (window 0); the caller decides.
        (SecretOp::Delete, _) => Ok(()),
        (_, PendingDelete) => Err(Error::SecretPendingDelete(name())),
        _ => Ok(()),
    }
}

pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::MissingParameter(
            "SecretName must not be empty".into(),
        ));
    }
    let ok = name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(Error::InvalidValue(format!(
            "invalid SecretName `{name}`: at most 128 letters, digits, `_` or `-`, starting with a letter or digit"
        )));
    }
    Ok(())
}

pub fn check_version_id(v: &str) -> Result<()> {
    if v.is_empty() {
        return Err(Error::MissingParameter(
            "VersionId must not be empty".into(),
        ));
    }
    let ok = v.len() <= 64
        && v.as_bytes()[0].is_ascii_alphanumeric()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        return Err(Error::InvalidValue(format!(
            "invalid VersionId `{v}`: at most 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
        )));
    }
    Ok(())
}

pub fn check_description(d: &str) -> Result<()> {
    if d.len() > MAX_DESCRIPTION_BYTES {
        return Err(Error::InvalidValue(format!(
            "Description must be at most {MAX_DESCRIPTION_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Values of SSH key pair secrets are generated, never written by callers.
fn user_defined_only(s: &SecretRecord) -> Result<()> {
    if s.secret_type != 0 {
        return Err(Error::OperationDenied(format!(
            "secret {} is not user-defined; its versions cannot be written or deleted",
            s.name
        )));
    }
    Ok(())
}

/// KMS refusals surface as SSM's AccessKmsError; infrastructure failures stay internal.
fn via_kms(e: Error) -> Error {
    match e {
        e if e.is_internal() => e,
        // The caller's own refusal stays an access refusal.
        e @ Error::Unauthorized(_) => e,
        e => Error::AccessKms(e.to_string()),
    }
}

/// Where a version's value belongs: the KMS encryption context of its data key, and the
/// associated data of the value (region, name and version, so a value moved to another
/// secret or version fails to authenticate).
fn binding(secret: &SecretRecord, version_id: &str) -> (String, Vec<u8>) {
    let context =
        serde_json::json!({ "SecretName": secret.name, "VersionId": version_id }).to_string();
    let mut aad = b"keyward/ssm/v1\0".to_vec();
    for part in [secret.region.as_str(), secret.name.as_str(), version_id] {
        aad.extend_from_slice(part.as_bytes());
        aad.push(0);
    }
    (context, aad)
}

/// The key pair behind an SSH key pair secret.
#[derive(Debug, Clone, Default)]
pub struct SshKeyInfo {
    pub id: String,
    pub name: String,
    pub project_id: i64,
}

pub struct NewSecret {
    /// 0 user-defined, 2 SSH key pair.
    pub secret_type: u64,
    pub ssh: SshKeyInfo,
    pub name: String,
    pub version_id: String,
    pub description: String,
    pub kms_key_id: Option<String>,
    pub value: SecretValue,
    pub tags: Vec<Tag>,
}

pub struct Ssm {
    kms: Arc<Kms>,
    store: Arc<dyn SecretStore>,
    /// Product secrets' targets, schedules and asynchronous requests (`rotation`).
    rotation: Arc<dyn RotationStore>,
    alarms: Arc<Alarms>,
    /// Product-secret rotations done and failed, for `/metrics`.
    pub rotations: rotation::Counters,
    /// Issues and retires the keys of API-key secrets (CAM, set after start-up).
    key_issuer: std::sync::OnceLock<Arc<dyn rotation::api_keys::KeyIssuer>>,
    cfg: Arc<Config>,
    clock: Arc<dyn Clock>,
}

impl Ssm {
    pub fn new(
        kms: Arc<Kms>,
        store: Arc<dyn SecretStore>,
        rotation: Arc<dyn RotationStore>,
        alarms: Arc<Alarms>,
        cfg: Arc<Config>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Ssm {
            kms,
            store,
            rotation,
            alarms,
            rotations: Default::default(),
            key_issuer: std::sync::OnceLock::new(),
            cfg,
            clock,
        }
    }

    /// Encrypts one value for `secret`/`version_id` under a fresh data key of its CMK.
    fn seal(
        &self,
        caller: &Caller,
        secret: &SecretRecord,
        version_id: &str,
        value: &SecretValue,
    ) -> Result<SecretVersion> {
        let (context, aad) = binding(secret, version_id);
        let env = self
            .kms
            .seal_envelope(
                &caller.internal(),
                &secret.kms_key_id,
                &Binding {
                    context: &context,
                    aad: &aad,
                },
                &value.bytes,
            )
            .map_err(via_kms)?;
        Ok(SecretVersion {
            version_id: version_id.to_string(),
            create_time: self.clock.now(),
            is_binary: value.is_binary,
            key_blob: env.key_blob,
            nonce: env.nonce,
            ciphertext: env.ciphertext,
        })
    }

    fn open(
        &self,
        caller: &Caller,
        secret: &SecretRecord,
        v: &SecretVersion,
    ) -> Result<SecretValue> {
        let (context, aad) = binding(secret, &v.version_id);
        let env = Sealed {
            key_blob: &v.key_blob,
            nonce: &v.nonce,
            ciphertext: &v.ciphertext,
        };
        let bytes = self
            .kms
            .open_envelope(
                &caller.internal(),
                &env,
                &Binding {
                    context: &context,
                    aad: &aad,
                },
            )
            .map_err(|e| match e {
                Error::ValueTampered => Error::AccessKms(format!(
                    "the stored value of {}/{} failed authentication",
                    secret.name, v.version_id
                )),
                other => via_kms(other),
            })?;
        Ok(SecretValue {
            bytes,
            is_binary: v.is_binary,
        })
    }

    pub fn create(&self, caller: &Caller, new: NewSecret) -> Result<SecretRecord> {
        check_name(&new.name)?;
        check_version_id(&new.version_id)?;
        check_description(&new.description)?;
        let resource =
            policy::ssm_secret_resource(&caller.region, caller.owner_uin, caller.uin, &new.name);
        caller.check_new(&resource, &new.tags)?;
        caller.trail.resource("ssm_secret", &resource);
        let (kms_key_id, kms_key_type) = match new.kms_key_id.filter(|k| !k.is_empty()) {
            Some(k) => {
                // Secrets Manager then uses the CMK with its own rights (as Tencent's does
                // through its service role), but binding one takes the caller's own right to
                // make data keys with it: otherwise a secret could borrow any CMK, and the
                // errors would tell its state to someone who may not see it.
                let cmk = self
                    .kms
                    .describe_key(&caller.acting_as("kms:GenerateDataKey"), &k)
                    .map_err(via_kms)?;
                if cmk.key_usage != KEY_USAGE_ENCRYPT_DECRYPT {
                    return Err(Error::AccessKms(format!(
                        "CMK {k} is not a symmetric ENCRYPT_DECRYPT key"
                    )));
                }
                (cmk.key_id, "CUSTOMER")
            }
            None => (
                self.kms
                    .managed_key(&caller.region, caller.owner_uin)?
                    .key_id,
                "DEFAULT",
            ),
        };
        let secret = SecretRecord {
            region: caller.region.clone(),
            owner_uin: caller.owner_uin,
            name: new.name,
            create_uin: caller.uin,
            description: new.description,
            kms_key_id,
            kms_key_type: kms_key_type.into(),
            status: SecretStatus::Enabled,
            secret_type: new.secret_type,
            create_time: self.clock.now(),
            delete_time: 0,
            tags: new.tags,
            ssh_key_id: new.ssh.id,
            ssh_key_name: new.ssh.name,
            project_id: new.ssh.project_id,
        };
        if self
            .store
            .get_secret(&secret.region, secret.owner_uin, &secret.name)?
            .is_some()
        {
            return Err(Error::SecretExists(secret.name));
        }
        let first = self.seal(caller, &secret, &new.version_id, &new.value)?;
        self.store
            .insert_secret(&caller.trail, &secret, &first, self.cfg.limits.secret_limit)?;
        Ok(secret)
    }

    pub fn secret(&self, caller: &Caller, name: &str) -> Result<SecretRecord> {
        check_name(name)?;
        let s = self
            .store
            .get_secret(&caller.region, caller.owner_uin, name)?
            .ok_or_else(|| Error::SecretNotFound(name.to_string()))?;
        authorize(caller, &s)?;
        Ok(s)
    }

    pub fn get_value(&self, caller: &Caller, name: &str, version_id: &str) -> Result<SecretValue> {
        let secret = self.secret(caller, name)?;
        check(SecretOp::Read, &secret)?;
        check_version_id(version_id)?;
        let v = self
            .store
            .get_secret_version(&caller.region, caller.owner_uin, name, version_id)?
            .ok_or_else(|| Error::SecretVersionNotFound(version_id.to_string()))?;
        self.open(caller, &secret, &v)
    }

    /// PutSecretValue (`replace` false) or UpdateSecret (`replace` true).
    pub fn put_value(
        &self,
        caller: &Caller,
        name: &str,
        version_id: &str,
        value: &SecretValue,
        replace: bool,
    ) -> Result<()> {
        let secret = self.secret(caller, name)?;
        user_defined_only(&secret)?;
        check(SecretOp::Write, &secret)?;
        check_version_id(version_id)?;
        let sealed = self.seal(caller, &secret, version_id, value)?;
        self.store.put_secret_version(
            &caller.trail,
            &caller.region,
            caller.owner_uin,
            name,
            &sealed,
            if replace {
                VersionWrite::Replace
            } else {
                VersionWrite::Add {
                    max_versions: MAX_VERSIONS,
                }
            },
            &mut |s| check(SecretOp::Write, s),
        )
    }

    /// The write path: load the secret inside the store transaction, authorize the caller on
    /// it, consult the state table for `op`, then apply `f`.
    fn change(
        &self,
        caller: &Caller,
        name: &str,
        op: SecretOp,
        f: &mut dyn FnMut(&mut SecretRecord) -> Result<()>,
    ) -> Result<SecretRecord> {
        self.store.update_secret(
            &caller.trail,
            &caller.region,
            caller.owner_uin,
            name,
            &mut |s| {
                authorize(caller, s)?;
                check(op, s)?;
                f(s)
            },
        )
    }

    pub fn update_description(&self, caller: &Caller, name: &str, desc: &str) -> Result<()> {
        check_name(name)?;
        check_description(desc)?;
        self.change(caller, name, SecretOp::Write, &mut |s| {
            s.description = desc.to_string();
            Ok(())
        })
        .map(|_| ())
    }

    pub fn set_enabled(&self, caller: &Caller, name: &str, enabled: bool) -> Result<()> {
        check_name(name)?;
        let (op, status) = match enabled {
            true => (SecretOp::Enable, SecretStatus::Enabled),
            false => (SecretOp::Disable, SecretStatus::Disabled),
        };
        self.change(caller, name, op, &mut |s| {
            s.status = status;
            Ok(())
        })
        .map(|_| ())
    }

    /// DeleteSecret: window 0 deletes now; 1–30 days schedules. Returns the deletion time.
    /// With `drop_credentials` (DeleteMode 1) a product secret's accounts or API keys go
    /// first; that needs RecoveryWindowInDays 0, since a restored secret would otherwise
    /// hand out credentials that no longer exist.
    pub fn delete(
        &self,
        caller: &Caller,
        name: &str,
        window_days: u64,
        drop_credentials: bool,
    ) -> Result<i64> {
        if window_days > 30 {
            return Err(Error::InvalidValue(format!(
                "RecoveryWindowInDays must be 0 to 30, not {window_days}"
            )));
        }
        let now = self.clock.now();
        let secret = self.secret(caller, name)?;
        if drop_credentials && !rotation::is_product_secret(&secret) {
            return Err(Error::Unsupported(
                "DeleteMode 1 (also delete the database accounts) applies to product secrets only"
                    .into(),
            ));
        }
        check(SecretOp::Delete, &secret)?;
        if secret.secret_type == ssh::SECRET_TYPE_SSH && window_days != 0 {
            return Err(Error::InvalidValue(
                "SSH key pair secrets are deleted at once: RecoveryWindowInDays must be 0".into(),
            ));
        }
        if drop_credentials {
            if window_days != 0 {
                return Err(Error::InvalidValue(
                    "DeleteMode 1 deletes the accounts at once: RecoveryWindowInDays must be 0"
                        .into(),
                ));
            }
            self.drop_credentials(&caller.internal(), &secret)?;
        }
        if window_days == 0 {
            self.store
                .delete_secret(&caller.trail, &caller.region, caller.owner_uin, name)?;
            return Ok(now);
        }
        let s = self.change(caller, name, SecretOp::Delete, &mut |s| {
            if s.status == SecretStatus::PendingDelete {
                return Err(Error::SecretPendingDelete(s.name.clone()));
            }
            s.status = SecretStatus::PendingDelete;
            s.delete_time = now + window_days as i64 * DAY;
            Ok(())
        })?;
        Ok(s.delete_time)
    }

    pub fn restore(&self, caller: &Caller, name: &str) -> Result<()> {
        check_name(name)?;
        self.change(caller, name, SecretOp::Restore, &mut |s| {
            s.status = SecretStatus::Disabled;
            s.delete_time = 0;
            Ok(())
        })
        .map(|_| ())
    }

    pub fn versions(&self, caller: &Caller, name: &str) -> Result<Vec<(String, i64)>> {
        self.secret(caller, name)?;
        self.store
            .list_secret_versions(&caller.region, caller.owner_uin, name)
    }

    pub fn delete_version(&self, caller: &Caller, name: &str, version_id: &str) -> Result<()> {
        user_defined_only(&self.secret(caller, name)?)?;
        check_version_id(version_id)?;
        if !self.store.delete_secret_version(
            &caller.trail,
            &caller.region,
            caller.owner_uin,
            name,
            version_id,
        )? {
            return Err(Error::SecretVersionNotFound(version_id.to_string()));
        }
        Ok(())
    }

    /// A page of secrets, of those the caller may see.
    pub fn query(&self, caller: &Caller, q: &SecretQuery) -> Result<(u64, Vec<SecretRecord>)> {
        crate::cam::visible_page(
            caller,
            q.offset,
            q.limit,
            |offset, limit| {
                let mut q = q.clone();
                (q.offset, q.limit) = (offset, limit);
                self.store.query_secrets(&q)
            },
            |s| caller.may_see(&secret_resource(s), &s.tags),
        )
    }

    pub fn count(&self, caller: &Caller) -> Result<u64> {
        self.store.count_secrets(&caller.region, caller.owner_uin)
    }

    /// Deletes secrets whose recovery window has ended. Returns how many.
    /// Every write carries `fence` (see `Kms::run_due_jobs`).
    pub fn run_due_jobs(&self, fence: Fence) -> Result<usize> {
        let now = self.clock.now();
        let mut n = 0;
        for s in self.store.secrets_in_status(SecretStatus::PendingDelete)? {
            let record = crate::audit::record::AuditRecord::system(
                "ssm",
                "ScheduledSecretDeletion",
                &s.region,
                s.owner_uin,
            )
            .about("ssm_secret", secret_resource(&s));
            if s.delete_time <= now
                && self.store.delete_secret(
                    &Trail::system(record, self.cfg.audit.enabled).fenced(Some(fence)),
                    &s.region,
                    s.owner_uin,
                    &s.name,
                )?
            {
                tracing::info!(secret = %s.name, region = %s.region, "secret deleted");
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The CAM resource name of a secret.
pub fn secret_resource(s: &SecretRecord) -> String {
    policy::ssm_secret_resource(&s.region, s.owner_uin, s.create_uin, &s.name)
}

/// Asks the request's policies about a secret (and notes it for the audit log).
fn authorize(caller: &Caller, s: &SecretRecord) -> Result<()> {
    caller.check("ssm_secret", &secret_resource(s), &s.tags)
}
