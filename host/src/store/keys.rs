//! Customer master keys: their records, versions (sealed material), import parameters and
//! cloud-resource bindings, and the store operations on them.

use super::audit::Trail;
use crate::error::Result;
use keyward_shared::Algorithm;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDelete,
    PendingImport,
    Archived,
}

impl KeyState {
    pub const ALL: [KeyState; 5] = [
        KeyState::Enabled,
        KeyState::Disabled,
        KeyState::PendingDelete,
        KeyState::PendingImport,
        KeyState::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDelete => "PendingDelete",
            KeyState::PendingImport => "PendingImport",
            KeyState::Archived => "Archived",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// ListKeyDetail's `KeyState` filter code (1..=5; 0 means all).
    pub fn from_filter_code(code: u64) -> Option<Self> {
        Self::ALL.get(code.checked_sub(1)? as usize).copied()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    #[serde(rename = "TagKey")]
    pub key: String,
    #[serde(rename = "TagValue")]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key_id: String,
    pub region: String,
    pub owner_uin: u64,
    pub creator_uin: u64,
    pub alias: String,
    pub description: String,
    pub key_usage: String,
    pub origin: String,
    /// `user` for user-created keys, else the creating product.
    pub owner: String,
    pub algorithm: Algorithm,
    pub state: KeyState,
    pub create_time: i64,
    pub deletion_date: i64,
    pub rotation_enabled: bool,
    pub rotate_days: u32,
    pub next_rotate_time: i64,
    pub last_rotate_time: i64,
    /// Newest key version (0 while an EXTERNAL key has no material).
    pub current_version: u32,
    pub tags: Vec<Tag>,
    /// Last RotateKey call (manual rotations are limited to one per 24 hours).
    pub last_manual_rotate: i64,
    /// Last pending-deletion reminder alarm.
    pub last_alarm_time: i64,
    /// EXTERNAL keys: when the imported material expires (0 = never).
    pub valid_to: i64,
    /// EXTERNAL keys: check value of the imported material, computed in the HSM, so only the
    /// same material can be imported again (empty before the first import).
    pub material_kcv: Vec<u8>,
}

/// GetParametersForImport: one wrapping key pair and its token.
#[derive(Debug, Clone)]
pub struct ImportParams {
    pub token: String,
    pub key_id: String,
    pub wrapping_algorithm: String,
    pub sealed_private: Vec<u8>,
    pub public_key: Vec<u8>,
    pub valid_to: i64,
    /// The integrity tag over all of the above (`integrity::Subject::ImportParams`).
    pub tag: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersion {
    pub key_id: String,
    pub version: u32,
    /// Which HSM backend sealed it (`embedded`, `pkcs11`).
    pub backend: String,
    pub sealed: Vec<u8>,
    pub create_time: i64,
    /// Asymmetric keys: the public key, DER SubjectPublicKeyInfo (empty for symmetric keys).
    pub public_key: Vec<u8>,
    /// The integrity tag binding the sealed material to this key, version, backend and
    /// public key (`integrity::Subject::KeyVersion`); empty only in stores written before
    /// tags existed, until the start-up that tags them.
    pub tag: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct TagFilter {
    pub key: String,
    /// Empty: any value.
    pub values: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct KeyQuery {
    pub region: String,
    pub owner_uin: u64,
    /// `None`: every state.
    pub states: Option<Vec<KeyState>>,
    pub origin: Option<String>,
    pub key_usage: Option<String>,
    /// Substring of KeyId or Alias.
    pub search: Option<String>,
    pub tag_filters: Vec<TagFilter>,
    /// `Some(true)`: keys users created (Owner `user`); `Some(false)`: service-managed keys.
    pub user_created: Option<bool>,
    pub newest_first: bool,
    pub offset: u64,
    pub limit: u64,
}

/// A read-modify-write step run inside the store's transaction.
pub type KeyUpdate<'a> = &'a mut dyn FnMut(&mut KeyRecord) -> Result<()>;
/// Makes a key's new version from its updated record, inside the store's transaction.
pub type NewVersion<'a> = &'a mut dyn FnMut(&KeyRecord) -> Result<KeyVersion>;

pub trait KeyStore: Send + Sync {
    /// Inserts a key and its first version, refusing a duplicate alias and a full quota.
    fn insert_key(
        &self,
        trail: &Trail,
        key: &KeyRecord,
        version: Option<&KeyVersion>,
        limit: u64,
    ) -> Result<()>;
    fn get_key(&self, region: &str, owner_uin: u64, key_id: &str) -> Result<Option<KeyRecord>>;
    fn get_version(&self, key_id: &str, version: u32) -> Result<Option<KeyVersion>>;
    /// Loads a key, applies `f`, and writes it back in one transaction. Returns the new record.
    fn update_key(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        key_id: &str,
        f: KeyUpdate<'_>,
    ) -> Result<KeyRecord>;
    /// Returns the total number of matches and one page of them.
    fn query_keys(&self, q: &KeyQuery) -> Result<(u64, Vec<KeyRecord>)>;
    fn count_keys(&self, region: &str, owner_uin: u64) -> Result<u64>;
    /// Like `update_key`, and also stores the key's new newest version
    /// (`current_version + 1`) in the same transaction: `version` makes it from the updated
    /// record (its number is known only inside the transaction, and the tag covers it).
    fn add_version(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        key_id: &str,
        f: KeyUpdate<'_>,
        version: NewVersion<'_>,
    ) -> Result<KeyRecord>;
    /// Deletes a key, its versions and bindings. Returns false if it did not exist.
    fn delete_key(&self, trail: &Trail, key_id: &str) -> Result<bool>;
    /// Every key in `state`, across regions and accounts (for background jobs).
    fn keys_in_state(&self, state: KeyState) -> Result<Vec<KeyRecord>>;
    /// Keys with automatic rotation on whose next rotation time has come.
    fn keys_rotation_due(&self, now: i64) -> Result<Vec<KeyRecord>>;
    /// Sets a key's material: with `version` (number 1) it becomes the key's only version
    /// (an import), without it every version is removed (DeleteImportedKeyMaterial, expiry).
    /// `f` updates the record in the same transaction.
    fn set_key_material(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        key_id: &str,
        version: Option<&KeyVersion>,
        f: KeyUpdate<'_>,
    ) -> Result<KeyRecord>;
    /// Versions written before integrity tags existed (start-up tags them once).
    fn untagged_versions(&self) -> Result<Vec<KeyVersion>>;
    /// Stores the tag of a version that has none (not audited: start-up housekeeping).
    fn set_version_tag(&self, key_id: &str, version: u32, tag: &[u8]) -> Result<()>;
    fn insert_import_params(&self, trail: &Trail, p: &ImportParams) -> Result<()>;
    fn get_import_params(&self, token: &str) -> Result<Option<ImportParams>>;
    fn bind(
        &self,
        trail: &Trail,
        key_id: &str,
        product: &str,
        resource: &str,
        now: i64,
    ) -> Result<bool>;
    fn unbind(&self, trail: &Trail, key_id: &str, product: &str, resource: &str) -> Result<bool>;
    fn count_bindings(&self, key_id: &str) -> Result<u64>;
}
