//! The firmware key-service core linked into the daemon. Zero setup, and not an HSM: its
//! device key is a file in the data directory, protected only by file permissions.

use super::asym::{DecryptScheme, SignScheme};
use super::{Hsm, ProtectionLevel};
use crate::error::{Error, Result};
use keyward_firmware::KeyService;
use keyward_shared::wire::{Request, Response};
use keyward_shared::Algorithm;
use rand_core::OsRng;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use zeroize::Zeroizing;

const DEVICE_KEY_FILE: &str = "device.key";

pub struct EmbeddedHsm {
    core: Mutex<KeyService<OsRng>>,
}

impl EmbeddedHsm {
    /// Loads `<data_dir>/device.key`, creating it (mode 0600) on first use.
    pub fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join(DEVICE_KEY_FILE);
        let key = match std::fs::read(&path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    Error::Config(format!("{} must hold exactly 32 bytes", path.display()))
                })?;
                Zeroizing::new(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = KeyService::<OsRng>::generate_device_key(&mut OsRng);
                write_new_secret_file(&path, key.as_ref())?;
                key
            }
            Err(e) => return Err(e.into()),
        };
        tracing::warn!(
            "HSM backend `embedded`: keys are protected by {} on this machine's disk, NOT by a \
             hardware security module. Use it for development and demos only; configure \
             [hsm] backend = \"pkcs11\" for production.",
            path.display()
        );
        Ok(EmbeddedHsm {
            core: Mutex::new(KeyService::new(*key, OsRng)),
        })
    }

    fn call(&self, req: Request<'_>) -> Result<Response> {
        let mut core = self
            .core
            .lock()
            .map_err(|_| Error::Internal("embedded HSM lock poisoned".into()))?;
        match core.handle(req) {
            Response::Error(e) => Err(e.into()),
            other => Ok(other),
        }
    }
}

fn not_here(alg: Algorithm) -> Error {
    Error::UnsupportedKeyUsage(format!(
        "{} keys are not available with the embedded backend",
        alg.api_name()
    ))
}

fn unexpected(resp: Response) -> Error {
    Error::Hsm(format!("unexpected device response {resp:?}"))
}

/// Creates a file that must not already exist, readable by the owner only, and syncs it.
fn write_new_secret_file(path: &Path, data: &[u8]) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

impl Hsm for EmbeddedHsm {
    fn backend(&self) -> &'static str {
        "embedded"
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

    fn supports(&self, alg: Algorithm) -> bool {
        // The firmware core holds symmetric keys; its asymmetric algorithms arrive with the
        // serial firmware work.
        alg.is_symmetric()
    }

    fn generate_key_pair(&self, alg: Algorithm) -> Result<(Vec<u8>, Vec<u8>)> {
        Err(not_here(alg))
    }

    fn sign(&self, alg: Algorithm, _: &[u8], _: SignScheme, _: &[u8], _: bool) -> Result<Vec<u8>> {
        Err(not_here(alg))
    }

    fn asym_decrypt(
        &self,
        alg: Algorithm,
        _: &[u8],
        _: DecryptScheme,
        _: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        Err(not_here(alg))
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
