//! BYOK: import of AES-256 material that the caller encrypted to one of our RSA-2048 keys.
//!
//! # Flow
//!
//! 1. The caller's wrapping key is a sealed RSA-2048 pair from
//!    [`Pkcs11Hsm::generate_key_pair_sealed`]. Its private half is unwrapped from the root key
//!    into a sensitive, non-extractable session object whose only usage is `CKA_UNWRAP`. That
//!    object is cached per session like every unwrapped key, but under its own cache key
//!    (SHA-256 of a domain tag and the blob), so it never shares an entry with the
//!    sign/decrypt object made from the same blob.
//! 2. `C_UnwrapKey(CKM_RSA_PKCS or CKM_RSA_PKCS_OAEP)` turns the caller's ciphertext into an
//!    AES session object inside the token: the material never exists in host memory. The
//!    object is sensitive and extractable only so that step 4 can wrap it.
//! 3. The key must be 32 bytes ([`Error::BadLength`] otherwise; see `seal_imported` for how
//!    that is established on SoftHSM2, which leaves `CKA_VALUE_LEN` at 0 on unwrapped secret
//!    keys); the key check value is computed in the token.
//! 4. `C_WrapKey(RFC 5649, root)` (`keywrap`) gives the ordinary sealed data-key format
//!    `0x02 || AES-KWP(root, key)`. The temporary object is destroyed on every path (if that
//!    fails, the session is closed, which destroys it).
//!
//! # Key check value
//!
//! `KCV = AES-256-ECB(key, 0^16)`: the full 16-byte block ([`KCV_LEN`]). It is computed in the
//! token with `C_EncryptInit(CKM_AES_ECB)` both on import and in
//! [`Pkcs11Hsm::aes_key_check_value`], so the two always agree for the same material, and a
//! caller can compute it locally from the material it wrapped. SoftHSM2 2.6.1 allows
//! `CKM_AES_ECB` on our unwrapped data keys (they have `CKA_ENCRYPT=true` and no
//! `CKA_ALLOWED_MECHANISMS`), so the AES-GCM fallback definition is not needed.
//!
//! # Tokens without the OAEP variant asked for
//!
//! SoftHSM2 2.6.1 unwraps OAEP with SHA-1 only (it answers any other `hashAlg`/`mgf` with
//! CKR_ARGUMENTS_BAD). Where the probe at open found no native OAEP unwrap for the hash
//! ([`Capabilities::import_path`](crate::Capabilities::import_path)), step 2 becomes: raw RSA
//! (`CKM_RSA_X_509`) in the token with the sign/decrypt object of the same blob, EME-OAEP
//! decoding on the host in constant time (`oaep`), and `C_CreateObject` of the 32 bytes as
//! an AES session object with the same template an unwrapped key gets, after which steps 3
//! and 4 run unchanged: the material is sealed under the root key and its check value
//! computed in the token. On this path the padded block and the material pass through host
//! memory, in `Zeroizing` buffers (the template's copy is wiped after C_CreateObject).
//!
//! # Oracles
//!
//! SoftHSM2 2.6.1 (measured) answers a ciphertext with bad padding, or encrypted to another
//! key, with CKR_GENERAL_ERROR from C_UnwrapKey.
//!
//! As with [`Pkcs11Hsm::rsa_decrypt`], a failed import is reported as
//! [`Error::AuthenticationFailed`], and a well-formed ciphertext of the wrong length as
//! [`Error::BadLength`]. With PKCS#1 v1.5 both distinctions are a Bleichenbacher-style padding
//! oracle for whoever can submit ciphertexts; callers should prefer OAEP and must not relay
//! the failure reason to untrusted parties.

use cryptoki::error::RvError;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use sha2::{Digest, Sha256};

use zeroize::Zeroize;

use crate::blob::{parse_private_blob, FORMAT_KWP_AES, KWP_AES256_LEN};
use crate::cache::BlobDigest;
use crate::capabilities::{Capabilities, RsaDecryptPath};
use crate::decrypt::host_oaep_decrypt;
use crate::error::Error;
use crate::hsm::Pkcs11Hsm;
use crate::kind::{AsymKind, RsaDecryptMechanism, RSA2048_LEN};
use crate::pool::SessionGuard;
use crate::templates::{self, AES256_LEN};
use crate::unwrap::{
    unwrap_private_key, unwrap_private_key_with, with_cached_digest, with_cached_key,
};

/// Length of the key check value of [`Pkcs11Hsm::aes_key_check_value`] and
/// [`Pkcs11Hsm::import_wrapped_aes256`]: one AES block, `AES-256-ECB(key, 0^16)`.
pub const KCV_LEN: usize = 16;

/// Domain tag of the cache key of a private key unwrapped for use as an unwrapping key.
/// No sealed blob starts with `k` (0x6b), so `SHA-256(tag || blob)` cannot equal the default
/// cache key `SHA-256(blob')` of any real blob.
const UNWRAPPING_CACHE_TAG: &[u8] = b"keyward/cache/rsa-unwrapping-key/v1";

