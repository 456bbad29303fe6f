//! RSA-2048 inside the device, without a heap.
//!
//! Why this is written here and not taken from the `rsa` crate: `rsa` keeps its integers in
//! `BoxedUint` and its padding in `Vec`s, so it needs `alloc`, which the freestanding device
//! build does not link. The arithmetic comes from `crypto-bigint` (fixed-size `Uint`s,
//! constant-time Montgomery exponentiation, division and inversion) and the primes from
//! `crypto-primes` (its sieve works on a fixed array without `alloc`; Baillie-PSW test). What
//! is written by hand is only the glue those crates leave out: the CRT private operation with
//! blinding, the PKCS#1 v2.2 encodings (EMSA-PKCS1-v1_5, EMSA-PSS, RSAES-PKCS1-v1_5, RSAES-OAEP
//! with MGF1), and the DER of the public key.
//!
//! Private key material, as sealed: `p || q || dP || dQ || qInv`, 128 bytes each, big-endian.
//! `n` is recomputed from `p` and `q` at each use (one multiplication) rather than stored.
//! The public exponent is always 65537.
//!
//! Key generation is split so that a device can answer other requests between its slow
//! steps (docs/wire-protocol.md, "RSA key generation in steps"): [`find_prime`] tests a
//! bounded number of candidates from a fresh random start and may find nothing;
//! [`assemble`] turns two primes into the key material and public key.

use core::num::NonZeroU32;
use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
use crypto_bigint::{Limb, NonZero, Odd, U1024, U2048};
use crypto_primes::hazmat::SmallFactorsSieve;
use crypto_primes::{is_prime, Flavor};
use keyward_shared::wire::{DecryptPadding, DeviceError, SignPadding};
use rand_core::{CryptoRng, RngCore};
use sha2::digest::{Digest, FixedOutputReset};
use sha2::Sha256;
use subtle::{ConditionallySelectable, ConstantTimeEq, ConstantTimeLess};
use zeroize::{Zeroize, Zeroizing};

/// Bytes of the modulus, of a signature and of a ciphertext.
pub const MODULUS_LEN: usize = 256;
/// Bytes of each prime and of each CRT component.
pub const PRIME_LEN: usize = 128;
/// Bytes of the private key material as sealed.
pub const MATERIAL_LEN: usize = 5 * PRIME_LEN;
/// Bytes of the public key as DER SubjectPublicKeyInfo.
pub const SPKI_LEN: usize = SPKI_PREFIX.len() + MODULUS_LEN + SPKI_SUFFIX.len();
/// Candidates that pass the small-prime sieve tested by one [`find_prime`] call. About one
/// in 41 of them is prime (1024-bit numbers, a sieve of 2048 small primes), so a step finds a
/// prime with probability about 1 - (40/41)^32 ≈ 55%; a step is a few tens of milliseconds on
/// a desktop core and bounded on a microcontroller, which is what lets a device answer others
/// between steps.
pub const CANDIDATES_PER_STEP: usize = 32;

const E: u32 = 65537;
const PRIME_BITS: NonZeroU32 = match NonZeroU32::new(1024) {
    Some(b) => b,
    None => unreachable!(),
};

/// `SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING { SEQUENCE { INTEGER n, ...`
/// for a 2048-bit `n` (its INTEGER has a leading zero byte, 257 bytes of content). The test
/// `spki_matches_the_rsa_crate` checks it against the `rsa` crate's encoder.
const SPKI_PREFIX: [u8; 33] = [
    0x30, 0x82, 0x01, 0x22, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
    0x01, 0x05, 0x00, 0x03, 0x82, 0x01, 0x0f, 0x00, 0x30, 0x82, 0x01, 0x0a, 0x02, 0x82, 0x01, 0x01,
    0x00,
];
/// `INTEGER 65537`.
const SPKI_SUFFIX: [u8; 5] = [0x02, 0x03, 0x01, 0x00, 0x01];

/// DigestInfo prefix of SHA-256 (RFC 8017 section 9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
/// PSS salt length (Tencent's RSA_PSS_SHA_256: the digest length).
const PSS_SALT_LEN: usize = 32;

