//! The KMS core: CMK state machine and the cryptographic operations on CMKs. Synchronous: the
//! API layer calls it from tokio's blocking pool because both store and HSM calls block.

pub mod alias;
mod asymmetric;
mod byok;

pub use asymmetric::{rsa_decrypt_scheme, sign_algorithm_names, sign_scheme};
pub mod context;
pub mod data_keys;
pub mod envelope;
mod lifecycle;
pub mod pq;
pub mod state;

pub use lifecycle::{ReEncrypted, MANAGED_KEY_ALIAS, MANAGED_KEY_OWNER};

use crate::alarms::{self, Alarms};
use crate::cache::Cache;
use crate::cam::Caller;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hsm::{Hsm, ProtectionLevel};
use crate::integrity::{Subject, SystemKey};
use crate::store::{
    DataKeyStore, KeyQuery, KeyRecord, KeyState, KeyStore, KeyVersion, MetaStore, Tag, Trail,
};
use keyward_shared::blob::{Blob, BlobHeader};
use keyward_shared::Algorithm;
use std::sync::Arc;
use zeroize::Zeroizing;

pub const KEY_USAGE_ENCRYPT_DECRYPT: &str = "ENCRYPT_DECRYPT";
/// The asymmetric key usages Tencent documents (see `usage_algorithm`).
pub const ASYMMETRIC_KEY_USAGES: [&str; 6] = [
    "ASYMMETRIC_DECRYPT_RSA_2048",
    "ASYMMETRIC_DECRYPT_SM2",
    "ASYMMETRIC_SIGN_VERIFY_SM2",
    "ASYMMETRIC_SIGN_VERIFY_ECC",
    "ASYMMETRIC_SIGN_VERIFY_RSA_2048",
    "ASYMMETRIC_SIGN_VERIFY_ECDSA384",
];
/// What a KeyUsage asks for: the region's symmetric algorithm, or a fixed asymmetric one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageAlgorithm {
    Symmetric,
    Asymmetric(Algorithm),
}

pub fn usage_algorithm(usage: &str) -> Option<UsageAlgorithm> {
    use UsageAlgorithm::*;
    Some(match usage {
        KEY_USAGE_ENCRYPT_DECRYPT => Symmetric,
        "ASYMMETRIC_DECRYPT_RSA_2048" | "ASYMMETRIC_SIGN_VERIFY_RSA_2048" => {
            Asymmetric(Algorithm::Rsa2048)
        }
        "ASYMMETRIC_DECRYPT_SM2" | "ASYMMETRIC_SIGN_VERIFY_SM2" => Asymmetric(Algorithm::Sm2),
        "ASYMMETRIC_SIGN_VERIFY_ECC" => Asymmetric(Algorithm::EccP256),
        "ASYMMETRIC_SIGN_VERIFY_ECDSA384" => Asymmetric(Algorithm::EccP384),
        pq::USAGE_ML_KEM_768 => Asymmetric(Algorithm::MlKem768),
        pq::USAGE_ML_DSA_65 => Asymmetric(Algorithm::MlDsa65),
        _ => return None,
    })
}

pub const ORIGIN_KMS: &str = "TENCENT_KMS";
pub const ORIGIN_EXTERNAL: &str = "EXTERNAL";
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
pub const MAX_PLAINTEXT_BYTES: usize = 4096;

pub struct NewKey {
    pub alias: String,
    pub description: String,
    pub key_usage: String,
    /// CreateKey's Type: 1 KMS-generated, 2 EXTERNAL.
    pub origin_type: u64,
    pub tags: Vec<Tag>,
}

pub struct Kms {
    store: Arc<dyn KeyStore>,
    data_keys: Arc<dyn DataKeyStore>,
    hsm: Arc<dyn Hsm>,
    /// Tags every key version and import parameters, and checks them when loaded.
    system: Arc<SystemKey>,
    cfg: Arc<Config>,
    clock: Arc<dyn Clock>,
    alarms: Arc<Alarms>,
    /// Key versions never change once written, so they are cached (sealed keys are not
    /// secret). Saves a store round trip on every Encrypt/Decrypt. Dropped when material is
    /// deleted or expires, here or (through the store's change feed) on another daemon.
    versions: Cache<(String, u32), Arc<KeyVersion>>,
}

/// Bound on cached key versions; the cache is simply emptied when it is full.
const VERSION_CACHE_MAX: usize = 100_000;
/// Set once the versions of an older store have their integrity tags.
const VERSIONS_TAGGED_META: &str = "key_versions_tagged_v1";

