//! Adapter from the `Hsm` trait to the `keyward-hsm-pkcs11` crate.
//!
//! AES-256-GCM runs inside the token. SM4, which SoftHSM2 and most PKCS#11 tokens lack, is
//! sealed by the token's seal key and unsealed into host memory (zeroized) for one operation:
//! such keys report protection level SOFTWARE.

use super::asym::{self, DecryptScheme, SignScheme};
use super::{Hsm, ProtectionLevel};
use crate::config::Pkcs11Config;
use crate::error::Error;
use crate::error::Result;
use keyward_hsm_pkcs11::{AsymKind, Pkcs11Hsm, RsaDecryptMechanism, SignMechanism};
use keyward_shared::Algorithm;
use zeroize::Zeroizing;

pub struct Pkcs11Backend {
    token: Pkcs11Hsm,
}

impl Pkcs11Backend {
    /// Opens the token; `create_keys` only for a store that holds no sealed keys yet.
    pub fn open(cfg: &Pkcs11Config, create_keys: bool) -> Result<Self> {
        let pin = cfg.pin()?;
        if let Some(var) = &cfg.pin_env {
            // Read once, now held only in zeroizing memory (`Zeroizing`, then cryptoki's
            // `AuthPin`, a `secrecy::SecretString`): drop it from the environment so that child
            // processes and anything later dumping the environment do not see it.
            // `remove_var` is only sound while no other thread reads the environment through
            // libc (Rust's own accesses are serialised by std). This runs once, during
            // start-up, before the listener, the request workers and the token's sessions
            // exist; the runtime's worker threads are idle, waiting for this very start-up to
            // finish. Note: Linux keeps the *initial* environment block for
            // /proc/<pid>/environ (readable by the same user and root); `pin_file` avoids that.
            std::env::remove_var(var);
        }
        let token = Pkcs11Hsm::open(&keyward_hsm_pkcs11::Pkcs11Config {
            module: cfg.module.clone(),
            token_label: cfg.token_label.clone(),
            token_serial: cfg.token_serial.clone(),
            slot: cfg.slot,
            pin,
            // Fewer sessions than worker threads is safe (a worker waits microseconds for a
            // session whose holder never yields while holding it) and can be faster: SoftHSM2
            // slows down with concurrent callers. Size it by measurement (docs/benchmarks.md).
            pool_size: cfg.pool_size.max(1),
            create_keys,
        })?;
        // Where RSA-OAEP runs, decided by the start-up probe: in the token, or raw RSA in the
        // token with the padding removed on the host (SoftHSM2 2.6.1 for SHA-256). Logged once.
        let path = |mech| match token.rsa_decrypt_path(mech) {
            Ok(p) => p.name(),
            Err(_) => "unsupported",
        };
        tracing::info!(
            module = %cfg.module.display(),
            token = %token.token_label(),
            sessions = cfg.pool_size,
            rsa_oaep_sha1 = path(RsaDecryptMechanism::OaepSha1),
            rsa_oaep_sha256 = path(RsaDecryptMechanism::OaepSha256),
            "PKCS#11 HSM backend ready"
        );
        Ok(Pkcs11Backend { token })
    }
}

fn rsa_mechanism(scheme: DecryptScheme) -> Result<RsaDecryptMechanism> {
    Ok(match scheme {
        DecryptScheme::RsaPkcs1v15 => RsaDecryptMechanism::Pkcs1v15,
        DecryptScheme::RsaOaepSha1 => RsaDecryptMechanism::OaepSha1,
        DecryptScheme::RsaOaepSha256 => RsaDecryptMechanism::OaepSha256,
        DecryptScheme::Sm2Der => {
            return Err(Error::Internal("SM2 decryption on an RSA key".into()))
        }
    })
}

/// Check value of SM4 material: the first 16 bytes of SM4-GCM with an all-zero nonce over 16
/// zero bytes (the same construction the token uses for AES material).
fn sm4_check_value(material: &[u8]) -> Result<Vec<u8>> {
    let ct =
        keyward_firmware::aead::encrypt(Algorithm::Sm4Gcm, material, &[0u8; 12], b"", &[0u8; 16])?;
    Ok(ct[..16].to_vec())
}

