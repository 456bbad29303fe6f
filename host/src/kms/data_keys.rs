//! Hosted data keys: DEKs that KMS stores for the caller, only ever as a blob encrypted under
//! their CMK (the same format Encrypt returns, with an empty encryption context, so
//! GetDataKeyCiphertextBlob's output works with plain Decrypt).

use super::state::Op;
use super::{Caller, Kms, ORIGIN_EXTERNAL, ORIGIN_KMS};
use crate::error::{Error, Result};
use crate::store::{DataKeyQuery, DataKeyRecord, Fence, KeyState, Tag};
use zeroize::Zeroizing;

pub const MAX_DATA_KEY_DESCRIPTION: usize = 100;
pub const MAX_DATA_KEY_BYTES: usize = 1024;
pub const DATA_KEY_LIMIT: u64 = 10_000;
const DAY: i64 = 86_400;

/// Name rules follow CMK aliases: 1-60 of `[A-Za-z0-9_-]`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 60
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(Error::InvalidDataKeyName(format!(
            "invalid DataKeyName `{name}`: 1 to 60 letters, digits, `_` or `-`, starting with a letter or digit"
        )));
    }
    Ok(())
}

pub fn check_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::MissingParameter(
            "DataKeyId must not be empty".into(),
        ));
    }
    if id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(Error::InvalidDataKeyId(format!("invalid DataKeyId `{id}`")));
    }
    Ok(())
}

fn check_description(d: &str) -> Result<()> {
    if d.len() > MAX_DATA_KEY_DESCRIPTION {
        return Err(Error::InvalidValue(format!(
            "Description must be at most {MAX_DATA_KEY_DESCRIPTION} bytes"
        )));
    }
    Ok(())
}

/// What each data key state permits; Enabled permits everything.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DataKeyOp {
    Plaintext,
    CiphertextBlob,
    Edit,
    SetEnabled,
    ScheduleDeletion,
    CancelDeletion,
}

pub fn check(op: DataKeyOp, k: &DataKeyRecord) -> Result<()> {
    let id = || k.data_key_id.clone();
    match (op, k.state) {
        (DataKeyOp::CancelDeletion, KeyState::PendingDelete) => Ok(()),
        (DataKeyOp::CancelDeletion, _) => Err(Error::DataKeyNotPendingDelete(id())),
        (_, KeyState::PendingDelete) => Err(Error::DataKeyPendingDelete(id())),
        (DataKeyOp::Plaintext, KeyState::Disabled) => Err(Error::DataKeyDisabled(id())),
        _ => Ok(()),
    }
}

pub struct NewDataKey<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub tags: Vec<Tag>,
    /// `TENCENT_KMS` when KMS generated the value, `EXTERNAL` when it was imported.
    pub origin: &'static str,
}

impl Kms {
    /// Stores `plaintext` as a hosted data key under CMK `key_id`.
    pub fn host_data_key(
        &self,
        caller: &Caller,
        key_id: &str,
        plaintext: &[u8],
        new: NewDataKey<'_>,
    ) -> Result<DataKeyRecord> {
        check_name(new.name)?;
        check_description(new.description)?;
        if plaintext.is_empty() || plaintext.len() > MAX_DATA_KEY_BYTES {
            return Err(Error::InvalidImportKeyMaterial(format!(
                "a data key must be 1 to {MAX_DATA_KEY_BYTES} bytes"
            )));
        }
        let cmk = self.key_for(caller, key_id, Op::Encrypt)?;
        let version = self.version(caller, &cmk, cmk.current_version)?;
        let blob = self.seal_data(&cmk, &version, &[], plaintext)?;
        let record = DataKeyRecord {
            data_key_id: uuid::Uuid::new_v4().to_string(),
            region: caller.region.clone(),
            owner_uin: caller.owner_uin,
            creator_uin: caller.uin,
            name: new.name.to_string(),
            description: new.description.to_string(),
            key_id: cmk.key_id,
            origin: new.origin.to_string(),
            owner: "user".into(),
            state: KeyState::Enabled,
            number_of_bytes: plaintext.len() as u32,
            create_time: self.clock.now(),
            deletion_date: 0,
            blob,
            tags: new.tags,
        };
        caller.trail.resource(
            "kms_datakey",
            &data_key_resource(caller, &record.data_key_id),
        );
        self.data_keys
            .insert_data_key(&caller.trail, &record, DATA_KEY_LIMIT)?;
        Ok(record)
    }

