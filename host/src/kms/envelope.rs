//! Envelope encryption for other services (Secrets Manager today): a value encrypted under a
//! fresh data key of a CMK, the data key kept only as that CMK's ciphertext blob. Opening it
//! goes through Decrypt, so the CMK's state and the caller's rights govern the value.
//!
//! The value's cipher follows the CMK's algorithm (AES-256-GCM, or SM4-GCM in a GM region),
//! read from the key record rather than guessed from the data key's length.

use super::{context, state, Kms};
use crate::cam::Caller;
use crate::error::{Error, Result};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

/// What a service stores for one sealed value.
pub struct Envelope {
    /// The data key, encrypted by KMS under the CMK (Encrypt's blob format).
    pub key_blob: Vec<u8>,
    pub nonce: Vec<u8>,
    /// The value under the data key, with its tag.
    pub ciphertext: Vec<u8>,
}

/// A stored envelope, borrowed for opening.
pub struct Sealed<'a> {
    pub key_blob: &'a [u8],
    pub nonce: &'a [u8],
    pub ciphertext: &'a [u8],
}

/// Where an envelope belongs: the KMS encryption context bound to its data key, and the
/// associated data bound to its value.
pub struct Binding<'a> {
    pub context: &'a str,
    pub aad: &'a [u8],
}

impl Kms {
    /// Seals `plaintext` under a fresh data key of CMK `key_id`.
    pub fn seal_envelope(
        &self,
        caller: &Caller,
        key_id: &str,
        binding: &Binding<'_>,
        plaintext: &[u8],
    ) -> Result<Envelope> {
        let key = self.describe_key(caller, key_id)?;
        let alg = key.algorithm;
        let (dek, key_blob, _) =
            self.generate_data_key(caller, &key.key_id, alg.key_len(), Some(binding.context))?;
        let mut nonce = vec![0u8; alg.nonce_len()];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext =
            keyward_firmware::aead::encrypt(alg, &dek, &nonce, binding.aad, plaintext)?;
        Ok(Envelope {
            key_blob,
            nonce,
            ciphertext,
        })
    }

    /// Opens an envelope. A data key that KMS refuses fails with KMS's error; a value that
    /// fails authentication (moved to another binding, or altered) with `ValueTampered`.
    pub fn open_envelope(
        &self,
        caller: &Caller,
        envelope: &Sealed<'_>,
        binding: &Binding<'_>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let ctx = context::canonical(Some(binding.context))?;
        let (key, _, dek) = self.open_blob(caller, envelope.key_blob, &ctx, state::Op::Decrypt)?;
        keyward_firmware::aead::decrypt(
            key.algorithm,
            &dek,
            envelope.nonce,
            binding.aad,
            envelope.ciphertext,
        )
        .map(Zeroizing::new)
        .map_err(|_| Error::ValueTampered)
    }
}
