//! Secrets and their versions as last read, by name: GetSecretValue's two reads without the
//! connection.
//!
//! Why: the store has one connection behind a mutex, and the audit writer holds it for each
//! batch's commit (an fsync, often milliseconds on a virtual disk). A read that had to wait for
//! it made GetSecretValue's p99 several times Encrypt's, which reads nothing (keys have their
//! own cache). The database is opened with an exclusive lock, so this process is its only
//! writer: every secret write in `secrets.rs` forgets the name it touches, and the cache stays
//! coherent. Entries are filled and forgotten only while the connection is held, so a read
//! can never put back a value that a write has already replaced.
//!
//! It holds what the database file holds: metadata and envelope-encrypted values (the data key
//! sealed under the secret's CMK), never a plaintext.

use crate::store::{SecretRecord, SecretVersion};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Beyond this many names the cache starts over: a bound on memory (a few hundred bytes per
/// version) that costs a hot set of this size nothing.
const MAX_NAMES: usize = 65_536;

#[derive(Default)]
pub(super) struct SecretCache {
    names: Mutex<HashMap<String, Entry>>,
}

#[derive(Default)]
struct Entry {
    record: Option<SecretRecord>,
    versions: HashMap<String, SecretVersion>,
}

/// One string per (region, owner, name): region names hold no NUL, and secret names are
/// checked to be printable ASCII before any store call.
fn key(region: &str, owner_uin: u64, name: &str) -> String {
    format!("{region}\0{owner_uin}\0{name}")
}

impl SecretCache {
    fn names(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // The map holds no invariant a panicking holder could break half-way.
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn record(&self, region: &str, owner_uin: u64, name: &str) -> Option<SecretRecord> {
        self.names()
            .get(&key(region, owner_uin, name))?
            .record
            .clone()
    }

    pub(super) fn version(
        &self,
        region: &str,
        owner_uin: u64,
        name: &str,
        version_id: &str,
    ) -> Option<SecretVersion> {
        self.names()
            .get(&key(region, owner_uin, name))?
            .versions
            .get(version_id)
            .cloned()
    }

    /// Call with the connection held, with what it just read.
    pub(super) fn put_record(&self, r: &SecretRecord) {
        self.entry(&r.region, r.owner_uin, &r.name, |e| {
            e.record = Some(r.clone())
        });
    }

    /// Call with the connection held, with what it just read.
    pub(super) fn put_version(&self, region: &str, owner_uin: u64, name: &str, v: &SecretVersion) {
        self.entry(region, owner_uin, name, |e| {
            e.versions.insert(v.version_id.clone(), v.clone());
        });
    }

    fn entry(&self, region: &str, owner_uin: u64, name: &str, f: impl FnOnce(&mut Entry)) {
        let mut names = self.names();
        if names.len() >= MAX_NAMES {
            names.clear();
        }
        f(names.entry(key(region, owner_uin, name)).or_default());
    }

    /// Call with the connection held, in every write to the secret or its versions.
    pub(super) fn forget(&self, region: &str, owner_uin: u64, name: &str) {
        self.names().remove(&key(region, owner_uin, name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(id: &str, byte: u8) -> SecretVersion {
        SecretVersion {
            version_id: id.into(),
            create_time: 1,
            is_binary: false,
            key_blob: vec![byte],
            nonce: vec![byte; 12],
            ciphertext: vec![byte; 40],
        }
    }

    #[test]
    fn a_name_is_forgotten_with_all_its_versions_and_only_it() {
        let c = SecretCache::default();
        c.put_version("ap-guangzhou", 1, "db", &version("v1", 1));
        c.put_version("ap-guangzhou", 1, "db", &version("v2", 2));
        c.put_version("ap-guangzhou", 1, "api", &version("v1", 3));
        assert_eq!(
            c.version("ap-guangzhou", 1, "db", "v2"),
            Some(version("v2", 2))
        );
        // Another owner or region is another secret.
        assert_eq!(c.version("ap-guangzhou", 2, "db", "v1"), None);
        assert_eq!(c.version("ap-beijing", 1, "db", "v1"), None);
        c.forget("ap-guangzhou", 1, "db");
        assert_eq!(c.version("ap-guangzhou", 1, "db", "v1"), None);
        assert_eq!(c.version("ap-guangzhou", 1, "db", "v2"), None);
        assert_eq!(
            c.version("ap-guangzhou", 1, "api", "v1"),
            Some(version("v1", 3))
        );
    }

    #[test]
    fn the_bound_starts_over_instead_of_growing() {
        let c = SecretCache::default();
        for i in 0..MAX_NAMES + 1 {
            c.put_version("r", 1, &format!("s{i}"), &version("v", 0));
        }
        assert_eq!(c.names().len(), 1);
        assert!(c.version("r", 1, &format!("s{MAX_NAMES}"), "v").is_some());
    }
}
