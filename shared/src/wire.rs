//! Requests and responses between the host and an HSM running the Keyward firmware core.
//!
//! The embedded backend passes these values directly; the serial backend postcard-encodes them.
//! Requests borrow their byte fields so a device can decode them in place.

use crate::alg::Algorithm;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Protocol version spoken by this crate.
pub const PROTOCOL_VERSION: u16 = 1;
/// Largest plaintext or ciphertext a single request may carry.
pub const MAX_DATA_LEN: usize = 64 * 1024;
/// Largest associated data a request may carry.
pub const MAX_AAD_LEN: usize = 4096;
/// Largest number of random bytes one request may ask for.
pub const MAX_RANDOM_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request<'a> {
    Hello {
        protocol: u16,
    },
    /// Generate fresh key material inside the device and return it sealed.
    GenerateKey {
        algorithm: Algorithm,
    },
    /// Seal caller-supplied material (BYOK import).
    ImportKey {
        algorithm: Algorithm,
        #[serde(borrow)]
        material: &'a [u8],
    },
    Encrypt {
        algorithm: Algorithm,
        #[serde(borrow)]
        sealed: &'a [u8],
        #[serde(borrow)]
        aad: &'a [u8],
        #[serde(borrow)]
        plaintext: &'a [u8],
    },
    Decrypt {
        algorithm: Algorithm,
        #[serde(borrow)]
        sealed: &'a [u8],
        #[serde(borrow)]
        aad: &'a [u8],
        #[serde(borrow)]
        nonce: &'a [u8],
        #[serde(borrow)]
        ciphertext: &'a [u8],
    },
    Random {
        len: u32,
    },
    // Variants are only ever appended: their index is the wire format.
    /// Generate an asymmetric key pair inside the device; the private half comes back sealed.
    GenerateKeyPair {
        algorithm: Algorithm,
    },
    /// Sign a message (the device hashes it) or a 32-byte digest with a sealed private key.
    Sign {
        algorithm: Algorithm,
        #[serde(borrow)]
        sealed: &'a [u8],
        #[serde(borrow)]
        message: &'a [u8],
        is_digest: bool,
    },
    /// Decrypt an SM2 (C1C3C2, ASN.1) ciphertext with a sealed private key.
    AsymDecrypt {
        algorithm: Algorithm,
        #[serde(borrow)]
        sealed: &'a [u8],
        #[serde(borrow)]
        ciphertext: &'a [u8],
    },
    /// Prove the device's identity: sign `ATTESTATION_CONTEXT || challenge || model || 0 ||
    /// firmware_version || 0 || serial` with the device identity key (P-256, ECDSA/SHA-256).
    Attest {
        #[serde(borrow)]
        challenge: &'a [u8],
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub protocol: u16,
    pub model: alloc::string::String,
    pub firmware_version: alloc::string::String,
    pub algorithms: Vec<Algorithm>,
    pub max_data_len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Hello(DeviceInfo),
    Sealed(Vec<u8>),
    Encrypted {
        nonce: Vec<u8>,
        ciphertext: Vec<u8>,
    },
    Plaintext(Vec<u8>),
    Random(Vec<u8>),
    Error(DeviceError),
    /// A sealed private key and its public key (DER SubjectPublicKeyInfo).
    KeyPair {
        sealed: Vec<u8>,
        public_key: Vec<u8>,
    },
    /// A DER signature.
    Signature(Vec<u8>),
    Attestation {
        serial: alloc::string::String,
        /// The identity public key, DER SubjectPublicKeyInfo.
        public_key: Vec<u8>,
        /// DER ECDSA signature over the attestation message.
        signature: Vec<u8>,
    },
}

/// Domain separation for attestation signatures.
pub const ATTESTATION_CONTEXT: &[u8] = b"keyward/attest/v1\0";

/// The bytes an attestation signature covers.
pub fn attestation_message(challenge: &[u8], info: &DeviceInfo, serial: &str) -> Vec<u8> {
    let mut m = ATTESTATION_CONTEXT.to_vec();
    m.extend_from_slice(challenge);
    m.extend_from_slice(info.model.as_bytes());
    m.push(0);
    m.extend_from_slice(info.firmware_version.as_bytes());
    m.push(0);
    m.extend_from_slice(serial.as_bytes());
    m
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceError {
    UnsupportedProtocol,
    UnsupportedAlgorithm,
    /// A sealed key failed authentication or does not match the named algorithm.
    BadSealedKey,
    /// AEAD authentication failed.
    AuthenticationFailed,
    BadLength,
    Internal,
}

impl core::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DeviceError::UnsupportedProtocol => "unsupported protocol version",
            DeviceError::UnsupportedAlgorithm => "algorithm not supported by the device",
            DeviceError::BadSealedKey => "sealed key rejected",
            DeviceError::AuthenticationFailed => "authentication failed",
            DeviceError::BadLength => "length out of range",
            DeviceError::Internal => "internal device error",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DeviceError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_through_postcard() {
        let req = Request::Encrypt {
            algorithm: Algorithm::Aes256Gcm,
            sealed: &[1, 2, 3],
            aad: b"aad",
            plaintext: b"hello",
        };
        let bytes = postcard::to_allocvec(&req).unwrap();
        let back: Request<'_> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for len in 0..64u8 {
            let junk: Vec<u8> = (0..len)
                .map(|i| i.wrapping_mul(37).wrapping_add(200))
                .collect();
            let _ = postcard::from_bytes::<Request<'_>>(&junk);
        }
    }
}