    /// ImportDataKey. Type 1: `material` is a CiphertextBlob from GenerateDataKey (made with
    /// no encryption context); type 2: the plaintext DEK, encrypted under `key_id`.
    pub fn import_data_key(
        &self,
        caller: &Caller,
        import_type: u64,
        material: &[u8],
        key_id: Option<&str>,
        new: NewDataKey<'_>,
    ) -> Result<DataKeyRecord> {
        check_name(new.name)?;
        let (cmk_id, plaintext) = match import_type {
            1 => {
                let (blob_key, pt) = self.decrypt(caller, material, None).map_err(|e| match e {
                    Error::InvalidCiphertext(m) => Error::InvalidImportKeyMaterial(m),
                    Error::DecryptFailed => Error::InvalidImportKeyMaterial(
                        "ImportKeyMaterial does not decrypt (a GenerateDataKey blob made without EncryptionContext is expected)".into(),
                    ),
                    other => other,
                })?;
                if let Some(k) = key_id.filter(|k| !k.is_empty()) {
                    if k != blob_key {
                        return Err(Error::InvalidImportKeyMaterial(format!(
                            "ImportKeyMaterial belongs to CMK {blob_key}, not {k}"
                        )));
                    }
                }
                (blob_key, pt)
            }
            2 => {
                let k = key_id.filter(|k| !k.is_empty()).ok_or_else(|| {
                    Error::MissingParameter("KeyId is required when ImportType is 2".into())
                })?;
                (k.to_string(), Zeroizing::new(material.to_vec()))
            }
            other => {
                return Err(Error::InvalidValue(format!(
                    "ImportType must be 1 or 2, not {other}"
                )))
            }
        };
        self.host_data_key(caller, &cmk_id, &plaintext, new)
    }

    /// A page of hosted data keys, of those the caller may see.
    pub fn query_data_keys(
        &self,
        caller: &Caller,
        q: &DataKeyQuery,
    ) -> Result<(u64, Vec<DataKeyRecord>)> {
        crate::cam::visible_page(
            caller,
            q.offset,
            q.limit,
            |offset, limit| {
                let mut q = q.clone();
                (q.offset, q.limit) = (offset, limit);
                self.data_keys.query_data_keys(&q)
            },
            |k| caller.may_see(&data_key_resource(caller, &k.data_key_id), &k.tags),
        )
    }

    pub fn data_key(&self, caller: &Caller, id: &str) -> Result<DataKeyRecord> {
        check_id(id)?;
        let k = self
            .data_keys
            .get_data_key(&caller.region, caller.owner_uin, id)?
            .ok_or_else(|| Error::DataKeyNotFound(id.to_string()))?;
        caller.check("kms_datakey", &data_key_resource(caller, id), &k.tags)?;
        Ok(k)
    }

    pub fn data_key_plaintext(&self, caller: &Caller, id: &str) -> Result<Zeroizing<Vec<u8>>> {
        let k = self.data_key(caller, id)?;
        check(DataKeyOp::Plaintext, &k)?;
        // The data key's own permission governs; its CMK is the service's business.
        Ok(self.decrypt(&caller.internal(), &k.blob, None)?.1)
    }

    pub fn data_key_blob(&self, caller: &Caller, id: &str) -> Result<Vec<u8>> {
        let k = self.data_key(caller, id)?;
        check(DataKeyOp::CiphertextBlob, &k)?;
        Ok(k.blob)
    }

    fn update_data_key(
        &self,
        caller: &Caller,
        id: &str,
        f: &mut dyn FnMut(&mut DataKeyRecord) -> Result<()>,
    ) -> Result<DataKeyRecord> {
        check_id(id)?;
        let resource = data_key_resource(caller, id);
        self.data_keys.update_data_key(
            &caller.trail,
            &caller.region,
            caller.owner_uin,
            id,
            &mut |k| {
                caller.check("kms_datakey", &resource, &k.tags)?;
                f(k)
            },
        )
    }

