//! The key service state machine: one device key, requests in, responses out.
//!
//! Sealed key layout: `[1][algorithm][nonce 12][AES-256-GCM(device key, material) || tag]`, with
//! the layout tag and algorithm bound as associated data so a sealed key cannot be replayed as a
//! key of another algorithm.
//!
//! Bounded resources, no heap: a request is answered into the caller's output buffer of
//! `OUTPUT_LEN` bytes; the one key a request needs is unsealed into a fixed zeroizing array on
//! the stack for the length of that request and never cached.

use crate::{aead, asym, rsa};
use keyward_shared::wire::{
    DecryptPadding, DeviceError, DeviceInfo, Request, Response, SignPadding, MAX_AAD_LEN,
    MAX_CHALLENGE_LEN, MAX_DATA_LEN, MAX_RANDOM_LEN, PROTOCOL_VERSION,
};
use keyward_shared::Algorithm;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

const SEALED_FORMAT: u8 = 1;
const SEAL_AAD: &[u8] = b"keyward/sealed-key/v1";
const SEAL_NONCE_LEN: usize = 12;
/// The longest key material any algorithm names: RSA-2048's `p q dP dQ qInv`.
const MAX_KEY_LEN: usize = rsa::MATERIAL_LEN;
/// The second byte of a sealed RSA prime (an intermediate of key generation), in place of an
/// algorithm id: no algorithm has this id, so a sealed prime is never accepted as a key, nor
/// a key as a prime (the byte is bound into the AEAD's associated data).
const PRIME_KIND: u8 = 0xF1;
/// Bound on `GeneratePrime` steps when the device generates an RSA key in one request
/// (`GenerateKeyPair`): each step fails with probability ~0.45, so 400 steps fail to find two
/// primes with probability below 2^-300.
const MAX_PRIME_STEPS: usize = 400;

/// Bytes of key material an algorithm's sealed key holds.
fn material_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::Rsa2048 => rsa::MATERIAL_LEN,
        other => other.key_len(),
    }
}

const MODEL: &str = "keyward-fw";
const FIRMWARE_VERSION: &str = env!("CARGO_PKG_VERSION");
static ALGORITHMS: [Algorithm; 6] = [
    Algorithm::Aes256Gcm,
    Algorithm::Sm4Gcm,
    Algorithm::EccP256,
    Algorithm::Sm2,
    Algorithm::Rsa2048,
    Algorithm::EccP384,
];

/// `KW-` and 12 hex digits.
const SERIAL_LEN: usize = 15;
const ATTESTATION_MESSAGE_MAX: usize = keyward_shared::wire::ATTESTATION_CONTEXT.len()
    + MAX_CHALLENGE_LEN
    + MODEL.len()
    + FIRMWARE_VERSION.len()
    + SERIAL_LEN
    + 2;

/// Size of the output buffer `KeyService::handle` needs for every response: the largest is an
/// `Encrypted` of `MAX_DATA_LEN` bytes (nonce, ciphertext, tag); a shorter buffer only makes
/// large requests fail with `BadLength`.
pub const OUTPUT_LEN: usize = SEAL_NONCE_LEN + MAX_DATA_LEN + aead::TAG_LEN;

/// Unsealed key material: a fixed zeroizing array and the algorithm's key length.
struct Material {
    bytes: Zeroizing<[u8; MAX_KEY_LEN]>,
    len: usize,
}

impl Material {
    fn new(len: usize) -> Result<Self, DeviceError> {
        if len > MAX_KEY_LEN {
            return Err(DeviceError::UnsupportedAlgorithm);
        }
        Ok(Material {
            bytes: Zeroizing::new([0u8; MAX_KEY_LEN]),
            len,
        })
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len]
    }
}

/// `out[..n]` as a shared slice for the rest of the output buffer's borrow.
fn prefix(out: &mut [u8], n: usize) -> Result<&[u8], DeviceError> {
    out.get(..n).ok_or(DeviceError::BadLength)
}

pub struct KeyService<R> {
    device_key: Zeroizing<[u8; 32]>,
    rng: R,
}

impl<R: RngCore + CryptoRng> KeyService<R> {
    /// Creates the service around an existing device key.
    pub fn new(device_key: [u8; 32], rng: R) -> Self {
        KeyService {
            device_key: Zeroizing::new(device_key),
            rng,
        }
    }