/// Draws a random odd 1024-bit start with its two top bits set (so that the product of two
/// such primes has exactly 2048 bits) and tests up to `candidates` sieved numbers from there.
/// Returns the first prime `p` with `gcd(e, p - 1) = 1`, big-endian, or `None` when this step
/// found none (the caller asks again: a fresh start each step keeps every step bounded).
pub fn find_prime<R: RngCore + CryptoRng>(
    rng: &mut R,
    candidates: usize,
) -> Result<Option<Zeroizing<[u8; PRIME_LEN]>>, DeviceError> {
    let mut bytes = Zeroizing::new([0u8; PRIME_LEN]);
    rng.fill_bytes(&mut bytes[..]);
    bytes[0] |= 0xC0;
    bytes[PRIME_LEN - 1] |= 1;
    let mut start = U1024::from_be_slice(&bytes[..]);
    let sieve = SmallFactorsSieve::new(start, PRIME_BITS, false).map_err(|_| DeviceError::Internal);
    start.zeroize();
    let e = NonZero::new(Limb::from(E))
        .into_option()
        .ok_or(DeviceError::Internal)?;
    for mut candidate in sieve?.take(candidates) {
        // 65537 is prime, so gcd(e, p - 1) = 1 unless p = 1 mod e.
        let usable = candidate.rem_limb(e) != Limb::ONE && is_prime(Flavor::Any, &candidate);
        if usable {
            let mut out = Zeroizing::new([0u8; PRIME_LEN]);
            out.copy_from_slice(&candidate.to_be_bytes());
            candidate.zeroize();
            return Ok(Some(out));
        }
        candidate.zeroize();
    }
    Ok(None)
}

/// The private key, unpacked for one operation and zeroized when dropped.
struct PrivateKey {
    p: U1024,
    q: U1024,
    dp: U1024,
    dq: U1024,
    qinv: U1024,
    n: U2048,
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        self.p.zeroize();
        self.q.zeroize();
        self.dp.zeroize();
        self.dq.zeroize();
        self.qinv.zeroize();
    }
}

fn odd1024(x: &U1024) -> Result<Odd<U1024>, DeviceError> {
    Odd::new(*x).into_option().ok_or(DeviceError::BadSealedKey)
}

fn nonzero1024(x: &U1024) -> Result<NonZero<U1024>, DeviceError> {
    NonZero::new(*x)
        .into_option()
        .ok_or(DeviceError::BadSealedKey)
}

impl PrivateKey {
    fn from_material(material: &[u8]) -> Result<Self, DeviceError> {
        if material.len() != MATERIAL_LEN {
            return Err(DeviceError::BadSealedKey);
        }
        let part = |i: usize| U1024::from_be_slice(&material[i * PRIME_LEN..(i + 1) * PRIME_LEN]);
        let key = PrivateKey {
            p: part(0),
            q: part(1),
            dp: part(2),
            dq: part(3),
            qinv: part(4),
            n: part(0).concatenating_mul(&part(1)),
        };
        // Sealed material is authentic, so these only guard against a sealing bug.
        if key.n.bit_width() != 2048 || !key.p.is_odd().to_bool() || !key.q.is_odd().to_bool() {
            return Err(DeviceError::BadSealedKey);
        }
        Ok(key)
    }

