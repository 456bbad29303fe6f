//! A backend that runs the Keyward firmware key service: linked into the daemon (`embedded`)
//! or on a device behind a serial line (`serial`). Both speak the same `Request`/`Response`
//! enums; only the transport differs. The host works with the owned form of the response
//! (`OwnedResponse`), copied out of the key service's output buffer or decoded from a frame.

use super::asym::{DecryptScheme, SignScheme};
use super::{Hsm, ProtectionLevel};
use crate::error::{Error, Result};
use keyward_shared::wire::{
    replies, DecryptPadding, DeviceError, OwnedResponse as Response, Reply, ReplyError, Request,
    SignPadding,
};
use keyward_shared::Algorithm;
use zeroize::Zeroizing;

/// Carries one request to the key service and brings back its answer.
pub trait Transport: Send + Sync {
    fn exchange(&self, req: Request<'_>) -> Result<Response>;
}

pub struct DeviceHsm<T> {
    name: &'static str,
    transport: T,
    /// The attested identity public key of a physical device (serial backend).
    identity: Option<Vec<u8>>,
}

impl<T: Transport> DeviceHsm<T> {
    pub fn new(name: &'static str, transport: T) -> Self {
        DeviceHsm {
            name,
            transport,
            identity: None,
        }
    }

    pub fn with_identity(mut self, public_key: Vec<u8>) -> Self {
        self.identity = Some(public_key);
        self
    }

    /// Sends `req` and takes the answer as a reply of kind `R`, which must be the kind `req`
    /// expects: anything else is an error naming the kinds, never the reply's contents.
    fn call<R: Reply>(&self, req: Request<'_>) -> Result<R::Fields> {
        let resp = self.transport.exchange(req.clone())?;
        keyward_shared::wire::reply::<R>(&req, resp).map_err(reply_error)
    }

    /// `call` for requests that carry a caller's RSA ciphertext: one of the wrong length is
    /// the caller's input error (as on PKCS#11), not the HSM's fault.
    fn call_with_ciphertext<R: Reply>(&self, req: Request<'_>) -> Result<R::Fields> {
        let resp = self.transport.exchange(req.clone())?;
        keyward_shared::wire::reply::<R>(&req, resp).map_err(|e| match e {
            ReplyError::Device(DeviceError::BadLength) => {
                Error::InvalidValue("input length out of range for this key".into())
            }
            other => reply_error(other),
        })
    }

    /// RSA-2048 key generation in steps (docs/wire-protocol.md, "RSA key generation in
    /// steps"): each `GeneratePrime` is one bounded exchange, so on the serial link other
    /// requests take their turn between steps instead of waiting for the whole generation.
    fn generate_rsa(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        let algorithm = Algorithm::Rsa2048;
        let mut primes: Vec<Vec<u8>> = Vec::with_capacity(2);
        for _ in 0..MAX_PRIME_STEPS {
            if primes.len() == 2 {
                break;
            }
            let req = Request::GeneratePrime { algorithm };
            let resp = self.transport.exchange(req.clone())?;
            match keyward_shared::wire::reply::<replies::Sealed>(&req, resp) {
                Ok(sealed_prime) => primes.push(sealed_prime),
                Err(ReplyError::Device(DeviceError::TryAgain)) => continue,
                Err(e) => return Err(reply_error(e)),
            }
        }
        let [first, second] = primes.as_slice() else {
            return Err(Error::Hsm(format!(
                "no two RSA primes in {MAX_PRIME_STEPS} steps"
            )));
        };
        self.call::<replies::KeyPair>(Request::AssembleKeyPair {
            algorithm,
            first,
            second,
        })
    }
}

/// Bound on `GeneratePrime` steps for one RSA key: a step finds a prime with probability
/// ~0.55, so 400 steps fail to find two with probability below 2^-300; reaching the bound
/// means the device's random source or prime test is broken.
const MAX_PRIME_STEPS: usize = 400;

/// The device's RSA padding for a decryption scheme.
fn decrypt_padding(scheme: DecryptScheme) -> Option<DecryptPadding> {
    match scheme {
        DecryptScheme::RsaPkcs1v15 => Some(DecryptPadding::Pkcs1v15),
        DecryptScheme::RsaOaepSha1 => Some(DecryptPadding::OaepSha1),
        DecryptScheme::RsaOaepSha256 => Some(DecryptPadding::OaepSha256),
        DecryptScheme::Sm2Der => None,
    }
}

/// A device's refusal keeps its meaning (`AuthenticationFailed` is a failed decryption); a
/// reply of the wrong kind is an HSM fault described by kinds only.
fn reply_error(e: ReplyError) -> Error {
    match e {
        ReplyError::Device(e) => e.into(),
        ReplyError::Unexpected(u) => Error::Hsm(u.to_string()),
    }
}

fn not_here(alg: Algorithm) -> Error {
    Error::UnsupportedKeyUsage(format!(
        "{} keys do not run this operation on the firmware backends",
        alg.api_name()
    ))
}

impl<T: Transport> Hsm for DeviceHsm<T> {
    fn backend(&self) -> &'static str {
        self.name
    }

