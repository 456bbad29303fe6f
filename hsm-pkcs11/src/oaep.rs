//! EME-OAEP decoding on the host (RFC 8017 §7.1.2, step 3), for tokens that cannot run
//! `CKM_RSA_PKCS_OAEP` with the hash a caller asks for.
//!
//! # Why hand-written
//!
//! The RSA step stays in the token (`CKM_RSA_X_509`, see `decrypt`); only the padding is
//! removed here. No well-kept crate decodes an *already decrypted* OAEP block: RustCrypto
//! `rsa` 0.9 has the code but keeps it private (`algorithms::oaep::decrypt_inner`) and reaches
//! it only through an `RsaPrivateKey`, which the host does not have; its `hazmat` module
//! exposes the raw RSA primitives only. `ring` and `aws-lc-rs` have no raw-block API, and
//! OpenSSL's `RSA_padding_check_PKCS1_OAEP_mgf1` would bring in OpenSSL for one function. So
//! this module follows the RFC step by step, with RustCrypto's constant-time structure:
//! MGF1 over `sha1`/`sha2`, every check folded into one [`subtle::Choice`], and no branch,
//! index or memory access that depends on the block's contents before the single verdict.
//!
//! # No oracle
//!
//! Whatever is wrong (first byte not zero, label hash mismatch, no `0x01` separator, a
//! non-zero byte before it) the result is the same [`Error::AuthenticationFailed`], after the
//! same work: Manger's attack needs to tell "first byte not zero" apart from the rest, and
//! nothing here does. The time taken depends only on the block length and the hash; the
//! message length is revealed only for a valid block, where the caller gets the message
//! anyway.
//!
//! # Memory
//!
//! The block is the RSA plaintext of the caller's ciphertext, so it is secret. It is copied
//! once into a `Zeroizing` buffer and unmasked there; MGF1 outputs are wiped after use and the
//! message is returned in a `Zeroizing` buffer. (The hash functions' internal buffers are
//! dropped without wiping; `sha1`/`sha2` 0.10 offer no way to wipe them.)

use sha2::digest::{Digest, FixedOutputReset};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::{Zeroize, Zeroizing};

use crate::error::Error;

/// The hash (and MGF1 hash) of an OAEP block; the label is always empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OaepHash {
    Sha1,
    Sha256,
}

/// Remove EME-OAEP padding from `em`, the full modulus-length result of raw RSA decryption
/// (leading zero byte included), with an empty label.
///
/// [`Error::AuthenticationFailed`] for every invalid block, whatever the reason.
pub(crate) fn decode(hash: OaepHash, em: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    match hash {
        OaepHash::Sha1 => decode_with::<sha1::Sha1>(em),
        OaepHash::Sha256 => decode_with::<sha2::Sha256>(em),
    }
}

fn decode_with<D: Digest + FixedOutputReset>(em: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let h_len = <D as Digest>::output_size();
    // k >= 2hLen + 2 (RFC 8017 §7.1.2 step 1c). Depends on the modulus only, not on secrets.
    if em.len() < 2 * h_len + 2 {
        return Err(Error::AuthenticationFailed);
    }
    let mut block = Zeroizing::new(em.to_vec());
    let (y_and_seed, db) = block.split_at_mut(1 + h_len);
    let (y, seed) = y_and_seed.split_at_mut(1);
    let mut hasher = D::new();
    // seed = maskedSeed xor MGF1(maskedDB); DB = maskedDB xor MGF1(seed).
    mgf1_xor(&mut hasher, db, seed);
    mgf1_xor(&mut hasher, seed, db);

    let l_hash = D::digest(b"");
    let (l_hash_found, ps_one_m) = db.split_at(h_len);
    let mut valid = y[0].ct_eq(&0u8) & l_hash_found.ct_eq(l_hash.as_slice());

    // DB = lHash' || PS (zero or more 0x00) || 0x01 || M. Walk every byte: `looking` stays set
    // until the first 0x01, `index` records where it was, and any other non-zero byte before
    // it invalidates the block.
    let mut looking = Choice::from(1u8);
    let mut index = 0u32;
    let mut stray = Choice::from(0u8);
    for (i, byte) in ps_one_m.iter().enumerate() {
        let is_zero = byte.ct_eq(&0u8);
        let is_one = byte.ct_eq(&1u8);
        // `i` < modulus length, far below u32::MAX.
        index.conditional_assign(&(i as u32), looking & is_one);
        stray |= looking & !is_zero & !is_one;
        looking &= !is_one;
    }
    valid &= !looking & !stray;

    if !bool::from(valid) {
        return Err(Error::AuthenticationFailed);
    }
    let start = index as usize + 1;
    Ok(Zeroizing::new(ps_one_m[start..].to_vec()))
}