    /// `c^d mod n` by CRT, blinded with a random `r` (`(c r^e)^d r^-1`), and checked by
    /// re-encrypting the result: a fault in one CRT half would otherwise give away a prime
    /// (the Bellcore attack). `c` must be below `n`.
    fn private_op<R: RngCore + CryptoRng>(
        &self,
        c: &U2048,
        rng: &mut R,
    ) -> Result<Zeroizing<U2048>, DeviceError> {
        let n = Odd::new(self.n)
            .into_option()
            .ok_or(DeviceError::BadSealedKey)?;
        let n_params = FixedMontyParams::new_vartime(n);
        let e = U2048::from_u32(E);
        // Blinding factor: uniform below n (reduced from 2048 random bits plus 64 more would
        // be closer to uniform; the small bias of one reduction does not matter for blinding).
        let (r, r_inv) = {
            let mut found = None;
            for _ in 0..8 {
                let mut bytes = Zeroizing::new([0u8; MODULUS_LEN]);
                rng.fill_bytes(&mut bytes[..]);
                let r = U2048::from_be_slice(&bytes[..]).rem(n.as_nz_ref());
                if let Some(inv) = r.invert_odd_mod(&n).into_option() {
                    found = Some((Zeroizing::new(r), Zeroizing::new(inv)));
                    break;
                }
            }
            found.ok_or(DeviceError::Internal)?
        };
        let blinded =
            FixedMontyForm::new(c, &n_params) * FixedMontyForm::new(&r, &n_params).pow_vartime(&e);
        let blinded = Zeroizing::new(blinded.retrieve());

        // The primes and their Montgomery parameters are as secret as the key: zeroized too.
        let p_params = Zeroizing::new(FixedMontyParams::new(odd1024(&self.p)?));
        let q_params = Zeroizing::new(FixedMontyParams::new(odd1024(&self.q)?));
        let cp = Zeroizing::new(blinded.rem(&nonzero1024(&self.p)?));
        let cq = Zeroizing::new(blinded.rem(&nonzero1024(&self.q)?));
        let m1 = Zeroizing::new(FixedMontyForm::new(&cp, &p_params).pow(&self.dp).retrieve());
        let m2 = Zeroizing::new(FixedMontyForm::new(&cq, &q_params).pow(&self.dq).retrieve());
        // h = qInv (m1 - m2) mod p; m = m2 + h q (< n).
        let m2p = Zeroizing::new(m2.resize::<{ U2048::LIMBS }>().rem(&nonzero1024(&self.p)?));
        let diff = Zeroizing::new(m1.sub_mod(&m2p, &nonzero1024(&self.p)?));
        let h = Zeroizing::new(
            (FixedMontyForm::new(&diff, &p_params) * FixedMontyForm::new(&self.qinv, &p_params))
                .retrieve(),
        );
        let hq: Zeroizing<U2048> = Zeroizing::new(h.concatenating_mul(&self.q));
        let m = Zeroizing::new(hq.wrapping_add(&m2.resize::<{ U2048::LIMBS }>()));

        let check = FixedMontyForm::new(&m, &n_params)
            .pow_vartime(&e)
            .retrieve();
        if check != *blinded {
            return Err(DeviceError::Internal);
        }
        let unblinded = FixedMontyForm::new(&m, &n_params) * FixedMontyForm::new(&r_inv, &n_params);
        Ok(Zeroizing::new(unblinded.retrieve()))
    }
}

/// Turns two primes from [`find_prime`] into the key material (`out_material`,
/// `MATERIAL_LEN` bytes) and the public key (`out_spki`, `SPKI_LEN` bytes).
pub fn assemble(
    first: &[u8],
    second: &[u8],
    out_material: &mut [u8],
    out_spki: &mut [u8],
) -> Result<(), DeviceError> {
    if first.len() != PRIME_LEN
        || second.len() != PRIME_LEN
        || out_material.len() != MATERIAL_LEN
        || out_spki.len() != SPKI_LEN
    {
        return Err(DeviceError::BadLength);
    }
    let mut key = PrivateKey {
        p: U1024::from_be_slice(first),
        q: U1024::from_be_slice(second),
        dp: U1024::ZERO,
        dq: U1024::ZERO,
        qinv: U1024::ZERO,
        n: U2048::ZERO,
    };
    // FIPS 186-5 A.1.3: |p - q| > 2^(nlen/2 - 100). Two independent random primes are this
    // far apart except with probability ~2^-100; the same prime twice would be a fault.
    let diff = Zeroizing::new(if key.p > key.q {
        key.p.wrapping_sub(&key.q)
    } else {
        key.q.wrapping_sub(&key.p)
    });
    if diff.bit_width() <= 1024 - 100 {
        return Err(DeviceError::Internal);
    }
    key.n = key.p.concatenating_mul(&key.q);
    if key.n.bit_width() != 2048 {
        return Err(DeviceError::BadLength);
    }
    let e = U1024::from_u32(E);
    let p_minus_1 = Zeroizing::new(nonzero1024(&key.p.wrapping_sub(&U1024::ONE))?);
    let q_minus_1 = Zeroizing::new(nonzero1024(&key.q.wrapping_sub(&U1024::ONE))?);
    key.dp = e
        .invert_mod(&p_minus_1)
        .into_option()
        .ok_or(DeviceError::Internal)?;
    key.dq = e
        .invert_mod(&q_minus_1)
        .into_option()
        .ok_or(DeviceError::Internal)?;
    key.qinv = key
        .q
        .invert_odd_mod(&odd1024(&key.p)?)
        .into_option()
        .ok_or(DeviceError::Internal)?;
    for (i, part) in [&key.p, &key.q, &key.dp, &key.dq, &key.qinv]
        .into_iter()
        .enumerate()
    {
        out_material[i * PRIME_LEN..(i + 1) * PRIME_LEN].copy_from_slice(&part.to_be_bytes());
    }
    write_spki(&key.n, out_spki);
    Ok(())
}

