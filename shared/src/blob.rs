//! The ciphertext blob Keyward returns as `CiphertextBlob` (base64 on the API).
//!
//! Layout, version 1 (all integers big-endian):
//!
//! ```text
//! 0      format      = 1
//! 1..17  key id      16 bytes (the CMK's UUID)
//! 17..21 key version u32
//! 21     algorithm   u8 (see `Algorithm`)
//! 22     nonce len   u8 (must equal the algorithm's nonce length)
//! 23..   nonce
//! ..     ciphertext || tag
//! ```
//!
//! Bytes `0..22` (everything before the nonce) are bound as AEAD associated data together with
//! the canonical encryption context, so changing the key id, version or algorithm makes
//! authentication fail; the nonce is protected by the AEAD itself. The nonce is not part of the
//! AAD because the HSM picks it during the encrypt call.

use crate::alg::Algorithm;

pub const FORMAT_V1: u8 = 1;
/// Length of the authenticated prefix (format, key id, version, algorithm).
pub const BOUND_PREFIX_LEN: usize = 22;
const NONCE_LEN_OFFSET: usize = 22;
pub const MAX_NONCE_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobError {
    TooShort,
    UnknownFormat,
    UnknownAlgorithm,
    BadNonceLength,
}

impl core::fmt::Display for BlobError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BlobError::TooShort => "ciphertext blob is truncated",
            BlobError::UnknownFormat => "unknown ciphertext blob format",
            BlobError::UnknownAlgorithm => "unknown algorithm in ciphertext blob",
            BlobError::BadNonceLength => "bad nonce length in ciphertext blob",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for BlobError {}

/// The parsed fixed part of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobHeader {
    pub key_id: [u8; 16],
    pub key_version: u32,
    pub algorithm: Algorithm,
}

impl BlobHeader {
    /// The authenticated prefix that goes into the AAD.
    pub fn bound_prefix(&self) -> [u8; BOUND_PREFIX_LEN] {
        let mut out = [0u8; BOUND_PREFIX_LEN];
        out[0] = FORMAT_V1;
        out[1..17].copy_from_slice(&self.key_id);
        out[17..21].copy_from_slice(&self.key_version.to_be_bytes());
        out[21] = self.algorithm.id();
        out
    }
}

/// A borrowed view of a parsed blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blob<'a> {
    pub header: BlobHeader,
    pub nonce: &'a [u8],
    /// Ciphertext followed by the tag.
    pub ciphertext: &'a [u8],
}

impl<'a> Blob<'a> {
    /// Parses a blob. Only structure is checked here; authenticity is the AEAD's job.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BlobError> {
        if bytes.len() < BOUND_PREFIX_LEN + 1 {
            return Err(BlobError::TooShort);
        }
        if bytes[0] != FORMAT_V1 {
            return Err(BlobError::UnknownFormat);
        }
        let mut key_id = [0u8; 16];
        key_id.copy_from_slice(&bytes[1..17]);
        let key_version = u32::from_be_bytes([bytes[17], bytes[18], bytes[19], bytes[20]]);
        let algorithm = Algorithm::from_u8(bytes[21])
            .filter(|a| a.is_symmetric())
            .ok_or(BlobError::UnknownAlgorithm)?;
        let nonce_len = bytes[NONCE_LEN_OFFSET] as usize;
        if nonce_len != algorithm.nonce_len() {
            return Err(BlobError::BadNonceLength);
        }
        let rest = &bytes[NONCE_LEN_OFFSET + 1..];
        if rest.len() < nonce_len + algorithm.tag_len() {
            return Err(BlobError::TooShort);
        }
        let (nonce, ciphertext) = rest.split_at(nonce_len);
        Ok(Blob {
            header: BlobHeader {
                key_id,
                key_version,
                algorithm,
            },
            nonce,
            ciphertext,
        })
    }

    /// Length of the encoded blob.
    pub fn encoded_len(&self) -> usize {
        BOUND_PREFIX_LEN + 1 + self.nonce.len() + self.ciphertext.len()
    }

    /// Writes the blob into `out`, returning the number of bytes written.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, BlobError> {
        let len = self.encoded_len();
        if out.len() < len {
            return Err(BlobError::TooShort);
        }
        if self.nonce.len() > MAX_NONCE_LEN || self.nonce.len() != self.header.algorithm.nonce_len()
        {
            return Err(BlobError::BadNonceLength);
        }
        out[..BOUND_PREFIX_LEN].copy_from_slice(&self.header.bound_prefix());
        out[NONCE_LEN_OFFSET] = self.nonce.len() as u8;
        let n_end = NONCE_LEN_OFFSET + 1 + self.nonce.len();
        out[NONCE_LEN_OFFSET + 1..n_end].copy_from_slice(self.nonce);
        out[n_end..len].copy_from_slice(self.ciphertext);
        Ok(len)
    }

    #[cfg(feature = "alloc")]
    pub fn to_vec(&self) -> Result<alloc::vec::Vec<u8>, BlobError> {
        let mut v = alloc::vec![0u8; self.encoded_len()];
        self.encode_into(&mut v)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ([u8; 12], [u8; 21]) {
        ([7u8; 12], [9u8; 21])
    }

    #[test]
    fn round_trip() {
        let (nonce, ct) = sample();
        let blob = Blob {
            header: BlobHeader {
                key_id: [3u8; 16],
                key_version: 0x0102_0304,
                algorithm: Algorithm::Sm4Gcm,
            },
            nonce: &nonce,
            ciphertext: &ct,
        };
        let mut buf = [0u8; 128];
        let n = blob.encode_into(&mut buf).unwrap();
        assert_eq!(n, 23 + 12 + 21);
        assert_eq!(Blob::parse(&buf[..n]).unwrap(), blob);
    }

    #[test]
    fn structural_damage_is_rejected() {
        let (nonce, ct) = sample();
        let blob = Blob {
            header: BlobHeader {
                key_id: [3u8; 16],
                key_version: 1,
                algorithm: Algorithm::Aes256Gcm,
            },
            nonce: &nonce,
            ciphertext: &ct,
        };
        let mut buf = [0u8; 128];
        let n = blob.encode_into(&mut buf).unwrap();
        for cut in 0..(23 + 12 + 16) {
            assert!(Blob::parse(&buf[..cut]).is_err(), "truncated to {cut}");
        }
        let mut bad = buf;
        bad[0] = 2;
        assert_eq!(Blob::parse(&bad[..n]), Err(BlobError::UnknownFormat));
        let mut bad = buf;
        bad[21] = 99;
        assert_eq!(Blob::parse(&bad[..n]), Err(BlobError::UnknownAlgorithm));
        let mut bad = buf;
        bad[22] = 11;
        assert_eq!(Blob::parse(&bad[..n]), Err(BlobError::BadNonceLength));
    }
}
