//! Symmetric operations: AES-256 data keys generated in the token and wrapped under the root
//! key, AES-GCM with them, their key check value, and sealing of software key material under
//! the seal key. The design behind both keys is in the crate documentation.

use cryptoki::error::Error as CryptokiError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use cryptoki::types::Ulong;
use zeroize::Zeroizing;

use crate::blob::{
    parse_aes_blob, parse_software_blob, FORMAT_KWP_AES, FORMAT_SOFTWARE, GCM_NONCE_LEN,
    GCM_TAG_LEN, KWP_AES256_LEN, MAX_SOFTWARE_LEN,
};
use crate::error::{map_decrypt_error, Error};
use crate::hsm::{Pkcs11Hsm, MAX_RANDOM_LEN};
use crate::import::{self, KCV_LEN};
use crate::keys::TokenKeys;
use crate::pool::SessionGuard;
use crate::templates::{self, ROOT_KEY_LABEL};
use crate::unwrap::with_data_key;

/// Fixed AAD for software material, so a seal-key ciphertext made for another purpose can
/// never be accepted as key material.
const SOFTWARE_AAD: &[u8] = b"keyward/software-key/v1";

const GCM_TAG_BITS: u64 = 128;

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
    /// Generate an AES-256 key inside the token and return it wrapped under the root key.
    pub fn generate_aes256_sealed(&self) -> Result<Vec<u8>, Error> {
        self.pool.run(|s| {
            let key = s.call("C_GenerateKey", |s, _| {
                s.generate_key(
                    &Mechanism::AesKeyGen,
                    &templates::generated_data_key_template(),
                )
            })?;
            let wrapped = s.call("C_WrapKey", |s, k| k.root.wrap(s, key));
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
        })
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
        self.pool.run(|s| {
            let mut material = Zeroizing::new(vec![0u8; len]);
            s.call("C_GenerateRandom", |s, _| {
                s.generate_random_slice(&mut material)
            })?;
            seal_with(s, &material)
        })
    }

    /// Seal caller-supplied software-key material under the seal key (AES-GCM, with the fixed
    /// AAD `b"keyward/software-key/v1"`).
    pub fn seal_software(&self, material: &[u8]) -> Result<Vec<u8>, Error> {
        if material.is_empty() || material.len() > MAX_SOFTWARE_LEN {
            return Err(Error::BadLength);
        }
        self.pool.run(|s| seal_with(s, material))
    }

    /// Open a software-sealed blob; returns the material for a host-memory operation.
    ///
    /// A blob that fails authentication is reported as [`Error::BadSealedKey`] (it is the
    /// blob that is bad, not a caller's data ciphertext).
    pub fn unseal_software(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let (nonce, ct) = parse_software_blob(sealed)?;
        self.pool.run(
            |s| match gcm_decrypt(s, GcmKey::Seal, nonce, SOFTWARE_AAD, ct) {
                Err(Error::AuthenticationFailed) => Err(Error::BadSealedKey),
                other => other,
            },
        )
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
        self.pool.run(|s| {
            let nonce: [u8; GCM_NONCE_LEN] = s.nonce()?;
            let ct = with_data_key(s, sealed, wrapped, |s, key| {
                gcm_encrypt(s, GcmKey::Data(key), &nonce, aad, plaintext)
            })?;
            Ok((nonce.to_vec(), ct))
        })
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
        self.pool.run(|s| {
            with_data_key(s, sealed, wrapped, |s, key| {
                gcm_decrypt(s, GcmKey::Data(key), nonce, aad, ciphertext)
            })
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
        self.pool
            .run(|s| with_data_key(s, sealed, wrapped, import::key_check_value))
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