fn write_spki(n: &U2048, out: &mut [u8]) {
    let (prefix, rest) = out.split_at_mut(SPKI_PREFIX.len());
    prefix.copy_from_slice(&SPKI_PREFIX);
    let (modulus, suffix) = rest.split_at_mut(MODULUS_LEN);
    modulus.copy_from_slice(&n.to_be_bytes());
    suffix.copy_from_slice(&SPKI_SUFFIX);
}

/// The public key (DER SubjectPublicKeyInfo) of sealed material, into `out` (`SPKI_LEN`).
pub fn public_key(material: &[u8], out: &mut [u8]) -> Result<(), DeviceError> {
    let key = PrivateKey::from_material(material)?;
    let out = out.get_mut(..SPKI_LEN).ok_or(DeviceError::BadLength)?;
    write_spki(&key.n, out);
    Ok(())
}

/// MGF1 with hash `D`: XORs the mask generated from `seed` into `out`.
fn mgf1_xor<D: Digest + FixedOutputReset>(seed: &[u8], out: &mut [u8]) {
    let mut hasher = D::new();
    let mut counter: u32 = 0;
    for chunk in out.chunks_mut(<D as Digest>::output_size()) {
        Digest::update(&mut hasher, seed);
        Digest::update(&mut hasher, counter.to_be_bytes());
        let block = hasher.finalize_reset();
        for (o, m) in chunk.iter_mut().zip(block.iter()) {
            *o ^= m;
        }
        counter = counter.wrapping_add(1);
    }
}

/// Signs a SHA-256 digest (or the SHA-256 of `message`) into `out` (`MODULUS_LEN` bytes).
pub fn sign<R: RngCore + CryptoRng>(
    material: &[u8],
    padding: SignPadding,
    message: &[u8],
    is_digest: bool,
    rng: &mut R,
    out: &mut [u8],
) -> Result<usize, DeviceError> {
    let digest: [u8; 32] = if is_digest {
        message.try_into().map_err(|_| DeviceError::BadLength)?
    } else {
        Sha256::digest(message).into()
    };
    let out = out.get_mut(..MODULUS_LEN).ok_or(DeviceError::BadLength)?;
    let key = PrivateKey::from_material(material)?;
    let mut em = Zeroizing::new([0u8; MODULUS_LEN]);
    match padding {
        SignPadding::Pkcs1v15Sha256 => {
            // EMSA-PKCS1-v1_5: 00 01 FF..FF 00 DigestInfo H
            let t_len = SHA256_DIGEST_INFO.len() + digest.len();
            em[1] = 0x01;
            em[2..MODULUS_LEN - t_len - 1].fill(0xFF);
            em[MODULUS_LEN - t_len..MODULUS_LEN - digest.len()]
                .copy_from_slice(&SHA256_DIGEST_INFO);
            em[MODULUS_LEN - digest.len()..].copy_from_slice(&digest);
        }
        SignPadding::PssSha256 => {
            // EMSA-PSS, emBits = 2047 so emLen = 256: maskedDB || H || BC.
            let mut salt = [0u8; PSS_SALT_LEN];
            rng.fill_bytes(&mut salt);
            let h: [u8; 32] = Sha256::new()
                .chain_update([0u8; 8])
                .chain_update(digest)
                .chain_update(salt)
                .finalize()
                .into();
            let db_len = MODULUS_LEN - h.len() - 1;
            let db = &mut em[..db_len];
            db[db_len - PSS_SALT_LEN - 1] = 0x01;
            db[db_len - PSS_SALT_LEN..].copy_from_slice(&salt);
            mgf1_xor::<Sha256>(&h, db);
            db[0] &= 0x7F;
            em[db_len..MODULUS_LEN - 1].copy_from_slice(&h);
            em[MODULUS_LEN - 1] = 0xBC;
        }
    }
    let m = Zeroizing::new(U2048::from_be_slice(&em[..]));
    let s = key.private_op(&m, rng)?;
    out.copy_from_slice(&s.to_be_bytes());
    Ok(MODULUS_LEN)
}

