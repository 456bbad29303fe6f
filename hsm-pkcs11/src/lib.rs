//! PKCS#11 backend for Keyward.
//!
//! # Key hierarchy
//!
//! Two long-lived AES-256 keys live on the token, found by label (and created on first use):
//!
//! * **Root key** ([`ROOT_KEY_LABEL`]): wrap/unwrap only. Every AES data key Keyward hands out
//!   is generated inside the token as a session object, wrapped under the root key with
//!   `CKM_AES_KEY_WRAP_PAD` (RFC 5649), and returned to the caller as an opaque sealed blob.
//!   To use a data key we `C_UnwrapKey` the blob back into a *sensitive, non-extractable*
//!   session object and run AES-GCM inside the token. The plaintext of an AES data key never
//!   exists outside the token.
//! * **Seal key** ([`SEAL_KEY_LABEL`]): encrypt/decrypt only (AES-GCM). It protects
//!   *software* key material: keys for algorithms the token cannot run (e.g. SM4), which must
//!   be decrypted into host memory to be used at all.
//!
//! Both are token objects with `CKA_SENSITIVE=true`, `CKA_EXTRACTABLE=false`,
//! `CKA_MODIFIABLE=false` and `CKA_COPYABLE=false`, so their values can never be read or
//! wrapped out, and a PIN holder cannot later change their attributes or clone them with a
//! weaker template. Whenever a session locates them (at open, for replacement sessions, and
//! after a logout invalidated the handles) their attributes are re-checked, including
//! `CKA_LOCAL`, `CKA_ALWAYS_SENSITIVE` and `CKA_NEVER_EXTRACTABLE`: a key a PIN holder
//! imported under our label (so they know its value) is refused with [`Error::KeyPolicy`]
//! instead of silently wrapping new data keys under it.
//!
//! ## Why the root key carries `CKA_UNWRAP_TEMPLATE`
//!
//! Sealed blobs are not secret from whoever holds the user PIN: they are stored by the
//! application. Without an unwrap template, a PIN holder could call
//! `C_UnwrapKey(root, blob, {CKA_SENSITIVE=false, CKA_EXTRACTABLE=true})` and then simply read
//! `CKA_VALUE`, recovering every data key. The root key is therefore created with
//! `CKA_UNWRAP_TEMPLATE = {CKA_SENSITIVE=true, CKA_EXTRACTABLE=false}`: the token refuses any
//! C_UnwrapKey under the root key whose template contradicts it (`CKR_TEMPLATE_INCONSISTENT`
//! on SoftHSM2, which even insists that the caller's template repeat both values). Because a
//! token that silently ignored the template would give a false sense of security,
//! [`Pkcs11Hsm::open`] probes it: it wraps a throw-away key and checks that unwrapping it as
//! extractable/non-sensitive is refused, and that an unwrap that does not mention those
//! attributes is either refused or still yields a sensitive, non-extractable key.
//!
//! The root key also has `CKA_ENCRYPT=false`/`CKA_DECRYPT=false`. AES-KWP is built from raw
//! AES, so a root key with `CKA_DECRYPT` would let a PIN holder `C_Decrypt(CKM_AES_ECB)` a
//! wrapped blob and undo the wrap by hand (SoftHSM2 defaults `CKA_DECRYPT` to true, so this
//! has to be explicit). `CKA_ALLOWED_MECHANISMS = [CKM_AES_KEY_WRAP_PAD]` narrows it further.
//!
//! ## Why `CKM_AES_KEY_WRAP_PAD`
//!
//! It is the standard, deterministic, integrity-protected AES key-wrap (RFC 5649) and is
//! what PKCS#11 tokens broadly support as a *wrapping* mechanism. SoftHSM2 refuses AES-GCM
//! for `C_WrapKey`/`C_UnwrapKey`. Its built-in integrity check makes a tampered blob fail to
//! unwrap ([`Error::BadSealedKey`]). Determinism is harmless here: each wrapped key is fresh
//! random key material.
//!
//! ## Why software keys use a separate seal key
//!
//! Software material must come back to the host in plaintext, so it is *encrypted* (AES-GCM,
//! `C_Decrypt`), not *wrapped*. Doing that with the root key would require giving the root key
//! `CKA_DECRYPT=true`, and then any PIN holder could decrypt root-wrapped blobs as data,
//! bypassing the unwrap template. A dedicated seal key keeps the two capabilities apart: the
//! root key can only unwrap into non-extractable keys; the seal key can only do AES-GCM on
//! software material, authenticated with the fixed AAD `b"keyward/software-key/v1"`.
//!
//! # Sealed-blob formats (opaque to callers)
//!
//! * `0x02 || AES-KWP(root, data key)` (41 bytes): an AES-256 data key.
//! * `0x03 || nonce[12] || AES-GCM(seal, material, aad = "keyward/software-key/v1") || tag[16]`:
//!   software material.
//! * `0x04 || kind || AES-KWP(root, PKCS#8 private key)`: an RSA-2048 (kind 0x01), P-256 (0x02)
//!   or P-384 (0x03) private key generated in the token; see "Asymmetric keys" below.
//!
//! A blob with the wrong format byte or length is rejected with [`Error::BadSealedKey`].
//!
//! # Asymmetric keys
//!
//! RSA-2048 and ECDSA P-256/P-384 key pairs are generated in the token as session objects; the
//! private half is wrapped once under the root key (SoftHSM2 wraps it as PKCS#8 inside AES-KWP)
//! and both objects are destroyed. To sign or decrypt, the blob is unwrapped into a sensitive,
//! non-extractable session object (the root key's unwrap template applies exactly as for AES
//! data keys) and cached in the same per-session LRU. The public key is returned as a DER
//! SubjectPublicKeyInfo built from the public object's attributes.
//!
//! A sealed RSA-2048 pair can also receive AES-256 material from outside (BYOK):
//! [`Pkcs11Hsm::import_wrapped_aes256`] runs `C_UnwrapKey` with the RSA private key (unwrapped
//! for that purpose into its own cached object with `CKA_UNWRAP=true`, apart from the
//! sign/decrypt object, which has `CKA_UNWRAP=false`) and reseals the result as an ordinary
//! `0x02` data key, returning the key check value `AES-256-ECB(key, 0^16)` that
//! [`Pkcs11Hsm::aes_key_check_value`] also computes.
//!
//! What the token can do is established once, at [`Pkcs11Hsm::open`], by running that whole
//! cycle with throw-away keys for each kind and mechanism ([`Pkcs11Hsm::capabilities`]); the
//! mechanism list alone cannot tell, e.g., that SoftHSM2 2.6.1 lists `CKM_RSA_PKCS_OAEP` but
//! answers `CKR_ARGUMENTS_BAD` to any hash but SHA-1. The RSA-2048 key generation makes this
//! probe cost a few hundred milliseconds per `open` on SoftHSM2.
//!
//! # Concurrency and performance
//!
//! [`Pkcs11Hsm`] is `Send + Sync`. It owns a pool of `pool_size` logged-in R/W sessions; each
//! call checks one out for its duration. Each session caches up to 1024 unwrapped data keys
//! (LRU, keyed by SHA-256 of the sealed blob) because unwrapping costs about four AES-GCM
//! operations on SoftHSM2. Evicted keys are destroyed; all cached keys disappear when the
//! session is closed.
//!
//! The module is loaded and `C_Initialize`d once per process and path and never finalized
//! (another [`Pkcs11Hsm`] or library in the process may still be using it). For SoftHSM2
//! this means `SOFTHSM2_CONF` is read once, at the first [`Pkcs11Hsm::open`].
//!
//! PKCS#11 login state belongs to the process, not the session. If this process is already
//! logged in to the token (another [`Pkcs11Hsm`] on it is open), `C_Login` answers
//! `CKR_USER_ALREADY_LOGGED_IN`, which we must treat as success, so `open` cannot detect a
//! wrong PIN in that situation.
//!
//! Provisioning note: the first `open` on an empty token creates the two keys. Two processes
//! doing that first open at the same moment could both create them; `open` then refuses to
//! run (duplicate labels) rather than pick one. Provision with a single process.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod blob;
mod cache;
mod capabilities;
mod decrypt;
mod error;
mod import;
mod keypair;
mod keys;
mod kind;
mod pool;
mod probe;
mod sign;
mod templates;
mod unwrap;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use cryptoki::slot::Slot;
use cryptoki::types::{AuthPin, Ulong};
use zeroize::Zeroizing;