impl Pkcs11Hsm {
    /// Imports 32 bytes of AES key material that the caller encrypted to the public key of
    /// `sealed_wrapping_key` (an RSA-2048 pair from
    /// [`generate_key_pair_sealed`](Pkcs11Hsm::generate_key_pair_sealed)) with `mech`.
    ///
    /// The RSA decryption happens inside the token as `C_UnwrapKey`; the material never exists
    /// in host memory. (Where the token lacks the OAEP variant, raw RSA in the token and OAEP
    /// decoding on the host instead, see the module documentation.) Returns the material sealed like
    /// [`generate_aes256_sealed`](Pkcs11Hsm::generate_aes256_sealed)'s output (format 0x02,
    /// AES-KWP under the root key) and its key check value `AES-256-ECB(key, 0^16)` (16 bytes,
    /// the same value [`aes_key_check_value`](Pkcs11Hsm::aes_key_check_value) gives for the
    /// sealed key), so the caller can recognise the same material on a later re-import.
    ///
    /// * [`Error::AuthenticationFailed`]: the ciphertext does not decrypt (bad padding, wrong
    ///   length, encrypted to another key).
    /// * [`Error::BadLength`]: it decrypts, but not to 32 bytes.
    /// * [`Error::Unsupported`]: the token can do `mech` neither natively nor through raw RSA
    ///   (see [`rsa_import_path`](Pkcs11Hsm::rsa_import_path)).
    /// * [`Error::WrongKeyKind`]: `sealed_wrapping_key` is an EC key.
    /// * [`Error::BadSealedKey`]: `sealed_wrapping_key` is not a sealed private key or does
    ///   not unwrap.
    ///
    /// With [`RsaDecryptMechanism::Pkcs1v15`] the distinct errors form a padding oracle; see
    /// the module documentation. Prefer OAEP.
    pub fn import_wrapped_aes256(
        &self,
        sealed_wrapping_key: &[u8],
        mech: RsaDecryptMechanism,
        encrypted_material: &[u8],
    ) -> Result<(Vec<u8>, [u8; KCV_LEN]), Error> {
        let (kind, wrapped) = parse_private_blob(sealed_wrapping_key)?;
        if !kind.is_rsa() {
            return Err(Error::WrongKeyKind {
                kind,
                mechanism: "RSA key import",
            });
        }
        self.caps.require_kind(kind)?;
        let path = self.rsa_import_path(mech)?;
        let caps = self.caps;
        // An RSA ciphertext is exactly one modulus long; anything else cannot decrypt.
        if encrypted_material.len() != RSA2048_LEN {
            return Err(Error::AuthenticationFailed);
        }
        self.pool.run(|s| {
            let key = match path {
                RsaDecryptPath::Token => unwrap_in_token(
                    s,
                    sealed_wrapping_key,
                    kind,
                    wrapped,
                    mech,
                    encrypted_material,
                    &caps,
                )?,
                RsaDecryptPath::HostOaepDecoding => {
                    let material = with_cached_key(
                        s,
                        sealed_wrapping_key,
                        |s| unwrap_private_key(s, kind, wrapped),
                        |s, rsa| {
                            host_oaep_decrypt(s, rsa, mech, encrypted_material)
                                .map_err(|e| caps.rsa_refusal(e))
                        },
                    )?;
                    if material.len() != AES256_LEN {
                        return Err(Error::BadLength);
                    }
                    create_imported_key(s, &material)?
                }
            };
            let result = seal_imported(s, key);
            // The object is extractable: it must not outlive this call on any path.
            if s.call("C_DestroyObject", |s, _| s.destroy_object(key))
                .is_err()
            {
                // Closing the session destroys all of its session objects.
                s.retire();
            }
            result
        })
    }
}

/// `C_UnwrapKey(mech)` of the caller's ciphertext with the wrapping key's unwrapping object:
/// the material goes from the ciphertext into an AES session object without leaving the token.
fn unwrap_in_token(
    s: &mut SessionGuard<'_>,
    sealed_wrapping_key: &[u8],
    kind: AsymKind,
    wrapped: &[u8],
    mech: RsaDecryptMechanism,
    encrypted_material: &[u8],
    caps: &Capabilities,
) -> Result<ObjectHandle, Error> {
    let mechanism = mech.mechanism();
    let template = templates::imported_data_key_template();
    let digest: BlobDigest = Sha256::new()
        .chain_update(UNWRAPPING_CACHE_TAG)
        .chain_update(sealed_wrapping_key)
        .finalize()
        .into();
    with_cached_digest(
        s,
        digest,
        |s| {
            unwrap_private_key_with(
                s,
                kind,
                wrapped,
                templates::unwrapping_private_key_template(kind),
            )
        },
        |s, rsa| {
            s.call("C_UnwrapKey", |s, _| {
                s.unwrap_key(&mechanism, rsa, encrypted_material, &template)
            })
            .map_err(|e| caps.rsa_refusal(map_import_error(e)))
        },
    )
}

