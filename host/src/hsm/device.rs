//! A backend that runs the Keyward firmware key service: linked into the daemon (`embedded`)
//! or on a device behind a serial line (`serial`). Both speak the same `Request`/`Response`
//! enums; only the transport differs. The host works with the owned form of the response
//! (`OwnedResponse`), copied out of the key service's output buffer or decoded from a frame.

use super::asym::{DecryptScheme, SignScheme};
use super::{Hsm, ProtectionLevel};
use crate::error::{Error, Result};
use keyward_shared::wire::{replies, OwnedResponse as Response, Reply, ReplyError, Request};
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
        "{} keys are not available with the firmware backends yet",
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
        alg.is_symmetric() || keyward_firmware::asym::supports(alg)
    }

    fn generate_key_pair(&self, algorithm: Algorithm) -> Result<(Vec<u8>, Vec<u8>)> {
        if !self.supports(algorithm) || algorithm.is_symmetric() {
            return Err(not_here(algorithm));
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
        let fits = matches!(
            (algorithm, scheme),
            (Algorithm::EccP256, SignScheme::Ecdsa) | (Algorithm::Sm2, SignScheme::Sm2)
        );
        if !fits {
            return Err(not_here(algorithm));
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

    fn import_wrapped(
        &self,
        alg: Algorithm,
        _: &[u8],
        _: DecryptScheme,
        _: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        Err(not_here(alg))
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