/// `out ^= MGF1(seed, out.len())` (RFC 8017 Appendix B.2.1) with `hasher`'s hash.
fn mgf1_xor<D: Digest + FixedOutputReset>(hasher: &mut D, seed: &[u8], out: &mut [u8]) {
    for (counter, chunk) in out.chunks_mut(<D as Digest>::output_size()).enumerate() {
        // The block is at most a few hundred bytes: far fewer than 2^32 chunks.
        Digest::update(hasher, seed);
        Digest::update(hasher, (counter as u32).to_be_bytes());
        let mut mask = hasher.finalize_reset();
        for (o, m) in chunk.iter_mut().zip(mask.iter()) {
            *o ^= m;
        }
        mask.as_mut_slice().zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EME-OAEP encoding (RFC 8017 §7.1.1 step 2) with a chosen seed, for the unit tests only:
    /// the integration tests check `decode` against ciphertexts made by RustCrypto `rsa` and
    /// Python `cryptography`.
    fn encode<D: Digest + FixedOutputReset>(k: usize, seed: &[u8], msg: &[u8]) -> Vec<u8> {
        let h = <D as Digest>::output_size();
        let mut em = vec![0u8; k];
        let (head, db) = em.split_at_mut(1 + h);
        let s = &mut head[1..];
        s.copy_from_slice(seed);
        db[..h].copy_from_slice(&D::digest(b""));
        let m_start = db.len() - msg.len();
        db[m_start - 1] = 1;
        db[m_start..].copy_from_slice(msg);
        let mut hasher = D::new();
        mgf1_xor(&mut hasher, s, db);
        mgf1_xor(&mut hasher, db, s);
        em
    }

    fn check<D: Digest + FixedOutputReset>(hash: OaepHash) {
        let h = <D as Digest>::output_size();
        let seed: Vec<u8> = (0..h as u8).collect();
        for msg in [
            &b""[..],
            b"a",
            &[0u8; 32],
            &[1u8; 32],
            &vec![0x5a; 256 - 2 * h - 2],
        ] {
            let em = encode::<D>(256, &seed, msg);
            assert_eq!(decode(hash, &em).unwrap().as_slice(), msg, "{hash:?}");
        }
        let good = encode::<D>(256, &seed, b"key material");
        // Every single-bit change anywhere is rejected with the one error.
        for i in 0..good.len() {
            for bit in [0x01, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= bit;
                assert!(
                    matches!(decode(hash, &bad), Err(Error::AuthenticationFailed)),
                    "{hash:?}: byte {i} bit {bit:#x} accepted"
                );
            }
        }
        // The other hash does not decode it; too short a block is refused.
        let other = if hash == OaepHash::Sha1 {
            OaepHash::Sha256
        } else {
            OaepHash::Sha1
        };
        assert!(matches!(
            decode(other, &good),
            Err(Error::AuthenticationFailed)
        ));
        assert!(matches!(
            decode(hash, &good[..2 * h + 1]),
            Err(Error::AuthenticationFailed)
        ));
        assert!(matches!(
            decode(hash, &[0u8; 256]),
            Err(Error::AuthenticationFailed)
        ));
    }

    #[test]
    fn round_trips_and_rejects_every_bit_flip() {
        check::<sha1::Sha1>(OaepHash::Sha1);
        check::<sha2::Sha256>(OaepHash::Sha256);
    }

    /// RFC 8017's structure checks one by one: a separator missing, or a stray byte before it.
    #[test]
    fn malformed_data_blocks_are_rejected() {
        let h = 32;
        let seed = [7u8; 32];
        let mut hasher = sha2::Sha256::new();
        let build = |db_tail: &[u8], hasher: &mut sha2::Sha256| {
            let mut em = vec![0u8; 256];
            let (head, db) = em.split_at_mut(1 + h);
            let s = &mut head[1..];
            s.copy_from_slice(&seed);
            db[..h].copy_from_slice(&sha2::Sha256::digest(b""));
            let n = db_tail.len();
            let len = db.len();
            db[len - n..].copy_from_slice(db_tail);
            mgf1_xor(hasher, s, db);
            mgf1_xor(hasher, db, s);
            em
        };
        // Only zeros after lHash: no separator.
        let em = build(&[], &mut hasher);
        assert!(matches!(
            decode(OaepHash::Sha256, &em),
            Err(Error::AuthenticationFailed)
        ));
        // 0x02 before the separator.
        let em = build(&[2, 1, 0xaa], &mut hasher);
        assert!(matches!(
            decode(OaepHash::Sha256, &em),
            Err(Error::AuthenticationFailed)
        ));
        // The same with a proper separator decodes (so the builder is right).
        let em = build(&[0, 1, 0xaa], &mut hasher);
        assert_eq!(decode(OaepHash::Sha256, &em).unwrap().as_slice(), [0xaa]);
        // A second 0x01 belongs to the message.
        let em = build(&[1, 1, 0xaa], &mut hasher);
        assert_eq!(decode(OaepHash::Sha256, &em).unwrap().as_slice(), [1, 0xaa]);
    }
}