/// Material decoded on the host back into the token: `C_CreateObject` of an AES session key
/// with the template a natively unwrapped key gets (sensitive, extractable only for the one
/// wrap under the root key, `CKA_ENCRYPT` for the check value). The template's copy of the
/// value is wiped once the call returns, on every path.
fn create_imported_key(s: &mut SessionGuard<'_>, material: &[u8]) -> Result<ObjectHandle, Error> {
    struct Wiped(Vec<Attribute>);
    impl Drop for Wiped {
        fn drop(&mut self) {
            for a in &mut self.0 {
                if let Attribute::Value(v) = a {
                    v.zeroize();
                }
            }
        }
    }
    let mut template = Wiped(templates::imported_data_key_template());
    template.0.push(Attribute::Value(material.to_vec()));
    s.call("C_CreateObject", |s, _| s.create_object(&template.0))
}

/// Check the length of the imported key, compute its KCV and wrap it under the root key.
///
/// The length check cannot rely on `CKA_VALUE_LEN` alone: SoftHSM2 2.6.1 (measured) leaves it
/// at 0 on a secret key made by C_UnwrapKey. A token that does report a length must report 32.
/// Otherwise the length is pinned down by two facts the token cannot fudge: the AES-KWP blob
/// is 40 bytes exactly for 25..=32 bytes of key, and AES-ECB (the KCV) only runs with a
/// 16-, 24- or 32-byte AES key. Together: exactly 32.
fn seal_imported(
    s: &mut SessionGuard<'_>,
    key: ObjectHandle,
) -> Result<(Vec<u8>, [u8; KCV_LEN]), Error> {
    let attrs = s.call("C_GetAttributeValue", |s, _| {
        s.get_attributes(key, &[AttributeType::ValueLen])
    })?;
    let reported = attrs.iter().find_map(|a| match a {
        Attribute::ValueLen(n) => Some(u64::from(*n)),
        _ => None,
    });
    match reported {
        None | Some(0) => {}
        Some(n) if n == AES256_LEN as u64 => {}
        Some(_) => return Err(Error::BadLength),
    }
    let wrapped = s.call("C_WrapKey", |s, k| k.root.wrap(s, key))?;
    if wrapped.len() != KWP_AES256_LEN {
        return Err(Error::BadLength);
    }
    let kcv = match key_check_value(s, key) {
        Ok(kcv) => kcv,
        // 25..=31 bytes: not an AES key size. SoftHSM2 2.6.1 (measured) answers C_EncryptInit
        // with CKR_MECHANISM_INVALID then; the spec'd code is CKR_KEY_SIZE_RANGE. Either only
        // means "bad key" if the token does list AES-ECB.
        Err(e)
            if matches!(
                e.rv(),
                Some(RvError::MechanismInvalid | RvError::KeySizeRange)
            ) =>
        {
            return Err(if s.mechanism_listed(MechanismType::AES_ECB) {
                Error::BadLength
            } else {
                Error::Unsupported("AES-ECB (key check value)")
            });
        }
        Err(e) => return Err(e),
    };
    let mut blob = Vec::with_capacity(1 + wrapped.len());
    blob.push(FORMAT_KWP_AES);
    blob.extend_from_slice(&wrapped);
    Ok((blob, kcv))
}

/// `KCV = AES-ECB(key, 0^16)`, computed in the token.
pub(crate) fn key_check_value(
    s: &mut SessionGuard<'_>,
    key: ObjectHandle,
) -> Result<[u8; KCV_LEN], Error> {
    let out = s.call("C_EncryptInit/C_Encrypt", |s, _| {
        s.encrypt(&Mechanism::AesEcb, key, &[0u8; KCV_LEN])
    })?;
    out.try_into().map_err(|out: Vec<u8>| {
        Error::TokenOutput(format!(
            "AES-ECB of one block gave {} bytes, expected {KCV_LEN}",
            out.len()
        ))
    })
}

/// Map a failed RSA C_UnwrapKey of the caller's ciphertext to [`Error::AuthenticationFailed`]
/// where it means "this ciphertext does not decrypt under this key".
///
/// SoftHSM2 2.6.1 reports a padding failure as CKR_GENERAL_ERROR (the spec'd codes are
/// CKR_ENCRYPTED_DATA_INVALID / CKR_WRAPPED_KEY_INVALID). The ciphertext length, the
/// mechanism and the unwrapping key were validated before, so on this path it means a bad
/// ciphertext; a genuine device fault here would be reported the same way. kryoptic checks the
/// unwrapped length against the AES key sizes in C_UnwrapKey already (CKR_KEY_SIZE_RANGE for
/// 33 bytes, say): the material decrypted but is no AES-256 key, as `seal_imported` says
/// with [`Error::BadLength`] on tokens that unwrap any length.
fn map_import_error(e: Error) -> Error {
    match e.rv() {
        Some(RvError::KeySizeRange) => Error::BadLength,
        Some(
            RvError::GeneralError
            | RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::WrappedKeyInvalid
            | RvError::WrappedKeyLenRange,
        ) => Error::AuthenticationFailed,
        _ => e,
    }
}
