//! Metadata persistence behind one trait. SQLite is the embedded default; a PostgreSQL
//! implementation is meant to join it with the same records.
//!
//! Every method is one transaction: a crash leaves either the old or the new state.

pub mod audit;
pub mod iam;
mod sqlite;

pub use audit::{AuditAttribute, AuditQuery, AuditStore};
pub use iam::{GroupRecord, IamStore, PolicyRecord, Target};
pub use sqlite::SqliteStore;

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

#[derive(Debug, Clone)]
pub struct AccountRecord {
    pub uin: u64,
    pub name: String,
    pub kind: String,
    pub remark: String,
    pub create_time: i64,
}

#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub secret_id: String,
    pub uin: u64,
    pub sealed_secret: Vec<u8>,
    pub enabled: bool,
    pub create_time: i64,
    /// Unix seconds of the last authenticated request (0: never), flushed periodically.
    pub last_used: i64,
}

/// A hosted data key: its metadata and its value encrypted under `key_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyRecord {
    pub data_key_id: String,
    pub region: String,
    pub owner_uin: u64,
    pub creator_uin: u64,
    pub name: String,
    pub description: String,
    pub key_id: String,
    pub origin: String,
    pub owner: String,
    /// Enabled, Disabled or PendingDelete.
    pub state: KeyState,
    pub number_of_bytes: u32,
    pub create_time: i64,
    pub deletion_date: i64,
    pub blob: Vec<u8>,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone)]
pub struct DataKeyQuery {
    pub region: String,
    pub owner_uin: u64,
    pub states: Option<Vec<KeyState>>,
    pub origin: Option<String>,
    pub key_id: Option<String>,
    pub number_of_bytes: Option<u32>,
    /// Substring of DataKeyId or name.
    pub search: Option<String>,
    pub tag_filters: Vec<TagFilter>,
    pub user_created: Option<bool>,
    pub newest_first: bool,
    pub offset: u64,
    pub limit: u64,
}

/// A read-modify-write step on a data key, run inside the store's transaction.
pub type DataKeyUpdate<'a> = &'a mut dyn FnMut(&mut DataKeyRecord) -> Result<()>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretStatus {
    Enabled,
    Disabled,
    PendingDelete,
}

impl SecretStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretStatus::Enabled => "Enabled",
            SecretStatus::Disabled => "Disabled",
            SecretStatus::PendingDelete => "PendingDelete",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Enabled, Self::Disabled, Self::PendingDelete]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A secret's metadata (its values live in `SecretVersion`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub region: String,
    pub owner_uin: u64,
    pub name: String,
    pub create_uin: u64,
    pub description: String,
    pub kms_key_id: String,
    /// `DEFAULT` (the service-managed CMK) or `CUSTOMER`.
    pub kms_key_type: String,
    pub status: SecretStatus,
    pub secret_type: u64,
    pub create_time: i64,
    pub delete_time: i64,
    pub tags: Vec<Tag>,
    /// SSH key pair secrets (type 2): the key pair's id (`skey-…`), name and project.
    pub ssh_key_id: String,
    pub ssh_key_name: String,
    pub project_id: i64,
}

/// One envelope-encrypted secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion {
    pub version_id: String,
    pub create_time: i64,
    pub is_binary: bool,
    /// The data key, encrypted by KMS under the secret's CMK.
    pub key_blob: Vec<u8>,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct SecretQuery {
    pub region: String,
    pub owner_uin: u64,
    pub status: Option<SecretStatus>,
    pub search: Option<String>,
    pub tag_filters: Vec<TagFilter>,
    pub secret_type: u64,
    pub newest_first: bool,
    pub offset: u64,
    pub limit: u64,
}

/// How `put_secret_version` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionWrite {
    /// A new version id: refused if it exists or the secret already has `max_versions`.
    Add { max_versions: u64 },
    /// Overwrite an existing version: refused if it does not exist.
    Replace,
}

/// A read-modify-write step on a secret, run inside the store's transaction.
pub type SecretUpdate<'a> = &'a mut dyn FnMut(&mut SecretRecord) -> Result<()>;

/// An alarm waiting in the outbox for webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alarm {
    #[serde(rename = "AlarmId")]
    pub id: i64,
    #[serde(rename = "Time")]
    pub time: i64,
    #[serde(rename = "Region")]
    pub region: String,
    #[serde(rename = "KeyId")]
    pub key_id: String,
    /// `PendingDeleteKeyUsed` or `PendingDeleteReminder`.
    #[serde(rename = "Kind")]
    pub kind: String,
    #[serde(rename = "Message")]
    pub message: String,
}

/// A read-modify-write step run inside the store's transaction.
pub type KeyUpdate<'a> = &'a mut dyn FnMut(&mut KeyRecord) -> Result<()>;

