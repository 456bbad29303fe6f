//! The firmware key-service core linked into the daemon. Zero setup, and not an HSM: its
//! device key is a file in the data directory, protected only by file permissions.

use super::device::{DeviceHsm, Transport};
use crate::error::{Error, Result};
use keyward_firmware::{KeyService, OUTPUT_LEN};
use keyward_shared::wire::{OwnedResponse, Request, Response};
use rand_core::OsRng;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use zeroize::{Zeroize, Zeroizing};

const DEVICE_KEY_FILE: &str = "device.key";

/// The firmware core in this process, one request at a time.
pub struct EmbeddedCore {
    core: Mutex<Core>,
}

/// The key service and its output buffer, which responses borrow from until copied out.
struct Core {
    service: KeyService<OsRng>,
    output: Zeroizing<Vec<u8>>,
}

pub type EmbeddedHsm = DeviceHsm<EmbeddedCore>;

impl DeviceHsm<EmbeddedCore> {
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
        Ok(DeviceHsm::new(
            "embedded",
            EmbeddedCore {
                core: Mutex::new(Core {
                    service: KeyService::new(*key, OsRng),
                    output: Zeroizing::new(vec![0u8; OUTPUT_LEN]),
                }),
            },
        ))
    }
}

impl Transport for EmbeddedCore {
    fn exchange(&self, req: Request<'_>) -> Result<OwnedResponse> {
        let mut core = self
            .core
            .lock()
            .map_err(|_| Error::Internal("embedded HSM lock poisoned".into()))?;
        let Core { service, output } = &mut *core;
        let base = output.as_ptr() as usize;
        let resp = service.handle(req, output);
        // Plaintexts and random bytes are secrets: wipe them from the output buffer once
        // copied out (the copy goes into the caller's `Zeroizing`). They borrow from `output`,
        // so their offset in it is their address minus its start.
        let secret = match resp {
            Response::Plaintext(p) | Response::Random(p) => {
                let start = (p.as_ptr() as usize).wrapping_sub(base);
                Some(start..start.saturating_add(p.len()))
            }
            _ => None,
        };
        let owned = resp.to_owned_response();
        if let Some(bytes) = secret.and_then(|range| output.get_mut(range)) {
            bytes.zeroize();
        }
        Ok(owned)
    }
}

/// Creates a file that must not already exist, readable by the owner only, and syncs it.
pub(super) fn write_new_secret_file(path: &Path, data: &[u8]) -> Result<()> {
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
