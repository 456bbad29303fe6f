//! The device's asymmetric algorithms: ECDSA P-256 (SHA-256) and SM2 (SM2DSA with SM3 and the
//! default user id; SM2 decryption, C1C3C2 ASN.1). Private scalars exist unsealed only inside
//! these functions, in zeroizing buffers. Signing is deterministic (RFC 6979), so it needs no
//! randomness from the platform.

use alloc::vec::Vec;
use keyward_shared::wire::DeviceError;
use keyward_shared::Algorithm;
use sha2::{Digest, Sha256};

/// The SM2 user id used when none is agreed (GB/T 35276).
pub const SM2_DEFAULT_ID: &str = "1234567812345678";

pub fn supports(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::EccP256 | Algorithm::Sm2)
}

/// The public key (DER SubjectPublicKeyInfo) of a private scalar, or `None` if the bytes are
/// not a valid scalar (the caller draws again).
pub fn public_key(alg: Algorithm, secret: &[u8]) -> Option<Vec<u8>> {
    match alg {
        Algorithm::EccP256 => {
            use p256::pkcs8::EncodePublicKey;
            let sk = p256::SecretKey::from_slice(secret).ok()?;
            sk.public_key()
                .to_public_key_der()
                .ok()
                .map(|d| d.as_bytes().to_vec())
        }
        Algorithm::Sm2 => {
            use sm2::pkcs8::EncodePublicKey;
            let sk = sm2::SecretKey::from_slice(secret).ok()?;
            sk.public_key()
                .to_public_key_der()
                .ok()
                .map(|d| d.as_bytes().to_vec())
        }
        _ => None,
    }
}

pub fn sign(
    alg: Algorithm,
    secret: &[u8],
    message: &[u8],
    is_digest: bool,
) -> Result<Vec<u8>, DeviceError> {
    if is_digest && message.len() != 32 {
        return Err(DeviceError::BadLength);
    }
    match alg {
        Algorithm::EccP256 => {
            use p256::ecdsa::signature::hazmat::PrehashSigner;
            let key = p256::ecdsa::SigningKey::from_slice(secret)
                .map_err(|_| DeviceError::BadSealedKey)?;
            let digest: [u8; 32] = if is_digest {
                message.try_into().map_err(|_| DeviceError::BadLength)?
            } else {
                Sha256::digest(message).into()
            };
            let sig: p256::ecdsa::Signature = key
                .sign_prehash(&digest)
                .map_err(|_| DeviceError::Internal)?;
            Ok(sig.to_der().as_bytes().to_vec())
        }
        Algorithm::Sm2 => {
            let sk = sm2::SecretKey::from_slice(secret).map_err(|_| DeviceError::BadSealedKey)?;
            let key = sm2::dsa::SigningKey::new(SM2_DEFAULT_ID, &sk)
                .map_err(|_| DeviceError::Internal)?;
            let sig: sm2::dsa::Signature = if is_digest {
                sm2::dsa::signature::hazmat::PrehashSigner::sign_prehash(&key, message)
            } else {
                sm2::dsa::signature::Signer::try_sign(&key, message)
            }
            .map_err(|_| DeviceError::Internal)?;
            Ok(sig.to_der().as_bytes().to_vec())
        }
        _ => Err(DeviceError::UnsupportedAlgorithm),
    }
}

pub fn decrypt(alg: Algorithm, secret: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, DeviceError> {
    match alg {
        Algorithm::Sm2 => {
            let key = sm2::pke::DecryptingKey::from_slice(secret)
                .map_err(|_| DeviceError::BadSealedKey)?;
            key.decrypt_der(ciphertext)
                .map_err(|_| DeviceError::AuthenticationFailed)
        }
        _ => Err(DeviceError::UnsupportedAlgorithm),
    }
}