use crate::blob::{
    parse_aes_blob, parse_software_blob, FORMAT_KWP_AES, FORMAT_SOFTWARE, GCM_NONCE_LEN,
    GCM_TAG_LEN, KWP_AES256_LEN, MAX_SOFTWARE_LEN,
};
use crate::error::{map_decrypt_error, rv_of};
use crate::keys::TokenKeys;
use crate::pool::{Pool, SessionFactory, SessionGuard};
use crate::unwrap::with_data_key;

pub use crate::capabilities::Capabilities;
pub use crate::error::Error;
pub use crate::import::KCV_LEN;
pub use crate::keypair::SealedKeyPair;
pub use crate::kind::{AsymKind, RsaDecryptMechanism, SignMechanism};
pub use crate::templates::{ROOT_KEY_LABEL, SEAL_KEY_LABEL};

/// Fixed AAD for software material, so a seal-key ciphertext made for another purpose can
/// never be accepted as key material.
const SOFTWARE_AAD: &[u8] = b"keyward/software-key/v1";

const GCM_TAG_BITS: u64 = 128;
/// Upper bound for [`Pkcs11Hsm::random`] and [`Pkcs11Hsm::generate_software_sealed`].
const MAX_RANDOM_LEN: usize = 4096;

/// How to reach the token.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// Token label; trailing spaces are ignored (PKCS#11 pads labels with spaces).
    pub token_label: String,
    /// User PIN.
    pub pin: Zeroizing<String>,
    /// Number of R/W sessions kept open; also the maximum number of concurrent token calls.
    pub pool_size: usize,
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("pin", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// A logged-in connection to one token, with the Keyward key hierarchy on it.
pub struct Pkcs11Hsm {
    pool: Pool,
    token_label: String,
    caps: Capabilities,
}

// The host shares one instance across threads; fail the build if that ever stops holding.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pkcs11Hsm>();
};