/// Decrypts a `MODULUS_LEN`-byte ciphertext into `out`; returns the plaintext length. A
/// ciphertext that does not decrypt to a well-formed padding is `AuthenticationFailed`; the
/// padding is checked without branching on secret bytes until the one answer.
pub fn decrypt<R: RngCore + CryptoRng>(
    material: &[u8],
    padding: DecryptPadding,
    ciphertext: &[u8],
    rng: &mut R,
    out: &mut [u8],
) -> Result<usize, DeviceError> {
    if ciphertext.len() != MODULUS_LEN {
        return Err(DeviceError::BadLength);
    }
    let key = PrivateKey::from_material(material)?;
    let c = U2048::from_be_slice(ciphertext);
    // Both public: a variable-time comparison leaks nothing.
    if c >= key.n {
        return Err(DeviceError::AuthenticationFailed);
    }
    let m = key.private_op(&c, rng)?;
    let mut em = Zeroizing::new([0u8; MODULUS_LEN]);
    em.copy_from_slice(&m.to_be_bytes());
    let (start, valid) = match padding {
        DecryptPadding::Pkcs1v15 => unpad_pkcs1(&em[..]),
        DecryptPadding::OaepSha1 => unpad_oaep::<sha1::Sha1>(&mut em[..]),
        DecryptPadding::OaepSha256 => unpad_oaep::<Sha256>(&mut em[..]),
    };
    if !valid {
        return Err(DeviceError::AuthenticationFailed);
    }
    let msg = &em[start..];
    out.get_mut(..msg.len())
        .ok_or(DeviceError::BadLength)?
        .copy_from_slice(msg);
    Ok(msg.len())
}

/// RSAES-PKCS1-v1_5: `00 02 PS(≥ 8 non-zero) 00 M`. Returns where M starts and whether the
/// padding is well-formed, computed in constant time.
fn unpad_pkcs1(em: &[u8]) -> (usize, bool) {
    let mut valid = em[0].ct_eq(&0) & em[1].ct_eq(&2);
    let mut found = subtle::Choice::from(0);
    let mut zero_at: u32 = 0;
    for (i, b) in em.iter().enumerate().skip(2) {
        let is_zero = b.ct_eq(&0);
        let first = is_zero & !found;
        zero_at.conditional_assign(&(i as u32), first);
        found |= is_zero;
    }
    valid &= found;
    // PS is at least 8 bytes: the separator is at index 10 or later.
    valid &= !zero_at.ct_lt(&10);
    (zero_at as usize + 1, bool::from(valid))
}

/// RSAES-OAEP with hash and MGF1 hash `D`, empty label: `00 maskedSeed maskedDB`, where DB is
/// `lHash PS(zeros) 01 M`. Unmasks `em` in place; returns where M starts and whether the
/// encoding is well-formed, computed in constant time.
fn unpad_oaep<D: Digest + FixedOutputReset>(em: &mut [u8]) -> (usize, bool) {
    let h_len = <D as Digest>::output_size();
    let (head, db) = em.split_at_mut(1 + h_len);
    let first_zero = head[0].ct_eq(&0);
    let seed = &mut head[1..];
    mgf1_xor::<D>(db, seed);
    mgf1_xor::<D>(seed, db);
    let l_hash = D::digest([]);
    let mut valid = first_zero & db[..h_len].ct_eq(&l_hash[..]);
    let mut found = subtle::Choice::from(0);
    let mut one_at: u32 = 0;
    let mut bad = subtle::Choice::from(0);
    for (i, b) in db.iter().enumerate().skip(h_len) {
        let is_one = b.ct_eq(&1);
        let is_zero = b.ct_eq(&0);
        let first = is_one & !found;
        one_at.conditional_assign(&(i as u32), first);
        // Before the 01 separator only zero bytes may appear.
        bad |= !found & !is_zero & !is_one;
        found |= is_one;
    }
    valid &= found & !bad;
    (1 + h_len + one_at as usize + 1, bool::from(valid))
}

#[cfg(test)]
mod tests {
    //! The glue checked against the `rsa` crate, an independent implementation of the same
    //! schemes (the e2e suites check again with Python's `cryptography`).
    use super::*;
    use ::rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
    use ::rsa::{Oaep, Pkcs1v15Encrypt, Pkcs1v15Sign, Pss, RsaPublicKey};
    use alloc::vec::Vec;
    use rand_core::OsRng;

    fn key() -> (Zeroizing<[u8; MATERIAL_LEN]>, [u8; SPKI_LEN]) {
        let mut primes = Vec::new();
        while primes.len() < 2 {
            if let Some(p) = find_prime(&mut OsRng, CANDIDATES_PER_STEP).unwrap() {
                primes.push(p);
            }
        }
        let mut material = Zeroizing::new([0u8; MATERIAL_LEN]);
        let mut spki = [0u8; SPKI_LEN];
        assemble(&primes[0][..], &primes[1][..], &mut material[..], &mut spki).unwrap();
        (material, spki)
    }

