//! The device's asymmetric algorithms: ECDSA P-256 and P-384 (RAW messages hashed with
//! SHA-256, as Tencent's ECC_P384 keys sign; P-384 also signs 48-byte SHA-384 digests) and SM2
//! (SM2DSA with SM3 and the
//! default user id; SM2 decryption, C1C3C2 ASN.1). Private scalars exist unsealed only inside
//! these functions, in zeroizing buffers. Signing is deterministic (RFC 6979), so it needs no
//! randomness from the platform. Everything writes into caller-supplied buffers: no heap.

use keyward_shared::wire::DeviceError;
use keyward_shared::Algorithm;
use sha2::{Digest, Sha256};

/// The SM2 user id used when none is agreed (GB/T 35276).
pub const SM2_DEFAULT_ID: &str = "1234567812345678";

/// Length of a P-256 or SM2 public key as DER SubjectPublicKeyInfo: a constant 26-byte prefix
/// and the 65-byte uncompressed SEC1 point.
pub const SPKI_LEN: usize = SPKI_PREFIX_LEN + 65;
const SPKI_PREFIX_LEN: usize = 26;

/// Longest DER ECDSA/SM2DSA signature over a 256-bit curve (two 33-byte INTEGERs in a SEQUENCE).
pub const MAX_SIGNATURE_LEN: usize = 72;
/// Longest DER ECDSA signature over P-384 (two 49-byte INTEGERs in a SEQUENCE).
pub const P384_MAX_SIGNATURE_LEN: usize = 104;

/// `SEQUENCE { SEQUENCE { OID id-ecPublicKey, OID <curve> }, BIT STRING (0 unused bits) ... }`:
/// everything of the SubjectPublicKeyInfo before the point. Both curve OIDs (prime256v1
/// 1.2.840.10045.3.1.7 and SM2 1.2.156.10197.1.301) encode in 8 bytes, so both prefixes are 26
/// bytes. The tests check them against the crates' own `to_public_key_der`.
const P256_SPKI_PREFIX: [u8; SPKI_PREFIX_LEN] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const SM2_SPKI_PREFIX: [u8; SPKI_PREFIX_LEN] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d, 0x03, 0x42, 0x00,
];

/// `SEQUENCE { SEQUENCE { OID id-ecPublicKey, OID secp384r1 }, BIT STRING (0 unused bits)`:
/// the P-384 SubjectPublicKeyInfo before its 97-byte uncompressed point (checked against the
/// crate's encoder in the tests).
const P384_SPKI_PREFIX: [u8; 23] = [
    0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
    0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
];
/// Length of a P-384 public key as DER SubjectPublicKeyInfo.
pub const P384_SPKI_LEN: usize = P384_SPKI_PREFIX.len() + 97;

/// The elliptic-curve algorithms this module runs (RSA-2048 is `crate::rsa`).
pub fn supports(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::EccP256 | Algorithm::EccP384 | Algorithm::Sm2
    )
}

/// The P-384 public key (DER SubjectPublicKeyInfo) of a 48-byte scalar, or `None` if the
/// bytes are not a valid scalar (the caller draws again).
pub fn p384_public_key(secret: &[u8]) -> Option<[u8; P384_SPKI_LEN]> {
    use p384::elliptic_curve::sec1::ToEncodedPoint;
    let sk = p384::SecretKey::from_slice(secret).ok()?;
    let point = sk.public_key().to_encoded_point(false);
    let mut out = [0u8; P384_SPKI_LEN];
    out[..P384_SPKI_PREFIX.len()].copy_from_slice(&P384_SPKI_PREFIX);
    out[P384_SPKI_PREFIX.len()..].copy_from_slice(point.as_bytes().get(..97)?);
    Some(out)
}

/// The public key (DER SubjectPublicKeyInfo) of a private scalar, or `None` if the bytes are
/// not a valid scalar (the caller draws again).
pub fn public_key(alg: Algorithm, secret: &[u8]) -> Option<[u8; SPKI_LEN]> {
    let mut out = [0u8; SPKI_LEN];
    match alg {
        Algorithm::EccP256 => {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            let sk = p256::SecretKey::from_slice(secret).ok()?;
            let point = sk.public_key().to_encoded_point(false);
            out[..SPKI_PREFIX_LEN].copy_from_slice(&P256_SPKI_PREFIX);
            out[SPKI_PREFIX_LEN..].copy_from_slice(point.as_bytes().get(..65)?);
        }
        Algorithm::Sm2 => {
            use sm2::elliptic_curve::sec1::ToSec1Point;
            let sk = sm2::SecretKey::from_slice(secret).ok()?;
            let point = sk.public_key().to_sec1_point(false);
            out[..SPKI_PREFIX_LEN].copy_from_slice(&SM2_SPKI_PREFIX);
            out[SPKI_PREFIX_LEN..].copy_from_slice(point.as_bytes().get(..65)?);
        }
        _ => return None,
    }
    Some(out)
}

