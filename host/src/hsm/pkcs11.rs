//! Adapter from the `Hsm` trait to the `keyward-hsm-pkcs11` crate.
//!
//! AES-256-GCM runs inside the token. SM4, which SoftHSM2 and most PKCS#11 tokens lack, is
//! sealed by the token's seal key and unsealed into host memory (zeroized) for one operation:
//! such keys report protection level SOFTWARE.

use super::{Hsm, ProtectionLevel};
use crate::config::Pkcs11Config;
use crate::error::Result;
use keyward_hsm_pkcs11::Pkcs11Hsm;
use keyward_shared::Algorithm;
use zeroize::Zeroizing;

pub struct Pkcs11Backend {
    token: Pkcs11Hsm,
}

impl Pkcs11Backend {
    pub fn open(cfg: &Pkcs11Config) -> Result<Self> {
        let token = Pkcs11Hsm::open(&keyward_hsm_pkcs11::Pkcs11Config {
            module: cfg.module.clone(),
            token_label: cfg.token_label.clone(),
            pin: cfg.pin()?,
            // Fewer sessions than worker threads is safe (a worker waits microseconds for a
            // session whose holder never yields while holding it) and can be faster: SoftHSM2
            // slows down with concurrent callers. Size it by measurement (docs/benchmarks.md).
            pool_size: cfg.pool_size.max(1),
        })?;
        tracing::info!(
            module = %cfg.module.display(),
            token = %cfg.token_label,
            sessions = cfg.pool_size,
            "PKCS#11 HSM backend ready"
        );
        Ok(Pkcs11Backend { token })
    }
}

impl Hsm for Pkcs11Backend {
    fn backend(&self) -> &'static str {
        "pkcs11"
    }

    fn protection_level(&self, alg: Algorithm) -> ProtectionLevel {
        match alg {
            Algorithm::Aes256Gcm => ProtectionLevel::Hsm,
            Algorithm::Sm4Gcm => ProtectionLevel::Software,
        }
    }

    fn generate(&self, alg: Algorithm) -> Result<Vec<u8>> {
        Ok(match alg {
            Algorithm::Aes256Gcm => self.token.generate_aes256_sealed()?,
            Algorithm::Sm4Gcm => self.token.generate_software_sealed(alg.key_len())?,
        })
    }

    fn encrypt(
        &self,
        alg: Algorithm,
        sealed: &[u8],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        match alg {
            Algorithm::Aes256Gcm => Ok(self.token.aes_gcm_encrypt(sealed, aad, plaintext)?),
            Algorithm::Sm4Gcm => {
                let key = self.token.unseal_software(sealed)?;
                let nonce = self.token.random(alg.nonce_len())?;
                let ct = keyward_firmware::aead::encrypt(alg, &key, &nonce, aad, plaintext)?;
                Ok((nonce.to_vec(), ct))
            }
        }
    }

    fn decrypt(
        &self,
        alg: Algorithm,
        sealed: &[u8],
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        match alg {
            Algorithm::Aes256Gcm => {
                Ok(self.token.aes_gcm_decrypt(sealed, nonce, aad, ciphertext)?)
            }
            Algorithm::Sm4Gcm => {
                let key = self.token.unseal_software(sealed)?;
                let pt = keyward_firmware::aead::decrypt(alg, &key, nonce, aad, ciphertext)?;
                Ok(Zeroizing::new(pt))
            }
        }
    }

    fn random(&self, len: usize) -> Result<Zeroizing<Vec<u8>>> {
        Ok(self.token.random(len)?)
    }
}