    /// Generates a fresh device key from the service's random source.
    pub fn generate_device_key(rng: &mut R) -> Zeroizing<[u8; 32]> {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut());
        key
    }

    pub fn info(&self) -> DeviceInfo {
        DeviceInfo {
            protocol: PROTOCOL_VERSION,
            model: MODEL,
            firmware_version: FIRMWARE_VERSION,
            algorithms: &ALGORITHMS,
            max_data_len: MAX_DATA_LEN as u32,
        }
    }

    /// Answers one request. The response's byte fields are written into `out` (give it
    /// `OUTPUT_LEN` bytes) and borrow from it; nothing is allocated.
    pub fn handle<'o>(&mut self, req: Request<'_>, out: &'o mut [u8]) -> Response<'o> {
        match self.dispatch(req, out) {
            Ok(resp) => resp,
            Err(e) => Response::Error(e),
        }
    }

    /// Sends each request to its handler below; they write into `out` and borrow from it.
    fn dispatch<'o>(
        &mut self,
        req: Request<'_>,
        out: &'o mut [u8],
    ) -> Result<Response<'o>, DeviceError> {
        match req {
            Request::Hello { protocol } => self.hello(protocol),
            Request::GenerateKey { algorithm } => self.generate_key(algorithm, out),
            Request::ImportKey {
                algorithm,
                material,
            } => self.import_key(algorithm, material, out),
            Request::Encrypt {
                algorithm,
                sealed,
                aad,
                plaintext,
            } => self.encrypt(algorithm, sealed, aad, plaintext, out),
            Request::Decrypt {
                algorithm,
                sealed,
                aad,
                nonce,
                ciphertext,
            } => self.decrypt(algorithm, sealed, aad, nonce, ciphertext, out),
            Request::GenerateKeyPair { algorithm } => self.generate_key_pair(algorithm, out),
            Request::Sign {
                algorithm,
                sealed,
                message,
                is_digest,
            } => self.sign(algorithm, sealed, message, is_digest, out),
            Request::Attest { challenge } => self.attest(challenge, out),
            Request::AsymDecrypt {
                algorithm,
                sealed,
                ciphertext,
            } => self.asym_decrypt(algorithm, sealed, ciphertext, out),
            Request::Random { len } => self.random(len, out),
            Request::GeneratePrime { algorithm } => self.generate_prime(algorithm, out),
            Request::AssembleKeyPair {
                algorithm,
                first,
                second,
            } => self.assemble_key_pair(algorithm, first, second, out),
            Request::SignRsa {
                algorithm,
                padding,
                sealed,
                message,
                is_digest,
            } => self.sign_rsa(algorithm, padding, sealed, message, is_digest, out),
            Request::DecryptRsa {
                algorithm,
                padding,
                sealed,
                ciphertext,
            } => self.decrypt_rsa(algorithm, padding, sealed, ciphertext, out),
            Request::ImportWrapped {
                algorithm,
                padding,
                wrapping,
                encrypted,
            } => self.import_wrapped(algorithm, padding, wrapping, encrypted, out),
            // Pairing belongs to the serial link: its frame loop (link.rs) answers these
            // before a request reaches the key service, which the embedded backend calls
            // directly, with no link to protect.
            Request::Pair { .. } | Request::BeginSession | Request::Authenticated { .. } => {
                Err(DeviceError::UnsupportedProtocol)
            }
        }
    }

    /// Unwraps a pairing key the host wrapped to this device's identity key
    /// (`Request::Pair`; see `pairing::wrap_key`).
    pub fn unwrap_pairing_key(
        &self,
        ephemeral: &[u8],
        wrapped_key: &[u8],
    ) -> Result<Zeroizing<[u8; crate::pairing::KEY_LEN]>, DeviceError> {
        let (secret, public_key) = self.identity_key()?;
        crate::pairing::unwrap_key(&secret[..], &public_key, ephemeral, wrapped_key)
    }

    fn hello<'o>(&self, protocol: u16) -> Result<Response<'o>, DeviceError> {
        if protocol != PROTOCOL_VERSION {
            return Err(DeviceError::UnsupportedProtocol);
        }
        Ok(Response::Hello(self.info()))
    }

    fn generate_key<'o>(
        &mut self,
        algorithm: Algorithm,
        out: &'o mut [u8],
    ) -> Result<Response<'o>, DeviceError> {
        // Asymmetric keys come from GenerateKeyPair; this seals symmetric keys only.
        if !algorithm.is_symmetric() {
            return Err(DeviceError::UnsupportedAlgorithm);
        }
        let mut material = Material::new(algorithm.key_len())?;
        self.rng.fill_bytes(material.as_mut_slice());
        let n = self.seal(algorithm, material.as_slice(), out)?;
        Ok(Response::Sealed(prefix(out, n)?))
    }

    fn import_key<'o>(
        &mut self,
        algorithm: Algorithm,
        material: &[u8],
        out: &'o mut [u8],
    ) -> Result<Response<'o>, DeviceError> {
        if !algorithm.is_symmetric() {
            return Err(DeviceError::UnsupportedAlgorithm);
        }
        if material.len() != algorithm.key_len() {
            return Err(DeviceError::BadLength);
        }
        let n = self.seal(algorithm, material, out)?;
        Ok(Response::Sealed(prefix(out, n)?))
    }

    fn encrypt<'o>(
        &mut self,
        algorithm: Algorithm,
        sealed: &[u8],
        aad: &[u8],
        plaintext: &[u8],
        out: &'o mut [u8],
    ) -> Result<Response<'o>, DeviceError> {
        if plaintext.len() > MAX_DATA_LEN || aad.len() > MAX_AAD_LEN {
            return Err(DeviceError::BadLength);
        }
        let key = self.unseal(algorithm, sealed)?;
        let mut nonce = [0u8; SEAL_NONCE_LEN];
        self.rng.fill_bytes(&mut nonce);
        if out.len() < SEAL_NONCE_LEN + plaintext.len() + aead::TAG_LEN {
            return Err(DeviceError::BadLength);
        }
        let (nonce_out, rest) = out.split_at_mut(SEAL_NONCE_LEN);
        nonce_out.copy_from_slice(&nonce);
        rest[..plaintext.len()].copy_from_slice(plaintext);
        let n = aead::encrypt_in_place(
            algorithm,
            key.as_slice(),
            &nonce,
            aad,
            rest,
            plaintext.len(),
        )?;
        Ok(Response::Encrypted {
            nonce: nonce_out,
            ciphertext: prefix(rest, n)?,
        })
    }

    fn decrypt<'o>(
        &mut self,
        algorithm: Algorithm,
        sealed: &[u8],
        aad: &[u8],
        nonce: &[u8],
        ciphertext: &[u8],
        out: &'o mut [u8],
    ) -> Result<Response<'o>, DeviceError> {
        if ciphertext.len() > MAX_DATA_LEN + algorithm.tag_len() || aad.len() > MAX_AAD_LEN {
            return Err(DeviceError::BadLength);
        }
        let key = self.unseal(algorithm, sealed)?;
        let buf = out
            .get_mut(..ciphertext.len())
            .ok_or(DeviceError::BadLength)?;
        buf.copy_from_slice(ciphertext);
        let n = aead::decrypt_in_place(algorithm, key.as_slice(), nonce, aad, buf)?;
        Ok(Response::Plaintext(prefix(out, n)?))
    }

    fn generate_key_pair<'o>(
        &mut self,
        algorithm: Algorithm,
        out: &'o mut [u8],
    ) -> Result<Response<'o>, DeviceError> {
        if algorithm == Algorithm::Rsa2048 {
            return self.generate_rsa_in_one(out);
        }
        if algorithm == Algorithm::EccP384 {
            return self.generate_ec(algorithm, asym::p384_public_key, out);
        }
        if !asym::supports(algorithm) {
            return Err(DeviceError::UnsupportedAlgorithm);
        }
        self.generate_ec(algorithm, |s| asym::public_key(algorithm, s), out)
    }

    /// Draws a private scalar, seals it and answers with its public key (`public_key` gives
    /// the DER SubjectPublicKeyInfo, or `None` for bytes that are not a valid scalar). A random
    /// string of the key's length is a valid scalar except with negligible probability; draw
    /// again if not.
    fn generate_ec<'o, const N: usize>(
        &mut self,
        algorithm: Algorithm,
        public_key: impl Fn(&[u8]) -> Option<[u8; N]>,
        out: &'o mut [u8],
    ) -> Result<Response<'o>, DeviceError> {
        for _ in 0..8 {
            let mut secret = Material::new(algorithm.key_len())?;
            self.rng.fill_bytes(secret.as_mut_slice());
            if let Some(public_key) = public_key(secret.as_slice()) {
                let n = self.seal(algorithm, secret.as_slice(), out)?;
                let (sealed, rest) = out.split_at_mut(n);
                let pk = rest
                    .get_mut(..public_key.len())
                    .ok_or(DeviceError::BadLength)?;
                pk.copy_from_slice(&public_key);
                return Ok(Response::KeyPair {
                    sealed,
                    public_key: pk,
                });
            }
        }
        Err(DeviceError::Internal)
    }

    /// RSA-2048 key generation in one request, for callers with no other requests to serve
    /// meanwhile; the host's backends use the steps (`GeneratePrime`, `AssembleKeyPair`).
    fn generate_rsa_in_one<'o>(&mut self, out: &'o mut [u8]) -> Result<Response<'o>, DeviceError> {
        let mut primes: [Zeroizing<[u8; rsa::PRIME_LEN]>; 2] = [
            Zeroizing::new([0u8; rsa::PRIME_LEN]),
            Zeroizing::new([0u8; rsa::PRIME_LEN]),
        ];
        let mut found = 0;
        for _ in 0..MAX_PRIME_STEPS {
            if found == 2 {
                break;
            }
            if let Some(p) = rsa::find_prime(&mut self.rng, rsa::CANDIDATES_PER_STEP)? {
                primes[found].copy_from_slice(&p[..]);
                found += 1;
            }
        }
        if found < 2 {
            return Err(DeviceError::Internal);
        }
        self.key_pair_from_primes(&primes[0][..], &primes[1][..], out)
    }

    fn key_pair_from_primes<'o>(
        &mut self,
        first: &[u8],
        second: &[u8],
        out: &'o mut [u8],
    ) -> Result<Response<'o>, DeviceError> {
        let mut material = Material::new(rsa::MATERIAL_LEN)?;
        let mut public_key = [0u8; rsa::SPKI_LEN];
        rsa::assemble(first, second, material.as_mut_slice(), &mut public_key)?;
        let n = self.seal(Algorithm::Rsa2048, material.as_slice(), out)?;
        let (sealed, rest) = out.split_at_mut(n);
        let pk = rest
            .get_mut(..public_key.len())
            .ok_or(DeviceError::BadLength)?;
        pk.copy_from_slice(&public_key);
        Ok(Response::KeyPair {
            sealed,
            public_key: pk,
        })
    }

    /// One bounded step of RSA key generation: a sealed prime, or `TryAgain`.
    fn generate_prime<'o>(
        &mut self,
        algorithm: Algorithm,
        out: &'o mut [u8],
    ) -> Result<Response<'o>, DeviceError> {
        if algorithm != Algorithm::Rsa2048 {
            return Err(DeviceError::UnsupportedAlgorithm);
        }
        let prime = rsa::find_prime(&mut self.rng, rsa::CANDIDATES_PER_STEP)?
            .ok_or(DeviceError::TryAgain)?;
        let n = self.seal_as(PRIME_KIND, &prime[..], out)?;
        Ok(Response::Sealed(prefix(out, n)?))
    }

    fn assemble_key_pair<'o>(
        &mut self,
        algorithm: Algorithm,
        first: &[u8],
        second: &[u8],
        out: &'o mut [u8],
    ) -> Result<Response<'o>, DeviceError> {
        if algorithm != Algorithm::Rsa2048 {
            return Err(DeviceError::UnsupportedAlgorithm);
        }
        let p = self.unseal_as(PRIME_KIND, rsa::PRIME_LEN, first)?;
        let q = self.unseal_as(PRIME_KIND, rsa::PRIME_LEN, second)?;
        self.key_pair_from_primes(p.as_slice(), q.as_slice(), out)
    }

    fn sign_rsa<'o>(
        &mut self,
        algorithm: Algorithm,
        padding: SignPadding,
        sealed: &[u8],
        message: &[u8],
        is_digest: bool,
        out: &'o mut [u8],
    ) -> Result<Response<'o>, DeviceError> {
        if algorithm != Algorithm::Rsa2048 {
            return Err(DeviceError::UnsupportedAlgorithm);
        }
        if message.len() > MAX_DATA_LEN {
            return Err(DeviceError::BadLength);
        }
        let key = self.unseal(algorithm, sealed)?;
        let n = rsa::sign(
            key.as_slice(),
            padding,
            message,
            is_digest,
            &mut self.rng,
            out,
        )?;
        Ok(Response::Signature(prefix(out, n)?))
    }

    fn decrypt_rsa<'o>(
        &mut self,
        algorithm: Algorithm,
        padding: DecryptPadding,
        sealed: &[u8],
        ciphertext: &[u8],
        out: &'o mut [u8],
    ) -> Result<Response<'o>, DeviceError> {
        if algorithm != Algorithm::Rsa2048 {
            return Err(DeviceError::UnsupportedAlgorithm);
        }
        let key = self.unseal(algorithm, sealed)?;
        let n = rsa::decrypt(key.as_slice(), padding, ciphertext, &mut self.rng, out)?;
        Ok(Response::Plaintext(prefix(out, n)?))
    }

    /// BYOK: the material is decrypted into a zeroizing buffer, sealed and checked here; it
    /// never appears in a response.
    fn import_wrapped<'o>(
        &mut self,
        algorithm: Algorithm,
        padding: DecryptPadding,
        wrapping: &[u8],
        encrypted: &[u8],
        out: &'o mut [u8],
    ) -> Result<Response<'o>, DeviceError> {
        if !algorithm.is_symmetric() {
            return Err(DeviceError::UnsupportedAlgorithm);
        }
        let key = self.unseal(Algorithm::Rsa2048, wrapping)?;
        let mut material = Zeroizing::new([0u8; rsa::MODULUS_LEN]);
        let len = rsa::decrypt(
            key.as_slice(),
            padding,
            encrypted,
            &mut self.rng,
            &mut material[..],
        )?;
        // Material of another length did not come from a correct wrapping of this key type:
        // the same answer as a failed unwrap.
        if len != algorithm.key_len() {
            return Err(DeviceError::AuthenticationFailed);
        }
        let material = &material[..len];
        let n = self.seal(algorithm, material, out)?;
        let (sealed, rest) = out.split_at_mut(n);
        let check = rest
            .get_mut(..16 + aead::TAG_LEN)
            .ok_or(DeviceError::BadLength)?;
        check.fill(0);
        aead::encrypt_in_place(algorithm, material, &[0u8; SEAL_NONCE_LEN], b"", check, 16)?;
        Ok(Response::Imported {
            sealed,
            check_value: &check[..16],
        })
    }

    fn sign<'o>(
        &mut self,
        algorithm: Algorithm,
        sealed: &[u8],
        message: &[u8],
        is_digest: bool,
        out: &'o mut [u8],
    ) -> Result<Response<'o>, DeviceError> {
        if !asym::supports(algorithm) {
            return Err(DeviceError::UnsupportedAlgorithm);
        }
        if message.len() > MAX_DATA_LEN {
            return Err(DeviceError::BadLength);
        }
        let secret = self.unseal(algorithm, sealed)?;
        let n = asym::sign(algorithm, secret.as_slice(), message, is_digest, out)?;
        Ok(Response::Signature(prefix(out, n)?))
    }

    fn attest<'o>(
        &mut self,
        challenge: &[u8],
        out: &'o mut [u8],
    ) -> Result<Response<'o>, DeviceError> {
        if challenge.len() > MAX_CHALLENGE_LEN {
            return Err(DeviceError::BadLength);
        }
        let (key, public_key) = self.identity_key()?;
        if out.len() < SERIAL_LEN + asym::SPKI_LEN + asym::MAX_SIGNATURE_LEN {
            return Err(DeviceError::BadLength);
        }
        let (serial, rest) = out.split_at_mut(SERIAL_LEN);
        let (pk, sig) = rest.split_at_mut(asym::SPKI_LEN);
        self.write_serial(serial);
        pk.copy_from_slice(&public_key);
        let serial = core::str::from_utf8(serial).map_err(|_| DeviceError::Internal)?;
        let mut message = [0u8; ATTESTATION_MESSAGE_MAX];
        let len = keyward_shared::wire::write_attestation_message(
            &mut message,
            challenge,
            MODEL,
            FIRMWARE_VERSION,
            serial,
        )
        .ok_or(DeviceError::Internal)?;
        let n = asym::sign(Algorithm::EccP256, &key[..], &message[..len], false, sig)?;
        Ok(Response::Attestation {
            serial,
            public_key: pk,
            signature: prefix(sig, n)?,
        })
    }

    fn asym_decrypt<'o>(
        &mut self,
        algorithm: Algorithm,
        sealed: &[u8],
        ciphertext: &[u8],
        out: &'o mut [u8],
    ) -> Result<Response<'o>, DeviceError> {
        if ciphertext.len() > MAX_DATA_LEN {
            return Err(DeviceError::BadLength);
        }
        let secret = self.unseal(algorithm, sealed)?;
        let n = asym::decrypt(algorithm, secret.as_slice(), ciphertext, out)?;
        Ok(Response::Plaintext(prefix(out, n)?))
    }

    fn random<'o>(&mut self, len: u32, out: &'o mut [u8]) -> Result<Response<'o>, DeviceError> {
        let len = len as usize;
        if len == 0 || len > MAX_RANDOM_LEN {
            return Err(DeviceError::BadLength);
        }
        let buf = out.get_mut(..len).ok_or(DeviceError::BadLength)?;
        self.rng.fill_bytes(buf);
        Ok(Response::Random(buf))
    }

    /// The device identity key: a P-256 scalar derived from the device key, so it is stable
    /// for the device's life and never stored anywhere. Returned with its public key.
    fn identity_key(&self) -> Result<(Zeroizing<[u8; 32]>, [u8; asym::SPKI_LEN]), DeviceError> {
        use sha2::{Digest, Sha256};
        for counter in 0u8..8 {
            let mut h = Sha256::new();
            h.update(b"keyward/device-identity/v1");
            h.update([counter]);
            h.update(self.device_key.as_ref());
            let mut candidate = Zeroizing::new([0u8; 32]);
            h.finalize_into((&mut candidate[..]).into());
            if let Some(public_key) = asym::public_key(Algorithm::EccP256, &candidate[..]) {
                return Ok((candidate, public_key));
            }
        }
        Err(DeviceError::Internal)
    }

    /// A stable, non-secret serial number derived from the device key: `KW-` and 12
    /// upper-case hex digits, written into `out` (`SERIAL_LEN` bytes).
    fn write_serial(&self, out: &mut [u8]) {
        use sha2::{Digest, Sha256};
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut h = Sha256::new();
        h.update(b"keyward/device-serial/v1");
        h.update(self.device_key.as_ref());
        let digest = h.finalize();
        out[..3].copy_from_slice(b"KW-");
        for (i, b) in digest[..6].iter().enumerate() {
            out[3 + 2 * i] = HEX[usize::from(b >> 4)];
            out[4 + 2 * i] = HEX[usize::from(b & 0xf)];
        }
    }

    /// Seals `material` as a key of `alg` into `out`; returns the sealed key's length.
    fn seal(
        &mut self,
        alg: Algorithm,
        material: &[u8],
        out: &mut [u8],
    ) -> Result<usize, DeviceError> {
        self.seal_as(alg.id(), material, out)
    }

    /// Seals `material` under the kind byte `kind` (an algorithm id, or `PRIME_KIND`).
    fn seal_as(&mut self, kind: u8, material: &[u8], out: &mut [u8]) -> Result<usize, DeviceError> {
        let mut nonce = [0u8; SEAL_NONCE_LEN];
        self.rng.fill_bytes(&mut nonce);
        let len = 2 + SEAL_NONCE_LEN + material.len() + aead::TAG_LEN;
        let out = out.get_mut(..len).ok_or(DeviceError::BadLength)?;
        out[0] = SEALED_FORMAT;
        out[1] = kind;
        out[2..2 + SEAL_NONCE_LEN].copy_from_slice(&nonce);
        let body = &mut out[2 + SEAL_NONCE_LEN..];
        body[..material.len()].copy_from_slice(material);
        aead::encrypt_in_place(
            Algorithm::Aes256Gcm,
            self.device_key.as_ref(),
            &nonce,
            &seal_aad(kind),
            body,
            material.len(),
        )?;
        Ok(len)
    }

    fn unseal(&self, alg: Algorithm, sealed: &[u8]) -> Result<Material, DeviceError> {
        self.unseal_as(alg.id(), material_len(alg), sealed)
    }

    fn unseal_as(&self, kind: u8, key_len: usize, sealed: &[u8]) -> Result<Material, DeviceError> {
        if key_len == 0
            || sealed.len() != 2 + SEAL_NONCE_LEN + key_len + aead::TAG_LEN
            || sealed[0] != SEALED_FORMAT
            || sealed[1] != kind
        {
            return Err(DeviceError::BadSealedKey);
        }
        // Ciphertext and tag are decrypted in place in one fixed zeroizing array.
        let mut buf = Zeroizing::new([0u8; MAX_KEY_LEN + aead::TAG_LEN]);
        let body = &sealed[2 + SEAL_NONCE_LEN..];
        buf[..body.len()].copy_from_slice(body);
        let n = aead::decrypt_in_place(
            Algorithm::Aes256Gcm,
            self.device_key.as_ref(),
            &sealed[2..2 + SEAL_NONCE_LEN],
            &seal_aad(kind),
            &mut buf[..body.len()],
        )
        .map_err(|_| DeviceError::BadSealedKey)?;
        let mut material = Material::new(n)?;
        material.as_mut_slice().copy_from_slice(&buf[..n]);
        Ok(material)
    }
}