impl Kms {
    pub fn new(
        store: Arc<dyn KeyStore>,
        data_keys: Arc<dyn DataKeyStore>,
        system: Arc<SystemKey>,
        cfg: Arc<Config>,
        clock: Arc<dyn Clock>,
        alarms: Arc<Alarms>,
    ) -> Self {
        Kms {
            store,
            data_keys,
            hsm: system.hsm().clone(),
            system,
            cfg,
            clock,
            alarms,
            versions: Cache::new(VERSION_CACHE_MAX),
        }
    }

    /// Tags, once per data directory, the key versions written before versions had
    /// integrity tags. The marker makes it once: afterwards a version without a valid tag
    /// (inserted by writing to the database) is refused, not adopted.
    pub fn tag_legacy_versions(&self, meta: &dyn MetaStore) -> Result<()> {
        if meta.get_meta(VERSIONS_TAGGED_META)?.is_some() {
            return Ok(());
        }
        for v in self.store.untagged_versions()? {
            let tag = self.system.tag(&Subject::key_version(&v))?;
            self.store.set_version_tag(&v.key_id, v.version, &tag)?;
            tracing::info!(key_id = %v.key_id, version = v.version, "key version tagged");
        }
        meta.set_meta(VERSIONS_TAGGED_META, b"1")
    }

    /// A new key version with its integrity tag.
    pub(crate) fn new_version(
        &self,
        key_id: &str,
        version: u32,
        sealed: Vec<u8>,
        public_key: Vec<u8>,
        create_time: i64,
    ) -> Result<KeyVersion> {
        let mut v = KeyVersion {
            key_id: key_id.to_string(),
            version,
            backend: self.hsm.backend().to_string(),
            sealed,
            create_time,
            public_key,
            tag: vec![],
        };
        v.tag = self.system.tag(&Subject::key_version(&v))?;
        Ok(v)
    }

    /// The trail of a change the service makes by itself (scheduled rotations and
    /// deletions): recorded as a `system` event when the audit log is on.
    pub(crate) fn system_trail(&self, record: crate::audit::record::AuditRecord) -> Trail {
        Trail::system(record, self.cfg.audit.enabled)
    }