fn asym_kind(alg: Algorithm) -> Result<AsymKind> {
    match alg {
        Algorithm::Rsa2048 => Ok(AsymKind::Rsa2048),
        Algorithm::EccP256 => Ok(AsymKind::EcP256),
        Algorithm::EccP384 => Ok(AsymKind::EcP384),
        other => Err(Error::Internal(format!(
            "{} is not a token key pair",
            other.api_name()
        ))),
    }
}

impl Hsm for Pkcs11Backend {
    fn backend(&self) -> &'static str {
        "pkcs11"
    }

    fn session_use(&self) -> Option<(usize, usize)> {
        Some(self.token.session_use())
    }

    fn protection_level(&self, alg: Algorithm) -> ProtectionLevel {
        match alg {
            Algorithm::Sm4Gcm | Algorithm::Sm2 => ProtectionLevel::Software,
            _ => ProtectionLevel::Hsm,
        }
    }

    fn device_identity(&self) -> Option<Vec<u8>> {
        // The token is found by label and PIN, but what the stored keys are bound to is its
        // root key: a hash of a fixed input wrapped under it, computed in the token at open
        // (see `Pkcs11Hsm::root_identity` for why this and not CKA_CHECK_VALUE).
        Some(self.token.root_identity().to_vec())
    }

    fn supports(&self, alg: Algorithm) -> bool {
        let caps = self.token.capabilities();
        match alg {
            Algorithm::Aes256Gcm | Algorithm::Sm4Gcm | Algorithm::Sm2 => true,
            Algorithm::Rsa2048 => caps.rsa_2048,
            Algorithm::EccP256 => caps.ec_p256,
            Algorithm::EccP384 => caps.ec_p384,
            // Post-quantum keys are the host's (kms::pq), sealed through the system key.
            Algorithm::MlKem768 | Algorithm::MlDsa65 => false,
        }
    }

    fn generate(&self, alg: Algorithm) -> Result<Vec<u8>> {
        match alg {
            Algorithm::Aes256Gcm => Ok(self.token.generate_aes256_sealed()?),
            Algorithm::Sm4Gcm => Ok(self.token.generate_software_sealed(alg.key_len())?),
            other => Err(Error::Internal(format!(
                "{} is not a symmetric algorithm",
                other.api_name()
            ))),
        }
    }

    fn generate_key_pair(&self, alg: Algorithm) -> Result<(Vec<u8>, Vec<u8>)> {
        if alg == Algorithm::Sm2 {
            // No SM2 in the token: the scalar comes from its RNG and stays sealed by its seal
            // key; the public key is derived in host memory (SOFTWARE level).
            for _ in 0..8 {
                let sealed = self.token.generate_software_sealed(alg.key_len())?;
                let secret = self.token.unseal_software(&sealed)?;
                if let Some(public) = asym::sm2_public_from_secret(&secret) {
                    return Ok((sealed, public));
                }
            }
            return Err(Error::Hsm("no valid SM2 scalar in 8 draws".into()));
        }
        let pair = self.token.generate_key_pair_sealed(asym_kind(alg)?)?;
        Ok((pair.sealed_private, pair.public_spki_der))
    }

    fn sign(
        &self,
        alg: Algorithm,
        sealed: &[u8],
        scheme: SignScheme,
        message: &[u8],
        is_digest: bool,
    ) -> Result<Vec<u8>> {
        if alg == Algorithm::Sm2 {
            let secret = self.token.unseal_software(sealed)?;
            return asym::sm2_sign(&secret, message, is_digest);
        }
        let mech = match scheme {
            SignScheme::RsaPkcs1Sha256 => SignMechanism::RsaPkcs1Sha256,
            SignScheme::RsaPssSha256 => SignMechanism::RsaPssSha256,
            SignScheme::Ecdsa => SignMechanism::Ecdsa,
            SignScheme::Sm2 => return Err(Error::Internal("SM2DSA on a non-SM2 key".into())),
        };
        Ok(self
            .token
            .sign(sealed, mech, &asym::sha256_input(message, is_digest))?)
    }

    fn asym_decrypt(
        &self,
        alg: Algorithm,
        sealed: &[u8],
        scheme: DecryptScheme,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        if alg == Algorithm::Sm2 {
            let secret = self.token.unseal_software(sealed)?;
            return asym::sm2_decrypt(&secret, ciphertext);
        }
        let mech = rsa_mechanism(scheme)?;
        Ok(self.token.rsa_decrypt(sealed, mech, ciphertext)?)
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
            other => Err(Error::Internal(format!(
                "{} is not an AEAD",
                other.api_name()
            ))),
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
            other => Err(Error::Internal(format!(
                "{} is not an AEAD",
                other.api_name()
            ))),
        }
    }

    fn import_wrapped(
        &self,
        alg: Algorithm,
        sealed_wrapping: &[u8],
        scheme: DecryptScheme,
        encrypted: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let mech = rsa_mechanism(scheme)?;
        match alg {
            // Unwrapped by the token straight into a sealed key: never in host memory.
            Algorithm::Aes256Gcm => {
                let (sealed, kcv) =
                    self.token
                        .import_wrapped_aes256(sealed_wrapping, mech, encrypted)?;
                Ok((sealed, kcv.to_vec()))
            }
            // SM4 is SOFTWARE level on this token: the material is decrypted by the token's RSA
            // key into host memory, sealed by the seal key, and zeroized.
            Algorithm::Sm4Gcm => {
                let material = self.token.rsa_decrypt(sealed_wrapping, mech, encrypted)?;
                if material.len() != alg.key_len() {
                    return Err(Error::InvalidValue("material must be 16 bytes".into()));
                }
                let sealed = self.token.seal_software(&material)?;
                Ok((sealed, sm4_check_value(&material)?))
            }
            other => Err(Error::Internal(format!(
                "{} material cannot be imported",
                other.api_name()
            ))),
        }
    }

    fn random(&self, len: usize) -> Result<Zeroizing<Vec<u8>>> {
        Ok(self.token.random(len)?)
    }
}