fn seal_aad(kind: u8) -> [u8; 22] {
    let mut aad = [0u8; 22];
    aad[..21].copy_from_slice(SEAL_AAD);
    aad[21] = kind;
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    use alloc::borrow::ToOwned;
    use alloc::vec;
    use alloc::vec::Vec;
    use keyward_shared::wire::OwnedResponse;

    /// Runs a request through `handle` with a fresh output buffer, as the host does.
    pub(super) fn call<R: RngCore + CryptoRng>(
        svc: &mut KeyService<R>,
        req: Request<'_>,
    ) -> OwnedResponse {
        let mut out = vec![0u8; OUTPUT_LEN];
        svc.handle(req, &mut out).into()
    }

    fn service() -> KeyService<OsRng> {
        KeyService::new([42u8; 32], OsRng)
    }

    fn sealed(svc: &mut KeyService<OsRng>, algorithm: Algorithm) -> Vec<u8> {
        match call(svc, Request::GenerateKey { algorithm }) {
            OwnedResponse::Sealed(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encrypt_decrypt_both_algorithms() {
        let mut svc = service();
        for algorithm in Algorithm::ALL {
            let key = sealed(&mut svc, algorithm);
            let (nonce, ct) = match call(
                &mut svc,
                Request::Encrypt {
                    algorithm,
                    sealed: &key,
                    aad: b"ctx",
                    plaintext: b"secret",
                },
            ) {
                OwnedResponse::Encrypted { nonce, ciphertext } => (nonce, ciphertext),
                other => panic!("{other:?}"),
            };
            let resp = call(
                &mut svc,
                Request::Decrypt {
                    algorithm,
                    sealed: &key,
                    aad: b"ctx",
                    nonce: &nonce,
                    ciphertext: &ct,
                },
            );
            assert_eq!(resp, OwnedResponse::Plaintext(b"secret".to_vec()));
        }
    }

    #[test]
    fn sealed_key_is_bound_to_device_and_algorithm() {
        let mut svc = service();
        let key = sealed(&mut svc, Algorithm::Aes256Gcm);
        let mut other = KeyService::new([43u8; 32], OsRng);
        let req = Request::Encrypt {
            algorithm: Algorithm::Aes256Gcm,
            sealed: &key,
            aad: b"",
            plaintext: b"x",
        };
        assert_eq!(
            call(&mut other, req),
            OwnedResponse::Error(DeviceError::BadSealedKey)
        );
        let mut tampered = key.clone();
        tampered[1] = Algorithm::Sm4Gcm.id();
        let req = Request::Encrypt {
            algorithm: Algorithm::Sm4Gcm,
            sealed: &tampered,
            aad: b"",
            plaintext: b"x",
        };
        assert_eq!(
            call(&mut svc, req),
            OwnedResponse::Error(DeviceError::BadSealedKey)
        );
        for i in 0..key.len() {
            let mut t = key.clone();
            t[i] ^= 1;
            let req = Request::Encrypt {
                algorithm: Algorithm::Aes256Gcm,
                sealed: &t,
                aad: b"",
                plaintext: b"x",
            };
            assert_eq!(
                call(&mut svc, req),
                OwnedResponse::Error(DeviceError::BadSealedKey)
            );
        }
    }

    /// The largest requests fit `OUTPUT_LEN` exactly; one byte less of output is `BadLength`,
    /// never a panic or a truncated answer.
    #[test]
    fn output_buffer_bounds() {
        let mut svc = service();
        let key = sealed(&mut svc, Algorithm::Aes256Gcm);
        let pt = vec![7u8; MAX_DATA_LEN];
        let req = Request::Encrypt {
            algorithm: Algorithm::Aes256Gcm,
            sealed: &key,
            aad: b"",
            plaintext: &pt,
        };
        let mut out = vec![0u8; OUTPUT_LEN];
        let (nonce, ct) = match svc.handle(req.clone(), &mut out) {
            Response::Encrypted { nonce, ciphertext } => (nonce.to_vec(), ciphertext.to_vec()),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            svc.handle(req, &mut out[..OUTPUT_LEN - 1]),
            Response::Error(DeviceError::BadLength)
        );
        let dec = Request::Decrypt {
            algorithm: Algorithm::Aes256Gcm,
            sealed: &key,
            aad: b"",
            nonce: &nonce,
            ciphertext: &ct,
        };
        assert_eq!(svc.handle(dec, &mut out), Response::Plaintext(&pt));
        for req in [
            Request::GenerateKey {
                algorithm: Algorithm::Sm4Gcm,
            },
            Request::GenerateKeyPair {
                algorithm: Algorithm::Sm2,
            },
            Request::Attest {
                challenge: &[1; 64],
            },
            Request::Random { len: 16 },
        ] {
            assert_eq!(
                svc.handle(req, &mut [0u8; 8]),
                Response::Error(DeviceError::BadLength)
            );
        }
    }

    /// The attestation the device builds in its buffers verifies against the message the
    /// host rebuilds from the Hello answer.
    #[test]
    fn attestation_verifies() {
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::DecodePublicKey;
        let mut svc = service();
        let info = svc.info();
        let mut out = vec![0u8; OUTPUT_LEN];
        let (serial, public_key, signature) = match svc.handle(
            Request::Attest {
                challenge: b"challenge",
            },
            &mut out,
        ) {
            Response::Attestation {
                serial,
                public_key,
                signature,
            } => (serial.to_owned(), public_key.to_vec(), signature.to_vec()),
            other => panic!("{other:?}"),
        };
        assert!(serial.starts_with("KW-") && serial.len() == SERIAL_LEN);
        let message = keyward_shared::wire::attestation_message(
            b"challenge",
            info.model,
            info.firmware_version,
            &serial,
        );
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(&public_key).unwrap();
        let sig = p256::ecdsa::Signature::from_der(&signature).unwrap();
        key.verify(&message, &sig).unwrap();
    }

    #[test]
    fn random_bounds() {
        let mut svc = service();
        assert_eq!(
            call(&mut svc, Request::Random { len: 0 }),
            OwnedResponse::Error(DeviceError::BadLength)
        );
        match call(&mut svc, Request::Random { len: 1024 }) {
            OwnedResponse::Random(r) => assert_eq!(r.len(), 1024),
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod asym_tests {
    use super::tests::call;
    use super::*;
    use alloc::vec::Vec;
    use keyward_shared::wire::OwnedResponse;
    use rand_core::OsRng;

    #[test]
    fn key_pairs_sign_and_bad_inputs() {
        let mut svc = KeyService::new([9u8; 32], OsRng);
        for algorithm in [Algorithm::EccP256, Algorithm::Sm2] {
            let (sealed, public_key) = match call(&mut svc, Request::GenerateKeyPair { algorithm })
            {
                OwnedResponse::KeyPair { sealed, public_key } => (sealed, public_key),
                other => panic!("{other:?}"),
            };
            assert!(public_key.len() > 64);
            let sig = call(
                &mut svc,
                Request::Sign {
                    algorithm,
                    sealed: &sealed,
                    message: b"m",
                    is_digest: false,
                },
            );
            assert!(
                matches!(sig, OwnedResponse::Signature(ref s) if s[0] == 0x30),
                "{sig:?}"
            );
            // A 33-byte digest and a tampered sealed key are refused, not used.
            let long = call(
                &mut svc,
                Request::Sign {
                    algorithm,
                    sealed: &sealed,
                    message: &[0u8; 33],
                    is_digest: true,
                },
            );
            assert_eq!(long, OwnedResponse::Error(DeviceError::BadLength));
            let mut t = sealed.clone();
            t[5] ^= 1;
            let bad = call(
                &mut svc,
                Request::Sign {
                    algorithm,
                    sealed: &t,
                    message: b"m",
                    is_digest: false,
                },
            );
            assert_eq!(bad, OwnedResponse::Error(DeviceError::BadSealedKey));
        }
        assert_eq!(
            call(
                &mut svc,
                Request::GenerateKeyPair {
                    algorithm: Algorithm::Sm4Gcm
                }
            ),
            OwnedResponse::Error(DeviceError::UnsupportedAlgorithm)
        );
    }

    fn rsa_key_in_steps(svc: &mut KeyService<OsRng>) -> (Vec<u8>, Vec<u8>) {
        let mut primes = Vec::new();
        let mut steps = 0;
        while primes.len() < 2 {
            steps += 1;
            assert!(steps < 400);
            match call(
                svc,
                Request::GeneratePrime {
                    algorithm: Algorithm::Rsa2048,
                },
            ) {
                OwnedResponse::Sealed(p) => primes.push(p),
                OwnedResponse::Error(DeviceError::TryAgain) => {}
                other => panic!("{other:?}"),
            }
        }
        // A sealed prime is not a key of any algorithm, and a key is not a prime.
        for algorithm in [Algorithm::Rsa2048, Algorithm::Aes256Gcm] {
            let resp = call(
                svc,
                Request::Encrypt {
                    algorithm,
                    sealed: &primes[0],
                    aad: b"",
                    plaintext: b"x",
                },
            );
            assert!(matches!(resp, OwnedResponse::Error(_)), "{resp:?}");
        }
        match call(
            svc,
            Request::AssembleKeyPair {
                algorithm: Algorithm::Rsa2048,
                first: &primes[0],
                second: &primes[1],
            },
        ) {
            OwnedResponse::KeyPair { sealed, public_key } => (sealed, public_key),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rsa_keys_in_steps_sign_decrypt_and_import() {
        use ::rsa::pkcs8::DecodePublicKey;
        use sha2::{Digest, Sha256};
        let mut svc = KeyService::new([9u8; 32], OsRng);
        let (sealed, spki) = rsa_key_in_steps(&mut svc);
        assert_eq!(sealed.len(), 2 + 12 + crate::rsa::MATERIAL_LEN + 16);
        let pk = ::rsa::RsaPublicKey::from_public_key_der(&spki).unwrap();
        // A tampered sealed key, or primes sealed as a key, are refused.
        let mut t = sealed.clone();
        t[20] ^= 1;
        fn sign(sealed: &[u8], padding: SignPadding) -> Request<'_> {
            Request::SignRsa {
                algorithm: Algorithm::Rsa2048,
                padding,
                sealed,
                message: b"m",
                is_digest: false,
            }
        }
        assert_eq!(
            call(&mut svc, sign(&t, SignPadding::PssSha256)),
            OwnedResponse::Error(DeviceError::BadSealedKey)
        );
        let OwnedResponse::Signature(sig) = call(&mut svc, sign(&sealed, SignPadding::PssSha256))
        else {
            panic!()
        };
        pk.verify(
            ::rsa::Pss::new_with_salt::<Sha256>(32),
            &Sha256::digest(b"m"),
            &sig,
        )
        .unwrap();

        // BYOK: AES material wrapped outside the device, imported, and its check value is
        // the one the material itself gives.
        let material = [0x42u8; 32];
        let wrapped = pk
            .encrypt(&mut OsRng, ::rsa::Oaep::new::<sha1::Sha1>(), &material)
            .unwrap();
        let OwnedResponse::Imported {
            sealed: imported,
            check_value,
        } = call(
            &mut svc,
            Request::ImportWrapped {
                algorithm: Algorithm::Aes256Gcm,
                padding: DecryptPadding::OaepSha1,
                wrapping: &sealed,
                encrypted: &wrapped,
            },
        )
        else {
            panic!()
        };
        let expected =
            crate::aead::encrypt(Algorithm::Aes256Gcm, &material, &[0u8; 12], b"", &[0u8; 16])
                .unwrap();
        assert_eq!(check_value, expected[..16]);
        assert!(matches!(
            call(
                &mut svc,
                Request::Encrypt {
                    algorithm: Algorithm::Aes256Gcm,
                    sealed: &imported,
                    aad: b"",
                    plaintext: b"x"
                }
            ),
            OwnedResponse::Encrypted { .. }
        ));
        // 16 bytes of material are not AES-256 material; as SM4 they are.
        let short = pk
            .encrypt(&mut OsRng, ::rsa::Pkcs1v15Encrypt, &material[..16])
            .unwrap();
        let import = |algorithm| Request::ImportWrapped {
            algorithm,
            padding: DecryptPadding::Pkcs1v15,
            wrapping: &sealed,
            encrypted: &short,
        };
        assert_eq!(
            call(&mut svc, import(Algorithm::Aes256Gcm)),
            OwnedResponse::Error(DeviceError::AuthenticationFailed)
        );
        assert!(matches!(
            call(&mut svc, import(Algorithm::Sm4Gcm)),
            OwnedResponse::Imported { .. }
        ));
        assert_eq!(
            call(&mut svc, import(Algorithm::Rsa2048)),
            OwnedResponse::Error(DeviceError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn p384_key_pairs_sign() {
        use p384::ecdsa::signature::hazmat::PrehashVerifier;
        use p384::pkcs8::DecodePublicKey;
        use sha2::{Digest, Sha256};
        let mut svc = KeyService::new([9u8; 32], OsRng);
        let OwnedResponse::KeyPair { sealed, public_key } = call(
            &mut svc,
            Request::GenerateKeyPair {
                algorithm: Algorithm::EccP384,
            },
        ) else {
            panic!()
        };
        let vk = p384::ecdsa::VerifyingKey::from_public_key_der(&public_key).unwrap();
        let OwnedResponse::Signature(sig) = call(
            &mut svc,
            Request::Sign {
                algorithm: Algorithm::EccP384,
                sealed: &sealed,
                message: b"m",
                is_digest: false,
            },
        ) else {
            panic!()
        };
        let sig = p384::ecdsa::Signature::from_der(&sig).unwrap();
        vk.verify_prehash(&Sha256::digest(b"m"), &sig).unwrap();
    }
}

#[cfg(test)]
mod robustness {
    use super::tests::call;
    use super::*;
    use alloc::vec::Vec;
    use rand_core::OsRng;

    /// Arbitrary bytes through the device's whole request path (decode, then handle) never
    /// panic: a deterministic generator stands in for a fuzzer so CI runs it every time.
    #[test]
    fn any_request_bytes_are_answered_without_panic() {
        let mut svc = KeyService::new([5u8; 32], OsRng);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut answered = 0;
        for len in 0..200usize {
            for _ in 0..40 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Bias towards small values: valid variant indices and lengths.
                        if x.is_multiple_of(3) {
                            (x >> 8) as u8 % 18
                        } else {
                            (x >> 16) as u8
                        }
                    })
                    .collect();
                if let Ok(req) = postcard::from_bytes::<Request<'_>>(&bytes) {
                    let _ = call(&mut svc, req);
                    answered += 1;
                }
            }
        }
        assert!(
            answered > 100,
            "the generator should reach the handler ({answered})"
        );
    }
}
