//! AEAD primitives the device offers: AES-256-GCM and SM4-GCM (96-bit nonce, 128-bit tag).
//!
//! The request path uses the in-place functions, which work on a slice of the caller's output
//! buffer; the `Vec`-returning `encrypt`/`decrypt` are conveniences for std users (the host's
//! PKCS#11 and secrets code) behind the `alloc` feature.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, AesGcm, Nonce, Tag};
use keyward_shared::wire::DeviceError;
use keyward_shared::Algorithm;

/// GCM over the SM4 block cipher; `aes-gcm` is generic over any 128-bit block cipher.
type Sm4Gcm = AesGcm<sm4::Sm4, aes_gcm::aead::consts::U12>;

/// Length of the authentication tag of every algorithm here.
pub const TAG_LEN: usize = 16;

fn check(alg: Algorithm, key: &[u8], nonce: &[u8]) -> Result<(), DeviceError> {
    if !alg.is_symmetric() {
        return Err(DeviceError::UnsupportedAlgorithm);
    }
    if key.len() != alg.key_len() || nonce.len() != alg.nonce_len() {
        return Err(DeviceError::BadLength);
    }
    Ok(())
}

/// Encrypts `buf[..len]` in place and appends the tag: `buf[..len + TAG_LEN]` then holds
/// `ciphertext || tag`. Returns that length.
pub fn encrypt_in_place(
    alg: Algorithm,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    buf: &mut [u8],
    len: usize,
) -> Result<usize, DeviceError> {
    check(alg, key, nonce)?;
    let total = len.checked_add(TAG_LEN).ok_or(DeviceError::BadLength)?;
    let buf = buf.get_mut(..total).ok_or(DeviceError::BadLength)?;
    let (msg, tag_out) = buf.split_at_mut(len);
    let nonce = Nonce::from_slice(nonce);
    let tag = match alg {
        Algorithm::Aes256Gcm => Aes256Gcm::new_from_slice(key)
            .map_err(|_| DeviceError::BadLength)?
            .encrypt_in_place_detached(nonce, aad, msg),
        Algorithm::Sm4Gcm => Sm4Gcm::new_from_slice(key)
            .map_err(|_| DeviceError::BadLength)?
            .encrypt_in_place_detached(nonce, aad, msg),
        _ => return Err(DeviceError::UnsupportedAlgorithm),
    }
    .map_err(|_| DeviceError::Internal)?;
    tag_out.copy_from_slice(&tag);
    Ok(total)
}

/// Authenticates `buf` (`ciphertext || tag`) and decrypts it in place: the plaintext is then
/// `buf[..n]`, where `n` (the returned length) is `buf.len() - TAG_LEN`. The plaintext is the
/// caller's to zeroize.
pub fn decrypt_in_place(
    alg: Algorithm,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<usize, DeviceError> {
    check(alg, key, nonce)?;
    let n = buf
        .len()
        .checked_sub(alg.tag_len())
        .ok_or(DeviceError::BadLength)?;
    let (msg, tag) = buf.split_at_mut(n);
    let tag = Tag::clone_from_slice(tag);
    let nonce = Nonce::from_slice(nonce);
    match alg {
        Algorithm::Aes256Gcm => Aes256Gcm::new_from_slice(key)
            .map_err(|_| DeviceError::BadLength)?
            .decrypt_in_place_detached(nonce, aad, msg, &tag),
        Algorithm::Sm4Gcm => Sm4Gcm::new_from_slice(key)
            .map_err(|_| DeviceError::BadLength)?
            .decrypt_in_place_detached(nonce, aad, msg, &tag),
        _ => return Err(DeviceError::UnsupportedAlgorithm),
    }
    .map_err(|_| DeviceError::AuthenticationFailed)?;
    Ok(n)
}

/// Encrypts into a new vector (`ciphertext || tag`).
#[cfg(feature = "alloc")]
pub fn encrypt(
    alg: Algorithm,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<alloc::vec::Vec<u8>, DeviceError> {
    let mut out = alloc::vec![0u8; plaintext.len() + TAG_LEN];
    out[..plaintext.len()].copy_from_slice(plaintext);
    let n = encrypt_in_place(alg, key, nonce, aad, &mut out, plaintext.len())?;
    out.truncate(n);
    Ok(out)
}

/// Decrypts and authenticates into a new vector. The returned plaintext is the caller's to
/// zeroize.
#[cfg(feature = "alloc")]
pub fn decrypt(
    alg: Algorithm,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<alloc::vec::Vec<u8>, DeviceError> {
    check(alg, key, nonce)?;
    if ciphertext.len() < alg.tag_len() {
        return Err(DeviceError::BadLength);
    }
    let mut out = ciphertext.to_vec();
    let n = decrypt_in_place(alg, key, nonce, aad, &mut out)?;
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

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

    #[test]
    fn in_place_matches_the_vec_functions() {
        let key = [3u8; 16];
        let nonce = [4u8; 12];
        let mut buf = [0u8; 64];
        buf[..5].copy_from_slice(b"hello");
        let n = encrypt_in_place(Algorithm::Sm4Gcm, &key, &nonce, b"ad", &mut buf, 5).unwrap();
        assert_eq!(n, 5 + TAG_LEN);
        let ct = encrypt(Algorithm::Sm4Gcm, &key, &nonce, b"ad", b"hello").unwrap();
        assert_eq!(&buf[..n], &ct[..]);
        assert_eq!(
            encrypt_in_place(Algorithm::Sm4Gcm, &key, &nonce, b"ad", &mut buf[..20], 5),
            Err(DeviceError::BadLength)
        );
        let m = decrypt_in_place(Algorithm::Sm4Gcm, &key, &nonce, b"ad", &mut buf[..n]).unwrap();
        assert_eq!(&buf[..m], b"hello");
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