/// The PKCS#11 adapter's one conversion of its crate's errors into the host's.
impl From<keyward_hsm_pkcs11::Error> for Error {
    fn from(e: keyward_hsm_pkcs11::Error) -> Self {
        match e {
            keyward_hsm_pkcs11::Error::AuthenticationFailed => Error::DecryptFailed,
            keyward_hsm_pkcs11::Error::Unsupported(what) => {
                Error::Unsupported(format!("the HSM does not support {what}"))
            }
            keyward_hsm_pkcs11::Error::BadLength => {
                Error::InvalidValue("input length out of range for this key".into())
            }
            other => Error::Hsm(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crate's message names the feature; the adapter says it once (it used to read "the
    /// HSM does not support RSA-OAEP with SHA-256 is not supported by this token").
    #[test]
    fn unsupported_features_are_named_once() {
        let e = Error::from(keyward_hsm_pkcs11::Error::Unsupported(
            "RSA-OAEP with SHA-256",
        ));
        assert_eq!(
            e.to_string(),
            Error::Unsupported("the HSM does not support RSA-OAEP with SHA-256".into()).to_string()
        );
        assert!(!e.to_string().contains("not supported"), "{e}");
        assert_eq!(
            keyward_hsm_pkcs11::Error::Unsupported("RSA-OAEP with SHA-256").to_string(),
            "RSA-OAEP with SHA-256 is not supported by this token"
        );
    }

    /// The attack: anything that later reads this process's environment (a child process, a
    /// crash reporter, a debug endpoint) finds the user PIN there.
    #[test]
    fn pin_variable_is_removed_from_the_environment() {
        let var = "KEYWARD_UNIT_TEST_PIN_IS_REMOVED";
        // Unique to this test: no other test reads or writes it.
        std::env::set_var(var, "1234");
        let cfg = Pkcs11Config {
            module: "/nonexistent/libpkcs11.so".into(),
            token_label: "t".into(),
            token_serial: None,
            slot: None,
            pin_file: None,
            pin_env: Some(var.into()),
            pool_size: 1,
        };
        // Even an open that fails afterwards (no such module) has read and dropped the PIN.
        assert!(Pkcs11Backend::open(&cfg, true).is_err());
        assert!(
            std::env::var_os(var).is_none(),
            "PIN still in the environment"
        );
    }
}