    /// Whether the HSM backend answers a request (`/readyz`).
    pub fn hsm_answers(&self) -> Result<()> {
        self.hsm.random(16).map(|_| ())
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// How many CMKs and hosted data keys the caller's account holds in its region
    /// (GetServiceStatus).
    pub fn usage(&self, caller: &Caller) -> Result<(u64, u64)> {
        let (region, owner) = (&caller.region, caller.owner_uin);
        Ok((
            self.store.count_keys(region, owner)?,
            self.data_keys.count_data_keys(region, owner)?,
        ))
    }

    /// The alias of a key a data key belongs to, for its metadata ("" if it is gone).
    pub fn alias_of(&self, region: &str, owner_uin: u64, key_id: &str) -> String {
        self.store
            .get_key(region, owner_uin, key_id)
            .ok()
            .flatten()
            .map(|k| k.alias)
            .unwrap_or_default()
    }

    /// The symmetric algorithm of a served region.
    pub fn region_algorithm(&self, region: &str) -> Result<Algorithm> {
        self.cfg
            .region(region)
            .ok_or_else(|| Error::UnsupportedRegion(region.to_string()))?
            .symmetric_algorithm()
    }

    pub fn protection_level(&self, alg: Algorithm) -> ProtectionLevel {
        match alg.is_post_quantum() {
            true => ProtectionLevel::Software,
            false => self.hsm.protection_level(alg),
        }
    }

    pub fn create_key(&self, caller: &Caller, req: NewKey) -> Result<KeyRecord> {
        caller.check_new(&caller.key_resource("*"), &req.tags)?;
        alias::validate(&req.alias)?;
        check_description(&req.description)?;
        let origin = match req.origin_type {
            1 => ORIGIN_KMS,
            2 => ORIGIN_EXTERNAL,
            other => return Err(Error::InvalidType(format!("invalid Type {other}"))),
        };
        let algorithm = match usage_algorithm(&req.key_usage) {
            Some(UsageAlgorithm::Symmetric) => self.region_algorithm(&caller.region)?,
            Some(UsageAlgorithm::Asymmetric(alg)) => {
                if !self.supports(alg) {
                    return Err(Error::UnsupportedKeyUsage(format!(
                        "KeyUsage {} is not available with this HSM backend",
                        req.key_usage
                    )));
                }
                if origin == ORIGIN_EXTERNAL {
                    return Err(Error::InvalidType(
                        "Type 2 (imported material) is for ENCRYPT_DECRYPT keys only".into(),
                    ));
                }
                alg
            }
            None => {
                return Err(Error::InvalidKeyUsage(format!(
                    "invalid KeyUsage `{}`",
                    req.key_usage
                )))
            }
        };
        let now = self.clock.now();
        let key_id = uuid::Uuid::new_v4().to_string();
        let version = if origin == ORIGIN_KMS {
            let (sealed, public_key) = if algorithm.is_symmetric() {
                (self.hsm.generate(algorithm)?, vec![])
            } else if algorithm.is_post_quantum() {
                self.pq_generate(algorithm, &key_id, 1)?
            } else {
                self.hsm.generate_key_pair(algorithm)?
            };
            Some(self.new_version(&key_id, 1, sealed, public_key, now)?)
        } else {
            None
        };
        let key = KeyRecord {
            key_id,
            region: caller.region.clone(),
            owner_uin: caller.owner_uin,
            creator_uin: caller.uin,
            alias: req.alias,
            description: req.description,
            key_usage: req.key_usage,
            origin: origin.to_string(),
            owner: "user".into(),
            algorithm,
            state: if version.is_some() {
                KeyState::Enabled
            } else {
                KeyState::PendingImport
            },
            create_time: now,
            deletion_date: 0,
            rotation_enabled: false,
            rotate_days: 0,
            next_rotate_time: 0,
            last_rotate_time: 0,
            current_version: u32::from(version.is_some()),
            tags: req.tags,
            last_manual_rotate: 0,
            last_alarm_time: 0,
            valid_to: 0,
            material_kcv: vec![],
        };
        caller
            .trail
            .resource("kms_key", &caller.key_resource(&key.key_id));
        self.store.insert_key(
            &caller.trail,
            &key,
            version.as_ref(),
            self.cfg.limits.cmk_limit,
        )?;
        Ok(key)
    }

    pub fn describe_key(&self, caller: &Caller, key_id: &str) -> Result<KeyRecord> {
        check_key_id(key_id)?;
        let key = self
            .store
            .get_key(&caller.region, caller.owner_uin, key_id)?
            .ok_or_else(|| Error::CmkNotFound(key_id.to_string()))?;
        caller.check_key(&key)?;
        Ok(key)
    }

    /// A page of keys, of those the caller may see.
    pub fn query_keys(&self, caller: &Caller, q: &KeyQuery) -> Result<(u64, Vec<KeyRecord>)> {
        crate::cam::visible_page(
            caller,
            q.offset,
            q.limit,
            |offset, limit| {
                let mut q = q.clone();
                (q.offset, q.limit) = (offset, limit);
                self.store.query_keys(&q)
            },
            |k| caller.may_see_key(k),
        )
    }

    /// Encrypts under the key's newest version. Returns the blob and the key id.
    pub fn encrypt(
        &self,
        caller: &Caller,
        key_id: &str,
        plaintext: &[u8],
        context: Option<&str>,
    ) -> Result<(Vec<u8>, String)> {
        let ctx = context::canonical(context)?;
        let key = self.key_for(caller, key_id, state::Op::Encrypt)?;
        let version = self.version(caller, &key, key.current_version)?;
        let blob = self.seal_data(&key, &version, &ctx, plaintext)?;
        Ok((blob, key.key_id))
    }

    fn seal_data(
        &self,
        key: &KeyRecord,
        version: &KeyVersion,
        ctx: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let uuid = uuid::Uuid::parse_str(&key.key_id)
            .map_err(|_| Error::Internal(format!("stored key id {} is not a UUID", key.key_id)))?;
        let header = BlobHeader {
            key_id: *uuid.as_bytes(),
            key_version: version.version,
            algorithm: key.algorithm,
        };
        let aad = aad(&header, ctx);
        let (nonce, ciphertext) =
            self.hsm
                .encrypt(key.algorithm, &version.sealed, &aad, plaintext)?;
        Blob {
            header,
            nonce: &nonce,
            ciphertext: &ciphertext,
        }
        .to_vec()
        .map_err(|e| Error::Hsm(format!("HSM returned an unusable nonce: {e}")))
    }

    /// Decrypts a blob produced by `encrypt` or `generate_data_key`.
    pub fn decrypt(
        &self,
        caller: &Caller,
        blob: &[u8],
        context: Option<&str>,
    ) -> Result<(String, Zeroizing<Vec<u8>>)> {
        let ctx = context::canonical(context)?;
        let (key, _, plaintext) = self.open_blob(caller, blob, &ctx, state::Op::Decrypt)?;
        Ok((key.key_id, plaintext))
    }

    /// Authenticates and decrypts a blob; returns its key, the key version it names, and the
    /// plaintext.
    fn open_blob(
        &self,
        caller: &Caller,
        blob: &[u8],
        ctx: &[u8],
        op: state::Op,
    ) -> Result<(KeyRecord, u32, Zeroizing<Vec<u8>>)> {
        let parsed = Blob::parse(blob).map_err(|e| Error::InvalidCiphertext(e.to_string()))?;
        let key_id = uuid::Uuid::from_bytes(parsed.header.key_id).to_string();
        let key = self
            .store
            .get_key(&caller.region, caller.owner_uin, &key_id)?
            .ok_or_else(|| Error::CmkNotFound(key_id.clone()))?;
        caller.check_key(&key)?;
        caller
            .trail
            .key_version(&key.key_id, parsed.header.key_version);
        self.gate(op, &key)?;
        if parsed.header.algorithm != key.algorithm {
            return Err(Error::DecryptFailed);
        }
        let version = self
            .cached_version(&key.key_id, parsed.header.key_version)?
            .ok_or(Error::DecryptFailed)?;
        let aad = aad(&parsed.header, ctx);
        let plaintext = self.hsm.decrypt(
            key.algorithm,
            &version.sealed,
            parsed.nonce,
            &aad,
            parsed.ciphertext,
        )?;
        Ok((key, parsed.header.key_version, plaintext))
    }

    /// The one path of every CMK operation: load the key (`CmkNotFound`), authorize the
    /// caller on it (and note it in the audit trail), then `gate` it for `op`. Changes run the
    /// same steps inside their store transaction (`lifecycle::update`).
    pub(crate) fn key_for(
        &self,
        caller: &Caller,
        key_id: &str,
        op: state::Op,
    ) -> Result<KeyRecord> {
        let key = self.describe_key(caller, key_id)?;
        self.gate(op, &key)?;
        Ok(key)
    }

    /// Whether `key` may serve `op`: symmetric operations need an ENCRYPT_DECRYPT key,
    /// operations on material need material that has not expired, and the state table
    /// decides the rest. A refused use of a key that waits for deletion also raises an alarm
    /// (someone still depends on a key that is about to disappear).
    fn gate(&self, op: state::Op, key: &KeyRecord) -> Result<()> {
        if op.is_symmetric_crypto() && key.key_usage != KEY_USAGE_ENCRYPT_DECRYPT {
            return Err(Error::Unsupported(format!(
                "CMK {} has KeyUsage {}; {op:?} needs an ENCRYPT_DECRYPT key",
                key.key_id, key.key_usage
            )));
        }
        if op.uses_material() && key.valid_to > 0 && key.valid_to <= self.clock.now() {
            return Err(Error::CmkStateNotSupport(format!(
                "the imported material of CMK {} expired at {}",
                key.key_id, key.valid_to
            )));
        }
        let res = state::check(op, key);
        if let (Err(Error::KeyPendingDelete(_)), true) = (&res, op.is_symmetric_crypto()) {
            self.alarms.raise(
                self.clock.now(),
                &key.region,
                &key.key_id,
                alarms::KIND_PENDING_DELETE_USED,
                format!(
                    "{op:?} was attempted with CMK {} which is pending deletion on {}",
                    key.key_id, key.deletion_date
                ),
            )?;
        }
        res
    }

    /// Creates a data key of `len` bytes from the HSM's RNG and encrypts it under the CMK.
    pub fn generate_data_key(
        &self,
        caller: &Caller,
        key_id: &str,
        len: usize,
        context: Option<&str>,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>, String)> {
        let ctx = context::canonical(context)?;
        let key = self.key_for(caller, key_id, state::Op::GenerateDataKey)?;
        let version = self.version(caller, &key, key.current_version)?;
        let plaintext = self.hsm.random(len)?;
        let blob = self.seal_data(&key, &version, &ctx, &plaintext)?;
        Ok((plaintext, blob, key.key_id))
    }

    pub fn random(&self, len: usize) -> Result<Zeroizing<Vec<u8>>> {
        self.hsm.random(len)
    }

    pub(crate) fn version(
        &self,
        caller: &Caller,
        key: &KeyRecord,
        version: u32,
    ) -> Result<Arc<KeyVersion>> {
        caller.trail.key_version(&key.key_id, version);
        self.cached_version(&key.key_id, version)?
            .ok_or_else(|| Error::Internal(format!("key {} lacks version {version}", key.key_id)))
    }

    /// Drops cached versions of a key whose material changed (BYOK delete/re-import, expiry).
    pub(crate) fn forget_versions(&self, key_id: &str) {
        self.versions.invalidate(|(id, _), _| id == key_id);
    }

    /// The version cache, for the store's change feed (`coherence`).
    pub(crate) fn version_cache(&self) -> &Cache<(String, u32), Arc<KeyVersion>> {
        &self.versions
    }

    fn cached_version(&self, key_id: &str, version: u32) -> Result<Option<Arc<KeyVersion>>> {
        let cache_key = (key_id.to_string(), version);
        if let Some(v) = self.versions.get(&cache_key) {
            return Ok(Some(v));
        }
        let generation = self.versions.generation();
        let Some(v) = self.store.get_version(key_id, version)? else {
            return Ok(None);
        };
        // Checked once, before the version enters the cache.
        self.system.check(&Subject::key_version(&v), &v.tag)?;
        let v = Arc::new(v);
        self.versions.insert(generation, cache_key, v.clone());
        Ok(Some(v))
    }
}

/// AEAD associated data: the blob's bound prefix, then the canonical context.
fn aad(header: &BlobHeader, ctx: &[u8]) -> Vec<u8> {
    let mut aad = header.bound_prefix().to_vec();
    aad.extend_from_slice(ctx);
    aad
}

fn check_description(d: &str) -> Result<()> {
    if d.len() > MAX_DESCRIPTION_BYTES {
        return Err(Error::InvalidValue(format!(
            "Description must be at most {MAX_DESCRIPTION_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Key ids are UUIDs here; anything that cannot be one is refused before touching the store.
pub fn check_key_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::MissingParameter("KeyId must not be empty".into()));
    }
    if id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(Error::InvalidKeyId(format!("invalid KeyId `{id}`")));
    }
    Ok(())
}

pub const MAX_BATCH: usize = 100;

/// Batch id lists: 1 to 100 well-formed ids, no duplicates.
pub fn check_batch(ids: &[String]) -> Result<()> {
    if ids.is_empty() || ids.len() > MAX_BATCH {
        return Err(Error::InvalidValue(format!(
            "KeyIds must hold 1 to {MAX_BATCH} entries"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        check_key_id(id)?;
        if !seen.insert(id.as_str()) {
            return Err(Error::DuplicatedKeyId(id.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::Alarms;
    use crate::clock::SystemClock;
    use crate::hsm::EmbeddedHsm;
    use crate::store::SqliteStore;

    fn kms(dir: &std::path::Path) -> Kms {
        let store = Arc::new(SqliteStore::open(&dir.join("k.db")).unwrap());
        let hsm: Arc<dyn Hsm> = Arc::new(EmbeddedHsm::open(dir).unwrap());
        let alarms = Arc::new(Alarms::new(store.clone()));
        let system = SystemKey::open(store.as_ref(), hsm).unwrap();
        Kms::new(
            store.clone(),
            store,
            system,
            Arc::new(Config::default()),
            Arc::new(SystemClock),
            alarms,
        )
    }

    fn caller() -> Caller {
        Caller::new(1, 1, "ap-guangzhou")
    }

    #[test]
    fn every_tampered_blob_byte_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let kms = kms(dir.path());
        let key = kms
            .create_key(
                &caller(),
                NewKey {
                    alias: "k".into(),
                    description: String::new(),
                    key_usage: KEY_USAGE_ENCRYPT_DECRYPT.into(),
                    origin_type: 1,
                    tags: vec![],
                },
            )
            .unwrap();
        let (blob, _) = kms
            .encrypt(&caller(), &key.key_id, b"payload", Some(r#"{"a":"b"}"#))
            .unwrap();
        let (_, pt) = kms
            .decrypt(&caller(), &blob, Some(r#"{"a": "b"}"#))
            .unwrap();
        assert_eq!(pt.as_slice(), b"payload");
        for i in 0..blob.len() {
            for bit in [0x01u8, 0x80] {
                let mut t = blob.clone();
                t[i] ^= bit;
                assert!(
                    kms.decrypt(&caller(), &t, Some(r#"{"a":"b"}"#)).is_err(),
                    "byte {i} bit {bit:#x} accepted"
                );
            }
        }
        for cut in 0..blob.len() {
            assert!(kms
                .decrypt(&caller(), &blob[..cut], Some(r#"{"a":"b"}"#))
                .is_err());
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(kms
            .decrypt(&caller(), &longer, Some(r#"{"a":"b"}"#))
            .is_err());
    }
}