    #[test]
    fn signatures_and_decryptions_agree_with_the_rsa_crate() {
        let (material, spki) = key();
        let pk = RsaPublicKey::from_public_key_der(&spki).unwrap();
        // Our DER is the crate's DER.
        assert_eq!(pk.to_public_key_der().unwrap().as_bytes(), &spki[..]);
        let mut again = [0u8; SPKI_LEN];
        public_key(&material[..], &mut again).unwrap();
        assert_eq!(again, spki);

        let mut sig = [0u8; MODULUS_LEN];
        for msg in [&b""[..], b"hello", &[7u8; 1000]] {
            let digest = Sha256::digest(msg);
            sign(
                &material[..],
                SignPadding::Pkcs1v15Sha256,
                msg,
                false,
                &mut OsRng,
                &mut sig,
            )
            .unwrap();
            pk.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &sig)
                .unwrap();
            sign(
                &material[..],
                SignPadding::PssSha256,
                &digest,
                true,
                &mut OsRng,
                &mut sig,
            )
            .unwrap();
            pk.verify(Pss::new_with_salt::<Sha256>(32), &digest, &sig)
                .unwrap();
        }
        assert_eq!(
            sign(
                &material[..],
                SignPadding::PssSha256,
                b"short",
                true,
                &mut OsRng,
                &mut sig
            ),
            Err(DeviceError::BadLength)
        );

        let mut out = [0u8; MODULUS_LEN];
        for len in [0usize, 1, 16, 32, 190] {
            let pt: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
            let cases: [(DecryptPadding, Vec<u8>); 3] = [
                (
                    DecryptPadding::Pkcs1v15,
                    pk.encrypt(&mut OsRng, Pkcs1v15Encrypt, &pt).unwrap(),
                ),
                (
                    DecryptPadding::OaepSha1,
                    pk.encrypt(&mut OsRng, Oaep::new::<sha1::Sha1>(), &pt)
                        .unwrap(),
                ),
                (
                    DecryptPadding::OaepSha256,
                    pk.encrypt(&mut OsRng, Oaep::new::<Sha256>(), &pt).unwrap(),
                ),
            ];
            for (padding, ct) in cases {
                let n = decrypt(&material[..], padding, &ct, &mut OsRng, &mut out).unwrap();
                assert_eq!(&out[..n], &pt[..], "{padding:?} {len}");
                // Another padding, a damaged ciphertext, a short one: refused, no panic.
                let other = match padding {
                    DecryptPadding::OaepSha256 => DecryptPadding::OaepSha1,
                    _ => DecryptPadding::OaepSha256,
                };
                assert_eq!(
                    decrypt(&material[..], other, &ct, &mut OsRng, &mut out),
                    Err(DeviceError::AuthenticationFailed)
                );
                let mut bad = ct.clone();
                bad[100] ^= 1;
                assert!(decrypt(&material[..], padding, &bad, &mut OsRng, &mut out).is_err());
                assert_eq!(
                    decrypt(&material[..], padding, &ct[1..], &mut OsRng, &mut out),
                    Err(DeviceError::BadLength)
                );
            }
        }
        // A ciphertext not below n is refused before any private operation.
        assert_eq!(
            decrypt(
                &material[..],
                DecryptPadding::Pkcs1v15,
                &[0xFF; MODULUS_LEN],
                &mut OsRng,
                &mut out
            ),
            Err(DeviceError::AuthenticationFailed)
        );
    }

    #[test]
    fn bad_material_and_primes_are_refused() {
        let mut sig = [0u8; MODULUS_LEN];
        assert_eq!(
            sign(
                &[0u8; MATERIAL_LEN],
                SignPadding::Pkcs1v15Sha256,
                b"m",
                false,
                &mut OsRng,
                &mut sig
            ),
            Err(DeviceError::BadSealedKey)
        );
        assert_eq!(
            sign(
                &[1u8; 10],
                SignPadding::Pkcs1v15Sha256,
                b"m",
                false,
                &mut OsRng,
                &mut sig
            ),
            Err(DeviceError::BadSealedKey)
        );
        let mut material = [0u8; MATERIAL_LEN];
        let mut spki = [0u8; SPKI_LEN];
        let p = [0xC1u8; PRIME_LEN];
        // The same "prime" twice is refused (|p - q| too small), as are short inputs.
        assert!(assemble(&p, &p, &mut material, &mut spki).is_err());
        assert_eq!(
            assemble(&p[1..], &p, &mut material, &mut spki),
            Err(DeviceError::BadLength)
        );
    }
}
