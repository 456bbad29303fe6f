//! The key service state machine: one device key, requests in, responses out.
//!
//! Sealed key layout: `[1][algorithm][nonce 12][AES-256-GCM(device key, material) || tag]`, with
//! the layout tag and algorithm bound as associated data so a sealed key cannot be replayed as a
//! key of another algorithm.

use crate::{aead, asym};
use alloc::vec;
use alloc::vec::Vec;
use keyward_shared::wire::{
    DeviceError, DeviceInfo, Request, Response, MAX_AAD_LEN, MAX_DATA_LEN, MAX_RANDOM_LEN,
    PROTOCOL_VERSION,
};
use keyward_shared::Algorithm;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

const SEALED_FORMAT: u8 = 1;
const SEAL_AAD: &[u8] = b"keyward/sealed-key/v1";
const SEAL_NONCE_LEN: usize = 12;

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
            model: "keyward-fw".into(),
            firmware_version: env!("CARGO_PKG_VERSION").into(),
            algorithms: [
                Algorithm::Aes256Gcm,
                Algorithm::Sm4Gcm,
                Algorithm::EccP256,
                Algorithm::Sm2,
            ]
            .to_vec(),
            max_data_len: MAX_DATA_LEN as u32,
        }
    }

    pub fn handle(&mut self, req: Request<'_>) -> Response {
        match self.dispatch(req) {
            Ok(resp) => resp,
            Err(e) => Response::Error(e),
        }
    }

    fn dispatch(&mut self, req: Request<'_>) -> Result<Response, DeviceError> {
        match req {
            Request::Hello { protocol } => {
                if protocol != PROTOCOL_VERSION {
                    return Err(DeviceError::UnsupportedProtocol);
                }
                Ok(Response::Hello(self.info()))
            }
            Request::GenerateKey { algorithm } => {
                // Asymmetric keys come with the serial firmware work; this core seals
                // symmetric keys only.
                if !algorithm.is_symmetric() {
                    return Err(DeviceError::UnsupportedAlgorithm);
                }
                let mut material = Zeroizing::new(vec![0u8; algorithm.key_len()]);
                self.rng.fill_bytes(&mut material);
                Ok(Response::Sealed(self.seal(algorithm, &material)?))
            }
            Request::ImportKey {
                algorithm,
                material,
            } => {
                if !algorithm.is_symmetric() {
                    return Err(DeviceError::UnsupportedAlgorithm);
                }
                if material.len() != algorithm.key_len() {
                    return Err(DeviceError::BadLength);
                }
                Ok(Response::Sealed(self.seal(algorithm, material)?))
            }
            Request::Encrypt {
                algorithm,
                sealed,
                aad,
                plaintext,
            } => {
                if plaintext.len() > MAX_DATA_LEN || aad.len() > MAX_AAD_LEN {
                    return Err(DeviceError::BadLength);
                }
                let key = self.unseal(algorithm, sealed)?;
                let mut nonce = [0u8; 12];
                self.rng.fill_bytes(&mut nonce);
                let ciphertext = aead::encrypt(algorithm, &key, &nonce, aad, plaintext)?;
                Ok(Response::Encrypted {
                    nonce: nonce.to_vec(),
                    ciphertext,
                })
            }
            Request::Decrypt {
                algorithm,
                sealed,
                aad,
                nonce,
                ciphertext,
            } => {
                if ciphertext.len() > MAX_DATA_LEN + algorithm.tag_len() || aad.len() > MAX_AAD_LEN
                {
                    return Err(DeviceError::BadLength);
                }
                let key = self.unseal(algorithm, sealed)?;
                let pt = aead::decrypt(algorithm, &key, nonce, aad, ciphertext)?;
                Ok(Response::Plaintext(pt))
            }
            Request::GenerateKeyPair { algorithm } => {
                if !asym::supports(algorithm) {
                    return Err(DeviceError::UnsupportedAlgorithm);
                }
                // A random 32-byte string is a valid scalar except with negligible probability;
                // draw again if not.
                for _ in 0..8 {
                    let mut secret = Zeroizing::new(vec![0u8; algorithm.key_len()]);
                    self.rng.fill_bytes(&mut secret);
                    if let Some(public_key) = asym::public_key(algorithm, &secret) {
                        return Ok(Response::KeyPair {
                            sealed: self.seal(algorithm, &secret)?,
                            public_key,
                        });
                    }
                }
                Err(DeviceError::Internal)
            }
            Request::Sign {
                algorithm,
                sealed,
                message,
                is_digest,
            } => {
                if !asym::supports(algorithm) {
                    return Err(DeviceError::UnsupportedAlgorithm);
                }
                if message.len() > MAX_DATA_LEN {
                    return Err(DeviceError::BadLength);
                }
                let secret = self.unseal(algorithm, sealed)?;
                Ok(Response::Signature(asym::sign(
                    algorithm, &secret, message, is_digest,
                )?))
            }
            Request::Attest { challenge } => {
                if challenge.len() > 64 {
                    return Err(DeviceError::BadLength);
                }
                let info = self.info();
                let serial = self.serial();
                let key = self.identity_key()?;
                let message = keyward_shared::wire::attestation_message(challenge, &info, &serial);
                let signature = asym::sign(Algorithm::EccP256, &key, &message, false)?;
                let public_key =
                    asym::public_key(Algorithm::EccP256, &key).ok_or(DeviceError::Internal)?;
                Ok(Response::Attestation {
                    serial,
                    public_key,
                    signature,
                })
            }
            Request::AsymDecrypt {
                algorithm,
                sealed,
                ciphertext,
            } => {
                if ciphertext.len() > MAX_DATA_LEN {
                    return Err(DeviceError::BadLength);
                }
                let secret = self.unseal(algorithm, sealed)?;
                Ok(Response::Plaintext(asym::decrypt(
                    algorithm, &secret, ciphertext,
                )?))
            }
            Request::Random { len } => {
                let len = len as usize;
                if len == 0 || len > MAX_RANDOM_LEN {
                    return Err(DeviceError::BadLength);
                }
                let mut out = vec![0u8; len];
                self.rng.fill_bytes(&mut out);
                Ok(Response::Random(out))
            }
        }
    }

    /// The device identity key: a P-256 scalar derived from the device key, so it is stable
    /// for the device's life and never stored anywhere.
    fn identity_key(&self) -> Result<Zeroizing<Vec<u8>>, DeviceError> {
        use sha2::{Digest, Sha256};
        for counter in 0u8..8 {
            let mut h = Sha256::new();
            h.update(b"keyward/device-identity/v1");
            h.update([counter]);
            h.update(self.device_key.as_ref());
            let candidate = Zeroizing::new(h.finalize().to_vec());
            if asym::public_key(Algorithm::EccP256, &candidate).is_some() {
                return Ok(candidate);
            }
        }
        Err(DeviceError::Internal)
    }

    /// A stable, non-secret serial number derived from the device key.
    fn serial(&self) -> alloc::string::String {
        use core::fmt::Write;
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"keyward/device-serial/v1");
        h.update(self.device_key.as_ref());
        let mut s = alloc::string::String::from("KW-");
        for b in &h.finalize()[..6] {
            let _ = write!(s, "{b:02X}");
        }
        s
    }

    fn seal(&mut self, alg: Algorithm, material: &[u8]) -> Result<Vec<u8>, DeviceError> {
        let mut nonce = [0u8; SEAL_NONCE_LEN];
        self.rng.fill_bytes(&mut nonce);
        let aad = seal_aad(alg);
        let ct = aead::encrypt(
            Algorithm::Aes256Gcm,
            self.device_key.as_ref(),
            &nonce,
            &aad,
            material,
        )?;
        let mut out = Vec::with_capacity(2 + SEAL_NONCE_LEN + ct.len());
        out.push(SEALED_FORMAT);
        out.push(alg.id());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn unseal(&self, alg: Algorithm, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, DeviceError> {
        if sealed.len() != 2 + SEAL_NONCE_LEN + alg.key_len() + 16
            || sealed[0] != SEALED_FORMAT
            || sealed[1] != alg.id()
        {
            return Err(DeviceError::BadSealedKey);
        }
        let nonce = &sealed[2..2 + SEAL_NONCE_LEN];
        let aad = seal_aad(alg);
        aead::decrypt(
            Algorithm::Aes256Gcm,
            self.device_key.as_ref(),
            nonce,
            &aad,
            &sealed[2 + SEAL_NONCE_LEN..],
        )
        .map(Zeroizing::new)
        .map_err(|_| DeviceError::BadSealedKey)
    }
}

fn seal_aad(alg: Algorithm) -> [u8; 22] {
    let mut aad = [0u8; 22];
    aad[..21].copy_from_slice(SEAL_AAD);
    aad[21] = alg.id();
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn service() -> KeyService<OsRng> {
        KeyService::new([42u8; 32], OsRng)
    }

    fn sealed(svc: &mut KeyService<OsRng>, algorithm: Algorithm) -> Vec<u8> {
        match svc.handle(Request::GenerateKey { algorithm }) {
            Response::Sealed(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encrypt_decrypt_both_algorithms() {
        let mut svc = service();
        for algorithm in Algorithm::ALL {
            let key = sealed(&mut svc, algorithm);
            let (nonce, ct) = match svc.handle(Request::Encrypt {
                algorithm,
                sealed: &key,
                aad: b"ctx",
                plaintext: b"secret",
            }) {
                Response::Encrypted { nonce, ciphertext } => (nonce, ciphertext),
                other => panic!("{other:?}"),
            };
            let resp = svc.handle(Request::Decrypt {
                algorithm,
                sealed: &key,
                aad: b"ctx",
                nonce: &nonce,
                ciphertext: &ct,
            });
            assert_eq!(resp, Response::Plaintext(b"secret".to_vec()));
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
            other.handle(req),
            Response::Error(DeviceError::BadSealedKey)
        );
        let mut tampered = key.clone();
        tampered[1] = Algorithm::Sm4Gcm.id();
        let req = Request::Encrypt {
            algorithm: Algorithm::Sm4Gcm,
            sealed: &tampered,
            aad: b"",
            plaintext: b"x",
        };
        assert_eq!(svc.handle(req), Response::Error(DeviceError::BadSealedKey));
        for i in 0..key.len() {
            let mut t = key.clone();
            t[i] ^= 1;
            let req = Request::Encrypt {
                algorithm: Algorithm::Aes256Gcm,
                sealed: &t,
                aad: b"",
                plaintext: b"x",
            };
            assert_eq!(svc.handle(req), Response::Error(DeviceError::BadSealedKey));
        }
    }

    #[test]
    fn random_bounds() {
        let mut svc = service();
        assert_eq!(
            svc.handle(Request::Random { len: 0 }),
            Response::Error(DeviceError::BadLength)
        );
        match svc.handle(Request::Random { len: 1024 }) {
            Response::Random(r) => assert_eq!(r.len(), 1024),
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod asym_tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn key_pairs_sign_and_bad_inputs() {
        let mut svc = KeyService::new([9u8; 32], OsRng);
        for algorithm in [Algorithm::EccP256, Algorithm::Sm2] {
            let (sealed, public_key) = match svc.handle(Request::GenerateKeyPair { algorithm }) {
                Response::KeyPair { sealed, public_key } => (sealed, public_key),
                other => panic!("{other:?}"),
            };
            assert!(public_key.len() > 64);
            let sig = svc.handle(Request::Sign {
                algorithm,
                sealed: &sealed,
                message: b"m",
                is_digest: false,
            });
            assert!(
                matches!(sig, Response::Signature(ref s) if s[0] == 0x30),
                "{sig:?}"
            );
            // A 33-byte digest and a tampered sealed key are refused, not used.
            let long = svc.handle(Request::Sign {
                algorithm,
                sealed: &sealed,
                message: &[0u8; 33],
                is_digest: true,
            });
            assert_eq!(long, Response::Error(DeviceError::BadLength));
            let mut t = sealed.clone();
            t[5] ^= 1;
            let bad = svc.handle(Request::Sign {
                algorithm,
                sealed: &t,
                message: b"m",
                is_digest: false,
            });
            assert_eq!(bad, Response::Error(DeviceError::BadSealedKey));
        }
        assert_eq!(
            svc.handle(Request::GenerateKeyPair {
                algorithm: Algorithm::Rsa2048
            }),
            Response::Error(DeviceError::UnsupportedAlgorithm)
        );
    }
}

#[cfg(test)]
mod robustness {
    use super::*;
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
                            (x >> 8) as u8 % 12
                        } else {
                            (x >> 16) as u8
                        }
                    })
                    .collect();
                if let Ok(req) = postcard::from_bytes::<Request<'_>>(&bytes) {
                    let _ = svc.handle(req);
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
