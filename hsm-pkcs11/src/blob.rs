//! Sealed-blob formats: format bytes, lengths, and the parsers that check a blob before any
//! token call. The formats themselves are described in the crate documentation.
//!
//! The kind byte of a sealed private key sits outside the key wrap, so it is not
//! integrity-protected by AES-KWP. It only selects `CKA_KEY_TYPE` in the unwrap template, and
//! every freshly unwrapped key is checked against it (RSA: 2048-bit modulus; EC: the expected
//! named curve; see `unwrap::vet_unwrapped`), so an altered kind byte gives
//! [`Error::BadSealedKey`] rather than a key of a different size or curve.

use crate::error::Error;
use crate::kind::AsymKind;

/// Format byte: AES-256 data key wrapped under the root key with AES-KWP.
pub(crate) const FORMAT_KWP_AES: u8 = 0x02;
/// Format byte: software material sealed by the seal key with AES-GCM.
pub(crate) const FORMAT_SOFTWARE: u8 = 0x03;
/// Format byte: private key wrapped under the root key with AES-KWP.
pub(crate) const FORMAT_KWP_PRIVATE: u8 = 0x04;
/// Upper bound for the wrapped part of a sealed private key. An RSA-2048 PKCS#8 is ~1.2 KiB,
/// a P-384 one ~190 bytes; this leaves room for encodings with optional fields.
const MAX_WRAPPED_PRIVATE_LEN: usize = 4096;
/// AES-KWP output is a multiple of 8 bytes and at least two blocks.
const KWP_BLOCK: usize = 8;

pub(crate) const GCM_NONCE_LEN: usize = 12;
pub(crate) const GCM_TAG_LEN: usize = 16;
/// AES-KWP output for a 32-byte key: 32 bytes rounded up to 8, plus one 8-byte block.
pub(crate) const KWP_AES256_LEN: usize = 40;
/// Upper bound for software material. Generous for any private key encoding (an RSA-4096
/// PKCS#8 DER is ~2.4 KiB) while keeping sealed blobs bounded.
pub(crate) const MAX_SOFTWARE_LEN: usize = 16 * 1024;

/// `0x02 || wrapped` -> wrapped.
pub(crate) fn parse_aes_blob(sealed: &[u8]) -> Result<&[u8], Error> {
    match sealed.split_first() {
        Some((&FORMAT_KWP_AES, wrapped)) if wrapped.len() == KWP_AES256_LEN => Ok(wrapped),
        _ => Err(Error::BadSealedKey),
    }
}

/// `0x03 || nonce || ct||tag` -> (nonce, ct||tag).
pub(crate) fn parse_software_blob(sealed: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    match sealed.split_first() {
        Some((&FORMAT_SOFTWARE, rest))
            if rest.len() > GCM_NONCE_LEN + GCM_TAG_LEN
                && rest.len() <= GCM_NONCE_LEN + GCM_TAG_LEN + MAX_SOFTWARE_LEN =>
        {
            Ok(rest.split_at(GCM_NONCE_LEN))
        }
        _ => Err(Error::BadSealedKey),
    }
}

/// `0x04 || kind || wrapped` -> (kind, wrapped).
pub(crate) fn parse_private_blob(sealed: &[u8]) -> Result<(AsymKind, &[u8]), Error> {
    match sealed {
        [FORMAT_KWP_PRIVATE, kind, wrapped @ ..] => {
            let kind = AsymKind::from_byte(*kind).ok_or(Error::BadSealedKey)?;
            check_wrapped_len(wrapped).map_err(|_| Error::BadSealedKey)?;
            Ok((kind, wrapped))
        }
        _ => Err(Error::BadSealedKey),
    }
}

pub(crate) fn check_wrapped_len(wrapped: &[u8]) -> Result<(), Error> {
    let n = wrapped.len();
    if (2 * KWP_BLOCK..=MAX_WRAPPED_PRIVATE_LEN).contains(&n) && n % KWP_BLOCK == 0 {
        Ok(())
    } else {
        Err(Error::TokenOutput(format!(
            "AES-KWP blob of a private key is {n} bytes"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_blob_format_is_checked() {
        let mut blob = vec![FORMAT_KWP_AES];
        blob.extend_from_slice(&[0u8; KWP_AES256_LEN]);
        assert!(parse_aes_blob(&blob).is_ok());
        assert!(matches!(
            parse_aes_blob(&blob[..40]),
            Err(Error::BadSealedKey)
        ));
        blob[0] = FORMAT_SOFTWARE;
        assert!(matches!(parse_aes_blob(&blob), Err(Error::BadSealedKey)));
        assert!(matches!(parse_aes_blob(&[]), Err(Error::BadSealedKey)));
    }

    #[test]
    fn software_blob_format_is_checked() {
        let mut blob = vec![FORMAT_SOFTWARE];
        blob.extend_from_slice(&[0u8; GCM_NONCE_LEN + GCM_TAG_LEN]);
        // No material at all.
        assert!(matches!(
            parse_software_blob(&blob),
            Err(Error::BadSealedKey)
        ));
        blob.push(0);
        let (nonce, ct) = parse_software_blob(&blob).expect("well-formed");
        assert_eq!(nonce.len(), GCM_NONCE_LEN);
        assert_eq!(ct.len(), GCM_TAG_LEN + 1);
        blob[0] = FORMAT_KWP_AES;
        assert!(matches!(
            parse_software_blob(&blob),
            Err(Error::BadSealedKey)
        ));
    }

    #[test]
    fn private_blob_format_is_checked() {
        let mut blob = vec![FORMAT_KWP_PRIVATE, AsymKind::EcP256.byte()];
        blob.extend_from_slice(&[0u8; 48]);
        assert!(matches!(
            parse_private_blob(&blob),
            Ok((AsymKind::EcP256, w)) if w.len() == 48
        ));
        let mut bad_kind = blob.clone();
        bad_kind[1] = 0x09;
        assert!(matches!(
            parse_private_blob(&bad_kind),
            Err(Error::BadSealedKey)
        ));
        let mut bad_format = blob.clone();
        bad_format[0] = 0x02;
        assert!(matches!(
            parse_private_blob(&bad_format),
            Err(Error::BadSealedKey)
        ));
        // Not a whole number of KWP blocks, too short, empty.
        assert!(matches!(
            parse_private_blob(&blob[..blob.len() - 1]),
            Err(Error::BadSealedKey)
        ));
        assert!(matches!(
            parse_private_blob(&blob[..2 + 8]),
            Err(Error::BadSealedKey)
        ));
        assert!(matches!(parse_private_blob(&[]), Err(Error::BadSealedKey)));
        assert!(matches!(
            parse_private_blob(&[FORMAT_KWP_PRIVATE]),
            Err(Error::BadSealedKey)
        ));
    }
}
