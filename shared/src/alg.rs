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
}

impl Algorithm {
    pub const ALL: [Algorithm; 2] = [Algorithm::Aes256Gcm, Algorithm::Sm4Gcm];

    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Aes256Gcm),
            2 => Some(Self::Sm4Gcm),
            _ => None,
        }
    }

    pub fn id(self) -> u8 {
        self as u8
    }

    /// Length of the secret key material in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Self::Aes256Gcm => 32,
            Self::Sm4Gcm => 16,
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
        }
    }
}