fn put(out: &mut [u8], bytes: &[u8]) -> Result<usize, DeviceError> {
    out.get_mut(..bytes.len())
        .ok_or(DeviceError::BadLength)?
        .copy_from_slice(bytes);
    Ok(bytes.len())
}

/// Length of the digest every algorithm signs: SHA-256 or SM3.
pub const DIGEST_LEN: usize = 32;
/// Length of a SHA-384 digest, which P-384 also signs.
pub const P384_DIGEST_LEN: usize = 48;

/// Whether `alg` signs a precomputed digest of `len` bytes.
pub fn digest_len_ok(alg: Algorithm, len: usize) -> bool {
    len == DIGEST_LEN || (alg == Algorithm::EccP384 && len == P384_DIGEST_LEN)
}

/// Signs `message` (or the digest `message` when `is_digest`: 32 bytes, or on P-384 also a
/// 48-byte SHA-384 digest) and writes the DER signature into `out`; returns its length (at
/// most `MAX_SIGNATURE_LEN` over the 256-bit curves, `P384_MAX_SIGNATURE_LEN` over P-384).
pub fn sign(
    alg: Algorithm,
    secret: &[u8],
    message: &[u8],
    is_digest: bool,
    out: &mut [u8],
) -> Result<usize, DeviceError> {
    if is_digest && !digest_len_ok(alg, message.len()) {
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
            put(out, sig.to_der().as_bytes())
        }
        Algorithm::EccP384 => {
            use p384::ecdsa::signature::hazmat::PrehashSigner;
            let key = p384::ecdsa::SigningKey::from_slice(secret)
                .map_err(|_| DeviceError::BadSealedKey)?;
            // The digest as given (its length checked above), or SHA-256 of a RAW message,
            // in a stack buffer: no heap.
            let mut buf = [0u8; P384_DIGEST_LEN];
            let digest: &[u8] = if is_digest {
                message
            } else {
                buf[..DIGEST_LEN].copy_from_slice(&Sha256::digest(message));
                &buf[..DIGEST_LEN]
            };
            // A 32-byte prehash is shorter than the 48-byte field: ECDSA uses it as the
            // integer it is (SEC1 4.1.3 step 5), as the host's and PKCS#11's verifiers do; a
            // 48-byte SHA-384 digest fills the field exactly.
            let sig: p384::ecdsa::Signature = key
                .sign_prehash(digest)
                .map_err(|_| DeviceError::Internal)?;
            put(out, sig.to_der().as_bytes())
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
            put(out, sig.to_der().as_bytes())
        }
        _ => Err(DeviceError::UnsupportedAlgorithm),
    }
}

