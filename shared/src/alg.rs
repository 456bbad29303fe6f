//! Algorithm identifiers. The numeric values are part of the ciphertext blob and the wire
//! format, so they must never be renumbered.

use serde::{Deserialize, Serialize};

/// A key algorithm together with the AEAD mode Keyward uses it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Algorithm {
    /// AES-256 in GCM mode, 96-bit nonce, 128-bit tag (FIPS-style regions).
    Aes256Gcm = 1,
    /// SM4 in GCM mode, 96-bit nonce, 128-bit tag (GM regions).
    Sm4Gcm = 2,
    /// RSA-2048 key pair (signing with PKCS#1 v1.5 / PSS, decryption with PKCS#1 v1.5 / OAEP).
    Rsa2048 = 16,
    /// ECDSA over NIST P-256.
    EccP256 = 17,
    /// ECDSA over NIST P-384.
    EccP384 = 18,
    /// SM2 (GB/T 32918): SM2DSA signatures with SM3, SM2 public-key encryption.
    Sm2 = 19,
    // Variants are only appended: serde (postcard) encodes the variant's position.
    /// ML-KEM-768 (FIPS 203): encryption as KEM + AES-256-GCM. Run by the host from a sealed
    /// seed; no HSM backend offers it natively.
    MlKem768 = 32,
    /// ML-DSA-65 (FIPS 204) signatures. Run by the host from a sealed seed.
    MlDsa65 = 33,
}

impl Algorithm {
    /// The symmetric (AEAD) algorithms: the only ones a ciphertext blob or the firmware's
    /// sealed-key AEAD can name.
    pub const ALL: [Algorithm; 2] = [Algorithm::Aes256Gcm, Algorithm::Sm4Gcm];

    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Aes256Gcm),
            2 => Some(Self::Sm4Gcm),
            16 => Some(Self::Rsa2048),
            17 => Some(Self::EccP256),
            18 => Some(Self::EccP384),
            19 => Some(Self::Sm2),
            32 => Some(Self::MlKem768),
            33 => Some(Self::MlDsa65),
            _ => None,
        }
    }

    pub fn is_symmetric(self) -> bool {
        matches!(self, Self::Aes256Gcm | Self::Sm4Gcm)
    }

    /// The post-quantum algorithms, whose private half is a FIPS 203/204 seed.
    pub fn is_post_quantum(self) -> bool {
        matches!(self, Self::MlKem768 | Self::MlDsa65)
    }

    pub fn id(self) -> u8 {
        self as u8
    }

    /// Length of the secret key material in bytes (symmetric keys; the private scalar for the
    /// elliptic-curve ones; the seed for the post-quantum ones; 0 for RSA, whose private key
    /// has no fixed-size encoding).
    pub fn key_len(self) -> usize {
        match self {
            Self::Aes256Gcm | Self::EccP256 | Self::Sm2 | Self::MlDsa65 => 32,
            Self::MlKem768 => 64,
            Self::Sm4Gcm => 16,
            Self::EccP384 => 48,
            Self::Rsa2048 => 0,
        }
    }

    pub fn nonce_len(self) -> usize {
        12
    }

    pub fn tag_len(self) -> usize {
        16
    }

    /// The name Tencent's API uses for this algorithm (ListAlgorithms, KeyMetadata).
    pub fn api_name(self) -> &'static str {
        match self {
            Self::Aes256Gcm => "AES_256",
            Self::Sm4Gcm => "SM4",
            Self::Rsa2048 => "RSA_2048",
            Self::EccP256 => "ECC_P256",
            Self::EccP384 => "ECC_P384",
            Self::Sm2 => "SM2",
            Self::MlKem768 => "ML_KEM_768",
            Self::MlDsa65 => "ML_DSA_65",
        }
    }
}
