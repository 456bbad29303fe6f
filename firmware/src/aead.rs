//! AEAD primitives the device offers: AES-256-GCM and SM4-GCM (96-bit nonce, 128-bit tag).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, AesGcm, Nonce};
use alloc::vec::Vec;
use keyward_shared::wire::DeviceError;
use keyward_shared::Algorithm;

/// GCM over the SM4 block cipher; `aes-gcm` is generic over any 128-bit block cipher.
type Sm4Gcm = AesGcm<sm4::Sm4, aes_gcm::aead::consts::U12>;

fn check(alg: Algorithm, key: &[u8], nonce: &[u8]) -> Result<(), DeviceError> {
    if !alg.is_symmetric() {
        return Err(DeviceError::UnsupportedAlgorithm);
    }
    if key.len() != alg.key_len() || nonce.len() != alg.nonce_len() {
        return Err(DeviceError::BadLength);
    }
    Ok(())
}

pub fn encrypt(
    alg: Algorithm,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, DeviceError> {
    check(alg, key, nonce)?;
    let payload = Payload {
        msg: plaintext,
        aad,
    };
    let nonce = Nonce::from_slice(nonce);
    let out = match alg {
        Algorithm::Aes256Gcm => Aes256Gcm::new_from_slice(key)
            .map_err(|_| DeviceError::BadLength)?
            .encrypt(nonce, payload),
        Algorithm::Sm4Gcm => Sm4Gcm::new_from_slice(key)
            .map_err(|_| DeviceError::BadLength)?
            .encrypt(nonce, payload),
        _ => return Err(DeviceError::UnsupportedAlgorithm),
    };
    out.map_err(|_| DeviceError::Internal)
}

/// Decrypts and authenticates. The returned plaintext is the caller's to zeroize.
pub fn decrypt(
    alg: Algorithm,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, DeviceError> {
    check(alg, key, nonce)?;
    if ciphertext.len() < alg.tag_len() {
        return Err(DeviceError::BadLength);
    }
    let payload = Payload {
        msg: ciphertext,
        aad,
    };
    let nonce = Nonce::from_slice(nonce);
    let out = match alg {
        Algorithm::Aes256Gcm => Aes256Gcm::new_from_slice(key)
            .map_err(|_| DeviceError::BadLength)?
            .decrypt(nonce, payload),
        Algorithm::Sm4Gcm => Sm4Gcm::new_from_slice(key)
            .map_err(|_| DeviceError::BadLength)?
            .decrypt(nonce, payload),
        _ => return Err(DeviceError::UnsupportedAlgorithm),
    };
    out.map_err(|_| DeviceError::AuthenticationFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sm4_gcm_matches_published_vector() {
        // RFC 8998 appendix A.1 (SM4-GCM test vector).
        let key = hex("0123456789ABCDEFFEDCBA9876543210");
        let nonce = hex("00001234567800000000ABCD");
        let aad = hex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2");
        let pt = hex("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDDEEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA");
        let expect = hex("17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D83DE3541E4C2B58177E065A9BF7B62EC");
        let ct = encrypt(Algorithm::Sm4Gcm, &key, &nonce, &aad, &pt).unwrap();
        assert_eq!(ct, expect);
        assert_eq!(
            decrypt(Algorithm::Sm4Gcm, &key, &nonce, &aad, &ct).unwrap(),
            pt
        );
    }

    #[test]
    fn wrong_aad_fails() {
        let key = [1u8; 32];
        let nonce = [2u8; 12];
        let ct = encrypt(Algorithm::Aes256Gcm, &key, &nonce, b"a", b"data").unwrap();
        assert_eq!(
            decrypt(Algorithm::Aes256Gcm, &key, &nonce, b"b", &ct),
            Err(DeviceError::AuthenticationFailed)
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
