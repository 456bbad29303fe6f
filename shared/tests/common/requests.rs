//! Test support shared by the shared crate's frame properties and the firmware's handler
//! properties (included with `#[path]`): every algorithm id, and an owned mirror of
//! `Request<'a>` that proptest strategies can generate.

use keyward_shared::wire::Request;
use keyward_shared::Algorithm;
use proptest::prelude::*;

/// Every algorithm id, accepted or not by the device; `every_algorithm_id_is_generated` keeps
/// it in step with `from_u8`.
pub const ALGORITHMS: [Algorithm; 8] = [
    Algorithm::Aes256Gcm,
    Algorithm::Sm4Gcm,
    Algorithm::Rsa2048,
    Algorithm::EccP256,
    Algorithm::EccP384,
    Algorithm::Sm2,
    Algorithm::MlKem768,
    Algorithm::MlDsa65,
];

/// An owned mirror of `Request<'a>`, so a strategy can generate one and the test can borrow it.
#[derive(Debug, Clone)]
pub enum OwnedRequest {
    Hello(u16),
    GenerateKey(Algorithm),
    ImportKey(Algorithm, Vec<u8>),
    Encrypt(Algorithm, Vec<u8>, Vec<u8>, Vec<u8>),
    Decrypt(Algorithm, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>),
    Random(u32),
    GenerateKeyPair(Algorithm),
    Sign(Algorithm, Vec<u8>, Vec<u8>, bool),
    AsymDecrypt(Algorithm, Vec<u8>, Vec<u8>),
    Attest(Vec<u8>),
}

impl OwnedRequest {
    pub fn as_request(&self) -> Request<'_> {
        match self {
            OwnedRequest::Hello(protocol) => Request::Hello {
                protocol: *protocol,
            },
            OwnedRequest::GenerateKey(algorithm) => Request::GenerateKey {
                algorithm: *algorithm,
            },
            OwnedRequest::ImportKey(algorithm, material) => Request::ImportKey {
                algorithm: *algorithm,
                material,
            },
            OwnedRequest::Encrypt(algorithm, sealed, aad, plaintext) => Request::Encrypt {
                algorithm: *algorithm,
                sealed,
                aad,
                plaintext,
            },
            OwnedRequest::Decrypt(algorithm, sealed, aad, nonce, ciphertext) => Request::Decrypt {
                algorithm: *algorithm,
                sealed,
                aad,
                nonce,
                ciphertext,
            },
            OwnedRequest::Random(len) => Request::Random { len: *len },
            OwnedRequest::GenerateKeyPair(algorithm) => Request::GenerateKeyPair {
                algorithm: *algorithm,
            },
            OwnedRequest::Sign(algorithm, sealed, message, is_digest) => Request::Sign {
                algorithm: *algorithm,
                sealed,
                message,
                is_digest: *is_digest,
            },
            OwnedRequest::AsymDecrypt(algorithm, sealed, ciphertext) => Request::AsymDecrypt {
                algorithm: *algorithm,
                sealed,
                ciphertext,
            },
            OwnedRequest::Attest(challenge) => Request::Attest { challenge },
        }
    }
}

pub fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(&ALGORITHMS[..])
}
