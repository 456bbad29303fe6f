//! The `Hsm` trait: where key material is born, sealed and used.
//!
//! Every backend hands key material out only as an opaque *sealed key* (wrapped under a root
//! key that never leaves the backend). The store keeps sealed keys; each operation hands the
//! sealed key back. Calls are blocking: the API layer runs them on tokio's blocking pool.

pub mod asym;
mod device;
mod embedded;
mod pkcs11;
mod serial;

pub use device::{DeviceHsm, Transport};
pub use embedded::EmbeddedHsm;
pub use pkcs11::Pkcs11Backend;
pub use serial::SerialLink;

use crate::config::{Config, HsmConfig};
use crate::error::{Error, Result};
use keyward_shared::wire::DeviceError;
use keyward_shared::Algorithm;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Where a key's material is used: inside the HSM, or unsealed into host memory for the
/// duration of one operation (algorithms the HSM cannot run natively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtectionLevel {
    Hsm,
    Software,
}

impl ProtectionLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            ProtectionLevel::Hsm => "HSM",
            ProtectionLevel::Software => "SOFTWARE",
        }
    }
}

pub trait Hsm: Send + Sync {
    /// Backend name stored next to every sealed key (`embedded`, `pkcs11`).
    fn backend(&self) -> &'static str;
    fn protection_level(&self, alg: Algorithm) -> ProtectionLevel;
    /// Creates key material inside the backend and returns it sealed.
    fn generate(&self, alg: Algorithm) -> Result<Vec<u8>>;
    /// AEAD-encrypts with a nonce chosen by the backend; returns `(nonce, ciphertext || tag)`.
    fn encrypt(
        &self,
        alg: Algorithm,
        sealed: &[u8],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)>;
    fn decrypt(
        &self,
        alg: Algorithm,
        sealed: &[u8],
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>>;
    fn random(&self, len: usize) -> Result<Zeroizing<Vec<u8>>>;

    /// The identity of the key material behind this backend, if it has one: the firmware
    /// device's attested public key, the PKCS#11 token's root-key identity. The store pins it
    /// so a data directory is never served by another device or root key.
    fn device_identity(&self) -> Option<Vec<u8>>;
    /// Whether this backend can hold and use keys of `alg` at all (HSM or SOFTWARE level).
    fn supports(&self, alg: Algorithm) -> bool;
    /// Creates an asymmetric key pair; returns the sealed private key and the public key as
    /// DER SubjectPublicKeyInfo.
    fn generate_key_pair(&self, alg: Algorithm) -> Result<(Vec<u8>, Vec<u8>)>;
    /// Signs `message` (or, with `is_digest`, a 32-byte digest of it) with a sealed private key.
    fn sign(
        &self,
        alg: Algorithm,
        sealed: &[u8],
        scheme: asym::SignScheme,
        message: &[u8],
        is_digest: bool,
    ) -> Result<Vec<u8>>;
    fn asym_decrypt(
        &self,
        alg: Algorithm,
        sealed: &[u8],
        scheme: asym::DecryptScheme,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>>;
    /// BYOK: takes symmetric material of `alg` that a caller encrypted to the RSA-2048
    /// wrapping key `sealed_wrapping` and returns it sealed like generated material, with a
    /// check value of the material (computed where the material lives) to recognise it later.
    fn import_wrapped(
        &self,
        alg: Algorithm,
        sealed_wrapping: &[u8],
        scheme: asym::DecryptScheme,
        encrypted: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)>;
    /// Sessions in use and sessions held, for a backend with a session pool (PKCS#11).
    fn session_use(&self) -> Option<(usize, usize)> {
        None
    }
}

/// Opens the backend named in the configuration.
///
/// `store_bound`: the store already holds key material sealed by this backend. A PKCS#11
/// token then must already have its root key; it is never created for such a store (a fresh
/// root would turn every sealed key into "malformed blob" errors instead of one clear start-up
/// error). The firmware backends keep their device key themselves.
///
/// `pinned_identity`: the device identity the store is pinned to; the serial backend refuses
/// another device before pairing with it.
pub fn open(
    cfg: &Config,
    store_bound: bool,
    pinned_identity: Option<Vec<u8>>,
) -> Result<Arc<dyn Hsm>> {
    match &cfg.hsm {
        HsmConfig::Embedded => Ok(Arc::new(EmbeddedHsm::open(&cfg.data_dir)?)),
        HsmConfig::Pkcs11(p) => {
            check_pin_strength(p, cfg.testing.allow_weak_pin)?;
            Ok(Arc::new(Pkcs11Backend::open(p, !store_bound)?))
        }
        HsmConfig::Serial(s) => Ok(Arc::new(SerialLink::open(
            s,
            &s.pairing_key_path(&cfg.data_dir),
            pinned_identity.as_deref(),
        )?)),
    }
}

/// The firmware backends' (embedded and serial) one conversion of device errors: a failed
/// authentication tag is the caller's bad ciphertext, anything else is the HSM's fault.
impl From<DeviceError> for Error {
    fn from(e: DeviceError) -> Self {
        match e {
            DeviceError::AuthenticationFailed => Error::DecryptFailed,
            other => Error::Hsm(other.to_string()),
        }
    }
}

/// A software token (SoftHSM2) is only as strong as its PIN against someone who copies its
/// token directory, who can guess offline with no retry counter: short PINs are refused
/// outside test mode. Hardware tokens count failed logins, so their PIN policy is theirs.
fn check_pin_strength(p: &crate::config::Pkcs11Config, allow_weak: bool) -> Result<()> {
    let software = p
        .module
        .file_name()
        .is_some_and(|n| n.to_string_lossy().to_ascii_lowercase().contains("softhsm"));
    if !software || allow_weak {
        return Ok(());
    }
    let min = crate::config::MIN_SOFTWARE_TOKEN_PIN;
    if p.pin()?.chars().count() < min {
        return Err(Error::Config(format!(
            "the PIN of software token `{}` is shorter than {min} characters: anyone who copies \
             the token directory can guess it offline (docs/security.md); use a longer PIN, \
             or set [testing] allow_weak_pin = true for a throw-away test token",
            p.token_label
        )));
    }
    Ok(())
}
