//! The deployment's *system key*, and the integrity tags it makes for stored rows.
//!
//! The system key is an AES-256 key born in the HSM and kept sealed in the store like a CMK
//! version. It serves two purposes:
//! - API SecretKeys are encrypted under it (see `cam::accounts`), bound to their account and
//!   status;
//! - **integrity tags**: an HSM-computed MAC over a stored row that grants something: a CMK
//!   version's sealed material (so a blob sealed by the root key cannot be slipped in as a
//!   key version, moved to another key or version, or given another public key), import
//!   parameters, and the authorization tables. The daemon checks a row's tag when it loads
//!   the row; a row written into the database by hand fails.
//!
//! Why AES-GCM tags under the system key, rather than a MAC key of its own: every backend
//! (PKCS#11 tokens, the firmware core, the serial device) already runs AES-GCM under sealed
//! keys, so the same code works on all three with no new token mechanism and no new wire
//! request. A tag is the AES-GCM encryption of one byte with the associated data
//! `domain || digest of the row`, under a nonce the HSM chooses; checking it is decrypting
//! it. Forging one is forging an AES-GCM ciphertext without the key.
//!
//! What it does not stop (docs/security.md): on PKCS#11 the holder of the user PIN can use
//! the system key like the daemon does, so PIN and store together can still make tags;
//! separating those two is the operator's part.

use crate::error::{Error, Result};
use crate::hsm::Hsm;
use crate::store::{AuthzSealer, ImportParams, KeyVersion, MetaStore};
use keyward_shared::Algorithm;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

const SYSTEM_KEY_META: &str = "system_key";
const BACKEND_META: &str = "hsm_backend";
const DEVICE_IDENTITY_META: &str = "hsm_device_identity";
const SYSTEM_KEY_ALG: Algorithm = Algorithm::Aes256Gcm;
/// The first byte of every tag: its format.
const TAG_FORMAT: u8 = 1;
/// Tags remembered as checked; the set is emptied when full.
const VERIFIED_MAX: usize = 100_000;

/// A stored row that an integrity tag vouches for.
pub enum Subject<'a> {
    /// A CMK version: its sealed material, the backend that sealed it and, for asymmetric
    /// keys, the public key handed out for it.
    KeyVersion {
        key_id: &'a str,
        version: u32,
        backend: &'a str,
        sealed: &'a [u8],
        public_key: &'a [u8],
    },
    /// GetParametersForImport's wrapping key pair for one import token.
    ImportParams {
        token: &'a str,
        key_id: &'a str,
        sealed_private: &'a [u8],
        public_key: &'a [u8],
        valid_to: i64,
    },
    /// The authorization tables, as digested by the store.
    Authorization { digest: [u8; 32] },
}

impl<'a> Subject<'a> {
    pub fn key_version(v: &'a KeyVersion) -> Self {
        Subject::KeyVersion {
            key_id: &v.key_id,
            version: v.version,
            backend: &v.backend,
            sealed: &v.sealed,
            public_key: &v.public_key,
        }
    }

    pub fn import_params(p: &'a ImportParams) -> Self {
        Subject::ImportParams {
            token: &p.token,
            key_id: &p.key_id,
            sealed_private: &p.sealed_private,
            public_key: &p.public_key,
            valid_to: p.valid_to,
        }
    }

    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"keyward/integrity/v1\0");
        let mut field = |b: &[u8]| {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        };
        match self {
            Subject::KeyVersion {
                key_id,
                version,
                backend,
                sealed,
                public_key,
            } => {
                field(b"key-version");
                field(key_id.as_bytes());
                field(&version.to_be_bytes());
                field(backend.as_bytes());
                field(sealed);
                field(public_key);
            }
            Subject::ImportParams {
                token,
                key_id,
                sealed_private,
                public_key,
                valid_to,
            } => {
                field(b"import-params");
                field(token.as_bytes());
                field(key_id.as_bytes());
                field(sealed_private);
                field(public_key);
                field(&valid_to.to_be_bytes());
            }
            Subject::Authorization { digest } => {
                field(b"authorization");
                field(digest);
            }
        }
        h.finalize().into()
    }

    /// Names the row in errors and the log.
    fn describe(&self) -> String {
        match self {
            Subject::KeyVersion {
                key_id, version, ..
            } => format!("version {version} of CMK {key_id}"),
            Subject::ImportParams { key_id, .. } => format!("import parameters of CMK {key_id}"),
            Subject::Authorization { .. } => "the authorization tables".into(),
        }
    }
}