impl fmt::Debug for Pkcs11Hsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Hsm")
            .field("token_label", &self.token_label)
            .field("pool_size", &self.pool.size())
            .field("capabilities", &self.caps)
            .finish_non_exhaustive()
    }
}

/// Which key an AES-GCM call uses.
#[derive(Clone, Copy)]
enum GcmKey {
    Seal,
    Data(ObjectHandle),
}

impl GcmKey {
    fn handle(self, keys: TokenKeys) -> ObjectHandle {
        match self {
            GcmKey::Seal => keys.seal,
            GcmKey::Data(h) => h,
        }
    }
}

impl Pkcs11Hsm {
    /// Load and initialise the module, find the token, open and log in `pool_size` sessions,
    /// and find (or create) and vet the root and seal keys.
    pub fn open(cfg: &Pkcs11Config) -> Result<Self, Error> {
        if cfg.pool_size == 0 {
            return Err(Error::InvalidConfig("pool_size must be at least 1"));
        }
        let pkcs11 = load_module(&cfg.module)?;
        let label = cfg.token_label.trim_end_matches(' ').to_owned();
        let slot = find_slot(&pkcs11, &label)?;
        let factory = SessionFactory {
            pkcs11,
            slot,
            pin: AuthPin::from(cfg.pin.as_str()),
        };

        // Provision on the first session, then make it the first pool member. If anything
        // fails, dropping it closes it and destroys any probe objects left behind.
        let first = factory.open_session()?;
        let root = keys::provision(&first)?;
        let caps = probe::probe_capabilities(&factory.pkcs11, factory.slot, &first, root)?;
        let mut sessions = Vec::with_capacity(cfg.pool_size);
        sessions.push(factory.adopt(first)?);
        for _ in 1..cfg.pool_size {
            sessions.push(factory.open()?);
        }

        Ok(Pkcs11Hsm {
            pool: Pool::new(factory, sessions),
            token_label: label,
            caps,
        })
    }

    /// Generate an AES-256 key inside the token and return it wrapped under the root key.
    pub fn generate_aes256_sealed(&self) -> Result<Vec<u8>, Error> {
        let mut s = self.pool.checkout()?;
        let key = s.call("C_GenerateKey", |s, _| {
            s.generate_key(
                &Mechanism::AesKeyGen,
                &templates::generated_data_key_template(),
            )
        })?;
        let wrapped = s.call("C_WrapKey", |s, k| {
            s.wrap_key(&Mechanism::AesKeyWrapPad, k.root, key)
        });
        // Destroy the extractable copy before even looking at the wrap result, so it never
        // outlives this call on any path.
        if let Err(e) = s.call("C_DestroyObject", |s, _| s.destroy_object(key)) {
            // Closing the session destroys all of its session objects; do that rather than
            // leave an extractable key behind.
            s.retire();
            return Err(e);
        }
        let wrapped = wrapped?;
        if wrapped.len() != KWP_AES256_LEN {
            return Err(Error::KeyPolicy {
                label: ROOT_KEY_LABEL,
                reason: format!(
                    "token produced a {}-byte AES-KWP blob, expected {KWP_AES256_LEN}",
                    wrapped.len()
                ),
            });
        }
        let mut blob = Vec::with_capacity(1 + wrapped.len());
        blob.push(FORMAT_KWP_AES);
        blob.extend_from_slice(&wrapped);
        Ok(blob)
    }

