//! A backend that runs the Keyward firmware key service: linked into the daemon (`embedded`)
//! or on a device behind a serial line (`serial`). Both speak the same `Request`/`Response`
//! enums; only the transport differs. The host works with the owned form of the response
//! (`OwnedResponse`), copied out of the key service's output buffer or decoded from a frame.

use super::asym::{DecryptScheme, SignScheme};
use super::{Hsm, ProtectionLevel};
use crate::error::{Error, Result};
use keyward_shared::wire::{OwnedResponse as Response, Request};
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

    fn call(&self, req: Request<'_>) -> Result<Response> {
        match self.transport.exchange(req)? {
            Response::Error(e) => Err(e.into()),
            other => Ok(other),
        }
    }
}

fn not_here(alg: Algorithm) -> Error {
    Error::UnsupportedKeyUsage(format!(
        "{} keys are not available with the firmware backends yet",
        alg.api_name()
    ))
}

fn unexpected(resp: Response) -> Error {
    Error::Hsm(format!("unexpected device response {resp:?}"))
}

impl<T: Transport> Hsm for DeviceHsm<T> {
    fn backend(&self) -> &'static str {
        self.name
    }

    fn protection_level(&self, _alg: Algorithm) -> ProtectionLevel {
        // The firmware runs every algorithm itself; when it sits on a real device this is
        // the HSM level. Linked in-process the "device" is this daemon, which start-up says.
        ProtectionLevel::Hsm
    }

    fn generate(&self, algorithm: Algorithm) -> Result<Vec<u8>> {
        match self.call(Request::GenerateKey { algorithm })? {
            Response::Sealed(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    fn encrypt(
        &self,
        algorithm: Algorithm,
        sealed: &[u8],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        match self.call(Request::Encrypt {
            algorithm,
            sealed,
            aad,
            plaintext,
        })? {
            Response::Encrypted { nonce, ciphertext } => Ok((nonce, ciphertext)),
            other => Err(unexpected(other)),
        }
    }

    fn decrypt(
        &self,
        algorithm: Algorithm,
        sealed: &[u8],
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        match self.call(Request::Decrypt {
            algorithm,
            sealed,
            aad,
            nonce,
            ciphertext,
        })? {
            Response::Plaintext(p) => Ok(Zeroizing::new(p)),
            other => Err(unexpected(other)),
        }
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
        match self.call(Request::GenerateKeyPair { algorithm })? {
            Response::KeyPair { sealed, public_key } => Ok((sealed, public_key)),
            other => Err(unexpected(other)),
        }
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
        match self.call(Request::Sign {
            algorithm,
            sealed,
            message,
            is_digest,
        })? {
            Response::Signature(s) => Ok(s),
            other => Err(unexpected(other)),
        }
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
        match self.call(Request::AsymDecrypt {
            algorithm,
            sealed,
            ciphertext,
        })? {
            Response::Plaintext(p) => Ok(Zeroizing::new(p)),
            other => Err(unexpected(other)),
        }
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
        match self.call(Request::Random { len })? {
            Response::Random(r) => Ok(Zeroizing::new(r)),
            other => Err(unexpected(other)),
        }
    }
}