pub struct SystemKey {
    hsm: Arc<dyn Hsm>,
    sealed: Vec<u8>,
    /// Digests of (subject, tag) pairs already checked: a row's tag is checked by the HSM
    /// once, not on every load.
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl SystemKey {
    /// The device or root-key identity the store is pinned to, if any. The serial backend
    /// checks it before it pairs with a device, so a data directory never registers its
    /// pairing key on a device it does not belong to.
    pub fn pinned_identity(meta: &dyn MetaStore) -> Result<Option<Vec<u8>>> {
        meta.get_meta(DEVICE_IDENTITY_META)
    }

    /// Whether the store is bound to an HSM backend, i.e. holds key material sealed by it
    /// (the binding is written just before the first sealed key, the system key).
    pub fn store_is_bound(meta: &dyn MetaStore) -> Result<bool> {
        Ok(meta.get_meta(BACKEND_META)?.is_some())
    }

    /// Binds the store to the HSM backend (and its device or root-key identity) on first
    /// use, refuses another one afterwards, and loads the system key, creating it once.
    pub fn open(meta: &dyn MetaStore, hsm: Arc<dyn Hsm>) -> Result<Arc<Self>> {
        meta.insert_meta(BACKEND_META, hsm.backend().as_bytes())?;
        let bound = meta.get_meta(BACKEND_META)?.unwrap_or_default();
        if bound != hsm.backend().as_bytes() {
            return Err(Error::Config(format!(
                "this data directory belongs to HSM backend `{}`, not `{}`",
                String::from_utf8_lossy(&bound),
                hsm.backend()
            )));
        }
        if let Some(identity) = hsm.device_identity() {
            meta.insert_meta(DEVICE_IDENTITY_META, &identity)?;
            // A store bound before identities were recorded learns its identity here, once.
            if meta.get_meta(DEVICE_IDENTITY_META)?.as_deref() != Some(identity.as_slice()) {
                return Err(Error::Config(match hsm.backend() {
                    "pkcs11" => "HSM root key missing or replaced: the token's keyward-root is \
                                 not the root key this data directory's keys are sealed under \
                                 (its identity differs from the one recorded in the store); \
                                 connect the original token"
                        .into(),
                    _ => "this data directory belongs to another HSM device (its attested \
                          identity differs); connect the original device"
                        .into(),
                }));
            }
        }
        if meta.get_meta(SYSTEM_KEY_META)?.is_none() {
            let sealed = hsm.generate(SYSTEM_KEY_ALG)?;
            meta.insert_meta(SYSTEM_KEY_META, &sealed)?;
        }
        let sealed = meta
            .get_meta(SYSTEM_KEY_META)?
            .ok_or_else(|| Error::Internal("system key vanished".into()))?;
        Ok(Arc::new(SystemKey {
            hsm,
            sealed,
            verified: Mutex::new(HashSet::new()),
        }))
    }

    pub fn hsm(&self) -> &Arc<dyn Hsm> {
        &self.hsm
    }

    /// `nonce || ciphertext` of `plaintext` under the system key, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let (nonce, ct) = self
            .hsm
            .encrypt(SYSTEM_KEY_ALG, &self.sealed, aad, plaintext)?;
        let mut sealed = nonce;
        sealed.extend_from_slice(&ct);
        Ok(sealed)
    }