    /// Generate `len` bytes of secret material for an algorithm the token cannot run natively
    /// (e.g. SM4, len 16) and return it sealed (encrypted) under the seal key. Never returns
    /// the plaintext.
    ///
    /// The material comes from the token's RNG and is zeroized as soon as it is sealed.
    pub fn generate_software_sealed(&self, len: usize) -> Result<Vec<u8>, Error> {
        if len == 0 || len > MAX_RANDOM_LEN {
            return Err(Error::BadLength);
        }
        let mut s = self.pool.checkout()?;
        let mut material = Zeroizing::new(vec![0u8; len]);
        s.call("C_GenerateRandom", |s, _| {
            s.generate_random_slice(&mut material)
        })?;
        seal_with(&mut s, &material)
    }

    /// Seal caller-supplied software-key material under the seal key (AES-GCM, with the fixed
    /// AAD `b"keyward/software-key/v1"`).
    pub fn seal_software(&self, material: &[u8]) -> Result<Vec<u8>, Error> {
        if material.is_empty() || material.len() > MAX_SOFTWARE_LEN {
            return Err(Error::BadLength);
        }
        let mut s = self.pool.checkout()?;
        seal_with(&mut s, material)
    }

    /// Open a software-sealed blob; returns the material for a host-memory operation.
    ///
    /// A blob that fails authentication is reported as [`Error::BadSealedKey`] (it is the
    /// blob that is bad, not a caller's data ciphertext).
    pub fn unseal_software(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let (nonce, ct) = parse_software_blob(sealed)?;
        let mut s = self.pool.checkout()?;
        match gcm_decrypt(&mut s, GcmKey::Seal, nonce, SOFTWARE_AAD, ct) {
            Err(Error::AuthenticationFailed) => Err(Error::BadSealedKey),
            other => other,
        }
    }

    /// AES-256-GCM with a 12-byte nonce generated inside the token (C_GenerateRandom) and
    /// 128-bit tag; returns (nonce, ciphertext||tag).
    pub fn aes_gcm_encrypt(
        &self,
        sealed: &[u8],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let wrapped = parse_aes_blob(sealed)?;
        let mut s = self.pool.checkout()?;
        let nonce: [u8; GCM_NONCE_LEN] = s.nonce()?;
        let ct = with_data_key(&mut s, sealed, wrapped, |s, key| {
            gcm_encrypt(s, GcmKey::Data(key), &nonce, aad, plaintext)
        })?;
        Ok((nonce.to_vec(), ct))
    }

    /// AES-256-GCM decryption of `ciphertext` (ciphertext||tag) with the sealed data key.
    ///
    /// Returns [`Error::BadLength`] for a nonce that is not 12 bytes and
    /// [`Error::AuthenticationFailed`] when the tag does not verify (including ciphertexts
    /// shorter than the tag).
    pub fn aes_gcm_decrypt(
        &self,
        sealed: &[u8],
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let wrapped = parse_aes_blob(sealed)?;
        if nonce.len() != GCM_NONCE_LEN {
            return Err(Error::BadLength);
        }
        if ciphertext.len() < GCM_TAG_LEN {
            return Err(Error::AuthenticationFailed);
        }
        let mut s = self.pool.checkout()?;
        with_data_key(&mut s, sealed, wrapped, |s, key| {
            gcm_decrypt(s, GcmKey::Data(key), nonce, aad, ciphertext)
        })
    }

    /// Key check value of a sealed AES-256 data key (format 0x02), computed in the token:
    /// `KCV = AES-256-ECB(key, 0^16)`, all 16 bytes (see [`KCV_LEN`]).
    ///
    /// Agrees with the KCV returned by [`Pkcs11Hsm::import_wrapped_aes256`] for the same
    /// material, so a caller can recognise material it imported before. The KCV is a
    /// deterministic function of the key: it reveals whether two sealed keys hold the same
    /// material, and nothing else usable about the key.
    pub fn aes_key_check_value(&self, sealed: &[u8]) -> Result<[u8; KCV_LEN], Error> {
        let wrapped = parse_aes_blob(sealed)?;
        let mut s = self.pool.checkout()?;
        with_data_key(&mut s, sealed, wrapped, import::key_check_value)
    }

    /// `len` random bytes from the token's RNG (`C_GenerateRandom`), 1..=4096.
    pub fn random(&self, len: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
        if len == 0 || len > MAX_RANDOM_LEN {
            return Err(Error::BadLength);
        }
        let mut s = self.pool.checkout()?;
        let mut buf = Zeroizing::new(vec![0u8; len]);
        s.call("C_GenerateRandom", |s, _| s.generate_random_slice(&mut buf))?;
        Ok(buf)
    }