    fn protection_level(&self, _alg: Algorithm) -> ProtectionLevel {
        // The firmware runs every algorithm itself. On a device behind the serial line that
        // is the HSM level; linked in-process (`embedded`) the "device" is this daemon with
        // its device key in a file, which is software, and is reported as such.
        match self.name {
            "embedded" => ProtectionLevel::Software,
            _ => ProtectionLevel::Hsm,
        }
    }

    fn generate(&self, algorithm: Algorithm) -> Result<Vec<u8>> {
        self.call::<replies::Sealed>(Request::GenerateKey { algorithm })
    }

    fn encrypt(
        &self,
        algorithm: Algorithm,
        sealed: &[u8],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        self.call::<replies::Encrypted>(Request::Encrypt {
            algorithm,
            sealed,
            aad,
            plaintext,
        })
    }

    fn decrypt(
        &self,
        algorithm: Algorithm,
        sealed: &[u8],
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.call::<replies::Plaintext>(Request::Decrypt {
            algorithm,
            sealed,
            aad,
            nonce,
            ciphertext,
        })
        .map(Zeroizing::new)
    }

    fn device_identity(&self) -> Option<Vec<u8>> {
        self.identity.clone()
    }

    fn supports(&self, alg: Algorithm) -> bool {
        alg.is_symmetric() || alg == Algorithm::Rsa2048 || keyward_firmware::asym::supports(alg)
    }

    fn generate_key_pair(&self, algorithm: Algorithm) -> Result<(Vec<u8>, Vec<u8>)> {
        if !self.supports(algorithm) || algorithm.is_symmetric() {
            return Err(not_here(algorithm));
        }
        if algorithm == Algorithm::Rsa2048 {
            return self.generate_rsa();
        }
        self.call::<replies::KeyPair>(Request::GenerateKeyPair { algorithm })
    }

    fn sign(
        &self,
        algorithm: Algorithm,
        sealed: &[u8],
        scheme: SignScheme,
        message: &[u8],
        is_digest: bool,
    ) -> Result<Vec<u8>> {
        let padding = match (algorithm, scheme) {
            (Algorithm::Rsa2048, SignScheme::RsaPkcs1Sha256) => Some(SignPadding::Pkcs1v15Sha256),
            (Algorithm::Rsa2048, SignScheme::RsaPssSha256) => Some(SignPadding::PssSha256),
            (Algorithm::EccP256 | Algorithm::EccP384, SignScheme::Ecdsa)
            | (Algorithm::Sm2, SignScheme::Sm2) => None,
            _ => return Err(not_here(algorithm)),
        };
        if let Some(padding) = padding {
            return self.call::<replies::Signature>(Request::SignRsa {
                algorithm,
                padding,
                sealed,
                message,
                is_digest,
            });
        }
        self.call::<replies::Signature>(Request::Sign {
            algorithm,
            sealed,
            message,
            is_digest,
        })
    }

    fn asym_decrypt(
        &self,
        algorithm: Algorithm,
        sealed: &[u8],
        scheme: DecryptScheme,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        if algorithm == Algorithm::Rsa2048 {
            let padding = decrypt_padding(scheme).ok_or_else(|| not_here(algorithm))?;
            return self
                .call_with_ciphertext::<replies::Plaintext>(Request::DecryptRsa {
                    algorithm,
                    padding,
                    sealed,
                    ciphertext,
                })
                .map(Zeroizing::new);
        }
        if (algorithm, scheme) != (Algorithm::Sm2, DecryptScheme::Sm2Der) {
            return Err(not_here(algorithm));
        }
        self.call::<replies::Plaintext>(Request::AsymDecrypt {
            algorithm,
            sealed,
            ciphertext,
        })
        .map(Zeroizing::new)
    }

    /// The device unwraps the material with the sealed wrapping key and seals it; the
    /// material never reaches host memory (on the serial backend, never leaves the device).
    fn import_wrapped(
        &self,
        algorithm: Algorithm,
        wrapping: &[u8],
        scheme: DecryptScheme,
        encrypted: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        if !algorithm.is_symmetric() {
            return Err(not_here(algorithm));
        }
        let padding = decrypt_padding(scheme)
            .ok_or_else(|| Error::InvalidValue("not an RSA wrapping algorithm".into()))?;
        self.call_with_ciphertext::<replies::Imported>(Request::ImportWrapped {
            algorithm,
            padding,
            wrapping,
            encrypted,
        })
    }