    /// Opens what `seal` made; `DecryptFailed` if it was sealed with other associated data.
    pub fn open_sealed(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let n = SYSTEM_KEY_ALG.nonce_len();
        if sealed.len() < n {
            return Err(Error::DecryptFailed);
        }
        let (nonce, ct) = sealed.split_at(n);
        self.hsm
            .decrypt(SYSTEM_KEY_ALG, &self.sealed, nonce, aad, ct)
    }

    /// The integrity tag of a row.
    pub fn tag(&self, subject: &Subject<'_>) -> Result<Vec<u8>> {
        let mut tag = vec![TAG_FORMAT];
        tag.extend(self.seal(&tag_aad(subject), &[TAG_FORMAT])?);
        Ok(tag)
    }

    /// Checks a row's tag; `IntegrityFailure` names the row if the tag is missing or was
    /// made for other contents.
    pub fn check(&self, subject: &Subject<'_>, tag: &[u8]) -> Result<()> {
        let memo: [u8; 32] = Sha256::new()
            .chain_update(subject.digest())
            .chain_update(tag)
            .finalize()
            .into();
        if self.verified.lock().is_ok_and(|v| v.contains(&memo)) {
            return Ok(());
        }
        let valid = match tag.split_first() {
            Some((&TAG_FORMAT, sealed)) => match self.open_sealed(&tag_aad(subject), sealed) {
                Ok(plain) => plain.as_slice() == [TAG_FORMAT],
                Err(Error::DecryptFailed) => false,
                Err(e) => return Err(e),
            },
            _ => false,
        };
        if !valid {
            let what = subject.describe();
            tracing::error!(row = %what, "integrity tag does not match: the row was written outside Keyward");
            return Err(Error::IntegrityFailure(what));
        }
        if let Ok(mut v) = self.verified.lock() {
            if v.len() >= VERIFIED_MAX {
                v.clear();
            }
            v.insert(memo);
        }
        Ok(())
    }
}

/// The store asks for a new seal inside every write that changes the authorization tables.
impl AuthzSealer for SystemKey {
    fn seal_authz(&self, digest: &[u8; 32]) -> Result<Vec<u8>> {
        self.tag(&Subject::Authorization { digest: *digest })
    }

    fn check_authz(&self, digest: &[u8; 32], seal: &[u8]) -> Result<()> {
        self.check(&Subject::Authorization { digest: *digest }, seal)
    }
}

fn tag_aad(subject: &Subject<'_>) -> Vec<u8> {
    let mut aad = b"keyward/integrity-tag/v1\0".to_vec();
    aad.extend_from_slice(&subject.digest());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hsm::EmbeddedHsm;
    use crate::store::SqliteStore;

    fn key(dir: &std::path::Path) -> Arc<SystemKey> {
        let store = SqliteStore::open(&dir.join("k.db")).unwrap();
        let hsm: Arc<dyn Hsm> = Arc::new(EmbeddedHsm::open(dir).unwrap());
        SystemKey::open(&store, hsm).unwrap()
    }

    fn version<'a>(key_id: &'a str, version: u32, sealed: &'a [u8]) -> Subject<'a> {
        Subject::KeyVersion {
            key_id,
            version,
            backend: "embedded",
            sealed,
            public_key: b"",
        }
    }

    #[test]
    fn a_tag_vouches_for_its_row_only() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(dir.path());
        let tag = k.tag(&version("k1", 1, b"blob")).unwrap();
        k.check(&version("k1", 1, b"blob"), &tag).unwrap();
        // Checked again from the memo.
        k.check(&version("k1", 1, b"blob"), &tag).unwrap();
        for other in [
            version("k2", 1, b"blob"),
            version("k1", 2, b"blob"),
            version("k1", 1, b"blob2"),
        ] {
            assert!(matches!(
                k.check(&other, &tag),
                Err(Error::IntegrityFailure(_))
            ));
        }
        for bad in [vec![], vec![TAG_FORMAT], tag[..tag.len() - 1].to_vec()] {
            assert!(matches!(
                k.check(&version("k1", 1, b"blob"), &bad),
                Err(Error::IntegrityFailure(_))
            ));
        }
    }
}
