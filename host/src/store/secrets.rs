//! Secrets Manager: secrets, their envelope-encrypted versions, and the store operations on
//! them.

use super::audit::Trail;
use super::{Tag, TagFilter};
use crate::error::Result;

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

pub trait SecretStore: Send + Sync {
    /// Inserts a secret with its first version; refuses a duplicate name and a full quota.
    fn insert_secret(
        &self,
        trail: &Trail,
        s: &SecretRecord,
        first: &SecretVersion,
        limit: u64,
    ) -> Result<()>;
    fn get_secret(&self, region: &str, owner_uin: u64, name: &str) -> Result<Option<SecretRecord>>;
    fn update_secret(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        name: &str,
        f: SecretUpdate<'_>,
    ) -> Result<SecretRecord>;
    /// Deletes a secret and all its versions.
    fn delete_secret(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        name: &str,
    ) -> Result<bool>;
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
    // The trail, the record\'s three-part address and the write itself.
    #[allow(clippy::too_many_arguments)]
    fn put_secret_version(
        &self,
        trail: &Trail,
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
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        name: &str,
        version_id: &str,
    ) -> Result<bool>;
}
