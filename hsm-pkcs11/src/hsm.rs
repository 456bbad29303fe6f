//! The [`Pkcs11Hsm`] handle and its configuration.
//!
//! Operations are `impl Pkcs11Hsm` blocks in one module per PKCS#11 function group (`open`,
//! `symmetric`, `keypair`, `sign`, `decrypt`, `import`, `probe`), as rust-cryptoki splits
//! `Session`. This module imports none of them, so they can all import it. The two calls that
//! fit no group (`random`, `token_label`) stay here.

use std::fmt;
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::capabilities::Capabilities;
use crate::error::Error;
use crate::keys::ROOT_IDENTITY_LEN;
use crate::pool::Pool;

/// Upper bound for [`Pkcs11Hsm::random`] and [`Pkcs11Hsm::generate_software_sealed`].
pub(crate) const MAX_RANDOM_LEN: usize = 4096;

/// How to reach the token.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// Token label; trailing spaces are ignored (PKCS#11 pads labels with spaces). Empty: any
    /// label (then `token_serial` or `slot` must select the token).
    pub token_label: String,
    /// Token serial number (`CK_TOKEN_INFO.serialNumber`, trailing spaces ignored), if the
    /// token must also (or instead) be chosen by serial: labels are set by whoever initialised
    /// the token and two tokens may share one, serials are set by the maker.
    pub token_serial: Option<String>,
    /// Slot ID, if the token must be in this slot. Slot IDs are module-specific and may change
    /// when tokens come and go, so label or serial are the sturdier choice; a slot is for
    /// modules whose tokens have neither worth telling apart.
    pub slot: Option<u64>,
    /// User PIN.
    pub pin: Zeroizing<String>,
    /// Number of R/W sessions kept open; also the maximum number of concurrent token calls.
    pub pool_size: usize,
    /// Whether `open` may create the root and seal keys if the token has none. Pass `false`
    /// when the caller already holds keys sealed under this token: a missing root then means
    /// it was lost or the token replaced, and a fresh root would only turn that into
    /// "sealed key blob is malformed" on every use ([`Error::KeyMissing`](crate::Error)).
    pub create_keys: bool,
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("token_serial", &self.token_serial)
            .field("slot", &self.slot)
            .field("pin", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("create_keys", &self.create_keys)
            .finish()
    }
}

/// A logged-in connection to one token, with the Keyward key hierarchy on it.
pub struct Pkcs11Hsm {
    pub(crate) pool: Pool,
    pub(crate) token_label: String,
    pub(crate) caps: Capabilities,
    /// Decode every OAEP variant on the host even where the token has it (tests only, see
    /// `force_host_oaep_decoding`).
    pub(crate) force_host_oaep: bool,
    pub(crate) root_identity: [u8; ROOT_IDENTITY_LEN],
    /// The RFC 5649 mechanism the root key wraps with (`keywrap`), for the capability table.
    pub(crate) key_wrap: &'static str,
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
            .field("key_wrap", &self.key_wrap)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Hsm {
    /// Sessions in use and the pool's size, for monitoring.
    pub fn session_use(&self) -> (usize, usize) {
        (self.pool.in_use(), self.pool.size())
    }

    /// `len` random bytes from the token's RNG (`C_GenerateRandom`), 1..=4096.
    pub fn random(&self, len: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
        if len == 0 || len > MAX_RANDOM_LEN {
            return Err(Error::BadLength);
        }
        self.pool.run(|s| {
            let mut buf = Zeroizing::new(vec![0u8; len]);
            s.call("C_GenerateRandom", |s, _| s.generate_random_slice(&mut buf))?;
            Ok(buf)
        })
    }

    /// The root key's identity, computed in the token at open: SHA-256 over a fixed input
    /// wrapped under the root key. Stable for one root key, different for any other; a store
    /// records it to recognise the root its keys were sealed under.
    pub fn root_identity(&self) -> [u8; ROOT_IDENTITY_LEN] {
        self.root_identity
    }

    /// The mechanism the root key wraps with: `CKM_AES_KEY_WRAP_KWP` (0x210B, PKCS#11 3.0) or
    /// `CKM_AES_KEY_WRAP_PAD` (0x210A, SoftHSM2's number for the same RFC 5649).
    pub fn key_wrap_mechanism(&self) -> &'static str {
        self.key_wrap
    }

    /// Label of the token this instance is connected to (without PKCS#11 space padding).
    pub fn token_label(&self) -> &str {
        &self.token_label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_redacts_pin() {
        let cfg = Pkcs11Config {
            module: "/x.so".into(),
            token_label: "t".into(),
            token_serial: None,
            slot: None,
            pin: Zeroizing::new("123456".into()),
            pool_size: 1,
            create_keys: true,
        };
        assert!(!format!("{cfg:?}").contains("123456"));
    }
}
