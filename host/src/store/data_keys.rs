//! Hosted data keys: records, queries and the store operations on them.

use super::audit::Trail;
use super::{KeyState, Tag, TagFilter};
use crate::error::Result;

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

pub trait DataKeyStore: Send + Sync {
    /// Inserts a hosted data key, refusing a duplicate name and a full quota.
    fn insert_data_key(&self, trail: &Trail, k: &DataKeyRecord, limit: u64) -> Result<()>;
    fn get_data_key(&self, region: &str, owner_uin: u64, id: &str)
        -> Result<Option<DataKeyRecord>>;
    fn update_data_key(
        &self,
        trail: &Trail,
        region: &str,
        owner_uin: u64,
        id: &str,
        f: DataKeyUpdate<'_>,
    ) -> Result<DataKeyRecord>;
    fn query_data_keys(&self, q: &DataKeyQuery) -> Result<(u64, Vec<DataKeyRecord>)>;
    fn count_data_keys(&self, region: &str, owner_uin: u64) -> Result<u64>;
    fn data_keys_in_state(&self, state: KeyState) -> Result<Vec<DataKeyRecord>>;
    fn delete_data_key(&self, trail: &Trail, id: &str) -> Result<bool>;
}