    pub fn rename_data_key(&self, caller: &Caller, id: &str, name: &str) -> Result<()> {
        check_name(name)?;
        self.update_data_key(caller, id, &mut |k| {
            check(DataKeyOp::Edit, k)?;
            k.name = name.to_string();
            Ok(())
        })
        .map(|_| ())
    }

    pub fn describe_data_key_text(&self, caller: &Caller, id: &str, desc: &str) -> Result<()> {
        check_description(desc)?;
        self.update_data_key(caller, id, &mut |k| {
            check(DataKeyOp::Edit, k)?;
            k.description = desc.to_string();
            Ok(())
        })
        .map(|_| ())
    }

    pub fn set_data_key_enabled(&self, caller: &Caller, id: &str, enabled: bool) -> Result<()> {
        self.update_data_key(caller, id, &mut |k| {
            check(DataKeyOp::SetEnabled, k)?;
            k.state = if enabled {
                KeyState::Enabled
            } else {
                KeyState::Disabled
            };
            Ok(())
        })
        .map(|_| ())
    }

    /// Batch form: all ids are validated before any changes (all-or-nothing).
    pub fn set_data_keys_enabled(
        &self,
        caller: &Caller,
        ids: &[String],
        enabled: bool,
    ) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::MissingParameter(
                "DataKeyIds must not be empty".into(),
            ));
        }
        if ids.len() > super::MAX_BATCH {
            return Err(Error::InvalidValue(format!(
                "DataKeyIds holds at most {} entries",
                super::MAX_BATCH
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            check_id(id)?;
            if !seen.insert(id.as_str()) {
                return Err(Error::DuplicatedDataKeyId(id.clone()));
            }
            check(DataKeyOp::SetEnabled, &self.data_key(caller, id)?)?;
        }
        for id in ids {
            self.set_data_key_enabled(caller, id, enabled)?;
        }
        Ok(())
    }

    pub fn schedule_data_key_deletion(&self, caller: &Caller, id: &str, days: u64) -> Result<i64> {
        if !(7..=30).contains(&days) {
            return Err(Error::InvalidPendingWindow(format!(
                "PendingWindowInDays must be 7 to 30, not {days}"
            )));
        }
        let now = self.clock.now();
        let k = self.update_data_key(caller, id, &mut |k| {
            check(DataKeyOp::ScheduleDeletion, k)?;
            k.state = KeyState::PendingDelete;
            k.deletion_date = now + days as i64 * DAY;
            Ok(())
        })?;
        Ok(k.deletion_date)
    }

    pub fn cancel_data_key_deletion(&self, caller: &Caller, id: &str) -> Result<()> {
        self.update_data_key(caller, id, &mut |k| {
            check(DataKeyOp::CancelDeletion, k)?;
            k.state = KeyState::Disabled;
            k.deletion_date = 0;
            Ok(())
        })
        .map(|_| ())
    }

    /// Deletes hosted data keys whose deletion date has passed. Returns how many.
    pub(super) fn delete_due_data_keys(&self, now: i64, fence: Fence) -> Result<usize> {
        let mut n = 0;
        for k in self.data_keys.data_keys_in_state(KeyState::PendingDelete)? {
            if k.deletion_date > now {
                continue;
            }
            let record = crate::audit::record::AuditRecord::system(
                "kms",
                "ScheduledDataKeyDeletion",
                &k.region,
                k.owner_uin,
            )
            .about(
                "kms_datakey",
                data_key_name(&k.region, k.owner_uin, &k.data_key_id),
            );
            if self.data_keys.delete_data_key(
                &self.system_trail(record).fenced(Some(fence)),
                &k.data_key_id,
            )? {
                n += 1;
            }
        }
        Ok(n)
    }
}

pub const ORIGINS: [&str; 2] = [ORIGIN_KMS, ORIGIN_EXTERNAL];

/// The CAM resource name of a hosted data key.
pub fn data_key_resource(caller: &Caller, id: &str) -> String {
    data_key_name(&caller.region, caller.owner_uin, id)
}

fn data_key_name(region: &str, owner_uin: u64, id: &str) -> String {
    format!("qcs::kms:{region}:uin/{owner_uin}:datakey/{id}")
}
