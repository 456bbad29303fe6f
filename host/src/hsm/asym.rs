//! SM2 private-key operations for backends without SM2 (SOFTWARE protection level: the scalar
//! is unsealed into a zeroizing buffer for one operation). The scheme names and the
//! operations that need no private key live in `crate::pubkey`.

pub use crate::pubkey::{sha256_input, DecryptScheme, SignScheme, SM2_DEFAULT_ID};

use crate::error::{Error, Result};
use zeroize::Zeroizing;

/// A fresh SM2 key from 32 random bytes (from the HSM's RNG); returns None when the bytes are
/// not a valid scalar (zero or ≥ n, probability ~2^-32), so the caller draws again.
pub fn sm2_public_from_secret(secret: &[u8]) -> Option<Vec<u8>> {
    use sm2::pkcs8::EncodePublicKey;
    let sk = sm2::SecretKey::from_slice(secret).ok()?;
    sk.public_key()
        .to_public_key_der()
        .ok()
        .map(|d| d.as_bytes().to_vec())
}

pub fn sm2_sign(secret: &[u8], message: &[u8], is_digest: bool) -> Result<Vec<u8>> {
    let sk = sm2::SecretKey::from_slice(secret).map_err(|_| Error::Hsm("bad SM2 scalar".into()))?;
    let key = sm2::dsa::SigningKey::new(SM2_DEFAULT_ID, &sk)
        .map_err(|e| Error::Hsm(format!("SM2 key: {e}")))?;
    let sig: sm2::dsa::Signature = if is_digest {
        sm2::dsa::signature::hazmat::PrehashSigner::sign_prehash(&key, message)
            .map_err(|e| Error::Hsm(format!("SM2 sign: {e}")))?
    } else {
        sm2::dsa::signature::Signer::try_sign(&key, message)
            .map_err(|e| Error::Hsm(format!("SM2 sign: {e}")))?
    };
    Ok(sig.to_der().as_bytes().to_vec())
}

pub fn sm2_decrypt(secret: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let key = sm2::pke::DecryptingKey::from_slice(secret)
        .map_err(|_| Error::Hsm("bad SM2 scalar".into()))?;
    key.decrypt_der(ciphertext)
        .map(Zeroizing::new)
        .map_err(|_| Error::DecryptFailed)
}