/// Decrypts an SM2 ciphertext (C1C3C2, ASN.1 DER) into `out`; returns the plaintext length.
/// The same steps as the `sm2` crate's `decrypt_der` (which needs `alloc` only for its result
/// vector): the crate's DER decoder, then its decryption into a caller buffer.
pub fn decrypt(
    alg: Algorithm,
    secret: &[u8],
    ciphertext: &[u8],
    out: &mut [u8],
) -> Result<usize, DeviceError> {
    match alg {
        Algorithm::Sm2 => {
            use sm2::pkcs8::der::Decode;
            let key = sm2::pke::DecryptingKey::from_slice(secret)
                .map_err(|_| DeviceError::BadSealedKey)?;
            // The type's defaults name the curve (SM2) and the digest (SM3).
            let cipher: sm2::pke::Cipher<'_> =
                Decode::from_der(ciphertext).map_err(|_| DeviceError::AuthenticationFailed)?;
            if out.len() < cipher.c2().len() {
                return Err(DeviceError::BadLength);
            }
            key.decrypt_cipher_with_buf(&cipher, out)
                .map_err(|_| DeviceError::AuthenticationFailed)
        }
        _ => Err(DeviceError::UnsupportedAlgorithm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn spki_matches_the_crates_encoders() {
        for seed in 1u8..6 {
            let secret = [seed; 32];
            let ours = public_key(Algorithm::EccP256, &secret).unwrap();
            let theirs = {
                use p256::pkcs8::EncodePublicKey;
                p256::SecretKey::from_slice(&secret)
                    .unwrap()
                    .public_key()
                    .to_public_key_der()
                    .unwrap()
            };
            assert_eq!(&ours[..], theirs.as_bytes());
            let ours = public_key(Algorithm::Sm2, &secret).unwrap();
            let theirs = {
                use sm2::pkcs8::EncodePublicKey;
                sm2::SecretKey::from_slice(&secret)
                    .unwrap()
                    .public_key()
                    .to_public_key_der()
                    .unwrap()
            };
            assert_eq!(&ours[..], theirs.as_bytes());
        }
    }

    #[test]
    fn p384_spki_matches_the_crate_and_signatures_verify() {
        use p384::ecdsa::signature::hazmat::PrehashVerifier;
        use p384::pkcs8::{DecodePublicKey, EncodePublicKey};
        let secret = [3u8; 48];
        let ours = p384_public_key(&secret).unwrap();
        let theirs = p384::SecretKey::from_slice(&secret)
            .unwrap()
            .public_key()
            .to_public_key_der()
            .unwrap();
        assert_eq!(&ours[..], theirs.as_bytes());
        let vk = p384::ecdsa::VerifyingKey::from_public_key_der(&ours).unwrap();
        let mut out = [0u8; P384_MAX_SIGNATURE_LEN];
        for m in 0u8..10 {
            let n = sign(Algorithm::EccP384, &secret, &[m; 9], false, &mut out).unwrap();
            let sig = p384::ecdsa::Signature::from_der(&out[..n]).unwrap();
            vk.verify_prehash(&Sha256::digest([m; 9]), &sig).unwrap();
        }
    }

    #[test]
    fn p384_signs_sha384_and_sha256_digests() {
        use p384::ecdsa::signature::hazmat::PrehashVerifier;
        use p384::ecdsa::signature::Verifier;
        use p384::pkcs8::DecodePublicKey;
        use sha2::Sha384;
        let secret = [5u8; 48];
        let vk = p384::ecdsa::VerifyingKey::from_public_key_der(&p384_public_key(&secret).unwrap())
            .unwrap();
        let mut out = [0u8; P384_MAX_SIGNATURE_LEN];
        for m in 0u8..10 {
            // A SHA-384 digest signs as ECDSA-with-SHA-384 of the message does, which the
            // crate's own (hashing) verifier checks.
            let d384 = Sha384::digest([m; 7]);
            let n = sign(Algorithm::EccP384, &secret, &d384, true, &mut out).unwrap();
            let sig = p384::ecdsa::Signature::from_der(&out[..n]).unwrap();
            vk.verify(&[m; 7], &sig).unwrap();
            assert!(vk.verify(&[m ^ 1; 7], &sig).is_err());
            let d256 = Sha256::digest([m; 7]);
            let n = sign(Algorithm::EccP384, &secret, &d256, true, &mut out).unwrap();
            let sig = p384::ecdsa::Signature::from_der(&out[..n]).unwrap();
            vk.verify_prehash(&d256, &sig).unwrap();
        }
        // Other lengths stay refused, and 48 bytes only on P-384.
        for len in [0usize, 31, 33, 47, 49, 64] {
            assert_eq!(
                sign(
                    Algorithm::EccP384,
                    &secret,
                    &[1u8; 64][..len],
                    true,
                    &mut out
                ),
                Err(DeviceError::BadLength),
                "{len}"
            );
        }
        for alg in [Algorithm::EccP256, Algorithm::Sm2] {
            assert_eq!(
                sign(alg, &[9u8; 32], &[1u8; 48], true, &mut out),
                Err(DeviceError::BadLength)
            );
        }
    }

    #[test]
    fn sm2_decrypt_matches_decrypt_der() {
        use sm2::pkcs8::DecodePublicKey;
        let secret = [7u8; 32];
        let spki = public_key(Algorithm::Sm2, &secret).unwrap();
        let pk = sm2::PublicKey::from_public_key_der(&spki).unwrap();
        let theirs = sm2::pke::DecryptingKey::from_slice(&secret).unwrap();
        for len in [1usize, 31, 32, 33, 100, 1000] {
            let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let ct = sm2::pke::EncryptingKey::new(pk)
                .encrypt_der(&mut TestRng(len as u64), &pt)
                .unwrap();
            let mut out = [0u8; 1024];
            let n = decrypt(Algorithm::Sm2, &secret, &ct, &mut out).unwrap();
            assert_eq!(&out[..n], &pt[..]);
            assert_eq!(theirs.decrypt_der(&ct).unwrap(), pt);
            assert_eq!(
                decrypt(Algorithm::Sm2, &secret, &ct, &mut out[..len - 1]),
                Err(DeviceError::BadLength)
            );
            let mut bad = ct.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(decrypt(Algorithm::Sm2, &secret, &bad, &mut out).is_err());
            assert!(theirs.decrypt_der(&bad).is_err());
        }
    }

    #[test]
    fn signatures_fit_their_bound() {
        let mut out = [0u8; MAX_SIGNATURE_LEN];
        for alg in [Algorithm::EccP256, Algorithm::Sm2] {
            for m in 0u8..20 {
                let n = sign(alg, &[9u8; 32], &[m; 5], false, &mut out).unwrap();
                assert!(n <= MAX_SIGNATURE_LEN && out[0] == 0x30);
            }
            assert_eq!(
                sign(alg, &[9u8; 32], b"m", false, &mut [0u8; 8]),
                Err(DeviceError::BadLength)
            );
        }
    }

    /// A deterministic rand_core 0.10 generator for the `sm2` crate's encryption.
    struct TestRng(u64);

    impl sm2::elliptic_curve::rand_core::TryRng for TestRng {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            self.try_next_u64().map(|x| x as u32)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Ok(self.0 >> 11 ^ self.0)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            for b in dst {
                *b = self.try_next_u64()? as u8;
            }
            Ok(())
        }
    }

    impl sm2::elliptic_curve::rand_core::TryCryptoRng for TestRng {}
}