    fn random(&self, len: usize) -> Result<Zeroizing<Vec<u8>>> {
        let len = u32::try_from(len).map_err(|_| Error::Internal("random length".into()))?;
        self.call::<replies::Random>(Request::Random { len })
            .map(Zeroizing::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_shared::wire::DeviceError;

    /// A transport whose device answers every request with the same response.
    struct Canned(Response);

    impl Transport for Canned {
        fn exchange(&self, _: Request<'_>) -> Result<Response> {
            Ok(self.0.clone())
        }
    }

    const SECRET: &[u8] = b"plaintext-marker-4b1d";

    /// Whether `text` shows `SECRET` as text, as hex or as the byte list a derived `Debug`
    /// would print.
    fn shows_secret(text: &str) -> bool {
        let decimal: Vec<String> = SECRET.iter().map(u8::to_string).collect();
        let text_lower = text.to_lowercase();
        text_lower.contains("plaintext-marker")
            || text_lower.contains(&hex::encode(SECRET))
            || text.contains(&decimal.join(", "))
    }

    /// A device that answers with the wrong kind of reply, carrying secret bytes, makes the
    /// call fail with an error naming the kinds; no form of the error shows the bytes.
    #[test]
    fn a_reply_of_the_wrong_kind_fails_without_showing_it() {
        let plaintext = DeviceHsm::new("test", Canned(Response::Plaintext(SECRET.to_vec())));
        let err = plaintext.generate(Algorithm::Aes256Gcm).unwrap_err();
        let shown = format!("{err} | {err:?} | {err:#?}");
        assert!(!shows_secret(&shown), "{shown}");
        assert!(
            shown.contains("device answered GenerateKey with Plaintext (expected Sealed)"),
            "{shown}"
        );
        let err = plaintext.random(16).unwrap_err();
        assert!(matches!(err, Error::Hsm(_)), "{err:?}");

        let key_pair = DeviceHsm::new(
            "test",
            Canned(Response::KeyPair {
                sealed: SECRET.to_vec(),
                public_key: SECRET.to_vec(),
            }),
        );
        let err = key_pair
            .decrypt(Algorithm::Aes256Gcm, b"sealed", b"nonce", b"", b"ct")
            .unwrap_err();
        let shown = format!("{err} | {err:?}");
        assert!(!shows_secret(&shown), "{shown}");
        assert!(shown.contains("Decrypt with KeyPair (expected Plaintext)"));
        // The detector itself finds the marker where a derived Debug would have put it.
        assert!(shows_secret(&format!("{:?}", SECRET.to_vec())));
    }

    /// A device that never finds a prime makes RSA key generation fail after a bounded number
    /// of steps, and a short RSA ciphertext is the caller's error, not the HSM's.
    #[test]
    fn rsa_key_generation_is_bounded_and_bad_lengths_are_input_errors() {
        let never = DeviceHsm::new("test", Canned(Response::Error(DeviceError::TryAgain)));
        let err = never.generate_key_pair(Algorithm::Rsa2048).unwrap_err();
        assert!(
            matches!(&err, Error::Hsm(m) if m.contains("no two RSA primes")),
            "{err:?}"
        );
        let short = DeviceHsm::new("test", Canned(Response::Error(DeviceError::BadLength)));
        let err = short
            .asym_decrypt(
                Algorithm::Rsa2048,
                b"sealed",
                DecryptScheme::RsaOaepSha1,
                b"x",
            )
            .unwrap_err();
        assert!(matches!(err, Error::InvalidValue(_)), "{err:?}");
        // An SM2 scheme on an RSA key is refused before reaching the device.
        let err = short
            .asym_decrypt(Algorithm::Rsa2048, b"sealed", DecryptScheme::Sm2Der, b"x")
            .unwrap_err();
        assert!(matches!(err, Error::UnsupportedKeyUsage(_)), "{err:?}");
    }

    #[test]
    fn the_expected_reply_and_device_errors_keep_their_meaning() {
        let sealed = DeviceHsm::new("test", Canned(Response::Sealed(vec![1, 2, 3])));
        assert_eq!(sealed.generate(Algorithm::Aes256Gcm).unwrap(), [1, 2, 3]);
        let refused = DeviceHsm::new(
            "test",
            Canned(Response::Error(DeviceError::AuthenticationFailed)),
        );
        let err = refused
            .decrypt(Algorithm::Aes256Gcm, b"sealed", b"nonce", b"", b"ct")
            .unwrap_err();
        assert!(matches!(err, Error::DecryptFailed), "{err:?}");
    }
}