pub trait Store: AuditStore + IamStore + Send + Sync {
    /// Inserts a key and its first version, refusing a duplicate alias and a full quota.
    fn insert_key(&self, key: &KeyRecord, version: Option<&KeyVersion>, limit: u64) -> Result<()>;
    fn get_key(&self, region: &str, owner_uin: u64, key_id: &str) -> Result<Option<KeyRecord>>;
    fn get_version(&self, key_id: &str, version: u32) -> Result<Option<KeyVersion>>;
    /// Loads a key, applies `f`, and writes it back in one transaction. Returns the new record.
    fn update_key(
        &self,
        region: &str,
        owner_uin: u64,
        key_id: &str,
        f: KeyUpdate<'_>,
    ) -> Result<KeyRecord>;
    /// Returns the total number of matches and one page of them.
    fn query_keys(&self, q: &KeyQuery) -> Result<(u64, Vec<KeyRecord>)>;
    fn count_keys(&self, region: &str, owner_uin: u64) -> Result<u64>;
    /// Like `update_key`, and also stores `version` as the key's new newest version
    /// (`current_version + 1`) in the same transaction.
    fn add_version(
        &self,
        region: &str,
        owner_uin: u64,
        key_id: &str,
        backend: &str,
        sealed: &[u8],
        f: KeyUpdate<'_>,
    ) -> Result<KeyRecord>;
    /// Deletes a key, its versions and bindings. Returns false if it did not exist.
    fn delete_key(&self, key_id: &str) -> Result<bool>;
    /// Every key in `state`, across regions and accounts (for background jobs).
    fn keys_in_state(&self, state: KeyState) -> Result<Vec<KeyRecord>>;
    /// Keys with automatic rotation on whose next rotation time has come.
    fn keys_rotation_due(&self, now: i64) -> Result<Vec<KeyRecord>>;

    /// Sets a key's material: with `sealed` it becomes the key's version 1 again (an import),
    /// without it every version is removed (DeleteImportedKeyMaterial, expiry). `f` updates
    /// the record in the same transaction.
    fn set_key_material(
        &self,
        region: &str,
        owner_uin: u64,
        key_id: &str,
        sealed: Option<(&str, &[u8])>,
        f: KeyUpdate<'_>,
    ) -> Result<KeyRecord>;
    fn insert_import_params(&self, p: &ImportParams) -> Result<()>;
    fn get_import_params(&self, token: &str) -> Result<Option<ImportParams>>;

    fn bind(&self, key_id: &str, product: &str, resource: &str, now: i64) -> Result<bool>;
    fn unbind(&self, key_id: &str, product: &str, resource: &str) -> Result<bool>;
    fn count_bindings(&self, key_id: &str) -> Result<u64>;

    /// Inserts a hosted data key, refusing a duplicate name and a full quota.
    fn insert_data_key(&self, k: &DataKeyRecord, limit: u64) -> Result<()>;
    fn get_data_key(&self, region: &str, owner_uin: u64, id: &str)
        -> Result<Option<DataKeyRecord>>;
    fn update_data_key(
        &self,
        region: &str,
        owner_uin: u64,
        id: &str,
        f: DataKeyUpdate<'_>,
    ) -> Result<DataKeyRecord>;
    fn query_data_keys(&self, q: &DataKeyQuery) -> Result<(u64, Vec<DataKeyRecord>)>;
    fn count_data_keys(&self, region: &str, owner_uin: u64) -> Result<u64>;
    fn data_keys_in_state(&self, state: KeyState) -> Result<Vec<DataKeyRecord>>;
    fn delete_data_key(&self, id: &str) -> Result<bool>;

    /// Inserts a secret with its first version; refuses a duplicate name and a full quota.
    fn insert_secret(&self, s: &SecretRecord, first: &SecretVersion, limit: u64) -> Result<()>;
    fn get_secret(&self, region: &str, owner_uin: u64, name: &str) -> Result<Option<SecretRecord>>;
    fn update_secret(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
        f: SecretUpdate<'_>,
    ) -> Result<SecretRecord>;
    /// Deletes a secret and all its versions.
    fn delete_secret(&self, region: &str, owner_uin: u64, name: &str) -> Result<bool>;
    fn query_secrets(&self, q: &SecretQuery) -> Result<(u64, Vec<SecretRecord>)>;
    fn count_secrets(&self, region: &str, owner_uin: u64) -> Result<u64>;
    fn secret_by_ssh_key(
        &self,
        region: &str,
        owner_uin: u64,
        ssh_key_id: &str,
    ) -> Result<Option<SecretRecord>>;
    fn secrets_in_status(&self, status: SecretStatus) -> Result<Vec<SecretRecord>>;
    /// Adds or overwrites a version, after `check` approved the secret, in one transaction.
    fn put_secret_version(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
        v: &SecretVersion,
        mode: VersionWrite,
        check: SecretUpdate<'_>,
    ) -> Result<()>;
    fn get_secret_version(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
        version_id: &str,
    ) -> Result<Option<SecretVersion>>;
    /// (version id, create time), oldest first.
    fn list_secret_versions(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
    ) -> Result<Vec<(String, i64)>>;
    fn delete_secret_version(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
        version_id: &str,
    ) -> Result<bool>;

    /// Appends an alarm to the outbox and returns its id.
    fn insert_alarm(&self, a: &Alarm) -> Result<i64>;
    fn undelivered_alarms(&self, limit: u32) -> Result<Vec<Alarm>>;
    fn mark_alarm_delivered(&self, id: i64) -> Result<()>;
    fn alarms_for_key(&self, key_id: &str) -> Result<Vec<Alarm>>;

    fn insert_account(&self, a: &AccountRecord) -> Result<()>;
    fn insert_api_key(&self, k: &ApiKeyRecord) -> Result<()>;
    fn get_api_key(&self, secret_id: &str) -> Result<Option<ApiKeyRecord>>;
    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Inserts a meta value; returns false (and changes nothing) if it already exists.
    fn insert_meta(&self, name: &str, value: &[u8]) -> Result<bool>;
    /// Inserts or replaces a meta value.
    fn set_meta(&self, name: &str, value: &[u8]) -> Result<()>;
}