    /// Label of the token this instance is connected to (without PKCS#11 space padding).
    pub fn token_label(&self) -> &str {
        &self.token_label
    }
}

/// AES-GCM-seal software material under the seal key: `0x03 || nonce || ct||tag`.
fn seal_with(s: &mut SessionGuard<'_>, material: &[u8]) -> Result<Vec<u8>, Error> {
    let nonce: [u8; GCM_NONCE_LEN] = s.nonce()?;
    let ct = gcm_encrypt(s, GcmKey::Seal, &nonce, SOFTWARE_AAD, material)?;
    let mut blob = Vec::with_capacity(1 + GCM_NONCE_LEN + ct.len());
    blob.push(FORMAT_SOFTWARE);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ct);
    Ok(blob)
}

/// Load and `C_Initialize` a module once per process and path.
///
/// Loading the same module twice would give us the same library instance anyway (the
/// dynamic loader shares it), and a second `C_Initialize` returns
/// `CKR_CRYPTOKI_ALREADY_INITIALIZED`. Keeping one context per path avoids that and,
/// because the context is never dropped, the module is never unloaded while initialised.
fn load_module(path: &Path) -> Result<Pkcs11, Error> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        // Only held for a map lookup/insert and the load itself; the map stays consistent.
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(pkcs11) = modules.get(&key) {
        return Ok(pkcs11.clone());
    }
    let pkcs11 = Pkcs11::new(&key).map_err(Error::pkcs11("C_GetFunctionList"))?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        // Someone else in this process (another library, a test) initialised it already.
        Err(e) if rv_of(&e) == Some(RvError::CryptokiAlreadyInitialized) => {}
        Err(e) => return Err(Error::pkcs11("C_Initialize")(e)),
    }
    modules.insert(key, pkcs11.clone());
    Ok(pkcs11)
}

/// The one slot whose token label equals `label` (PKCS#11 pads labels with spaces).
fn find_slot(pkcs11: &Pkcs11, label: &str) -> Result<Slot, Error> {
    let slots = pkcs11
        .get_slots_with_token()
        .map_err(Error::pkcs11("C_GetSlotList"))?;
    let mut found = None;
    for slot in slots {
        // A slot whose token cannot be queried (e.g. just removed) cannot be the one we want.
        let Ok(info) = pkcs11.get_token_info(slot) else {
            continue;
        };
        if info.label().trim_end_matches(' ') == label {
            if found.is_some() {
                return Err(Error::AmbiguousToken(label.to_owned()));
            }
            found = Some(slot);
        }
    }
    found.ok_or_else(|| Error::TokenNotFound(label.to_owned()))
}

/// CKM_AES_GCM parameters. cryptoki's `GcmParams` borrows the IV mutably (the C struct has a
/// non-const pointer), so callers pass a scratch copy of the nonce.
fn gcm_params<'a>(
    iv: &'a mut [u8; GCM_NONCE_LEN],
    aad: &'a [u8],
) -> Result<Mechanism<'a>, CryptokiError> {
    // Only fails if a length does not fit in CK_ULONG.
    GcmParams::new(iv, aad, Ulong::new(GCM_TAG_BITS as _)).map(Mechanism::AesGcm)
}

fn nonce_array(nonce: &[u8]) -> Result<[u8; GCM_NONCE_LEN], Error> {
    nonce.try_into().map_err(|_| Error::BadLength)
}

fn gcm_encrypt(
    s: &mut SessionGuard<'_>,
    key: GcmKey,
    nonce: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    let nonce = nonce_array(nonce)?;
    s.call("C_EncryptInit/C_Encrypt", |s, k| {
        let mut iv = nonce;
        s.encrypt(&gcm_params(&mut iv, aad)?, key.handle(k), plaintext)
    })
}

fn gcm_decrypt(
    s: &mut SessionGuard<'_>,
    key: GcmKey,
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let nonce = nonce_array(nonce)?;
    s.call("C_DecryptInit/C_Decrypt", |s, k| {
        let mut iv = nonce;
        s.decrypt(&gcm_params(&mut iv, aad)?, key.handle(k), ciphertext)
    })
    .map(Zeroizing::new)
    .map_err(map_decrypt_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn config_debug_redacts_pin() {
        let cfg = Pkcs11Config {
            module: "/x.so".into(),
            token_label: "t".into(),
            pin: Zeroizing::new("123456".into()),
            pool_size: 1,
        };
        assert!(!format!("{cfg:?}").contains("123456"));
    }
}
